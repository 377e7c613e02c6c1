// Selectivity widget: histogram of a layer's selectivity indices, a ranked neuron list, an
// optional selectivity-vs-ablation scatter, and the selected neuron's class means and top
// examples (tokens highlighted by activation). Python side: src/mechscope/widgets/selectivity.py.
import { decode, decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { formatValue } from "../lib/colors";
import { h } from "../lib/dom";
import { sizeCanvas, Tooltip } from "../lib/grid";
import { onChange, viewWidget, type AnyModel } from "../lib/model";
import { categoryColor, eventPoint, PointGrid, textColor, toPixel, type Plot } from "../lib/scatter";
import { alphaPaint, peakAbs, tokenCss, tokenSpan, type TokenPaint } from "../lib/tokentext";

type Maybe = EncodedArray | Record<string, never>;

type SelTraits = {
  index: EncodedArray;
  class_means: EncodedArray;
  preferred: EncodedArray;
  ex_neurons: EncodedArray;
  ex_tokens: EncodedArray;
  ex_acts: EncodedArray;
  ex_class: EncodedArray;
  ex_offset: EncodedArray;
  ex_length: EncodedArray;
  floor: Maybe;
  ablation_effect: Maybe;
  classes: string[];
  ex_vocab: string[];
  title: string;
  ablation_metric: string;
  selected: number;
};
type SelModel = AnyModel<SelTraits>;

const STYLE_ID = "mechscope-selectivity-style-v1";
const BAR = "#4c78a8";
const ACCENT = "#f58518";
const NAN_COLOR = "rgb(128,128,128)";
const BINS = 40;
const HIST_W = 360;
const HIST_H = 130;
const SCAT_W = 360;
const SCAT_H = 240;
const PAD = { left: 46, right: 30, top: 8, bottom: 30 };

const DATA = ["index", "class_means", "preferred", "floor", "ablation_effect", "ablation_metric", "classes", "ex_neurons",
  "ex_tokens", "ex_acts", "ex_class", "ex_offset", "ex_length", "ex_vocab", "title"] as const;
const CSS = `
.ms-sel .ms-sel-main { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.ms-sel .ms-sel-left { display: flex; flex-direction: column; gap: 6px; width: ${HIST_W}px; }
.ms-sel .ms-sel-detail { min-width: 320px; max-width: 560px; flex: 1 1 360px; }
.ms-sel .ms-sel-caption { font-weight: 600; font-size: 11px; color: var(--jp-ui-font-color1, #1f1f1f);
  display: flex; justify-content: space-between; align-items: center; }
.ms-sel .ms-sel-caption label { font-weight: normal; color: var(--jp-ui-font-color2, #555); }
.ms-sel canvas { display: block; cursor: pointer; outline: none; }
.ms-sel canvas:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-sel .ms-sel-list { max-height: 240px; overflow-y: auto; border: 1px solid var(--jp-border-color2, #ddd);
  border-radius: 2px; padding: 2px; }
.ms-sel .ms-sel-list button { display: grid; grid-template-columns: 64px 48px 60px 1fr; gap: 6px; width: 100%;
  text-align: left; font: inherit; font-size: 11px; padding: 1px 4px; border: 1px solid transparent; border-radius: 2px;
  background: transparent; color: var(--jp-ui-font-color1, #1f1f1f); cursor: pointer; align-items: center; }
.ms-sel .ms-sel-list button:hover { background: var(--jp-layout-color2, #eee); }
.ms-sel .ms-sel-list button[aria-pressed="true"] { border-color: ${ACCENT}; background: var(--jp-layout-color2, #eee); }
.ms-sel .ms-sel-list button:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.ms-sel .ms-sel-list i { display: inline-block; width: 8px; height: 8px; border-radius: 4px; margin-right: 4px; }
.ms-sel .ms-sel-list .ms-mini { height: 6px; background: ${BAR}; border-radius: 1px; }
.ms-sel .ms-sel-list .ms-cls, .ms-sel .ms-sel-means .ms-cls { white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.ms-sel .ms-sel-head { font-size: 14px; font-weight: 600; margin-bottom: 2px; }
.ms-sel .ms-sel-facts { color: var(--jp-ui-font-color2, #555); margin-bottom: 8px; }
.ms-sel .ms-sel-means { display: grid; grid-template-columns: minmax(60px, max-content) 220px auto; gap: 3px 8px;
  align-items: center; margin-bottom: 10px; }
.ms-sel .ms-sel-track { position: relative; height: 12px; background: var(--jp-layout-color2, #f0f0f0); }
.ms-sel .ms-sel-track .ms-fill { position: absolute; top: 0; height: 12px; }
.ms-sel .ms-sel-track .ms-zero { position: absolute; top: -2px; height: 16px; width: 1px; background: var(--jp-ui-font-color2, #777); }
.ms-sel .ms-sel-means .ms-pref { font-weight: 700; }
.ms-sel .ms-sel-num { font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.ms-sel .ms-sel-ex { margin: 4px 0 8px 0; line-height: 1.7; }
.ms-sel .ms-badge { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 8px; color: #fff; margin-right: 6px; white-space: pre; }
.ms-sel .ms-legend { display: flex; flex-wrap: wrap; gap: 4px 10px; font-size: 10px; color: var(--jp-ui-font-color2, #555); }
.ms-sel .ms-legend span { white-space: pre; }
.ms-sel .ms-legend i { display: inline-block; width: 8px; height: 8px; border-radius: 4px; margin-right: 3px; }
${tokenCss(".ms-sel")}`;

function classColor(c: number): string {
  return c >= 0 ? categoryColor(c) : NAN_COLOR;
}

/** Short axis tick text: 0, 0.25, 0.5 ... */
function tick(v: number): string {
  return String(Number(v.toPrecision(3)));
}

function decodeMaybe(enc: Maybe): Float32Array | null {
  const values = decodeOptional(enc);
  return values ? Float32Array.from(values) : null;
}

function setupCanvas(canvas: HTMLCanvasElement, w: number, hgt: number): CanvasRenderingContext2D {
  const ctx = sizeCanvas(canvas, w, hgt);
  ctx.clearRect(0, 0, w, hgt);
  return ctx;
}

/** A label rotated a quarter turn, centred at (10, y) (the y axes' titles). */
function yTitle(ctx: CanvasRenderingContext2D, text: string, y: number): void {
  ctx.save();
  ctx.translate(10, y);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(text, 0, 0);
  ctx.restore();
}

/** A small coloured dot followed by text (legends, the list's preferred class). */
function dotted(tag: "span", className: string | undefined, colour: string, text: string): HTMLElement {
  const item = h(tag, className);
  const dot = h("i");
  dot.style.background = colour;
  item.append(dot, document.createTextNode(text));
  return item;
}

/** The decoded arrays of a Selectivity model. */
class SelData {
  N = 0;
  C = 0;
  index: Float32Array = new Float32Array(0);
  means: Float32Array = new Float32Array(0);
  preferred: NumericArray = new Int32Array(0);
  floor: Float32Array | null = null;
  effect: Float32Array | null = null;
  exNeurons: NumericArray = new Int32Array(0);
  exTokens: NumericArray = new Int32Array(0);
  exActs: Float32Array = new Float32Array(0);
  exClass: NumericArray = new Int32Array(0);
  exOffset: NumericArray = new Int32Array(0);
  exLength: NumericArray = new Int32Array(0);
  E = 0;
  W = 0;
  rankOf = new Map<number, number>(); // neuron -> row in ex_* arrays

  constructor(readonly model: SelModel) {}

  load(): void {
    const m = this.model;
    const cm = decodeFloat(m.get("class_means"));
    [this.C, this.N] = cm.shape;
    this.means = cm.values;
    this.index = decodeFloat(m.get("index")).values;
    this.preferred = decode(m.get("preferred")).values;
    this.floor = decodeMaybe(m.get("floor"));
    this.effect = decodeMaybe(m.get("ablation_effect"));
    this.exNeurons = decode(m.get("ex_neurons")).values;
    const et = decode(m.get("ex_tokens"));
    [, this.E, this.W] = et.shape;
    this.exTokens = et.values;
    this.exActs = decodeFloat(m.get("ex_acts")).values;
    this.exClass = decode(m.get("ex_class")).values;
    this.exOffset = decode(m.get("ex_offset")).values;
    this.exLength = decode(m.get("ex_length")).values;
    this.rankOf = new Map();
    for (let j = 0; j < this.exNeurons.length; j++) this.rankOf.set(this.exNeurons[j], j);
  }

  select(neuron: number): void {
    if (!(neuron >= 0 && neuron < this.N) || this.model.get("selected") === neuron) return;
    this.model.set("selected", neuron); // fires change:selected, whose listener redraws
    this.model.save_changes();
  }

  className(c: number): string {
    return this.model.get("classes")[c] ?? "?";
  }

  /** Axis range: from min(0, lowest) to the highest index rounded up to one significant
   *  digit (0.36 -> 0.4), so layers whose indices are all small still spread over the bins. */
  binRange(): [number, number] {
    let lo = 0;
    let hi = -Infinity;
    for (let i = 0; i < this.N; i++) {
      const v = this.index[i];
      if (Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (!(hi > lo)) return [lo, lo + 1];
    const p = Math.pow(10, Math.floor(Math.log10(hi - lo)));
    hi = lo + Math.ceil((hi - lo) / p) * p;
    return [lo, hi];
  }

  /** The most selective of `members`, or -1. */
  bestIn(members: number[]): number {
    let best = -1;
    for (const i of members) if (best < 0 || this.index[i] > this.index[best]) best = i;
    return best;
  }
}

/** Selectivity indices binned; a click or the arrow keys select a bar's most selective neuron. */
class Histogram {
  readonly canvas = h("canvas", "ms-sel-hist");
  private geo: Plot = { left: 0, top: 0, width: 1, height: 1, xlo: 0, xhi: 1, ylo: 0, yhi: 1 };
  private bins: number[][] = []; // neuron ids per bin
  private nanBin: number[] = [];
  private keyBin = -1;

  constructor(private readonly d: SelData, private readonly logBox: HTMLInputElement, private readonly tip: Tooltip,
              private readonly root: HTMLElement) {
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.listen();
  }

  private binOf(v: number): number {
    const g = this.geo;
    return Math.min(BINS - 1, Math.max(0, Math.floor(((v - g.xlo) / (g.xhi - g.xlo)) * BINS)));
  }

  private fillBins(lo: number, hi: number): void {
    const { d } = this;
    this.geo = { left: PAD.left, top: PAD.top, width: HIST_W - PAD.left - PAD.right, height: HIST_H - PAD.top - PAD.bottom, xlo: lo, xhi: hi, ylo: 0, yhi: 1 };
    this.bins = Array.from({ length: BINS }, () => []);
    this.nanBin = [];
    for (let i = 0; i < d.N; i++) {
      const v = d.index[i];
      if (Number.isFinite(v)) this.bins[this.binOf(v)].push(i);
      else this.nanBin.push(i);
    }
  }

  draw(): void {
    const { d } = this;
    const [lo, hi] = d.binRange();
    this.fillBins(lo, hi);
    const useLog = this.logBox.checked;
    const count = (n: number) => (useLog ? Math.log10(n + 1) : n);
    let maxCount = 1;
    for (const b of this.bins) maxCount = Math.max(maxCount, b.length);
    maxCount = Math.max(maxCount, this.nanBin.length);
    const height = (n: number) => Math.max(2, (count(n) / count(maxCount)) * this.geo.height);
    const ctx = setupCanvas(this.canvas, HIST_W, HIST_H);
    const g = this.geo;
    const bw = g.width / BINS;
    const sel = d.model.get("selected");
    const selBin = Number.isFinite(d.index[sel]) ? this.binOf(d.index[sel]) : -1;
    for (let b = 0; b < BINS; b++) {
      const n = this.bins[b].length;
      if (!n) continue;
      ctx.fillStyle = b === selBin ? ACCENT : BAR;
      ctx.fillRect(g.left + b * bw + 0.5, g.top + g.height - height(n), Math.max(1, bw - 1), height(n));
    }
    const fg = textColor(this.root);
    if (this.nanBin.length) this.drawNanBar(ctx, height(this.nanBin.length), fg);
    this.drawAxes(ctx, fg, maxCount, useLog);
    // selected neuron's index
    if (Number.isFinite(d.index[sel])) {
      const x = g.left + ((d.index[sel] - lo) / (hi - lo)) * g.width;
      ctx.strokeStyle = ACCENT;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, g.top);
      ctx.lineTo(x, g.top + g.height);
      ctx.stroke();
      ctx.lineWidth = 1;
    }
    this.canvas.dataset.plot = JSON.stringify(this.geo);
    this.canvas.setAttribute("aria-label", `histogram of ${d.N} selectivity indices; arrow keys select the most selective neuron of each bar`);
  }

  /** NaN indices: a separate grey hatched bar right of the axis. */
  private drawNanBar(ctx: CanvasRenderingContext2D, hgt: number, fg: string): void {
    const g = this.geo;
    const x = g.left + g.width + 12;
    ctx.fillStyle = NAN_COLOR;
    ctx.fillRect(x, g.top + g.height - hgt, 14, hgt);
    ctx.strokeStyle = "rgba(255,255,255,0.8)";
    ctx.beginPath();
    for (let y = g.top + g.height - hgt; y < g.top + g.height; y += 5) {
      ctx.moveTo(x, y + 5);
      ctx.lineTo(x + 14, y);
    }
    ctx.stroke();
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText("NaN", x + 7, g.top + g.height + 12);
  }

  private drawAxes(ctx: CanvasRenderingContext2D, fg: string, maxCount: number, useLog: boolean): void {
    const g = this.geo;
    ctx.strokeStyle = fg;
    ctx.globalAlpha = 0.6;
    ctx.beginPath();
    ctx.moveTo(g.left, g.top + g.height + 0.5);
    ctx.lineTo(g.left + g.width, g.top + g.height + 0.5);
    ctx.moveTo(g.left - 0.5, g.top);
    ctx.lineTo(g.left - 0.5, g.top + g.height);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    for (let k = 0; k <= 4; k++) {
      const v = g.xlo + ((g.xhi - g.xlo) * k) / 4;
      ctx.fillText(tick(v), g.left + (g.width * k) / 4, g.top + g.height + 12);
    }
    ctx.fillText("selectivity index", g.left + g.width / 2, g.top + g.height + 25);
    ctx.textAlign = "right";
    ctx.fillText(String(maxCount), g.left - 4, g.top + 8);
    ctx.fillText("0", g.left - 4, g.top + g.height);
    yTitle(ctx, useLog ? "neurons (log)" : "neurons", g.top + g.height / 2);
  }

  /** The bin under the pointer: -2 for the NaN bar, -1 for none. */
  private hit(ev: MouseEvent): number {
    const r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const y = ev.clientY - r.top;
    const g = this.geo;
    if (y < g.top - 2 || y > g.top + g.height + 2) return -1;
    if (this.nanBin.length && x >= g.left + g.width + 10 && x <= g.left + g.width + 28) return -2;
    if (x < g.left || x >= g.left + g.width) return -1;
    return Math.min(BINS - 1, Math.floor(((x - g.left) / g.width) * BINS));
  }

  private members(b: number): number[] {
    return b === -2 ? this.nanBin : b >= 0 ? this.bins[b] : [];
  }

  private onHover(ev: MouseEvent): void {
    const b = this.hit(ev);
    const members = this.members(b);
    if (b === -1 || !members.length) return this.tip.hide();
    const g = this.geo;
    const range = b === -2 ? "NaN" : `${formatValue(g.xlo + ((g.xhi - g.xlo) * b) / BINS)}–${formatValue(g.xlo + ((g.xhi - g.xlo) * (b + 1)) / BINS)}`;
    this.tip.show(`${range}: ${members.length} neuron${members.length === 1 ? "" : "s"}\nclick selects n${this.d.bestIn(members)}`, ev.clientX, ev.clientY);
  }

  private onKey(ev: KeyboardEvent): void {
    const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    ev.preventDefault();
    let b = this.keyBin < 0 ? (step > 0 ? -1 : BINS) : this.keyBin;
    do b += step;
    while (b >= 0 && b < BINS && !this.bins[b].length);
    if (b >= 0 && b < BINS) {
      this.keyBin = b;
      this.d.select(this.d.bestIn(this.bins[b]));
    }
  }

  private listen(): void {
    this.canvas.addEventListener("mousemove", (ev) => this.onHover(ev));
    this.canvas.addEventListener("click", (ev) => {
      const b = this.hit(ev);
      const members = this.members(b);
      if (members.length) {
        this.keyBin = b;
        this.d.select(this.d.bestIn(members));
      }
    });
    this.canvas.addEventListener("keydown", (ev) => this.onKey(ev));
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    this.logBox.addEventListener("change", () => this.draw());
  }
}

/** Selectivity against the ablation effect, one point per neuron (when an effect was given). */
class SelScatter {
  readonly caption = h("div", "ms-sel-caption");
  readonly canvas = h("canvas", "ms-sel-scatter");
  readonly legend = h("div", "ms-legend");
  private geo: Plot = { left: 0, top: 0, width: 1, height: 1, xlo: 0, xhi: 1, ylo: 0, yhi: 1 };
  private pad = { x: 0, y: 0 }; // what layout() added to each end of the ranges
  private grid = new PointGrid(new Float32Array(0), new Float32Array(0), SCAT_W, SCAT_H);

  constructor(private readonly d: SelData, private readonly tip: Tooltip, private readonly root: HTMLElement) {
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.addEventListener("mousemove", (ev) => {
      const i = this.hit(ev);
      if (i < 0) return this.tip.hide();
      const effect = this.d.effect;
      this.tip.show(`n${i}: selectivity ${formatValue(d.index[i])}, ${d.model.get("ablation_metric")} ${formatValue(effect ? effect[i] : NaN)}\nprefers ${d.className(d.preferred[i])}`,
        ev.clientX, ev.clientY);
    });
    this.canvas.addEventListener("click", (ev) => {
      const i = this.hit(ev);
      if (i >= 0) this.d.select(i);
    });
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
  }

  /** The plot's geometry: x the histogram's range, y the effect's (each padded a little). */
  private layout(effect: Float32Array): void {
    let [xlo, xhi] = this.d.binRange();
    let ylo = Infinity;
    let yhi = -Infinity;
    for (let i = 0; i < this.d.N; i++) {
      const v = effect[i];
      if (Number.isFinite(v)) {
        ylo = Math.min(ylo, v);
        yhi = Math.max(yhi, v);
      }
    }
    if (!Number.isFinite(ylo)) [ylo, yhi] = [0, 1];
    if (ylo === yhi) [ylo, yhi] = [ylo - 1, yhi + 1];
    const padY = (yhi - ylo) * 0.05;
    ylo -= padY;
    yhi += padY;
    const padX = (xhi - xlo) * 0.02;
    xlo -= padX;
    xhi += padX;
    this.pad = { x: padX, y: padY };
    this.geo = { left: PAD.left, top: PAD.top, width: SCAT_W - PAD.left - PAD.right, height: SCAT_H - PAD.top - PAD.bottom - 12, xlo, xhi, ylo, yhi };
  }

  draw(): void {
    const { d } = this;
    const has = !!d.effect;
    this.canvas.style.display = has ? "block" : "none";
    this.caption.style.display = has ? "flex" : "none";
    this.legend.style.display = has ? "flex" : "none";
    if (!d.effect) return;
    this.caption.textContent = `selectivity vs ${d.model.get("ablation_metric")} (click a point)`;
    this.layout(d.effect);
    const g = this.geo;
    const ctx = setupCanvas(this.canvas, SCAT_W, SCAT_H);
    const fg = textColor(this.root);
    ctx.strokeStyle = fg;
    ctx.globalAlpha = 0.6;
    ctx.strokeRect(g.left - 0.5, g.top - 0.5, g.width + 1, g.height + 1);
    if (g.ylo < 0 && g.yhi > 0) {
      const y0 = g.top + ((g.yhi - 0) / (g.yhi - g.ylo)) * g.height;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(g.left, y0);
      ctx.lineTo(g.left + g.width, y0);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.globalAlpha = 1;
    this.points(ctx, fg);
    this.axes(ctx, fg);
    this.canvas.dataset.plot = JSON.stringify(g);
    this.canvas.setAttribute("aria-label", `scatter of selectivity index against ${d.model.get("ablation_metric")} for ${d.N} neurons`);
    this.legend.replaceChildren(...d.model.get("classes").map((c, k) => dotted("span", undefined, classColor(k), c)),
      dotted("span", undefined, NAN_COLOR, "NaN (in the strip below / left)"));
  }

  /** Every neuron's point, coloured by its preferred class; the selected one circled. */
  private points(ctx: CanvasRenderingContext2D, fg: string): void {
    const { d } = this;
    const px = new Float32Array(d.N);
    const py = new Float32Array(d.N);
    for (let i = 0; i < d.N; i++) {
      const [x, y, bad] = this.pos(i);
      px[i] = x;
      py[i] = y;
      ctx.fillStyle = bad ? NAN_COLOR : classColor(d.preferred[i]);
      ctx.globalAlpha = bad ? 0.9 : 0.75;
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    this.grid = new PointGrid(px, py, SCAT_W, SCAT_H);
    const sel = d.model.get("selected");
    if (sel >= 0 && sel < d.N) {
      const [x, y] = this.pos(sel);
      ctx.strokeStyle = fg;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, Math.PI * 2);
      ctx.stroke();
      ctx.lineWidth = 1;
    }
  }

  /** Tick labels at the ends of both axes (the padding left out) and the axes' titles. */
  private axes(ctx: CanvasRenderingContext2D, fg: string): void {
    const g = this.geo;
    const { x: padX, y: padY } = this.pad;
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.textAlign = "center";
    const base = g.top + g.height;
    ctx.fillText(tick(g.xlo + padX), g.left + 10, base + 24);
    ctx.fillText(tick(g.xhi - padX), g.left + g.width - 10, base + 24);
    ctx.fillText("selectivity index", g.left + g.width / 2, base + 24);
    ctx.textAlign = "right";
    ctx.fillText(tick(g.yhi - padY), g.left - 4, g.top + 8);
    ctx.fillText(tick(g.ylo + padY), g.left - 4, base);
    ctx.fillText("NaN", g.left - 4, base + 12);
    yTitle(ctx, this.d.model.get("ablation_metric"), g.top + g.height / 2);
  }

  /** Canvas position of neuron i; NaN/inf coordinates go to a strip below / left of the plot. */
  private pos(i: number): [number, number, boolean] {
    const g = this.geo;
    const xv = this.d.index[i];
    const yv = this.d.effect ? this.d.effect[i] : NaN;
    const okX = Number.isFinite(xv);
    const okY = Number.isFinite(yv);
    const [px, py] = toPixel(g, okX ? xv : 0, okY ? yv : 0);
    return [okX ? px : g.left - 8, okY ? py : g.top + g.height + 9, !(okX && okY)];
  }

  /** The neuron within 8 px of the pointer, or -1 (from the bucket grid of the drawn points). */
  private hit(ev: MouseEvent): number {
    const [x, y] = eventPoint(this.canvas, ev);
    return this.grid.nearest(x, y, 8);
  }
}

/** The most selective neurons as buttons (↑/↓ move between them). */
class NeuronList {
  readonly caption = h("div", "ms-sel-caption");
  readonly list = h("div", "ms-sel-list");

  constructor(private readonly d: SelData) {
    this.list.setAttribute("role", "list");
  }

  build(): void {
    const { d } = this;
    this.caption.textContent = `${d.exNeurons.length} most selective neurons (with top examples)`;
    this.list.replaceChildren();
    for (let j = 0; j < d.exNeurons.length; j++) this.list.append(this.button(j));
  }

  private button(j: number): HTMLButtonElement {
    const { d } = this;
    const n = d.exNeurons[j];
    const b = h("button");
    b.type = "button";
    b.dataset.neuron = String(n);
    const bar = h("div", "ms-mini");
    const v = d.index[n];
    bar.style.width = `${Number.isFinite(v) ? Math.max(1, Math.min(1, v) * 60) : 60}px`;
    if (!Number.isFinite(v)) bar.style.background = NAN_COLOR;
    const cls = dotted("span", "ms-cls", classColor(d.preferred[n]), d.className(d.preferred[n]));
    b.append(h("span", "ms-sel-num", `n${n}`), h("span", "ms-sel-num", formatValue(v)), bar, cls);
    b.setAttribute("aria-label", `neuron ${n}, selectivity ${formatValue(v)}, prefers ${d.className(d.preferred[n])}`);
    b.addEventListener("click", () => d.select(n));
    b.addEventListener("keydown", (ev) => {
      const step = ev.key === "ArrowDown" ? 1 : ev.key === "ArrowUp" ? -1 : 0;
      if (!step) return;
      ev.preventDefault();
      const next = this.list.children[j + step] as HTMLButtonElement | undefined;
      if (next) {
        next.focus();
        next.click();
      }
    });
    return b;
  }

  mark(sel: number): void {
    const list = this.list;
    for (const child of Array.from(list.children)) {
      const b = child as HTMLButtonElement;
      const on = Number(b.dataset.neuron) === sel;
      b.setAttribute("aria-pressed", on ? "true" : "false");
      if (on && typeof b.scrollIntoView === "function") {
        const top = b.offsetTop - list.offsetTop;
        if (top < list.scrollTop || top > list.scrollTop + list.clientHeight - b.offsetHeight) list.scrollTop = top - 40;
      }
    }
  }
}

/** The selected neuron: its facts, its mean activation per class and its top examples. */
class NeuronDetail {
  readonly el = h("div", "ms-sel-detail");

  constructor(private readonly d: SelData) {
    this.el.setAttribute("aria-live", "polite");
  }

  draw(sel: number): void {
    const { d } = this;
    this.el.replaceChildren();
    this.el.dataset.neuron = String(sel);
    let rank = 1;
    for (let i = 0; i < d.N; i++) if (d.index[i] > d.index[sel]) rank++;
    this.el.append(h("div", "ms-sel-head", `neuron ${sel}`));
    const facts = [`selectivity ${formatValue(d.index[sel])} (rank ${rank} of ${d.N})`, `prefers ${d.className(d.preferred[sel])}`];
    if (d.floor) facts.push(`floor ${formatValue(d.floor[sel])}`);
    if (d.effect) facts.push(`${d.model.get("ablation_metric")} ${formatValue(d.effect[sel])}`);
    this.el.append(h("div", "ms-sel-facts", facts.join(" · ")));
    this.el.append(h("div", "ms-sel-caption", "mean activation per class"), this.classMeans(sel));
    this.el.append(h("div", "ms-sel-caption", "top activating examples"));
    const j = d.rankOf.get(sel);
    if (j === undefined) {
      this.el.append(h("div", "ms-note", `top examples are kept for the ${d.exNeurons.length} most selective neurons only; build the widget with a larger top_n to see this one's.`));
      return;
    }
    this.examples(j);
  }

  /** One bar per class from a shared zero, the preferred class in bold. */
  private classMeans(sel: number): HTMLElement {
    const { d } = this;
    const box = h("div", "ms-sel-means");
    let lo = 0;
    let hi = 0;
    for (let c = 0; c < d.C; c++) {
      const v = d.means[c * d.N + sel];
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
    if (hi === lo) hi = lo + 1;
    for (let c = 0; c < d.C; c++) {
      const v = d.means[c * d.N + sel];
      const name = h("span", c === d.preferred[sel] ? "ms-cls ms-pref" : "ms-cls", d.model.get("classes")[c] ?? String(c));
      const track = h("div", "ms-sel-track");
      track.dataset.cls = String(c);
      const zero = h("div", "ms-zero");
      zero.style.left = `${((0 - lo) / (hi - lo)) * 100}%`;
      const fill = h("div", "ms-fill");
      if (Number.isFinite(v)) {
        fill.style.left = `${((Math.min(0, v) - lo) / (hi - lo)) * 100}%`;
        fill.style.width = `${(Math.abs(v) / (hi - lo)) * 100}%`;
        fill.style.background = classColor(c);
      } else {
        fill.style.left = "0";
        fill.style.width = "100%";
        fill.className = "ms-fill ms-tok-nan";
      }
      track.append(fill, zero);
      box.append(name, track, h("span", "ms-sel-num", formatValue(v)));
    }
    return box;
  }

  /** Row j of the ex_* arrays: each example's tokens shaded by activation (one scale for all). */
  private examples(j: number): void {
    const { d } = this;
    const { E, W } = d;
    const base = j * E * W;
    const acts = d.exActs.subarray(base, base + E * W);
    const paint = alphaPaint(peakAbs(acts, (k) => d.exTokens[base + k] >= 0));
    for (let e = 0; e < E; e++) {
      const c = d.exClass[j * E + e];
      if (c >= 0) this.el.append(this.example(j * E + e, c, paint));
    }
  }

  private example(row: number, c: number, paint: TokenPaint): HTMLElement {
    const { d } = this;
    const vocab = d.model.get("ex_vocab");
    const out = h("div", "ms-sel-ex");
    const badge = h("span", "ms-badge", d.className(c));
    badge.style.background = classColor(c);
    out.append(badge);
    let rowPeak = -Infinity;
    if (d.exOffset[row] > 0) out.append(h("span", "ms-note", "… "));
    let shown = 0;
    for (let w = 0; w < d.W; w++) {
      const k = row * d.W + w;
      const ti = d.exTokens[k];
      if (ti < 0) break;
      const a = d.exActs[k];
      const span = tokenSpan(vocab[ti] ?? "", a, paint);
      if (Number.isFinite(a)) rowPeak = Math.max(rowPeak, a);
      span.title = `activation ${formatValue(a)}`;
      out.append(span);
      shown++;
    }
    if (d.exOffset[row] + shown < d.exLength[row]) out.append(h("span", "ms-note", " …"));
    out.append(h("span", "ms-note", `   peak ${formatValue(rowPeak)}`));
    return out;
  }
}

class SelectivityView {
  readonly root = h("div", "ms-root ms-sel");
  private readonly title = h("div", "ms-title");
  private readonly histText = h("span");
  private readonly tip = new Tooltip(this.root, false);
  private readonly d: SelData;
  private readonly hist: Histogram;
  private readonly scatter: SelScatter;
  private readonly list: NeuronList;
  private readonly detail: NeuronDetail;

  constructor(model: SelModel, el: HTMLElement) {
    this.d = new SelData(model);
    const logLabel = h("label");
    const logBox = h("input");
    logBox.type = "checkbox";
    logLabel.append(logBox, document.createTextNode(" log counts"));
    const histCaption = h("div", "ms-sel-caption");
    histCaption.append(this.histText, logLabel);
    this.hist = new Histogram(this.d, logBox, this.tip, this.root);
    this.scatter = new SelScatter(this.d, this.tip, this.root);
    this.list = new NeuronList(this.d);
    this.detail = new NeuronDetail(this.d);
    const left = h("div", "ms-sel-left");
    left.append(histCaption, this.hist.canvas, this.scatter.caption, this.scatter.canvas, this.scatter.legend,
      this.list.caption, this.list.list);
    const main = h("div", "ms-sel-main");
    main.append(left, this.detail.el);
    this.root.append(this.title, main, this.tip.el);
    el.replaceChildren(this.root);
  }

  /** What the selection changes: the histogram's and scatter's marks, the list, the detail. */
  update(): void {
    const sel = this.d.model.get("selected");
    this.hist.draw();
    this.scatter.draw();
    this.list.mark(sel);
    this.detail.draw(sel);
  }

  draw(): void {
    this.d.load();
    this.title.textContent = this.d.model.get("title");
    this.histText.textContent = `selectivity of ${this.d.N} neurons (click a bar)`;
    this.list.build();
    this.update();
  }
}

export default viewWidget<SelTraits, SelectivityView>([STYLE_ID, CSS], (model, el) => new SelectivityView(model, el), DATA,
  (model, view) => [onChange(model, ["selected"], () => view.update())]);
