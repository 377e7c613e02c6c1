// Heatmap widget: a labelled 2-D array on canvas with a colour bar and a hover tooltip.
// Maps with more cells than canvas pixels (or cells under ZOOM_BELOW_PX) are drawn mean-pooled
// (each pixel the NaN-aware mean of its block of cells, never a subsample) and can be zoomed:
// drag a rectangle, or focus the canvas and use + / - (or the wheel), arrows (move the cursor
// cell), Shift+arrows (pan), 0 (reset). Every view is re-pooled, down to one cell per block.
// Python side: src/mechscope/widgets/heatmap.py.
import { decodeFloat, decodeOptional, type EncodedArray, type NumericArray } from "../lib/codec";
import { colorBarCanvas, colorIndex, colorTable, formatValue, INVALID_RGB, valueRange, type Range, type ScaleName } from "../lib/colors";
import { ensureWidgetStyle, h, ownKeys } from "../lib/dom";
import { ARROWS, axisLabels, placeBox, syncHovered, Tooltip, type Cell } from "../lib/grid";
import { onChange, type AnyModel, type RenderProps } from "../lib/model";

interface Stats {
  min?: number | null;
  max?: number | null;
  mean?: number | null;
}

type HeatmapTraits = {
  values: EncodedArray;
  row_labels: string[];
  col_labels: string[];
  title: string;
  value_label: string;
  colorscale: ScaleName;
  vmin: number | null;
  vmax: number | null;
  pooled: number[];
  hovered: number[];
  stats: Stats | null | undefined;
  ci_low: EncodedArray | Record<string, never>;
  ci_high: EncodedArray | Record<string, never>;
  ci_label: string;
};

const MAX_CANVAS = 900; // canvas pixels per side; more cells than this are pooled into blocks
const MIN_LABEL_CELL = 11; // show per-row/column text labels only when cells are this big
const MAX_LABELS = 150; // ... and at most this many of them
const ZOOM_BELOW_PX = 4; // an axis whose cells are smaller than this at full view can be zoomed
const MIN_SPAN = 8; // the deepest zoom shows this many rows / columns (fewer if the map has fewer)
const KEY_ZOOM = 2; // + / - halve / double the span
const WHEEL_ZOOM = 1.5;
const DRAG_MIN_PX = 4; // a drag smaller than this is a click

const STYLE_ID = "mechscope-heatmap-style-v1";
const DATA = ["values", "row_labels", "col_labels", "title", "colorscale", "vmin", "vmax", "stats", "ci_low", "ci_high", "ci_label"] as const;
const CSS = `
.ms-heatmap .ms-grid { justify-content: start; } /* the help line may be wider than the map */
.ms-heatmap .ms-hm-stage { position: relative; line-height: 0; }
.ms-heatmap .ms-hm-stage.ms-zoomable .ms-canvas { cursor: zoom-in; }
.ms-heatmap .ms-cursor { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px solid var(--jp-brand-color1, #1976d2); display: none; }
.ms-heatmap .ms-zoombox { position: absolute; pointer-events: none; box-sizing: border-box; display: none;
  border: 1px dashed var(--jp-ui-font-color0, #000); background: rgba(255, 255, 255, 0.25); }
.ms-heatmap .ms-hm-bar { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-top: 4px; }
.ms-heatmap .ms-hm-bar .ms-note { margin-top: 0; }
.ms-heatmap button { font: inherit; font-size: 11px; color: var(--jp-ui-font-color1, #1f1f1f);
  background: var(--jp-layout-color2, #eee); border: 1px solid var(--jp-border-color1, #bbb);
  border-radius: 2px; padding: 1px 6px; cursor: pointer; }
.ms-heatmap button:focus-visible { outline: 2px solid var(--jp-brand-color1, #1976d2); }
`;

/** The part of the map on screen: rows r0..r1-1 and columns c0..c1-1. */
export interface View {
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

export interface Blocks {
  /** NaN-aware mean of each block (NaN when a block has no finite cell), row-major. */
  means: Float32Array;
  i0: number; // first block row (block i covers rows i*fr .. i*fr+fr-1)
  j0: number; // first block column
  nbr: number; // block rows held
  nbc: number; // block columns held
}

/** Mean of every fr x fc block (aligned to the array's origin) that the view touches, NaN-aware:
 *  big arrays are pooled, never subsampled, so one hot cell in a block of n moves it by 1/n. */
export function poolBlocks(values: Float32Array, rows: number, cols: number, view: View, fr: number, fc: number): Blocks {
  const i0 = Math.floor(view.r0 / fr);
  const j0 = Math.floor(view.c0 / fc);
  const nbr = Math.floor((view.r1 - 1) / fr) - i0 + 1;
  const nbc = Math.floor((view.c1 - 1) / fc) - j0 + 1;
  const sums = new Float64Array(nbr * nbc);
  const counts = new Uint32Array(nbr * nbc);
  const cEnd = Math.min(cols, (j0 + nbc) * fc);
  const rEnd = Math.min(rows, (i0 + nbr) * fr);
  for (let r = i0 * fr; r < rEnd; r++) {
    const base = (Math.floor(r / fr) - i0) * nbc;
    const off = r * cols;
    let c = j0 * fc;
    for (let j = 0; j < nbc; j++) {
      const stop = Math.min(cEnd, c + fc);
      let s = 0;
      let n = 0;
      for (; c < stop; c++) {
        const v = values[off + c];
        if (v - v === 0) { // finite (NaN and +-inf give NaN)
          s += v;
          n++;
        }
      }
      sums[base + j] += s;
      counts[base + j] += n;
    }
  }
  const means = new Float32Array(nbr * nbc);
  for (let k = 0; k < means.length; k++) means[k] = counts[k] ? sums[k] / counts[k] : NaN;
  return { means, i0, j0, nbr, nbc };
}

/** Zoom one axis by `factor` (> 1 zooms in) about `anchor`, keeping the anchor where it is on
 *  screen; the span stays within [minSpan, n] and the range within [0, n). */
export function zoomAxis(start: number, end: number, n: number, minSpan: number, factor: number, anchor: number): [number, number] {
  const span = end - start;
  const ns = Math.max(minSpan, Math.min(n, Math.round(span / factor)));
  const frac = (anchor + 0.5 - start) / span;
  const s = Math.max(0, Math.min(n - ns, Math.round(anchor + 0.5 - frac * ns)));
  return [s, s + ns];
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, x));
}


/** Canvas pixels per cell and what can be zoomed, for a rows x cols map: whole cells for small
 * maps (as many pixels as fit), one pixel per block of fr0 x fc0 cells when the map has more
 * cells than MAX_CANVAS per side. */
function canvasLayout(rows: number, cols: number): { width: number; height: number; zoomR: boolean; zoomC: boolean } {
  const fr0 = Math.ceil(rows / MAX_CANVAS);
  const fc0 = Math.ceil(cols / MAX_CANVAS);
  const br0 = Math.ceil(rows / fr0);
  const bc0 = Math.ceil(cols / fc0);
  const cell = clamp(Math.floor(MAX_CANVAS / Math.max(br0, bc0)), 1, 28);
  const cellH = Math.max(cell, Math.min(28, Math.floor(200 / br0)));
  const cellW = Math.max(cell, Math.min(40, Math.floor(600 / bc0)));
  return {
    width: bc0 * cellW, height: br0 * cellH,
    zoomR: fr0 > 1 || cellH < ZOOM_BELOW_PX, zoomC: fc0 > 1 || cellW < ZOOM_BELOW_PX,
  };
}

/** One packed RGBA word per colour-table entry, and the NaN grey at index 256. */
function packedTable(table: Uint8ClampedArray): Uint32Array {
  const lut = new Uint8ClampedArray(257 * 4);
  for (let k = 0; k < 256; k++) {
    lut[4 * k] = table[3 * k];
    lut[4 * k + 1] = table[3 * k + 1];
    lut[4 * k + 2] = table[3 * k + 2];
    lut[4 * k + 3] = 255;
  }
  lut.set([INVALID_RGB[0], INVALID_RGB[1], INVALID_RGB[2], 255], 256 * 4);
  return new Uint32Array(lut.buffer);
}

/** The note under the map: pooling done in Python, quantisation and the exact range. */
function dataNote(pooledBy: number[], step: number | null, dtype: string, st: Stats): string {
  const notes: string[] = [];
  if (pooledBy && (pooledBy[0] > 1 || pooledBy[1] > 1)) notes.push(`data mean-pooled ${pooledBy[0]}x${pooledBy[1]} in Python`);
  if (step !== null) {
    let text = step > 0
      ? `values quantised to ${dtype} (step ${formatValue(step)}: shown values within \u00b1${formatValue(step / 2)})`
      : `values quantised to ${dtype} (exact: every finite value is the same)`;
    if (st.min !== null && st.min !== undefined && st.max !== null && st.max !== undefined) {
      text += `; exact range ${formatValue(st.min)}..${formatValue(st.max)}`;
      if (st.mean !== null && st.mean !== undefined) text += `, mean ${formatValue(st.mean)}`;
    }
    notes.push(text);
  }
  return notes.join("; ");
}

/** [start, end) of span at least `minSpan` centred on lo..hi, inside [0, n). */
function fitSpan(lo: number, hi: number, n: number, minSpan: number): [number, number] {
  const span = Math.max(minSpan, hi - lo);
  const s = clamp(Math.round((lo + hi - span) / 2), 0, n - span);
  return [s, s + span];
}

class HeatmapView {
  readonly root = h("div", "ms-root ms-heatmap");
  private readonly title = h("div", "ms-title");
  private readonly rowLabels = h("div", "ms-rowlabels");
  private readonly stage = h("div", "ms-hm-stage");
  private readonly canvas = h("canvas", "ms-canvas");
  private readonly cursor = h("div", "ms-cursor");
  private readonly zoombox = h("div", "ms-zoombox");
  private readonly colorbar = h("div", "ms-colorbar");
  private readonly colLabels = h("div", "ms-collabels");
  private readonly tip = new Tooltip(this.root); // role=status: read out as the keyboard cursor moves
  private readonly bar = h("div", "ms-hm-bar");
  private readonly viewInfo = h("span", "ms-note ms-hm-view");
  private readonly reset = h("button", "ms-hm-reset", "Reset zoom");
  private readonly help = h("span", "ms-note ms-hm-help");
  private readonly note = h("div", "ms-note");
  private rows = 0;
  private cols = 0;
  private data: Float32Array = new Float32Array(0);
  private ciLow: NumericArray | null = null; // per-cell interval (optional), the shape of data
  private ciHigh: NumericArray | null = null;
  private range: Range = { lo: 0, hi: 1 };
  private table: Uint8ClampedArray = colorTable("viridis");
  private zoomable = false;
  private minSpanR = 1;
  private minSpanC = 1;
  private view: View = { r0: 0, r1: 0, c0: 0, c1: 0 };
  private fr = 1; // rows per drawn block in the current view
  private fc = 1;
  private blocks: Blocks | null = null;
  private keyCell: Cell = [0, 0];
  private hasCursor = false; // keyCell set by hover or keys (zoom anchors there)
  private showCursor = false; // ... and outlined (after keyboard use only)
  private draws = 0;
  private step: number | null = null;
  private drag: { x: number; y: number; id: number } | null = null;

  constructor(private readonly model: AnyModel<HeatmapTraits>, private readonly el: HTMLElement) {
    const scroll = h("div", "ms-scroll");
    const grid = h("div", "ms-grid");
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.stage.append(this.canvas, this.cursor, this.zoombox);
    this.viewInfo.setAttribute("aria-live", "polite");
    this.reset.type = "button";
    ownKeys(this.canvas, this.reset);
    this.bar.append(this.viewInfo, this.reset, this.help);
    grid.append(this.rowLabels, this.stage, this.colorbar, h("div"), this.colLabels);
    scroll.append(grid);
    this.root.append(this.title, scroll, this.bar, this.note, this.tip.el);
    el.replaceChildren(this.root);
    this.listen();
  }

  /** Decode the model, size the canvas for the whole map and draw it at full view. */
  load(): void {
    const enc = this.model.get("values");
    const decoded = decodeFloat(enc);
    [this.rows, this.cols] = decoded.shape;
    const { rows, cols } = this;
    this.data = decoded.values;
    this.ciLow = decodeOptional(this.model.get("ci_low"));
    this.ciHigh = decodeOptional(this.model.get("ci_high"));
    const scale = this.model.get("colorscale");
    this.range = valueRange(this.data, scale, this.model.get("vmin"), this.model.get("vmax"));
    this.table = colorTable(scale);
    this.step = enc.scale ? enc.scale.step : null;
    this.title.textContent = this.model.get("title");
    const layout = canvasLayout(rows, cols);
    this.canvas.width = layout.width;
    this.canvas.height = layout.height;
    this.zoomable = layout.zoomR || layout.zoomC;
    this.minSpanR = layout.zoomR ? Math.min(rows, MIN_SPAN) : rows;
    this.minSpanC = layout.zoomC ? Math.min(cols, MIN_SPAN) : cols;
    this.stage.classList.toggle("ms-zoomable", this.zoomable);
    this.help.textContent = this.zoomable
      ? "zoom: drag a box, or focus the map and press + / \u2212 (or scroll); arrows move, Shift+arrows pan, 0 resets"
      : "";
    this.help.style.display = this.zoomable ? "" : "none";
    this.view = { r0: 0, r1: rows, c0: 0, c1: cols };
    this.keyCell = [0, 0];
    this.hasCursor = false;
    this.showCursor = false;
    this.colorbar.replaceChildren(h("div", undefined, formatValue(this.range.hi)), colorBarCanvas(this.table, this.canvas.height),
      h("div", undefined, formatValue(this.range.lo)));
    this.note.textContent = dataNote(this.model.get("pooled"), this.step, enc.dtype, this.model.get("stats") || {});
    this.note.style.display = this.note.textContent ? "" : "none";
    this.paint();
  }

  private isFull(): boolean {
    const v = this.view;
    return v.r0 === 0 && v.c0 === 0 && v.r1 === this.rows && v.c1 === this.cols;
  }

  /** Draw the current view: pool it into blocks, colour them, expand to canvas pixels. */
  private paint(): void {
    const W = this.canvas.width;
    const H = this.canvas.height;
    const { view } = this;
    const spanR = view.r1 - view.r0;
    const spanC = view.c1 - view.c0;
    this.fr = Math.ceil(spanR / H);
    this.fc = Math.ceil(spanC / W);
    const b = poolBlocks(this.data, this.rows, this.cols, view, this.fr, this.fc);
    this.blocks = b;
    this.putPixels(b, W, H);
    this.describe(b);
    this.drawLabels(W / spanC, H / spanR);
    if (this.showCursor) this.placeCursor();
    this.el.dataset.msReady = "1";
  }

  private putPixels(b: Blocks, W: number, H: number): void {
    const { view, fr, fc } = this;
    const spanR = view.r1 - view.r0;
    const spanC = view.c1 - view.c0;
    const lut32 = packedTable(this.table);
    const colour = new Uint32Array(b.means.length);
    for (let k = 0; k < colour.length; k++) {
      const v = b.means[k];
      colour[k] = lut32[v - v === 0 ? colorIndex(v, this.range) : 256];
    }
    // canvas pixel -> the cell at its centre -> that cell's block (the same mapping hover uses)
    const xb = new Int32Array(W);
    for (let x = 0; x < W; x++) xb[x] = Math.floor((view.c0 + Math.floor(((x + 0.5) * spanC) / W)) / fc) - b.j0;
    const ctx = this.canvas.getContext("2d")!;
    const image = ctx.createImageData(W, H);
    const px = new Uint32Array(image.data.buffer);
    for (let y = 0; y < H; y++) {
      const by = Math.floor((view.r0 + Math.floor(((y + 0.5) * spanR) / H)) / fr) - b.i0;
      const src = by * b.nbc;
      const dst = y * W;
      for (let x = 0; x < W; x++) px[dst + x] = colour[src + xb[x]];
    }
    ctx.putImageData(image, 0, 0);
  }

  /** The canvas's label, the view line and the data-* attributes the tests read. */
  private describe(b: Blocks): void {
    const { view, fr, fc, rows, cols, zoomable } = this;
    const t = this.model.get("title");
    const what = `${t ? `${t}: ` : ""}${rows} by ${cols} heatmap of ${this.model.get("value_label")}`;
    this.canvas.setAttribute("aria-label", zoomable
      ? `${what}, showing rows ${view.r0}-${view.r1 - 1} and columns ${view.c0}-${view.c1 - 1}`
      : what);
    if (zoomable) {
      const pool = fr > 1 || fc > 1 ? `mean-pooled ${fr}x${fc}` : "not pooled";
      this.viewInfo.textContent = `rows ${view.r0}-${view.r1 - 1} of ${rows}, cols ${view.c0}-${view.c1 - 1} of ${cols}, ${pool}`;
    } else {
      this.viewInfo.textContent = "";
    }
    this.bar.style.display = zoomable ? "" : "none";
    this.reset.style.display = zoomable && !this.isFull() ? "" : "none";
    Object.assign(this.root.dataset, {
      view: `${view.r0},${view.r1},${view.c0},${view.c1}`, pool: `${fr},${fc}`,
      cellsDrawn: String(b.nbr * b.nbc), draws: String(++this.draws),
    });
  }

  private drawLabels(pxCol: number, pxRow: number): void {
    const { view } = this;
    const inView = (n0: number, n1: number, labels: string[]) => Array.from({ length: n1 - n0 }, (_, i) => labels[n0 + i] ?? String(n0 + i));
    const rowsShown = pxRow >= MIN_LABEL_CELL && this.fr === 1 && view.r1 - view.r0 <= MAX_LABELS;
    const colsShown = pxCol >= MIN_LABEL_CELL && this.fc === 1 && view.c1 - view.c0 <= MAX_LABELS;
    axisLabels(this.rowLabels, rowsShown ? inView(view.r0, view.r1, this.model.get("row_labels")) : [], pxRow, "row");
    axisLabels(this.colLabels, colsShown ? inView(view.c0, view.c1, this.model.get("col_labels")) : [], pxCol, "col");
  }

  /** The cell under CSS point (px, py) of the canvas, or null outside it. */
  private cellAt(px: number, py: number): Cell | null {
    const { view } = this;
    const c = view.c0 + Math.floor((px / this.canvas.clientWidth) * (view.c1 - view.c0));
    const r = view.r0 + Math.floor((py / this.canvas.clientHeight) * (view.r1 - view.r0));
    if (px < 0 || py < 0 || c < view.c0 || r < view.r0 || c >= view.c1 || r >= view.r1) return null;
    return [r, c];
  }

  /** CSS box (relative to the canvas) of the drawn block holding cell (r, c), clipped to the view. */
  private blockBox(r: number, c: number): { x: number; y: number; w: number; h: number } {
    const { view, fr, fc } = this;
    const sx = this.canvas.clientWidth / (view.c1 - view.c0);
    const sy = this.canvas.clientHeight / (view.r1 - view.r0);
    const ca = Math.max(view.c0, Math.floor(c / fc) * fc);
    const cb = Math.min(view.c1, Math.floor(c / fc) * fc + fc);
    const ra = Math.max(view.r0, Math.floor(r / fr) * fr);
    const rb = Math.min(view.r1, Math.floor(r / fr) * fr + fr);
    return { x: (ca - view.c0) * sx, y: (ra - view.r0) * sy, w: (cb - ca) * sx, h: (rb - ra) * sy };
  }

  private blockMean(r: number, c: number): number {
    const b = this.blocks;
    if (!b) return NaN;
    return b.means[(Math.floor(r / this.fr) - b.i0) * b.nbc + Math.floor(c / this.fc) - b.j0];
  }

  /** The value at flat cell k, with its interval when there is one: "0.4200 [0.3100, 0.5500] (95% CI, n=100)". */
  private valueText(k: number): string {
    const v = formatValue(this.data[k]);
    const { ciLow, ciHigh } = this;
    if (!ciLow || !ciHigh || k >= ciLow.length || k >= ciHigh.length) return v;
    const label = this.model.get("ci_label");
    return `${v} [${formatValue(ciLow[k])}, ${formatValue(ciHigh[k])}]${label ? ` (${label})` : ""}`;
  }

  private tipText(r: number, c: number): string {
    const rl = this.model.get("row_labels");
    const cl = this.model.get("col_labels");
    const lines = [`${rl[r] ?? r}  |  ${JSON.stringify(cl[c] ?? String(c))}`, `${this.model.get("value_label")}: ${this.valueText(r * this.cols + c)}`];
    if (this.zoomable) {
      let where = `row ${r}, col ${c}`;
      if (this.fr > 1 || this.fc > 1) where += `; pixel = mean of its ${this.fr}x${this.fc} block: ${formatValue(this.blockMean(r, c))}`;
      lines.push(where);
    }
    if (this.step) lines.push(`quantised: shown values within \u00b1${formatValue(this.step / 2)}`);
    return lines.join("\n");
  }

  private showTip([r, c]: Cell, clientX: number, clientY: number): void {
    this.tip.show(this.tipText(r, c), clientX, clientY);
    syncHovered(this.model, [r, c]);
  }

  private inView([r, c]: Cell): boolean {
    const { view } = this;
    return r >= view.r0 && r < view.r1 && c >= view.c0 && c < view.c1;
  }

  private placeCursor(): void {
    if (!this.inView(this.keyCell)) {
      this.cursor.style.display = "none";
      return;
    }
    const bx = this.blockBox(...this.keyCell);
    const w = Math.max(4, bx.w);
    const hh = Math.max(4, bx.h);
    placeBox(this.cursor, bx.x + bx.w / 2 - w / 2, bx.y + bx.h / 2 - hh / 2, w, hh, true);
  }

  private tipAtCursor(): void {
    const bx = this.blockBox(...this.keyCell);
    const cr = this.canvas.getBoundingClientRect();
    this.placeCursor();
    this.showTip(this.keyCell, cr.left + bx.x + bx.w / 2, cr.top + bx.y + bx.h / 2);
  }

  private setView(v: View): void {
    this.view = v;
    this.tip.hide();
    this.paint();
  }

  private fullView(): void {
    this.setView({ r0: 0, r1: this.rows, c0: 0, c1: this.cols });
  }

  private zoomAt(factor: number, anchor: Cell): void {
    if (!this.zoomable) return;
    const { view } = this;
    const [r0, r1] = zoomAxis(view.r0, view.r1, this.rows, this.minSpanR, factor, anchor[0]);
    const [c0, c1] = zoomAxis(view.c0, view.c1, this.cols, this.minSpanC, factor, anchor[1]);
    this.setView({ r0, r1, c0, c1 });
  }

  private pan(dr: number, dc: number): void {
    const { view } = this;
    const sr = view.r1 - view.r0;
    const sc = view.c1 - view.c0;
    const r0 = clamp(view.r0 + dr, 0, this.rows - sr);
    const c0 = clamp(view.c0 + dc, 0, this.cols - sc);
    if (r0 !== view.r0 || c0 !== view.c0) this.setView({ r0, r1: r0 + sr, c0, c1: c0 + sc });
  }

  /** Pan the least needed so the cursor cell is in view. */
  private follow(): void {
    const [r, c] = this.keyCell;
    const { view } = this;
    const dr = r < view.r0 ? r - view.r0 : r >= view.r1 ? r - view.r1 + 1 : 0;
    const dc = c < view.c0 ? c - view.c0 : c >= view.c1 ? c - view.c1 + 1 : 0;
    if (dr || dc) this.pan(dr, dc);
  }

  /** Where keys zoom about: the cursor cell when set and in view, else the view's centre. */
  private anchor(): Cell {
    if (this.hasCursor && this.inView(this.keyCell)) return this.keyCell;
    const { view } = this;
    return [Math.floor((view.r0 + view.r1 - 1) / 2), Math.floor((view.c0 + view.c1 - 1) / 2)];
  }

  // ---- mouse: hover, drag a rectangle to zoom, wheel zoom when focused ----------------------
  private local(ev: MouseEvent): { x: number; y: number } {
    const rect = this.canvas.getBoundingClientRect();
    return { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
  }

  private onPointerDown(ev: PointerEvent): void {
    if (!this.zoomable || ev.button !== 0) return;
    this.drag = { ...this.local(ev), id: ev.pointerId };
    this.canvas.setPointerCapture(ev.pointerId);
  }

  /** Draw the zoom rectangle of a drag from `drag` to `p`; false while it is still a click. */
  private dragBox(drag: { x: number; y: number }, p: { x: number; y: number }): boolean {
    if (Math.abs(p.x - drag.x) < DRAG_MIN_PX && Math.abs(p.y - drag.y) < DRAG_MIN_PX) return false;
    this.tip.hide();
    const x0 = Math.max(0, Math.min(p.x, drag.x));
    const y0 = Math.max(0, Math.min(p.y, drag.y));
    placeBox(this.zoombox, x0, y0, Math.min(this.canvas.clientWidth, Math.max(p.x, drag.x)) - x0,
      Math.min(this.canvas.clientHeight, Math.max(p.y, drag.y)) - y0, true);
    return true;
  }

  private onPointerMove(ev: PointerEvent): void {
    const p = this.local(ev);
    if (this.drag && this.dragBox(this.drag, p)) return;
    const hit = this.cellAt(p.x, p.y);
    if (!hit) return;
    this.keyCell = hit;
    this.hasCursor = true;
    this.showCursor = false;
    this.cursor.style.display = "none";
    this.showTip(hit, ev.clientX, ev.clientY);
  }

  private endDrag(ev: PointerEvent, apply: boolean): void {
    const start = this.drag;
    if (!start || ev.pointerId !== start.id) return;
    this.drag = null;
    this.zoombox.style.display = "none";
    if (this.canvas.hasPointerCapture(ev.pointerId)) this.canvas.releasePointerCapture(ev.pointerId);
    const p = this.local(ev);
    if (!apply || Math.abs(p.x - start.x) < DRAG_MIN_PX || Math.abs(p.y - start.y) < DRAG_MIN_PX) return;
    const w = this.canvas.clientWidth;
    const hh = this.canvas.clientHeight;
    const a = this.cellAt(clamp(Math.min(p.x, start.x), 0, w - 0.01), clamp(Math.min(p.y, start.y), 0, hh - 0.01));
    const b = this.cellAt(clamp(Math.max(p.x, start.x), 0, w - 0.01), clamp(Math.max(p.y, start.y), 0, hh - 0.01));
    if (!a || !b) return;
    const [r0, r1] = fitSpan(a[0], b[0] + 1, this.rows, this.minSpanR);
    const [c0, c1] = fitSpan(a[1], b[1] + 1, this.cols, this.minSpanC);
    this.setView({ r0, r1, c0, c1 });
  }

  private onWheel(ev: WheelEvent): void {
    // only when the map has focus (a click or Tab): otherwise the wheel scrolls the notebook
    if (!this.zoomable || (document.activeElement !== this.canvas && !ev.ctrlKey)) return;
    const p = this.local(ev);
    const hit = this.cellAt(p.x, p.y);
    if (!hit || ev.deltaY === 0) return;
    ev.preventDefault();
    this.zoomAt(ev.deltaY < 0 ? WHEEL_ZOOM : 1 / WHEEL_ZOOM, hit);
  }

  // ---- keyboard: arrows move the cursor (one drawn block), Shift+arrows pan, + / - / 0 zoom --
  private onArrow(ev: KeyboardEvent, d: Cell): void {
    ev.preventDefault();
    const { view, rows, cols } = this;
    if (ev.shiftKey && this.zoomable) {
      const dr = d[0] * Math.max(1, Math.round((view.r1 - view.r0) / 4));
      const dc = d[1] * Math.max(1, Math.round((view.c1 - view.c0) / 4));
      if (!this.hasCursor) this.keyCell = this.anchor();
      this.keyCell = [clamp(this.keyCell[0] + dr, 0, rows - 1), clamp(this.keyCell[1] + dc, 0, cols - 1)];
      this.pan(dr, dc);
    } else {
      this.keyCell = [clamp(this.keyCell[0] + d[0] * this.fr, 0, rows - 1), clamp(this.keyCell[1] + d[1] * this.fc, 0, cols - 1)];
      this.follow();
    }
    this.hasCursor = true;
    this.showCursor = true;
    this.tipAtCursor();
  }

  private onKey(ev: KeyboardEvent): void {
    const d = ARROWS[ev.key];
    if (d) return this.onArrow(ev, d);
    if (!this.zoomable) return;
    if (ev.key === "+" || ev.key === "=") this.zoomAt(KEY_ZOOM, this.anchor());
    else if (ev.key === "-" || ev.key === "_") this.zoomAt(1 / KEY_ZOOM, this.anchor());
    else if (ev.key === "0") this.fullView();
    else return;
    ev.preventDefault();
    if (this.hasCursor) {
      this.showCursor = true;
      this.tipAtCursor();
    }
  }

  private listen(): void {
    const c = this.canvas;
    c.addEventListener("pointerdown", (ev) => this.onPointerDown(ev));
    c.addEventListener("pointermove", (ev) => this.onPointerMove(ev));
    c.addEventListener("pointerup", (ev) => this.endDrag(ev, true));
    c.addEventListener("pointercancel", (ev) => this.endDrag(ev, false));
    c.addEventListener("mouseleave", () => {
      if (!this.drag) this.tip.hide();
    });
    c.addEventListener("wheel", (ev) => this.onWheel(ev), { passive: false });
    c.addEventListener("keydown", (ev) => this.onKey(ev));
    this.reset.addEventListener("click", () => {
      this.fullView();
      c.focus();
    });
  }
}

function render({ model, el }: RenderProps<HeatmapTraits>): () => void {
  ensureWidgetStyle(STYLE_ID, CSS);
  const view = new HeatmapView(model, el);
  view.load();
  return onChange(model, DATA, () => view.load());
}

export default { render };
