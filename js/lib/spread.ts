// The spread of one cell's value over the examples of a dataset: a small canvas with a
// histogram of the per-example values, one tick per example below it, the mean as a line and
// its confidence interval as a band. Hovering a tick names its example (text only); a click on
// it calls `onPick` with the example's index. Used by PatchingMap's detail pane.
import { formatValue } from "./colors";
import { h } from "./dom";
import { sizeCanvas, Tooltip } from "./grid";
import { visibleToken } from "./tokens";

export interface Spread {
  /** One value per example (NaN: left out). */
  values: Float32Array;
  mean: number;
  lo: number | null;
  hi: number | null;
  /** What the values are ("normalised effect", ...). */
  label: string;
  /** Each example's text (shown on hover), or [] for none. */
  texts: readonly string[];
  /** The example drawn in the map (-1: the mean), marked. */
  current: number;
}

export const SPREAD_W = 320;
export const SPREAD_H = 64;
const HIST_H = 38; // histogram bars, from the top
const TICK_Y = 44; // per-example ticks below them
const TICK_H = 12;
const PAD = 8;
/** Colours drawn (the tests read them back). */
export const SPREAD_COLOURS = { bar: [150, 150, 150], tick: [25, 118, 210], band: [25, 118, 210, 0.22], current: [230, 120, 0] };

const css = (c: readonly number[]) => (c.length === 4 ? `rgba(${c.join(",")})` : `rgb(${c.join(",")})`);

/** The value range drawn: every finite value, the mean and the interval, padded. */
function extent(s: Spread): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of [...s.values, s.mean, s.lo ?? NaN, s.hi ?? NaN]) {
    if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  }
  if (!Number.isFinite(lo)) return [-1, 1];
  if (hi - lo < 1e-12) return [lo - 0.5, hi + 0.5];
  const pad = (hi - lo) * 0.04;
  return [lo - pad, hi + pad];
}

export class SpreadStrip {
  readonly el = h("div", "ms-spread");
  readonly canvas = h("canvas", "ms-spread-canvas");
  private readonly tip: Tooltip;
  private x0 = 0;
  private x1 = 1;

  constructor(private readonly s: Spread, onPick: (i: number) => void) {
    const finite = s.values.filter((v) => Number.isFinite(v)).length;
    this.el.append(h("div", "ms-spread-head", `spread over ${s.values.length} examples (${s.label})`));
    const box = h("div", "ms-spread-box");
    box.append(this.canvas);
    this.el.append(box);
    this.tip = new Tooltip(this.el, false);
    this.tip.el.classList.add("ms-spread-tip");
    const [x0, x1] = extent(s);
    [this.x0, this.x1] = [x0, x1];
    const axis = h("div", "ms-spread-axis");
    axis.append(h("span", undefined, formatValue(x0)), h("span", undefined, formatValue(x1)));
    const ci = s.lo !== null && s.hi !== null ? ` [${formatValue(s.lo)}, ${formatValue(s.hi)}]` : "";
    this.el.append(axis, h("div", "ms-spread-key", `mean ${formatValue(s.mean)}${ci} (line, band)` +
      (finite < s.values.length ? `; ${s.values.length - finite} examples NaN, left out` : "") +
      "; a tick per example: hover to name it, click to draw it"), this.tip.el);
    Object.assign(this.canvas.dataset, { x0: String(x0), x1: String(x1), n: String(s.values.length) });
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    this.canvas.addEventListener("click", (ev) => {
      const near = this.near(ev);
      if (near.length) onPick(near[0]);
    });
  }

  /** CSS x of value v. */
  x(v: number): number {
    return PAD + ((v - this.x0) / (this.x1 - this.x0)) * (SPREAD_W - 2 * PAD);
  }

  draw(ink: string): void {
    const s = this.s;
    const ctx = sizeCanvas(this.canvas, SPREAD_W, SPREAD_H);
    ctx.clearRect(0, 0, SPREAD_W, SPREAD_H);
    if (s.lo !== null && s.hi !== null && Number.isFinite(s.lo) && Number.isFinite(s.hi)) {
      ctx.fillStyle = css(SPREAD_COLOURS.band);
      const a = this.x(s.lo);
      ctx.fillRect(a, 0, Math.max(1, this.x(s.hi) - a), SPREAD_H);
    }
    const bins = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(s.values.length)) * 2));
    const counts = new Array<number>(bins).fill(0);
    for (const v of s.values) {
      if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.floor(((v - this.x0) / (this.x1 - this.x0)) * bins))] += 1;
    }
    const most = Math.max(1, ...counts);
    const bw = (SPREAD_W - 2 * PAD) / bins;
    ctx.fillStyle = css(SPREAD_COLOURS.bar);
    counts.forEach((k, b) => {
      const hh = (k / most) * HIST_H;
      if (k) ctx.fillRect(PAD + b * bw + 0.5, HIST_H - hh, Math.max(1, bw - 1), hh);
    });
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      const cur = i === s.current;
      ctx.fillStyle = css(cur ? SPREAD_COLOURS.current : SPREAD_COLOURS.tick);
      ctx.fillRect(Math.round(this.x(v)) - (cur ? 1 : 0), TICK_Y - (cur ? 2 : 0), cur ? 3 : 1, TICK_H + (cur ? 4 : 0));
    });
    if (Number.isFinite(s.mean)) {
      ctx.fillStyle = ink;
      ctx.fillRect(Math.round(this.x(s.mean)) - 1, 0, 2, SPREAD_H);
    }
  }

  /** The examples whose ticks are within 3 px of the pointer, nearest first. */
  private near(ev: MouseEvent): number[] {
    const rect = this.canvas.getBoundingClientRect();
    const px = ((ev.clientX - rect.left) / rect.width) * SPREAD_W;
    const hits: [number, number][] = [];
    this.s.values.forEach((v, i) => {
      const d = Math.abs(this.x(v) - px);
      if (Number.isFinite(v) && d <= 3) hits.push([d, i]);
    });
    return hits.sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
  }

  private hover(ev: MouseEvent): void {
    const near = this.near(ev);
    if (!near.length) return this.tip.hide();
    const lines = near.slice(0, 4).map((i) => {
      const text = this.s.texts[i];
      return `example ${i}: ${formatValue(this.s.values[i])}${text === undefined ? "" : `  ${JSON.stringify(visibleToken(text))}`}`;
    });
    if (near.length > 4) lines.push(`… and ${near.length - 4} more here`);
    this.tip.show(lines.join("\n"), ev.clientX, ev.clientY);
  }
}

export const SPREAD_CSS = `
.ms-spread { position: relative; margin-top: 8px; }
.ms-spread-head { font-size: 11px; font-weight: 600; margin-bottom: 2px; }
.ms-spread-canvas { display: block; cursor: pointer; border-bottom: 1px solid var(--jp-border-color1, #bbb); }
.ms-spread-axis { display: flex; justify-content: space-between; width: ${SPREAD_W}px; font-size: 10px;
  color: var(--jp-ui-font-color2, #555); font-variant-numeric: tabular-nums; }
.ms-spread-key { font-size: 10px; color: var(--jp-ui-font-color2, #555); max-width: ${SPREAD_W + 60}px; }
`;
