// Dynamics widget: structure and behaviour over training, one small multiple per run.
// Curves per run (shared scales, log-step axis), a step slider driving one heatmap per run of
// the structure metric at that step (shared colour scale), and the emergence-step scatter.
// Python side: src/mechscope/widgets/dynamics.py. Every label is drawn with textContent or on
// canvas, never as HTML.
import { decodeFloat, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorTable, formatValue, type Range } from "../lib/colors";
import { ensureStyle, h, ownKeys, redrawWhenAttached } from "../lib/dom";
import { ARROWS, axisLabels, cellColour, moveCell, paintCells } from "../lib/grid";

interface Stats {
  pearson: number | null;
  spearman: number | null;
  n: number;
  steps_pearson: number | null;
  steps_spearman: number | null;
}

type ArrayTrait = "steps" | "structure" | "structure_curve" | "behaviour_curve" | "emergence_steps" | "windows";

interface DynamicsModel {
  get(name: ArrayTrait): EncodedArray;
  get(name: "runs" | "row_labels" | "col_labels"): string[];
  get(name: "structure_name" | "behaviour_name" | "method" | "title"): string;
  get(name: "stats"): Stats;
  get(name: "step_index"): number;
  get(name: "vmin" | "vmax"): number;
  set(name: "step_index", value: number): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

// Colours that read on light and dark backgrounds alike.
export const STRUCTURE_RGB = "#4e79a7";
export const BEHAVIOUR_RGB = "#f28e2b";
const CURVE_W = 260;
const CURVE_H = 170;
const MARGIN = { l: 38, r: 40, t: 10, b: 28 };
const SCATTER = 250;
const MIN_LABEL_CELL = 11;

const STYLE_ID = "mechscope-dynamics-style-v1";

function ensureDynamicsStyle(): void {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
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
  document.head.appendChild(style);
}

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

function render({ model, el }: { model: DynamicsModel; el: HTMLElement }): () => void {
  ensureStyle();
  ensureDynamicsStyle();
  const root = h("div", "ms-root ms-dyn");
  const title = h("div", "ms-title");
  const summary = h("div", "ms-dyn-summary");
  const legend = h("div", "ms-dyn-legend");
  const curvesHead = h("div", "ms-dyn-section");
  const curvePanels = h("div", "ms-dyn-panels ms-dyn-curves");
  const slider = h("div", "ms-dyn-slider");
  const range = h("input", "ms-dyn-range");
  range.type = "range";
  ownKeys(range);
  range.min = "0";
  range.step = "1";
  const rangeLabel = h("label", undefined, "training step");
  const stepText = h("span", "ms-dyn-steplabel");
  const rangeId = `ms-dyn-range-${Math.random().toString(36).slice(2, 10)}`;
  range.id = rangeId;
  rangeLabel.htmlFor = rangeId;
  slider.append(rangeLabel, range, stepText);
  const heatHead = h("div", "ms-dyn-section");
  const heatPanels = h("div", "ms-dyn-panels ms-dyn-heats");
  const bottomHead = h("div", "ms-dyn-section");
  const bottom = h("div", "ms-dyn-bottom");
  const scatter = h("canvas", "ms-dyn-scatter");
  scatter.tabIndex = 0;
  ownKeys(scatter);
  scatter.setAttribute("role", "img");
  const stats = h("div", "ms-dyn-stats");
  bottom.append(scatter, stats);
  const tooltip = h("div", "ms-tooltip");
  root.append(title, summary, legend, curvesHead, curvePanels, slider, heatHead, heatPanels,
    bottomHead, bottom, tooltip);
  el.replaceChildren(root);

  // ---- data (decoded once per change of the arrays) ------------------------------------------
  let runs: string[] = [];
  let steps: Float32Array = new Float32Array(0);
  let xs = new Float64Array(0); // log1p(step)
  let nRuns = 0;
  let nCk = 0;
  let nRows = 0;
  let nCols = 0;
  let structure: Float32Array = new Float32Array(0);
  let sCurve: Float32Array = new Float32Array(0);
  let bCurve: Float32Array = new Float32Array(0);
  let emerg: Float32Array = new Float32Array(0);
  let wins: Float32Array = new Float32Array(0);
  let sRange: Axis = niceAxis({ lo: 0, hi: 1 });
  let bRange: Axis = niceAxis({ lo: 0, hi: 1 });
  let curveCanvases: HTMLCanvasElement[] = [];
  let heatCanvases: HTMLCanvasElement[] = [];
  let heatCell: [number, number] = [1, 1];
  let cursor: [number, number] = [0, 0];
  let scatterPick = -1;
  let scatterPts: { run: number; x: number; y: number }[] = [];
  const table = colorTable("viridis");

  const stepIndex = (): number => Math.max(0, Math.min(nCk - 1, model.get("step_index") | 0));

  function setStep(i: number): void {
    const k = Math.max(0, Math.min(nCk - 1, i));
    if (k === model.get("step_index")) return;
    model.set("step_index", k);
    model.save_changes();
  }

  function load(): void {
    runs = model.get("runs");
    steps = decodeFloat(model.get("steps")).values;
    nCk = steps.length;
    xs = Float64Array.from(steps, (s) => Math.log1p(Math.max(0, s)));
    const st = decodeFloat(model.get("structure"));
    [nRuns, , nRows, nCols] = st.shape;
    structure = st.values;
    sCurve = decodeFloat(model.get("structure_curve")).values;
    bCurve = decodeFloat(model.get("behaviour_curve")).values;
    emerg = decodeFloat(model.get("emergence_steps")).values;
    wins = decodeFloat(model.get("windows")).values;
    const sr = finiteRange(sCurve, 0);
    sRange = niceAxis({ lo: Math.min(sr.lo, 0), hi: sr.hi });
    bRange = niceAxis(finiteRange(bCurve, 0));
  }

  // ---- text parts ---------------------------------------------------------------------------
  function drawText(): void {
    const sName = model.get("structure_name");
    const bName = model.get("behaviour_name");
    const st = model.get("stats");
    title.textContent = model.get("title");
    const r = st.pearson === null ? "n/a" : st.pearson.toFixed(3);
    summary.textContent = `${runs.length} runs × ${nCk} checkpoints (steps ${stepLabel(steps[0])}–${stepLabel(steps[nCk - 1])}). ` +
      `Correlation of ${sName} (best unit) with ${bName} over ${st.n} (run, checkpoint) pairs: Pearson r = ${r}.`;
    legend.replaceChildren();
    const item = (swatchClass: string, colour: string | null, text: string): HTMLElement => {
      const span = h("span");
      const sw = h("span", `ms-dyn-swatch ${swatchClass}`);
      if (colour) sw.style.background = colour;
      span.append(sw, h("span", undefined, text));
      return span;
    };
    legend.append(
      item("", STRUCTURE_RGB, `${sName}, best unit (left scale)`),
      item("", BEHAVIOUR_RGB, `${bName} (right scale)`),
      item("ms-dashed", null, `emergence step (${model.get("method")})`),
      item("ms-band", STRUCTURE_RGB, "transition window (20–80% of the change)"),
    );
    curvesHead.textContent = "Curves over training (x: step, log scale). Click or use ←/→ on a panel to pick a step.";
    heatHead.textContent = `${sName} per ${nCols && model.get("col_labels")[0] === "H0" ? "head" : "unit"} at the slider's step (rows: layers; one shared colour scale)`;
    bottomHead.textContent = "Emergence steps across runs";
  }

  // ---- curve panels -------------------------------------------------------------------------
  function px(x: number): number {
    const x0 = xs[0];
    const x1 = xs[nCk - 1];
    const w = CURVE_W - MARGIN.l - MARGIN.r;
    return MARGIN.l + (x1 > x0 ? ((x - x0) / (x1 - x0)) * w : w / 2);
  }
  function py(v: number, r: Range): number {
    const hgt = CURVE_H - MARGIN.t - MARGIN.b;
    return MARGIN.t + (1 - (v - r.lo) / (r.hi - r.lo)) * hgt;
  }

  function buildCurves(): void {
    curvePanels.replaceChildren();
    curveCanvases = [];
    for (let r = 0; r < nRuns; r++) {
      const panel = h("div", "ms-dyn-panel");
      const label = h("div", "ms-dyn-label", runs[r] ?? `run ${r}`);
      const c = h("canvas", "ms-dyn-curve");
      c.width = CURVE_W;
      c.height = CURVE_H;
      c.tabIndex = 0;
      ownKeys(c);
      c.setAttribute("role", "img");
      c.dataset.run = String(r);
      c.addEventListener("mousemove", (ev) => curveHover(r, ev));
      c.addEventListener("mouseleave", hideTip);
      c.addEventListener("click", (ev) => setStep(nearestCheckpoint(ev.offsetX)));
      c.addEventListener("keydown", (ev) => stepKeys(ev, r));
      c.addEventListener("blur", hideTip);
      panel.append(label, c);
      curvePanels.append(panel);
      curveCanvases.push(c);
    }
  }

  function nearestCheckpoint(offsetX: number): number {
    let best = 0;
    for (let k = 1; k < nCk; k++) if (Math.abs(px(xs[k]) - offsetX) < Math.abs(px(xs[best]) - offsetX)) best = k;
    return best;
  }

  function drawCurve(r: number): void {
    const c = curveCanvases[r];
    const ctx = c.getContext("2d")!;
    const ink = inkOf(root);
    const k = stepIndex();
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.font = "10px sans-serif";
    const top = MARGIN.t;
    const bot = CURVE_H - MARGIN.b;
    // transition windows (structure, behaviour), shaded
    const shade = (lo: number, hi: number, colour: string): void => {
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) return;
      const a = px(Math.log1p(lo));
      const b = px(Math.log1p(hi));
      ctx.fillStyle = withAlpha(colour, 0.16);
      ctx.fillRect(a, top, Math.max(1, b - a), bot - top);
    };
    shade(wins[r * 4], wins[r * 4 + 1], STRUCTURE_RGB);
    shade(wins[r * 4 + 2], wins[r * 4 + 3], BEHAVIOUR_RGB);
    // axes
    ctx.strokeStyle = withAlpha(ink, 0.5);
    ctx.lineWidth = 1;
    ctx.strokeRect(MARGIN.l + 0.5, top + 0.5, CURVE_W - MARGIN.l - MARGIN.r, bot - top);
    ctx.fillStyle = ink;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const maxStep = steps[nCk - 1];
    const ticks = [0];
    for (let p = 1; p <= maxStep * 1.0001; p *= 10) ticks.push(p);
    for (const s of ticks) {
      if (s < steps[0]) continue;
      const x = px(Math.log1p(s));
      ctx.fillRect(x, bot, 1, 3);
      ctx.fillText(stepLabel(s), x, bot + 4);
    }
    if (maxStep > ticks[ticks.length - 1] * 1.5) {
      const x = px(xs[nCk - 1]);
      ctx.fillRect(x, bot, 1, 3);
      ctx.fillText(stepLabel(maxStep), x - 4, bot + 4);
    }
    ctx.fillText("step", (MARGIN.l + CURVE_W - MARGIN.r) / 2, bot + 15);
    const yTicks = (rg: Axis, x: number, align: CanvasTextAlign, colour: string): void => {
      ctx.textAlign = align;
      ctx.textBaseline = "middle";
      ctx.fillStyle = colour;
      for (const v of rg.ticks) {
        const y = py(v, rg);
        ctx.fillRect(align === "right" ? x + 1 : x - 4, Math.round(y), 3, 1);
        ctx.fillText(v.toFixed(rg.decimals), align === "right" ? x - 1 : x + 1, y);
      }
    };
    yTicks(sRange, MARGIN.l - 3, "right", STRUCTURE_RGB);
    yTicks(bRange, CURVE_W - MARGIN.r + 3, "left", BEHAVIOUR_RGB);
    // emergence steps, dashed
    const vline = (step: number, colour: string, dash: number[], width: number): void => {
      if (!Number.isFinite(step)) return;
      const x = Math.round(px(Math.log1p(Math.max(0, step)))) + 0.5;
      ctx.save();
      ctx.setLineDash(dash);
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bot);
      ctx.stroke();
      ctx.restore();
    };
    vline(emerg[r * 2], STRUCTURE_RGB, [4, 3], 1.5);
    vline(emerg[r * 2 + 1], BEHAVIOUR_RGB, [4, 3], 1.5);
    // the curves
    const line = (vals: Float32Array, rg: Range, colour: string): void => {
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let pen = false;
      for (let j = 0; j < nCk; j++) {
        const v = vals[r * nCk + j];
        if (!Number.isFinite(v)) {
          pen = false;
          continue;
        }
        const x = px(xs[j]);
        const y = py(v, rg);
        if (pen) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
    };
    line(sCurve, sRange, STRUCTURE_RGB);
    line(bCurve, bRange, BEHAVIOUR_RGB);
    // the slider's step
    vline(steps[k], withAlpha(ink, 0.75), [], 1);
    c.dataset.step = String(steps[k]);
    c.setAttribute("aria-label",
      `${runs[r]}: ${model.get("structure_name")} and ${model.get("behaviour_name")} over training; ` +
      `at step ${stepLabel(steps[k])}: ${formatValue(sCurve[r * nCk + k])} and ${formatValue(bCurve[r * nCk + k])}`);
  }

  function curveTip(r: number, k: number): string {
    return `${runs[r]}  |  step ${stepLabel(steps[k])}\n` +
      `${model.get("structure_name")} (best unit): ${formatValue(sCurve[r * nCk + k])}\n` +
      `${model.get("behaviour_name")}: ${formatValue(bCurve[r * nCk + k])}`;
  }

  function curveHover(r: number, ev: MouseEvent): void {
    const k = nearestCheckpoint(ev.offsetX);
    showTip(curveTip(r, k), ev.clientX, ev.clientY);
  }

  function stepKeys(ev: KeyboardEvent, r: number): void {
    const k = stepIndex();
    const moves: Record<string, number> = { ArrowLeft: k - 1, ArrowRight: k + 1, ArrowDown: k - 1, ArrowUp: k + 1, Home: 0, End: nCk - 1 };
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    setStep(moves[ev.key]);
    const c = curveCanvases[r];
    const rect = c.getBoundingClientRect();
    showTip(curveTip(r, stepIndex()), rect.left + px(xs[stepIndex()]), rect.top + MARGIN.t + 10);
  }

  // ---- heatmaps -----------------------------------------------------------------------------
  function buildHeatmaps(): void {
    heatPanels.replaceChildren();
    heatCanvases = [];
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    const cw = Math.max(2, Math.min(28, Math.floor(240 / Math.max(1, nCols))));
    const ch = Math.max(4, Math.min(28, Math.floor(160 / Math.max(1, nRows))));
    heatCell = [cw, ch];
    for (let r = 0; r < nRuns; r++) {
      const panel = h("div", "ms-dyn-panel");
      panel.append(h("div", "ms-dyn-label", runs[r] ?? `run ${r}`));
      const grid = h("div", "ms-dyn-hm");
      const rows = h("div", "ms-rowlabels");
      if (ch >= MIN_LABEL_CELL) axisLabels(rows, rl, ch, "row");
      const c = h("canvas", "ms-dyn-heat");
      c.width = nCols * cw;
      c.height = nRows * ch;
      c.tabIndex = 0;
      ownKeys(c);
      c.setAttribute("role", "img");
      c.dataset.run = String(r);
      c.dataset.cellW = String(cw);
      c.dataset.cellH = String(ch);
      c.addEventListener("mousemove", (ev) => {
        const col = Math.floor(ev.offsetX / cw);
        const row = Math.floor(ev.offsetY / ch);
        if (row < 0 || col < 0 || row >= nRows || col >= nCols) return;
        showTip(heatTip(r, row, col), ev.clientX, ev.clientY);
      });
      c.addEventListener("mouseleave", hideTip);
      c.addEventListener("blur", hideTip);
      c.addEventListener("keydown", (ev) => {
        const d = ARROWS[ev.key];
        if (!d) return;
        ev.preventDefault();
        cursor = moveCell(cursor, d, nRows, nCols);
        const rect = c.getBoundingClientRect();
        drawHeat(r);
        showTip(heatTip(r, cursor[0], cursor[1]), rect.left + (cursor[1] + 0.5) * cw, rect.top + (cursor[0] + 0.5) * ch);
      });
      c.addEventListener("focus", () => drawHeat(r));
      grid.append(rows, c);
      const cols = h("div", "ms-collabels");
      if (cw >= MIN_LABEL_CELL) axisLabels(cols, cl, cw, "col");
      grid.append(h("div"), cols);
      panel.append(grid);
      heatPanels.append(panel);
      heatCanvases.push(c);
    }
    // one shared colour bar
    const bar = h("div", "ms-dyn-bar");
    const strip = colorBarCanvas(table, Math.max(56, Math.min(nRows * ch, 160)));
    bar.append(h("div", undefined, formatValue(model.get("vmax"))), strip, h("div", undefined, formatValue(model.get("vmin"))));
    heatPanels.append(bar);
  }

  function heatValue(r: number, row: number, col: number): number {
    return structure[((r * nCk + stepIndex()) * nRows + row) * nCols + col];
  }

  function heatTip(r: number, row: number, col: number): string {
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    return `${runs[r]}  |  step ${stepLabel(steps[stepIndex()])}  |  ${rl[row] ?? row} ${cl[col] ?? col}\n` +
      `${model.get("structure_name")}: ${formatValue(heatValue(r, row, col))}`;
  }

  function drawHeat(r: number): void {
    const c = heatCanvases[r];
    const [cw, ch] = heatCell;
    const ctx = c.getContext("2d")!;
    const rg: Range = { lo: model.get("vmin"), hi: model.get("vmax") };
    let best = -1;
    let bestV = -Infinity;
    for (let i = 0; i < nRows * nCols; i++) {
      const v = heatValue(r, Math.floor(i / nCols), i % nCols);
      if (v > bestV) { // NaN never wins
        bestV = v;
        best = i;
      }
    }
    paintCells(ctx, { rows: nRows, cols: nCols, cellW: cw, cellH: ch, colour: (row, col) => cellColour(heatValue(r, row, col), table, rg) });
    // the best unit (what the curves plot) outlined; the keyboard cursor when focused
    if (best >= 0 && cw >= 6 && ch >= 6) {
      ctx.strokeStyle = inkOf(root);
      ctx.lineWidth = 2;
      ctx.strokeRect((best % nCols) * cw + 1, Math.floor(best / nCols) * ch + 1, cw - 2, ch - 2);
    }
    if (document.activeElement === c) {
      ctx.strokeStyle = "#e15759";
      ctx.lineWidth = 2;
      ctx.setLineDash([3, 2]);
      ctx.strokeRect(cursor[1] * cw + 1, cursor[0] * ch + 1, cw - 2, ch - 2);
      ctx.setLineDash([]);
    }
    c.dataset.step = String(steps[stepIndex()]);
    c.dataset.lo = String(rg.lo);
    c.dataset.hi = String(rg.hi);
    c.setAttribute("aria-label",
      `${runs[r]}: ${model.get("structure_name")} per ${nRows} layers x ${nCols} units at step ${stepLabel(steps[stepIndex()])}; ` +
      `highest ${formatValue(bestV)}`);
  }

  // ---- emergence scatter ----------------------------------------------------------------------
  function drawScatter(): void {
    const c = scatter;
    c.width = SCATTER;
    c.height = SCATTER;
    const ctx = c.getContext("2d")!;
    const ink = inkOf(root);
    const m = { l: 44, r: 12, t: 12, b: 36 };
    const w = SCATTER - m.l - m.r;
    const hgt = SCATTER - m.t - m.b;
    const vals: number[] = [];
    scatterPts = [];
    for (let r = 0; r < nRuns; r++) {
      const sx = emerg[r * 2];
      const by = emerg[r * 2 + 1];
      for (const v of [sx, by, wins[r * 4], wins[r * 4 + 1], wins[r * 4 + 2], wins[r * 4 + 3]]) if (Number.isFinite(v)) vals.push(Math.log1p(Math.max(0, v)));
    }
    const pad = finiteRange(vals, 0.12);
    const rg: Range = { lo: Math.max(pad.lo, xs[0] ?? 0), hi: Math.min(pad.hi, xs[nCk - 1] ?? pad.hi) };
    if (!(rg.hi > rg.lo)) {
      rg.lo = pad.lo;
      rg.hi = pad.hi;
    }
    // ticks at round steps (0, 1, 2, 5, 10, ...); a narrow range gets a linear nice axis instead
    let tickSteps = logTicks(Math.expm1(rg.lo), Math.expm1(rg.hi));
    if (tickSteps.length < 3) {
      const axis = niceAxis({ lo: Math.max(0, Math.expm1(rg.lo)), hi: Math.expm1(rg.hi) });
      rg.lo = Math.log1p(axis.lo);
      rg.hi = Math.log1p(axis.hi);
      tickSteps = axis.ticks;
    }
    const X = (s: number): number => m.l + ((Math.log1p(Math.max(0, s)) - rg.lo) / (rg.hi - rg.lo)) * w;
    const Y = (s: number): number => m.t + (1 - (Math.log1p(Math.max(0, s)) - rg.lo) / (rg.hi - rg.lo)) * hgt;
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
    for (const s of tickSteps) ctx.fillText(stepLabel(s), X(s), m.t + hgt + 3);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const s of tickSteps) ctx.fillText(stepLabel(s), m.l - 3, Y(s));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = STRUCTURE_RGB;
    ctx.fillText(`${model.get("structure_name")} emerges (step)`, m.l + w / 2, m.t + hgt + 16);
    ctx.save();
    ctx.translate(10, m.t + hgt / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillStyle = BEHAVIOUR_RGB;
    ctx.fillText(`${model.get("behaviour_name")} emerges (step)`, 0, -6);
    ctx.restore();
    const labelsAt: [number, number][] = [];
    for (let r = 0; r < nRuns; r++) {
      const sx = emerg[r * 2];
      const by = emerg[r * 2 + 1];
      if (!Number.isFinite(sx) || !Number.isFinite(by)) continue;
      const x = X(sx);
      const y = Y(by);
      ctx.strokeStyle = withAlpha(ink, 0.6);
      ctx.lineWidth = 1;
      const [s0, s1, b0, b1] = [wins[r * 4], wins[r * 4 + 1], wins[r * 4 + 2], wins[r * 4 + 3]];
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
      ctx.fillStyle = r === scatterPick ? "#e15759" : ink;
      ctx.beginPath();
      ctx.arc(x, y, r === scatterPick ? 5 : 4, 0, 2 * Math.PI);
      ctx.fill();
      const text = clip(runs[r] ?? String(r), 18);
      const tw = ctx.measureText(text).width;
      const right = x + 5 + tw <= SCATTER - 2;
      ctx.textAlign = right ? "left" : "right";
      ctx.textBaseline = "bottom";
      let ly = y - 3;
      while (labelsAt.some(([ax, ay]) => Math.abs(ax - x) < 40 && Math.abs(ay - ly) < 11)) ly += 11;
      labelsAt.push([x, ly]);
      ctx.fillText(text, right ? x + 5 : x - 5, ly);
      scatterPts.push({ run: r, x, y });
    }
    c.setAttribute("aria-label", `emergence steps of ${model.get("structure_name")} (x) against ${model.get("behaviour_name")} (y), one point per run`);
  }

  function scatterTip(r: number): string {
    const f = (v: number): string => stepLabel(v);
    return `${runs[r]}\n${model.get("structure_name")} emerges at step ${f(emerg[r * 2])} (window ${f(wins[r * 4])}–${f(wins[r * 4 + 1])})\n` +
      `${model.get("behaviour_name")} emerges at step ${f(emerg[r * 2 + 1])} (window ${f(wins[r * 4 + 2])}–${f(wins[r * 4 + 3])})`;
  }

  scatter.addEventListener("mousemove", (ev) => {
    let best = -1;
    let dist = 12 * 12;
    for (const p of scatterPts) {
      const d = (p.x - ev.offsetX) ** 2 + (p.y - ev.offsetY) ** 2;
      if (d < dist) {
        dist = d;
        best = p.run;
      }
    }
    if (best < 0) {
      hideTip();
      return;
    }
    showTip(scatterTip(best), ev.clientX, ev.clientY);
  });
  scatter.addEventListener("mouseleave", hideTip);
  scatter.addEventListener("blur", () => {
    scatterPick = -1;
    drawScatter();
    hideTip();
  });
  scatter.addEventListener("keydown", (ev) => {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(ev.key) || !scatterPts.length) return;
    ev.preventDefault();
    const order = scatterPts.map((p) => p.run);
    const at = order.indexOf(scatterPick);
    const forward = ev.key === "ArrowRight" || ev.key === "ArrowDown";
    scatterPick = order[at < 0 ? 0 : (at + (forward ? 1 : order.length - 1)) % order.length];
    drawScatter();
    const p = scatterPts.find((q) => q.run === scatterPick)!;
    const rect = scatter.getBoundingClientRect();
    showTip(scatterTip(scatterPick), rect.left + p.x, rect.top + p.y);
  });

  function drawStats(): void {
    const st = model.get("stats");
    const sName = model.get("structure_name");
    const bName = model.get("behaviour_name");
    const num = (v: number | null): string => (v === null ? "n/a" : (v >= 0 ? "+" : "") + v.toFixed(3));
    const lines = [
      `Correlation of ${sName} (best unit) with ${bName} over ${st.n} (run, checkpoint) pairs: Pearson ${num(st.pearson)}, Spearman ${num(st.spearman)}.`,
      st.steps_pearson === null
        ? (nRuns < 3 ? "Emergence steps across runs: a correlation needs 3 runs or more."
          : "Emergence steps across runs: no correlation (the steps do not vary, or some run never changes).")
        : `Emergence steps across runs: Pearson ${num(st.steps_pearson)}, Spearman ${num(st.steps_spearman)}.`,
    ];
    for (let r = 0; r < nRuns; r++) {
      lines.push(`${runs[r]}: ${sName} at step ${stepLabel(emerg[r * 2])}, ${bName} at step ${stepLabel(emerg[r * 2 + 1])}`);
    }
    stats.replaceChildren(...lines.map((t) => h("div", undefined, t)));
  }

  // ---- slider and tooltip ---------------------------------------------------------------------
  range.addEventListener("input", () => setStep(parseInt(range.value, 10)));

  function drawSlider(): void {
    const k = stepIndex();
    range.max = String(Math.max(0, nCk - 1));
    range.value = String(k);
    const text = `step ${stepLabel(steps[k])} (checkpoint ${k + 1} of ${nCk})`;
    stepText.textContent = text;
    range.setAttribute("aria-valuetext", `step ${Math.round(steps[k])}`);
    root.dataset.stepIndex = String(k);
    root.dataset.step = String(steps[k]);
  }

  function showTip(text: string, clientX: number, clientY: number): void {
    const rect = root.getBoundingClientRect();
    tooltip.textContent = text;
    tooltip.style.display = "block";
    tooltip.style.left = `${clientX - rect.left + 14}px`;
    tooltip.style.top = `${clientY - rect.top + 14}px`;
  }

  function hideTip(): void {
    tooltip.style.display = "none";
  }

  // ---- drawing --------------------------------------------------------------------------------
  function drawStep(): void {
    drawSlider();
    for (let r = 0; r < nRuns; r++) {
      drawCurve(r);
      drawHeat(r);
    }
  }

  function drawAll(): void {
    load();
    drawText();
    buildCurves();
    buildHeatmaps();
    drawScatter();
    drawStats();
    drawStep();
    el.dataset.msReady = "1";
  }

  drawAll();
  const stopWaiting = redrawWhenAttached(el, drawAll);
  const onStep = (): void => drawStep();
  const onData = (): void => drawAll();
  const dataTraits = ["runs", "steps", "structure", "row_labels", "col_labels", "structure_name",
    "behaviour_name", "structure_curve", "behaviour_curve", "emergence_steps", "windows", "stats",
    "method", "title", "vmin", "vmax"];
  model.on("change:step_index", onStep);
  for (const name of dataTraits) model.on(`change:${name}`, onData);
  return () => {
    stopWaiting();
    model.off("change:step_index", onStep);
    for (const name of dataTraits) model.off(`change:${name}`, onData);
  };
}

export default { render };
