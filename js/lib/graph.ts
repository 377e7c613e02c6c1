// What a layered graph on canvas needs (CircuitGraph; attribution graphs over transcoder features
// use the same widget): node positions from rows (layers, row 0 at the bottom) and columns (token
// positions, head indices), nodes sharing a (row, column) cell spread out inside it; each node's
// incident edges (CSR, so a hover highlights them without a scan of every edge); and the edges
// drawn as vertical Bézier curves, width and colour by signed weight, one canvas path per colour
// (thousands of edges in a few dozen strokes), strongest on top.
import { colorIndex, type Range } from "./colors";

export interface GraphLayout {
  left: number;
  top: number;
  width: number;
  height: number;
  rowH: number;
  cellW: number;
  cmin: number;
  cmax: number;
  radius: number;
  px: Float32Array;
  py: Float32Array;
}

export const GRAPH_PAD = { left: 70, right: 14, top: 14, bottom: 46 };

/** Positions of every node: rows of `rowH` px (row 0 at the bottom), integer columns `cellW` px
 * wide over [cmin, cmax]; nodes in the same cell spread along it (and staggered up and down when
 * they would overlap). */
export function layoutGraph(layer: ArrayLike<number>, column: ArrayLike<number>, nRows: number): GraphLayout {
  const n = layer.length;
  let cmin = Infinity;
  let cmax = -Infinity;
  for (let i = 0; i < n; i++) {
    cmin = Math.min(cmin, column[i]);
    cmax = Math.max(cmax, column[i]);
  }
  if (!Number.isFinite(cmin)) [cmin, cmax] = [0, 0];
  const nCols = Math.floor(cmax - cmin) + 1;
  const width = Math.max(480, Math.min(1000, nCols * 64));
  const cellW = width / nCols;
  const rowH = Math.max(16, Math.min(44, Math.floor(640 / Math.max(1, nRows))));
  const height = rowH * Math.max(1, nRows);
  const radius = Math.max(2.5, Math.min(6, Math.min(cellW, rowH) / 4));
  const cells = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const key = `${layer[i]}:${column[i]}`;
    const list = cells.get(key);
    if (list) list.push(i);
    else cells.set(key, [i]);
  }
  const L = { left: GRAPH_PAD.left, top: GRAPH_PAD.top, width, height, rowH, cellW, cmin, cmax, radius,
    px: new Float32Array(n), py: new Float32Array(n) };
  for (const members of cells.values()) {
    const k = members.length;
    const step = Math.min((cellW * 0.8) / k, 3 * radius);
    members.forEach((i, j) => {
      const x = L.left + (column[i] - cmin + 0.5) * cellW + (j - (k - 1) / 2) * step;
      const stagger = step < 2.2 * radius ? ((j % 3) - 1) * rowH * 0.25 : 0;
      L.px[i] = x;
      L.py[i] = L.top + (nRows - 1 - layer[i] + 0.5) * rowH + stagger;
    });
  }
  return L;
}

/** The edges incident to each node: node i's are edges[start[i]:start[i + 1]]. */
export class Incidence {
  readonly start: Int32Array;
  readonly edges: Int32Array;

  constructor(n: number, src: ArrayLike<number>, dst: ArrayLike<number>) {
    const counts = new Int32Array(n + 1);
    for (let e = 0; e < src.length; e++) {
      counts[src[e] + 1]++;
      if (dst[e] !== src[e]) counts[dst[e] + 1]++;
    }
    for (let i = 0; i < n; i++) counts[i + 1] += counts[i];
    this.start = counts;
    this.edges = new Int32Array(counts[n]);
    const fill = counts.slice(0, -1);
    for (let e = 0; e < src.length; e++) {
      this.edges[fill[src[e]]++] = e;
      if (dst[e] !== src[e]) this.edges[fill[dst[e]]++] = e;
    }
  }

  of(i: number): Int32Array {
    return this.edges.subarray(this.start[i], this.start[i + 1]);
  }
}

/** Add edge e's curve (from its source up or down to its target) to the current path. */
export function edgeCurve(ctx: CanvasRenderingContext2D, L: GraphLayout, s: number, d: number): void {
  const x1 = L.px[s];
  const y1 = L.py[s];
  const x2 = L.px[d];
  const y2 = L.py[d];
  const my = (y1 + y2) / 2;
  ctx.moveTo(x1, y1);
  if (Math.abs(y2 - y1) < 1) ctx.quadraticCurveTo((x1 + x2) / 2, y1 - L.rowH * 0.6, x2, y2);
  else ctx.bezierCurveTo(x1, my, x2, my, x2, y2);
}

export interface EdgeStyle {
  table: Uint8ClampedArray; // the diverging colour table
  range: Range; // symmetric around 0
  maxAbs: number;
}

/** Line width of an edge of weight w: 0.4 px (weakest) to 4 px (strongest). */
export function edgeWidth(w: number, maxAbs: number): number {
  return 0.4 + 3.6 * Math.min(1, Math.abs(w) / (maxAbs || 1));
}

/** Draw the edges `shown` (indices) with width and colour by weight, one path per colour index,
 * the weakest first; `boost` widens every edge (a highlighted node's edges). */
export function drawEdges(ctx: CanvasRenderingContext2D, L: GraphLayout, src: ArrayLike<number>,
                          dst: ArrayLike<number>, weight: ArrayLike<number>, shown: ArrayLike<number>,
                          style: EdgeStyle, boost = 0): void {
  const buckets: number[][] = Array.from({ length: 256 }, () => []);
  for (let k = 0; k < shown.length; k++) buckets[colorIndex(weight[shown[k]], style.range)].push(shown[k]);
  const order = Array.from({ length: 256 }, (_, k) => k).sort((a, b) => Math.abs(a - 127.5) - Math.abs(b - 127.5));
  ctx.save();
  ctx.lineCap = "round";
  for (const k of order) {
    const list = buckets[k];
    if (!list.length) continue;
    const w = weight[list[0]];
    const strength = Math.min(1, Math.abs(w) / (style.maxAbs || 1));
    ctx.strokeStyle = `rgb(${style.table[k * 3]},${style.table[k * 3 + 1]},${style.table[k * 3 + 2]})`;
    ctx.globalAlpha = boost ? 1 : 0.3 + 0.7 * strength;
    ctx.lineWidth = edgeWidth(w, style.maxAbs) + boost;
    ctx.beginPath();
    for (const e of list) edgeCurve(ctx, L, src[e], dst[e]);
    ctx.stroke();
  }
  ctx.restore();
}

/** The bounding box (CSS px) of nodes `members`, padded by `pad`. */
export function boxOf(L: GraphLayout, members: readonly number[], pad: number): [number, number, number, number] {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const i of members) {
    x0 = Math.min(x0, L.px[i]);
    x1 = Math.max(x1, L.px[i]);
    y0 = Math.min(y0, L.py[i]);
    y1 = Math.max(y1, L.py[i]);
  }
  return [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad];
}

/** `text` cut (with "…") to fit `maxW` px in the context's current font. */
export function fitText(ctx: CanvasRenderingContext2D, text: string, maxW: number): string {
  if (ctx.measureText(text).width <= maxW) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(`${text.slice(0, mid)}…`).width <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return `${text.slice(0, lo)}…`;
}
