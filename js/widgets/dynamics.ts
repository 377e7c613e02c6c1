// Dynamics widget: structure and behaviour over training, one small multiple per run.
// Curves per run (shared scales, log-step axis), a step slider driving one heatmap per run of
// the structure metric at that step (shared colour scale), and the emergence-step scatter.
// Python side: src/mechscope/widgets/dynamics.py. Every label is drawn with textContent or on
// canvas, never as HTML.
import { decodeFloat, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, formatValue, type Range } from "../lib/colors";
import { h, ownKeys } from "../lib/dom";
import { ARROWS, axisLabels, cellAtEvent, cellColour, moveCell, paintCells, sizeCanvas, Tooltip, type Cell } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";

interface Stats {
  pearson: number | null;
  spearman: number | null;
  n: number;
  steps_pearson: number | null;
  steps_spearman: number | null;
}

type DynamicsTraits = {
  steps: EncodedArray;
  structure: EncodedArray;
  structure_curve: EncodedArray;
  behaviour_curve: EncodedArray;
  emergence_steps: EncodedArray;
  windows: EncodedArray;
  runs: string[];
  row_labels: string[];
  col_labels: string[];
  structure_name: string;
  behaviour_name: string;
  method: string;
  title: string;
  stats: Stats;
  step_index: number;
  vmin: number;
  vmax: number;
};
type DynamicsModel = AnyModel<DynamicsTraits>;

// Colours that read on light and dark backgrounds alike.
export const STRUCTURE_RGB = "#4e79a7";
export const BEHAVIOUR_RGB = "#f28e2b";
const CURVE_W = 260;
const CURVE_H = 170;
const MARGIN = { l: 38, r: 40, t: 10, b: 28 };
const SCATTER = 250;
const MIN_LABEL_CELL = 11;

const STYLE_ID = "mechscope-dynamics-style-v1";
const DATA = ["runs", "steps", "structure", "row_labels", "col_labels", "structure_name", "behaviour_name",
  "structure_curve", "behaviour_curve", "emergence_steps", "windows", "stats", "method", "title", "vmin", "vmax"] as const;
const CSS = `
.ms-dyn { display: block; }
.ms-dyn-summary { color: var(--jp-ui-font-color2, #555); margin-bottom: 6px; }
.ms-dyn-legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 4px 0 6px 0; align-items: center; }
.ms-dyn-legend span { display: inline-flex; align-items: center; gap: 5px; }
.ms-dyn-swatch { display: inline-block; width: 18px; height: 3px; }
.ms-dyn-swatch.ms-dashed { height: 0; border-top: 2px dashed var(--jp-ui-font-color1, #333); background: none; }
.ms-dyn-swatch.ms-band { height: 10px; opacity: 0.35; }
.ms-dyn-section { font-weight: 600; margin: 10px 0 4px 0; color: var(--jp-ui-font-color1, #1f1f1f); }
.ms-dyn-panels { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.ms-dyn-panel { display: flex; flex-direction: column; gap: 2px; }
.ms-dyn-label { font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  white-space: pre; overflow: hidden; text-overflow: ellipsis; max-width: 260px; }
.ms-dyn canvas { display: block; outline: none; }
.ms-dyn canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.ms-dyn-curve { cursor: pointer; }
.ms-dyn-heat { image-rendering: pixelated; cursor: crosshair; }
.ms-dyn-slider { display: flex; align-items: center; gap: 8px; margin: 8px 0 2px 0; }
.ms-dyn-slider input { width: min(520px, 60vw); accent-color: var(--jp-brand-color1, #1976d2); }
.ms-dyn-steplabel { font-family: var(--jp-code-font-family, monospace); min-width: 16em; }
.ms-dyn-hm { display: grid; grid-template-columns: auto auto; gap: 2px; align-items: start; justify-content: start; }
.ms-dyn-bar { display: flex; flex-direction: column; align-items: flex-start; gap: 2px; font-size: 10px;
  color: var(--jp-ui-font-color2, #555); margin-top: 16px; }
.ms-dyn-bottom { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.ms-dyn-stats { max-width: 420px; line-height: 1.5; }
.ms-dyn-stats div { white-space: pre-wrap; }
`;

/** CSS text colour of an element (what axes and labels use: follows the light/dark theme). */
function inkOf(node: HTMLElement): string {
  return getComputedStyle(node).color || "#333";
}

function withAlpha(colour: string, alpha: number): string {
  const m = colour.match(/rgba?\(([^)]+)\)/);
  if (m) {
    const [r, g, b] = m[1].split(",").map((s) => parseFloat(s));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }
  if (/^#[0-9a-f]{6}$/i.test(colour)) {
    const n = parseInt(colour.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }
  return colour;
}

/** Short step label: 0, 7, 120, 1.5k, 143k. */
export function stepLabel(step: number): string {
  if (!Number.isFinite(step)) return "—";
  const s = Math.round(step);
  if (Math.abs(s) >= 10000) return `${Math.round(s / 1000)}k`;
  if (Math.abs(s) >= 1000) return `${(s / 1000).toFixed(1).replace(/\.0$/, "")}k`;
  return String(s);
}

function finiteRange(values: ArrayLike<number>, pad: number): Range {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!Number.isFinite(lo)) return { lo: 0, hi: 1 };
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  }
  const p = (hi - lo) * pad;
  return { lo: lo - p, hi: hi + p };
}

export interface Axis extends Range {
  ticks: number[];
  decimals: number;
}

/** A "nice" axis covering ``r``: the finest step of 1, 2, 2.5 or 5 x 10^k giving <= 6 ticks. */
export function niceAxis(r: Range): Axis {
  const span = r.hi - r.lo || 1;
  const base = Math.pow(10, Math.floor(Math.log10(span / 6)));
  for (const m of [1, 2, 2.5, 5, 10, 20, 25, 50]) {
    const step = m * base;
    const lo = Math.floor(r.lo / step + 1e-9) * step;
    const hi = Math.ceil(r.hi / step - 1e-9) * step;
    const n = Math.round((hi - lo) / step);
    if (n + 1 <= 6) {
      const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (m === 2.5 || m === 25 ? 1 : 0));
      const ticks: number[] = [];
      for (let i = 0; i <= n; i++) ticks.push(lo + i * step);
      return { lo, hi: hi > lo ? hi : lo + step, ticks, decimals };
    }
  }
  return { lo: r.lo, hi: r.hi, ticks: [r.lo, r.hi], decimals: 2 };
}

/** Round steps (0, 1, 2, 5, 10, 20, 50, ...) inside [lo, hi], at most ``max`` of them. */
export function logTicks(lo: number, hi: number, max = 5): number[] {
  const all: number[] = [0];
  for (let p = 1; p <= Math.max(1, hi) * 10; p *= 10) for (const m of [1, 2, 5]) all.push(m * p);
  let ticks = all.filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9);
  while (ticks.length > max) ticks = ticks.filter((_, i) => i % 2 === 0);
  return ticks;
}

/** ``text`` cut to ``max`` characters with an ellipsis (for canvas labels). */
function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The decoded arrays of a Dynamics model (decoded once per change of the data traits). */
class DynData {
  runs: string[] = [];
  steps: Float32Array = new Float32Array(0);
  xs = new Float64Array(0); // log1p(step)
  nRuns = 0;
  nCk = 0;
  nRows = 0;
  nCols = 0;
  structure: Float32Array = new Float32Array(0);
  sCurve: Float32Array = new Float32Array(0);
  bCurve: Float32Array = new Float32Array(0);
  emerg: Float32Array = new Float32Array(0);
  wins: Float32Array = new Float32Array(0);
  sRange: Axis = niceAxis({ lo: 0, hi: 1 });
  bRange: Axis = niceAxis({ lo: 0, hi: 1 });

  constructor(readonly model: DynamicsModel) {}

  load(): void {
    const m = this.model;
    this.runs = m.get("runs");
    this.steps = decodeFloat(m.get("steps")).values;
    this.nCk = this.steps.length;
    this.xs = Float64Array.from(this.steps, (s) => Math.log1p(Math.max(0, s)));
    const st = decodeFloat(m.get("structure"));
    [this.nRuns, , this.nRows, this.nCols] = st.shape;
    this.structure = st.values;
    this.sCurve = decodeFloat(m.get("structure_curve")).values;
    this.bCurve = decodeFloat(m.get("behaviour_curve")).values;
    this.emerg = decodeFloat(m.get("emergence_steps")).values;
    this.wins = decodeFloat(m.get("windows")).values;
    const sr = finiteRange(this.sCurve, 0);
    this.sRange = niceAxis({ lo: Math.min(sr.lo, 0), hi: sr.hi });
    this.bRange = niceAxis(finiteRange(this.bCurve, 0));
  }

  stepIndex(): number {
    return Math.max(0, Math.min(this.nCk - 1, this.model.get("step_index") | 0));
  }

  setStep(i: number): void {
    const k = Math.max(0, Math.min(this.nCk - 1, i));
    if (k === this.model.get("step_index")) return;
    this.model.set("step_index", k);
    this.model.save_changes();
  }

  /** Run r's transition windows: [structure from, to, behaviour from, to]. */
  windows(r: number): [number, number, number, number] {
    const w = this.wins;
    return [w[r * 4], w[r * 4 + 1], w[r * 4 + 2], w[r * 4 + 3]];
  }

  /** The curve panels' x (CSS px) of log1p(step) `x`. */
  px(x: number): number {
    const x0 = this.xs[0];
    const x1 = this.xs[this.nCk - 1];
    const w = CURVE_W - MARGIN.l - MARGIN.r;
    return MARGIN.l + (x1 > x0 ? ((x - x0) / (x1 - x0)) * w : w / 2);
  }

  nearestCheckpoint(offsetX: number): number {
    let best = 0;
    for (let k = 1; k < this.nCk; k++) if (Math.abs(this.px(this.xs[k]) - offsetX) < Math.abs(this.px(this.xs[best]) - offsetX)) best = k;
    return best;
  }
}

function py(v: number, r: Range): number {
  const hgt = CURVE_H - MARGIN.t - MARGIN.b;
  return MARGIN.t + (1 - (v - r.lo) / (r.hi - r.lo)) * hgt;
}

/** A vertical line at x (rounded to a pixel) from the top to the bottom of a curve panel's plot. */
function vline(ctx: CanvasRenderingContext2D, x0: number, colour: string, dash: number[], width: number): void {
  const x = Math.round(x0) + 0.5;
  ctx.save();
  ctx.setLineDash(dash);
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.moveTo(x, MARGIN.t);
  ctx.lineTo(x, CURVE_H - MARGIN.b);
  ctx.stroke();
  ctx.restore();
}

/** One panel per run: both curves over training, their emergence steps and windows, the slider's step. */
class CurvePanels {
  readonly box = h("div", "ms-dyn-panels ms-dyn-curves");
  private canvases: HTMLCanvasElement[] = [];

  constructor(private readonly d: DynData, private readonly tip: Tooltip, private readonly root: HTMLElement) {}

  build(): void {
    const d = this.d;
    this.box.replaceChildren();
    this.canvases = [];
    for (let r = 0; r < d.nRuns; r++) {
      const panel = h("div", "ms-dyn-panel");
      const label = h("div", "ms-dyn-label", d.runs[r] ?? `run ${r}`);
      const c = h("canvas", "ms-dyn-curve");
      c.width = CURVE_W;
      c.height = CURVE_H;
      c.tabIndex = 0;
      ownKeys(c);
      c.setAttribute("role", "img");
      c.dataset.run = String(r);
      c.addEventListener("mousemove", (ev) => this.tip.show(this.tipText(r, d.nearestCheckpoint(ev.offsetX)), ev.clientX, ev.clientY));
      c.addEventListener("mouseleave", () => this.tip.hide());
      c.addEventListener("click", (ev) => d.setStep(d.nearestCheckpoint(ev.offsetX)));
      c.addEventListener("keydown", (ev) => this.onKey(ev, r));
      c.addEventListener("blur", () => this.tip.hide());
      panel.append(label, c);
      this.box.append(panel);
      this.canvases.push(c);
    }
  }

  draw(r: number): void {
    const { d } = this;
    const c = this.canvases[r];
    const ctx = c.getContext("2d")!;
    const ink = inkOf(this.root);
    const k = d.stepIndex();
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.font = "10px sans-serif";
    this.drawWindows(ctx, r);
    this.drawAxes(ctx, ink);
    this.yTicks(ctx, d.sRange, MARGIN.l - 3, "right", STRUCTURE_RGB);
    this.yTicks(ctx, d.bRange, CURVE_W - MARGIN.r + 3, "left", BEHAVIOUR_RGB);
    // emergence steps, dashed
    const [sx, bx] = [d.emerg[r * 2], d.emerg[r * 2 + 1]];
    if (Number.isFinite(sx)) vline(ctx, d.px(Math.log1p(Math.max(0, sx))), STRUCTURE_RGB, [4, 3], 1.5);
    if (Number.isFinite(bx)) vline(ctx, d.px(Math.log1p(Math.max(0, bx))), BEHAVIOUR_RGB, [4, 3], 1.5);
    this.line(ctx, r, d.sCurve, d.sRange, STRUCTURE_RGB);
    this.line(ctx, r, d.bCurve, d.bRange, BEHAVIOUR_RGB);
    // the slider's step
    if (Number.isFinite(d.steps[k])) vline(ctx, d.px(Math.log1p(Math.max(0, d.steps[k]))), withAlpha(ink, 0.75), [], 1);
    c.dataset.step = String(d.steps[k]);
    c.setAttribute("aria-label",
      `${d.runs[r]}: ${d.model.get("structure_name")} and ${d.model.get("behaviour_name")} over training; ` +
      `at step ${stepLabel(d.steps[k])}: ${formatValue(d.sCurve[r * d.nCk + k])} and ${formatValue(d.bCurve[r * d.nCk + k])}`);
  }

  /** Transition windows (structure, behaviour), shaded. */
  private drawWindows(ctx: CanvasRenderingContext2D, r: number): void {
    const [s0, s1, b0, b1] = this.d.windows(r);
    const shade = (lo: number, hi: number, colour: string): void => {
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) return;
      const a = this.d.px(Math.log1p(lo));
      const b = this.d.px(Math.log1p(hi));
      ctx.fillStyle = withAlpha(colour, 0.16);
      ctx.fillRect(a, MARGIN.t, Math.max(1, b - a), CURVE_H - MARGIN.b - MARGIN.t);
    };
    shade(s0, s1, STRUCTURE_RGB);
    shade(b0, b1, BEHAVIOUR_RGB);
  }

  /** The plot's frame and the step axis (0, 1, 10, 100, ... and the last step). */
  private drawAxes(ctx: CanvasRenderingContext2D, ink: string): void {
    const { d } = this;
    const top = MARGIN.t;
    const bot = CURVE_H - MARGIN.b;
    ctx.strokeStyle = withAlpha(ink, 0.5);
    ctx.lineWidth = 1;
    ctx.strokeRect(MARGIN.l + 0.5, top + 0.5, CURVE_W - MARGIN.l - MARGIN.r, bot - top);
    ctx.fillStyle = ink;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const maxStep = d.steps[d.nCk - 1];
    const ticks = [0];
    for (let p = 1; p <= maxStep * 1.0001; p *= 10) ticks.push(p);
    for (const s of ticks) {
      if (s < d.steps[0]) continue;
      const x = d.px(Math.log1p(s));
      ctx.fillRect(x, bot, 1, 3);
      ctx.fillText(stepLabel(s), x, bot + 4);
    }
    if (maxStep > ticks[ticks.length - 1] * 1.5) {
      const x = d.px(d.xs[d.nCk - 1]);
      ctx.fillRect(x, bot, 1, 3);
      ctx.fillText(stepLabel(maxStep), x - 4, bot + 4);
    }
    ctx.fillText("step", (MARGIN.l + CURVE_W - MARGIN.r) / 2, bot + 15);
  }

  private yTicks(ctx: CanvasRenderingContext2D, rg: Axis, x: number, align: CanvasTextAlign, colour: string): void {
    ctx.textAlign = align;
    ctx.textBaseline = "middle";
    ctx.fillStyle = colour;
    for (const v of rg.ticks) {
      const y = py(v, rg);
      ctx.fillRect(align === "right" ? x + 1 : x - 4, Math.round(y), 3, 1);
      ctx.fillText(v.toFixed(rg.decimals), align === "right" ? x - 1 : x + 1, y);
    }
  }

  /** Run r's curve of `vals` (runs x checkpoints), broken at NaN / inf. */
  private line(ctx: CanvasRenderingContext2D, r: number, vals: Float32Array, rg: Range, colour: string): void {
    const { d } = this;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let pen = false;
    for (let j = 0; j < d.nCk; j++) {
      const v = vals[r * d.nCk + j];
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      const x = d.px(d.xs[j]);
      const y = py(v, rg);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }

  private tipText(r: number, k: number): string {
    const { d } = this;
    return `${d.runs[r]}  |  step ${stepLabel(d.steps[k])}\n` +
      `${d.model.get("structure_name")} (best unit): ${formatValue(d.sCurve[r * d.nCk + k])}\n` +
      `${d.model.get("behaviour_name")}: ${formatValue(d.bCurve[r * d.nCk + k])}`;
  }

  private onKey(ev: KeyboardEvent, r: number): void {
    const { d } = this;
    const k = d.stepIndex();
    const moves: Record<string, number> = { ArrowLeft: k - 1, ArrowRight: k + 1, ArrowDown: k - 1, ArrowUp: k + 1, Home: 0, End: d.nCk - 1 };
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    d.setStep(moves[ev.key]);
    const rect = this.canvases[r].getBoundingClientRect();
    this.tip.show(this.tipText(r, d.stepIndex()), rect.left + d.px(d.xs[d.stepIndex()]), rect.top + MARGIN.t + 10);
  }
}

/** One grid per run of the structure metric at the slider's step (layers x units), one shared
 * colour bar; the best unit outlined, a keyboard cursor when focused. */
class HeatPanels {
  readonly box = h("div", "ms-dyn-panels ms-dyn-heats");
  private canvases: HTMLCanvasElement[] = [];
  private cell: [number, number] = [1, 1];
  private cursor: Cell = [0, 0];
  private readonly table = colorTable("viridis");

  constructor(private readonly d: DynData, private readonly tip: Tooltip, private readonly root: HTMLElement) {}

  build(): void {
    const { d } = this;
    this.box.replaceChildren();
    this.canvases = [];
    const cw = Math.max(2, Math.min(28, Math.floor(240 / Math.max(1, d.nCols))));
    const ch = Math.max(4, Math.min(28, Math.floor(160 / Math.max(1, d.nRows))));
    this.cell = [cw, ch];
    for (let r = 0; r < d.nRuns; r++) this.box.append(this.panel(r));
    // one shared colour bar
    const bar = h("div", "ms-dyn-bar");
    const strip = colorBarCanvas(this.table, Math.max(56, Math.min(d.nRows * ch, 160)));
    bar.append(h("div", undefined, formatValue(d.model.get("vmax"))), strip, h("div", undefined, formatValue(d.model.get("vmin"))));
    this.box.append(bar);
  }

  private panel(r: number): HTMLElement {
    const { d } = this;
    const [cw, ch] = this.cell;
    const panel = h("div", "ms-dyn-panel");
    panel.append(h("div", "ms-dyn-label", d.runs[r] ?? `run ${r}`));
    const grid = h("div", "ms-dyn-hm");
    const rows = h("div", "ms-rowlabels");
    if (ch >= MIN_LABEL_CELL) axisLabels(rows, d.model.get("row_labels"), ch, "row");
    const c = h("canvas", "ms-dyn-heat");
    sizeCanvas(c, d.nCols * cw, d.nRows * ch);
    c.tabIndex = 0;
    ownKeys(c);
    c.setAttribute("role", "img");
    Object.assign(c.dataset, { run: String(r), cellW: String(cw), cellH: String(ch) });
    c.addEventListener("mousemove", (ev) => {
      const hit = cellAtEvent(c, ev, d.nRows, d.nCols);
      if (hit) this.tip.show(this.tipText(r, ...hit), ev.clientX, ev.clientY);
    });
    c.addEventListener("mouseleave", () => this.tip.hide());
    c.addEventListener("blur", () => this.tip.hide());
    c.addEventListener("keydown", (ev) => this.onKey(ev, r));
    c.addEventListener("focus", () => this.draw(r));
    const cols = h("div", "ms-collabels");
    if (cw >= MIN_LABEL_CELL) axisLabels(cols, d.model.get("col_labels"), cw, "col");
    grid.append(rows, c, h("div"), cols);
    panel.append(grid);
    this.canvases.push(c);
    return panel;
  }

  private value(r: number, row: number, col: number): number {
    const { d } = this;
    return d.structure[((r * d.nCk + d.stepIndex()) * d.nRows + row) * d.nCols + col];
  }

  private tipText(r: number, row: number, col: number): string {
    const { d } = this;
    const rl = d.model.get("row_labels");
    const cl = d.model.get("col_labels");
    return `${d.runs[r]}  |  step ${stepLabel(d.steps[d.stepIndex()])}  |  ${rl[row] ?? row} ${cl[col] ?? col}\n` +
      `${d.model.get("structure_name")}: ${formatValue(this.value(r, row, col))}`;
  }

  /** Index of run r's highest cell at the current step (NaN never wins), and its value. */
  private best(r: number): [number, number] {
    const { nRows, nCols } = this.d;
    let best = -1;
    let bestV = -Infinity;
    for (let i = 0; i < nRows * nCols; i++) {
      const v = this.value(r, Math.floor(i / nCols), i % nCols);
      if (v > bestV) {
        bestV = v;
        best = i;
      }
    }
    return [best, bestV];
  }

  draw(r: number): void {
    const { d } = this;
    const { nRows, nCols } = d;
    const c = this.canvases[r];
    const [cw, ch] = this.cell;
    const ctx = c.getContext("2d")!;
    const rg: Range = { lo: d.model.get("vmin"), hi: d.model.get("vmax") };
    const [best, bestV] = this.best(r);
    paintCells(ctx, { rows: nRows, cols: nCols, cellW: cw, cellH: ch, colour: (row, col) => cellColour(this.value(r, row, col), this.table, rg) });
    // the best unit (what the curves plot) outlined; the keyboard cursor when focused
    if (best >= 0 && cw >= 6 && ch >= 6) {
      ctx.strokeStyle = inkOf(this.root);
      ctx.lineWidth = 2;
      ctx.strokeRect((best % nCols) * cw + 1, Math.floor(best / nCols) * ch + 1, cw - 2, ch - 2);
    }
    if (document.activeElement === c) {
      ctx.strokeStyle = "#e15759";
      ctx.lineWidth = 2;
      ctx.setLineDash([3, 2]);
      ctx.strokeRect(this.cursor[1] * cw + 1, this.cursor[0] * ch + 1, cw - 2, ch - 2);
      ctx.setLineDash([]);
    }
    const step = d.steps[d.stepIndex()];
    Object.assign(c.dataset, { step: String(step), lo: String(rg.lo), hi: String(rg.hi) });
    c.setAttribute("aria-label",
      `${d.runs[r]}: ${d.model.get("structure_name")} per ${nRows} layers x ${nCols} units at step ${stepLabel(step)}; ` +
      `highest ${formatValue(bestV)}`);
  }

  private onKey(ev: KeyboardEvent, r: number): void {
    const step = ARROWS[ev.key];
    if (!step) return;
    ev.preventDefault();
    const { nRows, nCols } = this.d;
    const [cw, ch] = this.cell;
    this.cursor = moveCell(this.cursor, step, nRows, nCols);
    const rect = this.canvases[r].getBoundingClientRect();
    this.draw(r);
    this.tip.show(this.tipText(r, ...this.cursor), rect.left + (this.cursor[1] + 0.5) * cw, rect.top + (this.cursor[0] + 0.5) * ch);
  }
}

/** The emergence steps of both measures, one point per run, with their transition windows. */
class EmergenceScatter {
  readonly canvas = h("canvas", "ms-dyn-scatter");
  private pick = -1;
  private pts: { run: number; x: number; y: number }[] = [];

  constructor(private readonly d: DynData, private readonly tip: Tooltip, private readonly root: HTMLElement) {
    this.canvas.tabIndex = 0;
    ownKeys(this.canvas);
    this.canvas.setAttribute("role", "img");
    this.canvas.addEventListener("mousemove", (ev) => this.onHover(ev));
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    this.canvas.addEventListener("blur", () => {
      this.pick = -1;
      this.draw();
      this.tip.hide();
    });
    this.canvas.addEventListener("keydown", (ev) => this.onKey(ev));
  }

  /** The log1p(step) range both axes show, and its ticks (round steps, or a linear axis when narrow). */
  private axis(): { rg: Range; ticks: number[] } {
    const { d } = this;
    const vals: number[] = [];
    for (let r = 0; r < d.nRuns; r++) {
      for (const v of [d.emerg[r * 2], d.emerg[r * 2 + 1], ...d.windows(r)]) if (Number.isFinite(v)) vals.push(Math.log1p(Math.max(0, v)));
    }
    const pad = finiteRange(vals, 0.12);
    const rg: Range = { lo: Math.max(pad.lo, d.xs[0] ?? 0), hi: Math.min(pad.hi, d.xs[d.nCk - 1] ?? pad.hi) };
    if (!(rg.hi > rg.lo)) {
      rg.lo = pad.lo;
      rg.hi = pad.hi;
    }
    // ticks at round steps (0, 1, 2, 5, 10, ...); a narrow range gets a linear nice axis instead
    let ticks = logTicks(Math.expm1(rg.lo), Math.expm1(rg.hi));
    if (ticks.length < 3) {
      const axis = niceAxis({ lo: Math.max(0, Math.expm1(rg.lo)), hi: Math.expm1(rg.hi) });
      rg.lo = Math.log1p(axis.lo);
      rg.hi = Math.log1p(axis.hi);
      ticks = axis.ticks;
    }
    return { rg, ticks };
  }

  draw(): void {
    const c = this.canvas;
    c.width = SCATTER;
    c.height = SCATTER;
    const ctx = c.getContext("2d")!;
    const ink = inkOf(this.root);
    const m = { l: 44, r: 12, t: 12, b: 36 };
    const w = SCATTER - m.l - m.r;
    const hgt = SCATTER - m.t - m.b;
    const { rg, ticks } = this.axis();
    const at = (s: number): number => (Math.log1p(Math.max(0, s)) - rg.lo) / (rg.hi - rg.lo);
    const X = (s: number): number => m.l + at(s) * w;
    const Y = (s: number): number => m.t + (1 - at(s)) * hgt;
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.font = "10px sans-serif";
    ctx.strokeStyle = withAlpha(ink, 0.5);
    ctx.lineWidth = 1;
    ctx.strokeRect(m.l + 0.5, m.t + 0.5, w, hgt);
    // diagonal: both emerge at the same step
    ctx.save();
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(m.l, m.t + hgt);
    ctx.lineTo(m.l + w, m.t);
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = ink;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const s of ticks) ctx.fillText(stepLabel(s), X(s), m.t + hgt + 3);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const s of ticks) ctx.fillText(stepLabel(s), m.l - 3, Y(s));
    this.axisTitles(ctx, m.l + w / 2, m.t + hgt / 2, m.t + hgt);
    this.points(ctx, ink, X, Y);
    c.setAttribute("aria-label", `emergence steps of ${this.d.model.get("structure_name")} (x) against ${this.d.model.get("behaviour_name")} (y), one point per run`);
  }

  /** The axes' titles: under the plot (x, centred on midX) and left of it (y, rotated, at midY). */
  private axisTitles(ctx: CanvasRenderingContext2D, midX: number, midY: number, bottom: number): void {
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = STRUCTURE_RGB;
    ctx.fillText(`${this.d.model.get("structure_name")} emerges (step)`, midX, bottom + 16);
    ctx.save();
    ctx.translate(10, midY);
    ctx.rotate(-Math.PI / 2);
    ctx.fillStyle = BEHAVIOUR_RGB;
    ctx.fillText(`${this.d.model.get("behaviour_name")} emerges (step)`, 0, -6);
    ctx.restore();
  }

  /** Each run's point, its windows as whiskers and its name (moved down past earlier labels). */
  private points(ctx: CanvasRenderingContext2D, ink: string, X: (s: number) => number, Y: (s: number) => number): void {
    const { d } = this;
    const labelsAt: [number, number][] = [];
    this.pts = [];
    for (let r = 0; r < d.nRuns; r++) {
      const sx = d.emerg[r * 2];
      const by = d.emerg[r * 2 + 1];
      if (!Number.isFinite(sx) || !Number.isFinite(by)) continue;
      const x = X(sx);
      const y = Y(by);
      ctx.strokeStyle = withAlpha(ink, 0.6);
      ctx.lineWidth = 1;
      const [s0, s1, b0, b1] = d.windows(r);
      ctx.beginPath();
      if (Number.isFinite(s0) && Number.isFinite(s1)) {
        ctx.moveTo(X(s0), y);
        ctx.lineTo(X(s1), y);
      }
      if (Number.isFinite(b0) && Number.isFinite(b1)) {
        ctx.moveTo(x, Y(b0));
        ctx.lineTo(x, Y(b1));
      }
      ctx.stroke();
      ctx.fillStyle = r === this.pick ? "#e15759" : ink;
      ctx.beginPath();
      ctx.arc(x, y, r === this.pick ? 5 : 4, 0, 2 * Math.PI);
      ctx.fill();
      const text = clip(d.runs[r] ?? String(r), 18);
      const right = x + 5 + ctx.measureText(text).width <= SCATTER - 2;
      ctx.textAlign = right ? "left" : "right";
      ctx.textBaseline = "bottom";
      let ly = y - 3;
      while (labelsAt.some(([ax, ay]) => Math.abs(ax - x) < 40 && Math.abs(ay - ly) < 11)) ly += 11;
      labelsAt.push([x, ly]);
      ctx.fillText(text, right ? x + 5 : x - 5, ly);
      this.pts.push({ run: r, x, y });
    }
  }

  private tipText(r: number): string {
    const { d } = this;
    const [s0, s1, b0, b1] = d.windows(r).map(stepLabel);
    return `${d.runs[r]}\n${d.model.get("structure_name")} emerges at step ${stepLabel(d.emerg[r * 2])} (window ${s0}–${s1})\n` +
      `${d.model.get("behaviour_name")} emerges at step ${stepLabel(d.emerg[r * 2 + 1])} (window ${b0}–${b1})`;
  }

  private onHover(ev: MouseEvent): void {
    let best = -1;
    let dist = 12 * 12;
    for (const p of this.pts) {
      const dd = (p.x - ev.offsetX) ** 2 + (p.y - ev.offsetY) ** 2;
      if (dd < dist) {
        dist = dd;
        best = p.run;
      }
    }
    if (best < 0) this.tip.hide();
    else this.tip.show(this.tipText(best), ev.clientX, ev.clientY);
  }

  private onKey(ev: KeyboardEvent): void {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(ev.key) || !this.pts.length) return;
    ev.preventDefault();
    const order = this.pts.map((p) => p.run);
    const at = order.indexOf(this.pick);
    const forward = ev.key === "ArrowRight" || ev.key === "ArrowDown";
    this.pick = order[at < 0 ? 0 : (at + (forward ? 1 : order.length - 1)) % order.length];
    this.draw();
    const p = this.pts.find((q) => q.run === this.pick)!;
    const rect = this.canvas.getBoundingClientRect();
    this.tip.show(this.tipText(this.pick), rect.left + p.x, rect.top + p.y);
  }
}

/** The training-step slider (its keys are its own) and the step it is at. */
class StepSlider {
  readonly el = h("div", "ms-dyn-slider");
  private readonly range = h("input", "ms-dyn-range");
  private readonly stepText = h("span", "ms-dyn-steplabel");

  constructor(private readonly d: DynData, private readonly root: HTMLElement) {
    const range = this.range;
    range.type = "range";
    ownKeys(range);
    range.min = "0";
    range.step = "1";
    const rangeLabel = h("label", undefined, "training step");
    range.id = `ms-dyn-range-${Math.random().toString(36).slice(2, 10)}`;
    rangeLabel.htmlFor = range.id;
    this.el.append(rangeLabel, range, this.stepText);
    range.addEventListener("input", () => this.d.setStep(parseInt(range.value, 10)));
  }

  draw(): void {
    const { d } = this;
    const k = d.stepIndex();
    this.range.max = String(Math.max(0, d.nCk - 1));
    this.range.value = String(k);
    this.stepText.textContent = `step ${stepLabel(d.steps[k])} (checkpoint ${k + 1} of ${d.nCk})`;
    this.range.setAttribute("aria-valuetext", `step ${Math.round(d.steps[k])}`);
    this.root.dataset.stepIndex = String(k);
    this.root.dataset.step = String(d.steps[k]);
  }
}

class DynamicsView {
  readonly root = h("div", "ms-root ms-dyn");
  private readonly title = h("div", "ms-title");
  private readonly summary = h("div", "ms-dyn-summary");
  private readonly legend = h("div", "ms-dyn-legend");
  /** Headings of the curves, the heatmaps and the emergence scatter. */
  private readonly heads = { curves: h("div", "ms-dyn-section"), heat: h("div", "ms-dyn-section"), bottom: h("div", "ms-dyn-section") };
  private readonly stats = h("div", "ms-dyn-stats");
  private readonly tip = new Tooltip(this.root, false);
  private readonly d: DynData;
  private readonly curves: CurvePanels;
  private readonly heats: HeatPanels;
  private readonly scatter: EmergenceScatter;
  private readonly slider: StepSlider;

  constructor(private readonly model: DynamicsModel, el: HTMLElement) {
    this.d = new DynData(model);
    this.slider = new StepSlider(this.d, this.root);
    this.curves = new CurvePanels(this.d, this.tip, this.root);
    this.heats = new HeatPanels(this.d, this.tip, this.root);
    this.scatter = new EmergenceScatter(this.d, this.tip, this.root);
    const bottom = h("div", "ms-dyn-bottom");
    bottom.append(this.scatter.canvas, this.stats);
    this.root.append(this.title, this.summary, this.legend, this.heads.curves, this.curves.box, this.slider.el,
      this.heads.heat, this.heats.box, this.heads.bottom, bottom, this.tip.el);
    el.replaceChildren(this.root);
  }

  private drawText(): void {
    const { model, d } = this;
    const sName = model.get("structure_name");
    const bName = model.get("behaviour_name");
    const st = model.get("stats");
    this.title.textContent = model.get("title");
    const r = st.pearson === null ? "n/a" : st.pearson.toFixed(3);
    this.summary.textContent = `${d.runs.length} runs × ${d.nCk} checkpoints (steps ${stepLabel(d.steps[0])}–${stepLabel(d.steps[d.nCk - 1])}). ` +
      `Correlation of ${sName} (best unit) with ${bName} over ${st.n} (run, checkpoint) pairs: Pearson r = ${r}.`;
    const item = (swatchClass: string, colour: string | null, text: string): HTMLElement => {
      const span = h("span");
      const sw = h("span", `ms-dyn-swatch ${swatchClass}`);
      if (colour) sw.style.background = colour;
      span.append(sw, h("span", undefined, text));
      return span;
    };
    this.legend.replaceChildren(
      item("", STRUCTURE_RGB, `${sName}, best unit (left scale)`),
      item("", BEHAVIOUR_RGB, `${bName} (right scale)`),
      item("ms-dashed", null, `emergence step (${model.get("method")})`),
      item("ms-band", STRUCTURE_RGB, "transition window (20–80% of the change)"),
    );
    this.heads.curves.textContent = "Curves over training (x: step, log scale). Click or use ←/→ on a panel to pick a step.";
    this.heads.heat.textContent = `${sName} per ${d.nCols && model.get("col_labels")[0] === "H0" ? "head" : "unit"} at the slider's step (rows: layers; one shared colour scale)`;
    this.heads.bottom.textContent = "Emergence steps across runs";
  }

  private drawStats(): void {
    const { model, d } = this;
    const st = model.get("stats");
    const sName = model.get("structure_name");
    const bName = model.get("behaviour_name");
    const num = (v: number | null): string => (v === null ? "n/a" : (v >= 0 ? "+" : "") + v.toFixed(3));
    const lines = [
      `Correlation of ${sName} (best unit) with ${bName} over ${st.n} (run, checkpoint) pairs: Pearson ${num(st.pearson)}, Spearman ${num(st.spearman)}.`,
      st.steps_pearson === null
        ? (d.nRuns < 3 ? "Emergence steps across runs: a correlation needs 3 runs or more."
          : "Emergence steps across runs: no correlation (the steps do not vary, or some run never changes).")
        : `Emergence steps across runs: Pearson ${num(st.steps_pearson)}, Spearman ${num(st.steps_spearman)}.`,
    ];
    for (let r = 0; r < d.nRuns; r++) {
      lines.push(`${d.runs[r]}: ${sName} at step ${stepLabel(d.emerg[r * 2])}, ${bName} at step ${stepLabel(d.emerg[r * 2 + 1])}`);
    }
    this.stats.replaceChildren(...lines.map((t) => h("div", undefined, t)));
  }

  /** What the slider's step changes: the slider, every curve's marker, every heatmap. */
  drawStep(): void {
    this.slider.draw();
    for (let r = 0; r < this.d.nRuns; r++) {
      this.curves.draw(r);
      this.heats.draw(r);
    }
  }

  draw(): void {
    this.d.load();
    this.drawText();
    this.curves.build();
    this.heats.build();
    this.scatter.draw();
    this.drawStats();
    this.drawStep();
  }
}

export default viewWidget<DynamicsTraits, DynamicsView>([STYLE_ID, CSS], (model, el) => new DynamicsView(model, el), DATA,
  (model, view) => [onChange(model, ["step_index"], () => view.drawStep())]);
