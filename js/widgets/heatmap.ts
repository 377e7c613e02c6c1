// Heatmap widget: a labelled 2-D array on canvas with a colour bar and a hover tooltip.
// Maps with more cells than canvas pixels (or cells under ZOOM_BELOW_PX) are drawn mean-pooled
// (each pixel the NaN-aware mean of its block of cells, never a subsample) and can be zoomed:
// drag a rectangle, or focus the canvas and use + / - (or the wheel), arrows (move the cursor
// cell), Shift+arrows (pan), 0 (reset). Every view is re-pooled, down to one cell per block.
// Python side: src/mechscope/widgets/heatmap.py.
import { decodeFloat, type EncodedArray } from "../lib/codec";
import { colorBarCanvas, colorIndex, colorTable, formatValue, INVALID_RGB, valueRange, type Range, type ScaleName } from "../lib/colors";
import { ensureStyle, h, ownKeys } from "../lib/dom";
import { ARROWS, axisLabels, syncHovered } from "../lib/grid";

interface Stats {
  min?: number | null;
  max?: number | null;
  mean?: number | null;
}

interface HeatmapModel {
  get(name: "values"): EncodedArray;
  get(name: "row_labels" | "col_labels"): string[];
  get(name: "title" | "value_label"): string;
  get(name: "colorscale"): ScaleName;
  get(name: "vmin" | "vmax"): number | null;
  get(name: "pooled" | "hovered"): number[];
  get(name: "stats"): Stats | null | undefined;
  set(name: "hovered", value: number[]): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

const MAX_CANVAS = 900; // canvas pixels per side; more cells than this are pooled into blocks
const MIN_LABEL_CELL = 11; // show per-row/column text labels only when cells are this big
const MAX_LABELS = 150; // ... and at most this many of them
const ZOOM_BELOW_PX = 4; // an axis whose cells are smaller than this at full view can be zoomed
const MIN_SPAN = 8; // the deepest zoom shows this many rows / columns (fewer if the map has fewer)
const KEY_ZOOM = 2; // + / - halve / double the span
const WHEEL_ZOOM = 1.5;
const DRAG_MIN_PX = 4; // a drag smaller than this is a click

const STYLE_ID = "mechscope-heatmap-style-v1";

function ensureHeatmapStyle(): void {
  ensureStyle();
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = `
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
  document.head.appendChild(style);
}

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

function render({ model, el }: { model: HeatmapModel; el: HTMLElement }): () => void {
  ensureHeatmapStyle();
  const root = h("div", "ms-root ms-heatmap");
  const title = h("div", "ms-title");
  const scroll = h("div", "ms-scroll");
  const grid = h("div", "ms-grid");
  const rowLabels = h("div", "ms-rowlabels");
  const stage = h("div", "ms-hm-stage");
  const canvas = h("canvas", "ms-canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  const cursor = h("div", "ms-cursor");
  const zoombox = h("div", "ms-zoombox");
  stage.append(canvas, cursor, zoombox);
  const colorbar = h("div", "ms-colorbar");
  const colLabels = h("div", "ms-collabels");
  const tooltip = h("div", "ms-tooltip");
  tooltip.setAttribute("role", "status"); // read out as the keyboard cursor moves
  const bar = h("div", "ms-hm-bar");
  const viewInfo = h("span", "ms-note ms-hm-view");
  viewInfo.setAttribute("aria-live", "polite");
  const reset = h("button", "ms-hm-reset", "Reset zoom");
  reset.type = "button";
  // Keys pressed on the map are its own, not JupyterLab's notebook shortcuts (arrows would move
  // the cell selection, "0 0" restart the kernel); Lumino skips the focused element with this.
  ownKeys(canvas, reset);
  const help = h("span", "ms-note ms-hm-help");
  bar.append(viewInfo, reset, help);
  const note = h("div", "ms-note");
  grid.append(rowLabels, stage, colorbar, h("div"), colLabels);
  scroll.append(grid);
  root.append(title, scroll, bar, note, tooltip);
  el.replaceChildren(root);

  let rows = 0;
  let cols = 0;
  let data: Float32Array = new Float32Array(0);
  let range: Range = { lo: 0, hi: 1 };
  let table: Uint8ClampedArray = colorTable("viridis");
  let zoomable = false;
  let minSpanR = 1;
  let minSpanC = 1;
  let view: View = { r0: 0, r1: 0, c0: 0, c1: 0 };
  let fr = 1; // rows per drawn block in the current view
  let fc = 1;
  let blocks: Blocks | null = null;
  let keyCell: [number, number] = [0, 0];
  let hasCursor = false; // keyCell set by hover or keys (zoom anchors there)
  let showCursor = false; // ... and outlined (after keyboard use only)
  let draws = 0;
  let step: number | null = null;

  const isFull = () => view.r0 === 0 && view.c0 === 0 && view.r1 === rows && view.c1 === cols;

  function load(): void {
    const enc = model.get("values");
    const decoded = decodeFloat(enc);
    [rows, cols] = decoded.shape;
    data = decoded.values;
    const scale = model.get("colorscale");
    range = valueRange(data, scale, model.get("vmin"), model.get("vmax"));
    table = colorTable(scale);
    step = enc.scale ? enc.scale.step : null;
    title.textContent = model.get("title");

    // Canvas size: whole cells for small maps (as many pixels as fit), one pixel per block of
    // fr0 x fc0 cells when the map has more cells than MAX_CANVAS per side.
    const fr0 = Math.ceil(rows / MAX_CANVAS);
    const fc0 = Math.ceil(cols / MAX_CANVAS);
    const br0 = Math.ceil(rows / fr0);
    const bc0 = Math.ceil(cols / fc0);
    const cell = clamp(Math.floor(MAX_CANVAS / Math.max(br0, bc0)), 1, 28);
    const cellH = Math.max(cell, Math.min(28, Math.floor(200 / br0)));
    const cellW = Math.max(cell, Math.min(40, Math.floor(600 / bc0)));
    canvas.width = bc0 * cellW;
    canvas.height = br0 * cellH;
    const zoomR = fr0 > 1 || cellH < ZOOM_BELOW_PX;
    const zoomC = fc0 > 1 || cellW < ZOOM_BELOW_PX;
    zoomable = zoomR || zoomC;
    minSpanR = zoomR ? Math.min(rows, MIN_SPAN) : rows;
    minSpanC = zoomC ? Math.min(cols, MIN_SPAN) : cols;
    stage.classList.toggle("ms-zoomable", zoomable);
    help.textContent = zoomable
      ? "zoom: drag a box, or focus the map and press + / \u2212 (or scroll); arrows move, Shift+arrows pan, 0 resets"
      : "";
    help.style.display = zoomable ? "" : "none";
    view = { r0: 0, r1: rows, c0: 0, c1: cols };
    keyCell = [0, 0];
    hasCursor = false;
    showCursor = false;

    colorbar.replaceChildren();
    const cbar = colorBarCanvas(table, canvas.height);
    colorbar.append(h("div", undefined, formatValue(range.hi)), cbar, h("div", undefined, formatValue(range.lo)));

    const notes: string[] = [];
    const pooledBy = model.get("pooled");
    if (pooledBy && (pooledBy[0] > 1 || pooledBy[1] > 1)) notes.push(`data mean-pooled ${pooledBy[0]}x${pooledBy[1]} in Python`);
    if (step !== null) {
      const st = model.get("stats") || {};
      let text = step > 0
        ? `values quantised to ${enc.dtype} (step ${formatValue(step)}: shown values within \u00b1${formatValue(step / 2)})`
        : `values quantised to ${enc.dtype} (exact: every finite value is the same)`;
      if (st.min !== null && st.min !== undefined && st.max !== null && st.max !== undefined) {
        text += `; exact range ${formatValue(st.min)}..${formatValue(st.max)}`;
        if (st.mean !== null && st.mean !== undefined) text += `, mean ${formatValue(st.mean)}`;
      }
      notes.push(text);
    }
    note.textContent = notes.join("; ");
    note.style.display = notes.length ? "" : "none";
    paint();
  }

  /** Draw the current view: pool it into blocks, colour them, expand to canvas pixels. */
  function paint(): void {
    const W = canvas.width;
    const H = canvas.height;
    const spanR = view.r1 - view.r0;
    const spanC = view.c1 - view.c0;
    fr = Math.ceil(spanR / H);
    fc = Math.ceil(spanC / W);
    const b = poolBlocks(data, rows, cols, view, fr, fc);
    blocks = b;
    // one packed RGBA word per colour-table entry, then one per block
    const lut = new Uint8ClampedArray(257 * 4);
    for (let k = 0; k < 256; k++) {
      lut[4 * k] = table[3 * k];
      lut[4 * k + 1] = table[3 * k + 1];
      lut[4 * k + 2] = table[3 * k + 2];
      lut[4 * k + 3] = 255;
    }
    lut.set([INVALID_RGB[0], INVALID_RGB[1], INVALID_RGB[2], 255], 256 * 4);
    const lut32 = new Uint32Array(lut.buffer);
    const nb = b.means.length;
    const colour = new Uint32Array(nb);
    for (let k = 0; k < nb; k++) {
      const v = b.means[k];
      colour[k] = lut32[v - v === 0 ? colorIndex(v, range) : 256];
    }
    // canvas pixel -> the cell at its centre -> that cell's block (the same mapping hover uses)
    const xb = new Int32Array(W);
    for (let x = 0; x < W; x++) xb[x] = Math.floor((view.c0 + Math.floor(((x + 0.5) * spanC) / W)) / fc) - b.j0;
    const ctx = canvas.getContext("2d")!;
    const image = ctx.createImageData(W, H);
    const px = new Uint32Array(image.data.buffer);
    for (let y = 0; y < H; y++) {
      const by = Math.floor((view.r0 + Math.floor(((y + 0.5) * spanR) / H)) / fr) - b.i0;
      const src = by * b.nbc;
      const dst = y * W;
      for (let x = 0; x < W; x++) px[dst + x] = colour[src + xb[x]];
    }
    ctx.putImageData(image, 0, 0);

    const t = model.get("title");
    const what = `${t ? `${t}: ` : ""}${rows} by ${cols} heatmap of ${model.get("value_label")}`;
    canvas.setAttribute("aria-label", zoomable
      ? `${what}, showing rows ${view.r0}-${view.r1 - 1} and columns ${view.c0}-${view.c1 - 1}`
      : what);
    drawLabels(W / spanC, H / spanR);
    if (zoomable) {
      const pool = fr > 1 || fc > 1 ? `mean-pooled ${fr}x${fc}` : "not pooled";
      viewInfo.textContent = `rows ${view.r0}-${view.r1 - 1} of ${rows}, cols ${view.c0}-${view.c1 - 1} of ${cols}, ${pool}`;
    } else {
      viewInfo.textContent = "";
    }
    bar.style.display = zoomable ? "" : "none";
    reset.style.display = zoomable && !isFull() ? "" : "none";
    root.dataset.view = `${view.r0},${view.r1},${view.c0},${view.c1}`;
    root.dataset.pool = `${fr},${fc}`;
    root.dataset.cellsDrawn = String(b.nbr * b.nbc);
    root.dataset.draws = String(++draws);
    if (showCursor) placeCursor();
    el.dataset.msReady = "1";
  }

  function drawLabels(pxCol: number, pxRow: number): void {
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    const inView = (n0: number, n1: number, labels: string[]) => Array.from({ length: n1 - n0 }, (_, i) => labels[n0 + i] ?? String(n0 + i));
    const rowsShown = pxRow >= MIN_LABEL_CELL && fr === 1 && view.r1 - view.r0 <= MAX_LABELS;
    const colsShown = pxCol >= MIN_LABEL_CELL && fc === 1 && view.c1 - view.c0 <= MAX_LABELS;
    axisLabels(rowLabels, rowsShown ? inView(view.r0, view.r1, rl) : [], pxRow, "row");
    axisLabels(colLabels, colsShown ? inView(view.c0, view.c1, cl) : [], pxCol, "col");
  }

  /** The cell under CSS point (px, py) of the canvas, or null outside it. */
  function cellAt(px: number, py: number): [number, number] | null {
    const c = view.c0 + Math.floor((px / canvas.clientWidth) * (view.c1 - view.c0));
    const r = view.r0 + Math.floor((py / canvas.clientHeight) * (view.r1 - view.r0));
    if (px < 0 || py < 0 || c < view.c0 || r < view.r0 || c >= view.c1 || r >= view.r1) return null;
    return [r, c];
  }

  /** CSS box (relative to the canvas) of the drawn block holding cell (r, c), clipped to the view. */
  function blockBox(r: number, c: number): { x: number; y: number; w: number; h: number } {
    const sx = canvas.clientWidth / (view.c1 - view.c0);
    const sy = canvas.clientHeight / (view.r1 - view.r0);
    const ca = Math.max(view.c0, Math.floor(c / fc) * fc);
    const cb = Math.min(view.c1, Math.floor(c / fc) * fc + fc);
    const ra = Math.max(view.r0, Math.floor(r / fr) * fr);
    const rb = Math.min(view.r1, Math.floor(r / fr) * fr + fr);
    return { x: (ca - view.c0) * sx, y: (ra - view.r0) * sy, w: (cb - ca) * sx, h: (rb - ra) * sy };
  }

  function blockMean(r: number, c: number): number {
    if (!blocks) return NaN;
    const i = Math.floor(r / fr) - blocks.i0;
    const j = Math.floor(c / fc) - blocks.j0;
    return blocks.means[i * blocks.nbc + j];
  }

  function showTip(r: number, c: number, left: number, top: number): void {
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    const v = data[r * cols + c];
    const lines = [`${rl[r] ?? r}  |  ${JSON.stringify(cl[c] ?? String(c))}`, `${model.get("value_label")}: ${formatValue(v)}`];
    if (zoomable) {
      let where = `row ${r}, col ${c}`;
      if (fr > 1 || fc > 1) where += `; pixel = mean of its ${fr}x${fc} block: ${formatValue(blockMean(r, c))}`;
      lines.push(where);
    }
    if (step) lines.push(`quantised: shown values within \u00b1${formatValue(step / 2)}`);
    tooltip.textContent = lines.join("\n");
    tooltip.style.display = "block";
    tooltip.style.left = `${left + 14}px`;
    tooltip.style.top = `${top + 14}px`;
    syncHovered(model, [r, c]);
  }

  function canvasOffset(): { x: number; y: number } {
    const cr = canvas.getBoundingClientRect();
    const rr = root.getBoundingClientRect();
    return { x: cr.left - rr.left, y: cr.top - rr.top };
  }

  function placeCursor(): void {
    const [r, c] = keyCell;
    if (r < view.r0 || r >= view.r1 || c < view.c0 || c >= view.c1) {
      cursor.style.display = "none";
      return;
    }
    const bx = blockBox(r, c);
    const w = Math.max(4, bx.w);
    const hh = Math.max(4, bx.h);
    cursor.style.left = `${bx.x + bx.w / 2 - w / 2}px`;
    cursor.style.top = `${bx.y + bx.h / 2 - hh / 2}px`;
    cursor.style.width = `${w}px`;
    cursor.style.height = `${hh}px`;
    cursor.style.display = "block";
  }

  function tipAtCursor(): void {
    const [r, c] = keyCell;
    const bx = blockBox(r, c);
    const off = canvasOffset();
    placeCursor();
    showTip(r, c, off.x + bx.x + bx.w / 2, off.y + bx.y + bx.h / 2);
  }

  function setView(v: View): void {
    view = v;
    tooltip.style.display = "none";
    paint();
  }

  function zoomAt(factor: number, anchor: [number, number]): void {
    if (!zoomable) return;
    const [r0, r1] = zoomAxis(view.r0, view.r1, rows, minSpanR, factor, anchor[0]);
    const [c0, c1] = zoomAxis(view.c0, view.c1, cols, minSpanC, factor, anchor[1]);
    setView({ r0, r1, c0, c1 });
  }

  function pan(dr: number, dc: number): void {
    const sr = view.r1 - view.r0;
    const sc = view.c1 - view.c0;
    const r0 = clamp(view.r0 + dr, 0, rows - sr);
    const c0 = clamp(view.c0 + dc, 0, cols - sc);
    if (r0 !== view.r0 || c0 !== view.c0) setView({ r0, r1: r0 + sr, c0, c1: c0 + sc });
  }

  /** Pan the least needed so the cursor cell is in view. */
  function follow(): void {
    const [r, c] = keyCell;
    const dr = r < view.r0 ? r - view.r0 : r >= view.r1 ? r - view.r1 + 1 : 0;
    const dc = c < view.c0 ? c - view.c0 : c >= view.c1 ? c - view.c1 + 1 : 0;
    if (dr || dc) pan(dr, dc);
  }

  function anchor(): [number, number] {
    const [r, c] = keyCell;
    if (hasCursor && r >= view.r0 && r < view.r1 && c >= view.c0 && c < view.c1) return keyCell;
    return [Math.floor((view.r0 + view.r1 - 1) / 2), Math.floor((view.c0 + view.c1 - 1) / 2)];
  }

  // ---- mouse: hover, drag a rectangle to zoom, wheel zoom when focused ----------------------
  let drag: { x: number; y: number; id: number } | null = null;

  function local(ev: MouseEvent): { x: number; y: number } {
    const rect = canvas.getBoundingClientRect();
    return { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
  }

  canvas.addEventListener("pointerdown", (ev) => {
    if (!zoomable || ev.button !== 0) return;
    const p = local(ev);
    drag = { ...p, id: ev.pointerId };
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    const p = local(ev);
    if (drag) {
      const w = Math.abs(p.x - drag.x);
      const hh = Math.abs(p.y - drag.y);
      if (w >= DRAG_MIN_PX || hh >= DRAG_MIN_PX) {
        tooltip.style.display = "none";
        zoombox.style.left = `${Math.max(0, Math.min(p.x, drag.x))}px`;
        zoombox.style.top = `${Math.max(0, Math.min(p.y, drag.y))}px`;
        zoombox.style.width = `${Math.min(canvas.clientWidth, Math.max(p.x, drag.x)) - Math.max(0, Math.min(p.x, drag.x))}px`;
        zoombox.style.height = `${Math.min(canvas.clientHeight, Math.max(p.y, drag.y)) - Math.max(0, Math.min(p.y, drag.y))}px`;
        zoombox.style.display = "block";
        return;
      }
    }
    const hit = cellAt(p.x, p.y);
    if (!hit) return;
    keyCell = hit;
    hasCursor = true;
    showCursor = false;
    cursor.style.display = "none";
    const off = canvasOffset();
    showTip(hit[0], hit[1], off.x + p.x, off.y + p.y);
  });
  const endDrag = (ev: PointerEvent, apply: boolean) => {
    if (!drag || ev.pointerId !== drag.id) return;
    const start = drag;
    drag = null;
    zoombox.style.display = "none";
    if (canvas.hasPointerCapture(ev.pointerId)) canvas.releasePointerCapture(ev.pointerId);
    const p = local(ev);
    if (!apply || Math.abs(p.x - start.x) < DRAG_MIN_PX || Math.abs(p.y - start.y) < DRAG_MIN_PX) return;
    const w = canvas.clientWidth;
    const hh = canvas.clientHeight;
    const a = cellAt(clamp(Math.min(p.x, start.x), 0, w - 0.01), clamp(Math.min(p.y, start.y), 0, hh - 0.01));
    const b = cellAt(clamp(Math.max(p.x, start.x), 0, w - 0.01), clamp(Math.max(p.y, start.y), 0, hh - 0.01));
    if (!a || !b) return;
    const fit = (lo: number, hi: number, n: number, minSpan: number): [number, number] => {
      const span = Math.max(minSpan, hi - lo);
      const s = clamp(Math.round((lo + hi - span) / 2), 0, n - span);
      return [s, s + span];
    };
    const [r0, r1] = fit(a[0], b[0] + 1, rows, minSpanR);
    const [c0, c1] = fit(a[1], b[1] + 1, cols, minSpanC);
    setView({ r0, r1, c0, c1 });
  };
  canvas.addEventListener("pointerup", (ev) => endDrag(ev, true));
  canvas.addEventListener("pointercancel", (ev) => endDrag(ev, false));
  canvas.addEventListener("mouseleave", () => {
    if (!drag) tooltip.style.display = "none";
  });
  canvas.addEventListener("wheel", (ev) => {
    // only when the map has focus (a click or Tab): otherwise the wheel scrolls the notebook
    if (!zoomable || (document.activeElement !== canvas && !ev.ctrlKey)) return;
    const p = local(ev);
    const hit = cellAt(p.x, p.y);
    if (!hit || ev.deltaY === 0) return;
    ev.preventDefault();
    zoomAt(ev.deltaY < 0 ? WHEEL_ZOOM : 1 / WHEEL_ZOOM, hit);
  }, { passive: false });
  reset.addEventListener("click", () => {
    setView({ r0: 0, r1: rows, c0: 0, c1: cols });
    canvas.focus();
  });

  // ---- keyboard: arrows move the cursor (one drawn block), Shift+arrows pan, + / - / 0 zoom --
  canvas.addEventListener("keydown", (ev) => {
    const d = ARROWS[ev.key];
    if (d) {
      ev.preventDefault();
      if (ev.shiftKey && zoomable) {
        const dr = d[0] * Math.max(1, Math.round((view.r1 - view.r0) / 4));
        const dc = d[1] * Math.max(1, Math.round((view.c1 - view.c0) / 4));
        if (!hasCursor) keyCell = anchor();
        keyCell = [clamp(keyCell[0] + dr, 0, rows - 1), clamp(keyCell[1] + dc, 0, cols - 1)];
        pan(dr, dc);
      } else {
        keyCell = [clamp(keyCell[0] + d[0] * fr, 0, rows - 1), clamp(keyCell[1] + d[1] * fc, 0, cols - 1)];
        follow();
      }
      hasCursor = true;
      showCursor = true;
      tipAtCursor();
      return;
    }
    if (!zoomable) return;
    let handled = true;
    if (ev.key === "+" || ev.key === "=") zoomAt(KEY_ZOOM, anchor());
    else if (ev.key === "-" || ev.key === "_") zoomAt(1 / KEY_ZOOM, anchor());
    else if (ev.key === "0") setView({ r0: 0, r1: rows, c0: 0, c1: cols });
    else handled = false;
    if (!handled) return;
    ev.preventDefault();
    if (hasCursor) {
      showCursor = true;
      tipAtCursor();
    }
  });

  load();
  const reload = () => load();
  const names = ["values", "row_labels", "col_labels", "title", "colorscale", "vmin", "vmax", "stats"];
  for (const name of names) model.on(`change:${name}`, reload);
  return () => {
    for (const name of names) model.off(`change:${name}`, reload);
  };
}

export default { render };
