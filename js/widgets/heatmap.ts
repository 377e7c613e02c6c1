// Heatmap widget: a labelled 2-D array on canvas, pooled to the canvas resolution, with a
// colour bar and a hover tooltip. Python side: src/mechscope/widgets/heatmap.py.
import { decode, type EncodedArray } from "../lib/codec";
import { colorIndex, colorTable, formatValue, INVALID_RGB, valueRange, type ScaleName } from "../lib/colors";
import { ensureStyle, h } from "../lib/dom";

interface HeatmapModel {
  get(name: "values"): EncodedArray;
  get(name: "row_labels" | "col_labels"): string[];
  get(name: "title" | "value_label"): string;
  get(name: "colorscale"): ScaleName;
  get(name: "vmin" | "vmax"): number | null;
  get(name: "pooled" | "hovered"): number[];
  set(name: "hovered", value: number[]): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string, cb?: () => void): void;
}

const MAX_CANVAS = 900; // pixels per side before cells are pooled into pixels
const MIN_LABEL_CELL = 11; // show per-row/column text labels only when cells are this big

/** Mean of the cells each pixel covers (NaN-aware), so big arrays are pooled, not subsampled. */
export function poolToPixels(values: Float32Array, rows: number, cols: number, pr: number, pc: number): Float32Array {
  if (pr === rows && pc === cols) return values;
  const out = new Float32Array(pr * pc);
  for (let y = 0; y < pr; y++) {
    const r0 = Math.floor((y * rows) / pr);
    const r1 = Math.max(r0 + 1, Math.floor(((y + 1) * rows) / pr));
    for (let x = 0; x < pc; x++) {
      const c0 = Math.floor((x * cols) / pc);
      const c1 = Math.max(c0 + 1, Math.floor(((x + 1) * cols) / pc));
      let sum = 0;
      let n = 0;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const v = values[r * cols + c];
          if (Number.isFinite(v)) {
            sum += v;
            n++;
          }
        }
      }
      out[y * pc + x] = n ? sum / n : NaN;
    }
  }
  return out;
}

function render({ model, el }: { model: HeatmapModel; el: HTMLElement }): () => void {
  ensureStyle();
  const root = h("div", "ms-root ms-heatmap");
  const title = h("div", "ms-title");
  const scroll = h("div", "ms-scroll");
  const grid = h("div", "ms-grid");
  const rowLabels = h("div", "ms-rowlabels");
  const canvas = h("canvas", "ms-canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  const colorbar = h("div", "ms-colorbar");
  const colLabels = h("div", "ms-collabels");
  const tooltip = h("div", "ms-tooltip");
  const note = h("div", "ms-note");
  grid.append(rowLabels, canvas, colorbar, h("div"), colLabels);
  scroll.append(grid);
  root.append(title, scroll, note, tooltip);
  el.replaceChildren(root);

  let rows = 0;
  let cols = 0;
  let cell = 1;
  let pixRows = 0;
  let pixCols = 0;
  let data: Float32Array = new Float32Array(0);
  let keyCell: [number, number] = [0, 0];

  function draw(): void {
    const decoded = decode(model.get("values"));
    [rows, cols] = decoded.shape;
    data = decoded.values;
    const scale = model.get("colorscale");
    const range = valueRange(data, scale, model.get("vmin"), model.get("vmax"));
    const table = colorTable(scale);
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    title.textContent = model.get("title");

    pixRows = Math.min(rows, MAX_CANVAS);
    pixCols = Math.min(cols, MAX_CANVAS);
    const pooled = poolToPixels(data, rows, cols, pixRows, pixCols);
    const image = new ImageData(pixCols, pixRows);
    for (let i = 0; i < pooled.length; i++) {
      const v = pooled[i];
      const rgb = Number.isFinite(v) ? null : INVALID_RGB;
      const k = rgb ? 0 : colorIndex(v, range) * 3;
      image.data[i * 4] = rgb ? rgb[0] : table[k];
      image.data[i * 4 + 1] = rgb ? rgb[1] : table[k + 1];
      image.data[i * 4 + 2] = rgb ? rgb[2] : table[k + 2];
      image.data[i * 4 + 3] = 255;
    }
    // Cell size on screen: big cells for small maps, one pixel per pooled cell for big ones.
    cell = Math.max(1, Math.min(28, Math.floor(MAX_CANVAS / Math.max(pixRows, pixCols))));
    const cellW = Math.max(cell, Math.min(40, Math.floor(600 / pixCols)));
    canvas.width = pixCols * cellW;
    canvas.height = pixRows * cell;
    const off = document.createElement("canvas");
    off.width = pixCols;
    off.height = pixRows;
    off.getContext("2d")!.putImageData(image, 0, 0);
    const ctx = canvas.getContext("2d")!;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
    canvas.setAttribute("aria-label", `${model.get("title")}: ${rows} by ${cols} heatmap of ${model.get("value_label")}`);

    rowLabels.replaceChildren();
    if (cell >= MIN_LABEL_CELL && pixRows === rows) {
      for (const label of rl) {
        const d = h("div", undefined, label);
        d.style.height = `${cell}px`;
        d.style.lineHeight = `${cell}px`;
        rowLabels.append(d);
      }
    }
    colLabels.replaceChildren();
    if (cellW >= MIN_LABEL_CELL && pixCols === cols) {
      for (const label of cl) {
        const d = h("div", undefined, label);
        d.style.width = `${cellW}px`;
        d.style.lineHeight = `${cellW}px`;
        colLabels.append(d);
      }
    }
    colorbar.replaceChildren();
    const bar = document.createElement("canvas");
    bar.width = 12;
    bar.height = Math.max(60, Math.min(canvas.height, 200));
    const bctx = bar.getContext("2d")!;
    for (let y = 0; y < bar.height; y++) {
      const k = Math.round((1 - y / (bar.height - 1)) * 255) * 3;
      bctx.fillStyle = `rgb(${table[k]},${table[k + 1]},${table[k + 2]})`;
      bctx.fillRect(0, y, 12, 1);
    }
    colorbar.append(h("div", undefined, formatValue(range.hi)), bar, h("div", undefined, formatValue(range.lo)));
    const pooledBy = model.get("pooled");
    const notes: string[] = [];
    if (pooledBy && (pooledBy[0] > 1 || pooledBy[1] > 1)) notes.push(`data mean-pooled ${pooledBy[0]}x${pooledBy[1]} in Python`);
    if (pixRows < rows || pixCols < cols) notes.push(`drawn mean-pooled to ${pixRows}x${pixCols} pixels`);
    note.textContent = notes.join("; ");
    root.dataset.cellsDrawn = String(pixRows * pixCols);
    el.dataset.msReady = "1";
  }

  function cellAt(px: number, py: number): [number, number] | null {
    const x = Math.floor((px / canvas.clientWidth) * cols);
    const y = Math.floor((py / canvas.clientHeight) * rows);
    if (x < 0 || y < 0 || x >= cols || y >= rows) return null;
    return [y, x];
  }

  function showTip(r: number, c: number, left: number, top: number): void {
    const rl = model.get("row_labels");
    const cl = model.get("col_labels");
    const v = data[r * cols + c];
    tooltip.textContent = `${rl[r] ?? r}  |  ${JSON.stringify(cl[c] ?? String(c))}\n${model.get("value_label")}: ${formatValue(v)}`;
    tooltip.style.display = "block";
    tooltip.style.left = `${left + 14}px`;
    tooltip.style.top = `${top + 14}px`;
    const hv = model.get("hovered");
    if (!hv || hv[0] !== r || hv[1] !== c) {
      model.set("hovered", [r, c]);
      model.save_changes();
    }
  }

  canvas.addEventListener("mousemove", (ev) => {
    const rect = canvas.getBoundingClientRect();
    const hit = cellAt(ev.clientX - rect.left, ev.clientY - rect.top);
    if (!hit) return;
    const rootRect = root.getBoundingClientRect();
    showTip(hit[0], hit[1], ev.clientX - rootRect.left, ev.clientY - rootRect.top);
  });
  canvas.addEventListener("mouseleave", () => {
    tooltip.style.display = "none";
  });
  // Keyboard: arrows move a cursor cell and show its tooltip.
  canvas.addEventListener("keydown", (ev) => {
    const moves: Record<string, [number, number]> = {
      ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
    };
    const d = moves[ev.key];
    if (!d) return;
    ev.preventDefault();
    keyCell = [Math.max(0, Math.min(rows - 1, keyCell[0] + d[0])), Math.max(0, Math.min(cols - 1, keyCell[1] + d[1]))];
    const x = ((keyCell[1] + 0.5) / cols) * canvas.clientWidth + canvas.offsetLeft;
    const y = ((keyCell[0] + 0.5) / rows) * canvas.clientHeight + canvas.offsetTop;
    showTip(keyCell[0], keyCell[1], x, y);
  });

  draw();
  const redraw = () => draw();
  for (const name of ["values", "row_labels", "col_labels", "title", "colorscale", "vmin", "vmax"]) {
    model.on(`change:${name}`, redraw);
  }
  return () => {
    for (const name of ["values", "row_labels", "col_labels", "title", "colorscale", "vmin", "vmax"]) {
      model.off(`change:${name}`, redraw);
    }
  };
}

export default { render };
