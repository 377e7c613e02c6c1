// What every grid widget (Heatmap, PatchingMap, LogitLens, Dynamics' heatmaps) shares: canvas
// sizing, cell fill with NaN hatching and text contrast, axis labels, the tooltip and its
// `hovered` sync, scrolling the cursor cell into view, and arrow-key movement.
import { colorIndex, INVALID_RGB, type Range } from "./colors";
import { h } from "./dom";
import { visibleToken } from "./tokens";

export type RGB = readonly [number, number, number];
/** [row, col] of a grid cell. */
export type Cell = [number, number];

/** Size `canvas` to cssW x cssH CSS pixels at the device pixel ratio (at most 3, and at most
 * 32000 device pixels wide); returns its context, scaled so that one unit is one CSS pixel. */
export function sizeCanvas(canvas: HTMLCanvasElement, cssW: number, cssH: number): CanvasRenderingContext2D {
  const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
  canvas.width = Math.round(cssW * Math.min(dpr, 32000 / Math.max(cssW, 1)));
  canvas.height = Math.round(cssH * dpr);
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(canvas.width / Math.max(cssW, 1), 0, 0, canvas.height / Math.max(cssH, 1), 0, 0);
  return ctx;
}

/** The colour of `v` in a 256-entry RGB table over `range`; null for NaN / inf. */
export function cellColour(v: number, table: Uint8ClampedArray, range: Range): RGB | null {
  if (!Number.isFinite(v)) return null;
  const k = colorIndex(v, range) * 3;
  return [table[k], table[k + 1], table[k + 2]];
}

/** Black or white, whichever reads on `rgb`. */
export function inkOn(rgb: RGB): string {
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 140 ? "#000" : "#fff";
}

/** A NaN / inf cell: grey with a diagonal stroke, distinct from every colour of the scales. */
export function fillInvalid(ctx: CanvasRenderingContext2D, x: number, y: number, w: number, hh: number): void {
  ctx.fillStyle = `rgb(${INVALID_RGB[0]},${INVALID_RGB[1]},${INVALID_RGB[2]})`;
  ctx.fillRect(x, y, w, hh);
  ctx.strokeStyle = "rgba(255,255,255,0.8)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x, y + hh);
  ctx.lineTo(x + w, y);
  ctx.stroke();
}

export interface CellPaint {
  rows: number;
  cols: number;
  cellW: number;
  cellH: number;
  /** Colour of cell (r, c); null for NaN / inf (hatched grey). */
  colour(r: number, c: number): RGB | null;
  /** Text drawn in cell (r, c) in black or white (leave out for none). */
  text?: (r: number, c: number) => string;
  /** Top of row r in CSS px (default r * cellH; LogitLens draws its last layer on top). */
  top?: (r: number) => number;
}

/** Fill every cell of a grid, hatching NaN / inf and writing each cell's text (if any) in the
 * ink that reads on its colour. Set ctx.font before. */
export function paintCells(ctx: CanvasRenderingContext2D, p: CellPaint): void {
  ctx.textBaseline = "middle";
  ctx.textAlign = "center";
  for (let r = 0; r < p.rows; r++) {
    const y = p.top ? p.top(r) : r * p.cellH;
    for (let c = 0; c < p.cols; c++) {
      const x = c * p.cellW;
      const rgb = p.colour(r, c);
      if (rgb) {
        ctx.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        ctx.fillRect(x, y, p.cellW, p.cellH);
      } else {
        fillInvalid(ctx, x, y, p.cellW, p.cellH);
      }
      if (p.text) {
        ctx.fillStyle = inkOn(rgb ?? INVALID_RGB);
        ctx.fillText(p.text(r, c), x + p.cellW / 2, y + p.cellH / 2 + 0.5);
      }
    }
  }
}

/** The monospace font of the theme at `px` pixels (for text drawn on canvas). */
export function codeFont(node: HTMLElement, px: number): string {
  const family = getComputedStyle(node).getPropertyValue("--jp-code-font-family").trim() || "monospace";
  return `${px}px ${family}`;
}

/** One label per cell along an axis, each `px` tall (rows) or wide (columns), its text made
 * visible (visibleToken). */
export function axisLabels(box: HTMLElement, labels: readonly string[], px: number, axis: "row" | "col"): void {
  box.replaceChildren(...labels.map((label) => {
    const d = h("div", undefined, visibleToken(label));
    d.style[axis === "row" ? "height" : "width"] = `${px}px`;
    d.style.lineHeight = `${px}px`;
    return d;
  }));
}

/** Row labels of a grid whose rows are `cellH` px (>= 3): every `ceil(10 / cellH)`-th row when
 * rows are thin, so labels stay legible; `flip` lists the last row first (drawn on top). */
export function gridRowLabels(box: HTMLElement, labels: readonly string[], rows: number, cellH: number,
                              flip = false): void {
  const step = Math.ceil(10 / cellH);
  const out: HTMLElement[] = [];
  for (let k = 0; k < rows; k += step) {
    const r = flip ? rows - 1 - k : k;
    const d = h("div", undefined, visibleToken(labels[r] ?? String(r)));
    d.style.height = `${cellH * Math.min(step, rows - k)}px`;
    d.style.lineHeight = `${cellH}px`;
    d.style.fontSize = `${Math.min(11, Math.max(9, cellH - 1))}px`;
    d.style.overflow = "visible";
    out.push(d);
  }
  box.replaceChildren(...out);
}

/** A tooltip inside `root` (position: relative): text only, never markup. */
export class Tooltip {
  readonly el: HTMLDivElement;

  /** `status`: read out by screen readers as it changes (keyboard cursors). */
  constructor(private readonly root: HTMLElement, status = true) {
    this.el = h("div", "ms-tooltip");
    if (status) this.el.setAttribute("role", "status");
  }

  /** Show `text` 14 px right of and below the client point (x, y), kept inside the root. */
  show(text: string, clientX: number, clientY: number): void {
    const rect = this.root.getBoundingClientRect();
    this.el.textContent = text;
    this.el.style.display = "block";
    const maxLeft = Math.max(0, this.root.clientWidth - this.el.offsetWidth - 4);
    this.el.style.left = `${Math.min(clientX - rect.left + 14, maxLeft)}px`;
    this.el.style.top = `${clientY - rect.top + 14}px`;
  }

  hide(): void {
    this.el.style.display = "none";
  }
}

/** What syncHovered needs of a model (any widget with a `hovered` trait). */
export interface HoverModel {
  get(key: "hovered"): number[];
  set(key: "hovered", value: number[]): void;
  save_changes(): void;
}

/** Tell Python which cell is under the pointer or keyboard cursor (only when it changed). */
export function syncHovered(model: HoverModel, [r, c]: Cell): void {
  const hv = model.get("hovered");
  if (hv && hv[0] === r && hv[1] === c) return;
  model.set("hovered", [r, c]);
  model.save_changes();
}

/** Scroll `scroll` horizontally the least needed to show x0 .. x0 + w. */
export function scrollIntoView(scroll: HTMLElement, x0: number, w: number): void {
  if (x0 < scroll.scrollLeft) scroll.scrollLeft = x0;
  else if (x0 + w > scroll.scrollLeft + scroll.clientWidth) scroll.scrollLeft = x0 + w - scroll.clientWidth;
}

export const ARROWS: Readonly<Record<string, Cell>> = {
  ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
};

/** The [row, col] step of a grid key: arrows, and (`jumps`) Home / End to the row's ends and
 * Page Up / Down to the column's; `flipRows` for grids drawn last row on top. Null otherwise. */
export function keyStep(ev: KeyboardEvent, rows: number, cols: number, jumps = true, flipRows = false): Cell | null {
  const extra: Record<string, Cell> = jumps ? { Home: [0, -cols], End: [0, cols], PageUp: [-rows, 0], PageDown: [rows, 0] } : {};
  const d = ARROWS[ev.key] ?? extra[ev.key];
  if (!d) return null;
  return flipRows ? [-d[0], d[1]] : [d[0], d[1]];
}

/** `cell` moved by `d`, kept inside rows x cols. */
export function moveCell(cell: Cell, d: Cell, rows: number, cols: number): Cell {
  return [Math.max(0, Math.min(rows - 1, cell[0] + d[0])), Math.max(0, Math.min(cols - 1, cell[1] + d[1]))];
}

/** The cell of a rows x cols grid drawn over `canvas` under a mouse event, or null. */
export function cellAtEvent(canvas: HTMLElement, ev: MouseEvent, rows: number, cols: number): Cell | null {
  const rect = canvas.getBoundingClientRect();
  const c = Math.floor(((ev.clientX - rect.left) / rect.width) * cols);
  const r = Math.floor(((ev.clientY - rect.top) / rect.height) * rows);
  if (c < 0 || r < 0 || c >= cols || r >= rows) return null;
  return [r, c];
}

/** Place an absolutely positioned box over one cell (optionally showing it). */
export function placeBox(box: HTMLElement, x: number, y: number, w: number, hh: number, show: boolean): void {
  box.style.left = `${x}px`;
  box.style.top = `${y}px`;
  box.style.width = `${w}px`;
  box.style.height = `${hh}px`;
  if (show) box.style.display = "block";
}
