// What a scatter plot on canvas shares (ProjectionScatter; Selectivity's effect scatter can move
// onto it): a category palette, padded data ranges, the plot box and the data <-> pixel mapping,
// the frame with its range ticks and axis names, and a uniform grid of buckets for hit-testing
// thousands of points (a mousemove looks at the few buckets around the pointer, not every point).
import { formatValue, valueRange } from "./colors";

/** One colour per class (Tableau 10), cycling past ten classes. */
export const CATEGORY_PALETTE: readonly string[] = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2",
  "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"];

/** Class c's colour ("#rrggbb"); a negative class is grey. */
export function categoryColor(c: number): string {
  return c >= 0 ? CATEGORY_PALETTE[c % CATEGORY_PALETTE.length] : "#808080";
}

/** Text colour of an element (axes and labels drawn on canvas follow the light / dark theme). */
export function textColor(node: HTMLElement): string {
  return getComputedStyle(node).color || "#333";
}

/** The plot box (CSS px inside the canvas) and the data ranges it shows. */
export interface Plot {
  left: number;
  top: number;
  width: number;
  height: number;
  xlo: number;
  xhi: number;
  ylo: number;
  yhi: number;
}

/** [lo, hi] of the finite values (colors.ts valueRange: [v, v + 1] for one value, [0, 1] for
 * none), widened by `pad` of the span at each end. */
export function paddedRange(values: Float32Array, pad = 0.04): [number, number] {
  const { lo, hi } = valueRange(values, "viridis");
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

/** Data (x, y) to canvas CSS px (y grows upwards). */
export function toPixel(p: Plot, x: number, y: number): [number, number] {
  return [p.left + ((x - p.xlo) / (p.xhi - p.xlo)) * p.width, p.top + ((p.yhi - y) / (p.yhi - p.ylo)) * p.height];
}

/** Every point's pixel position, as two Float32Arrays. */
export function pixels(p: Plot, xs: ArrayLike<number>, ys: ArrayLike<number>): { px: Float32Array; py: Float32Array } {
  const px = new Float32Array(xs.length);
  const py = new Float32Array(xs.length);
  for (let i = 0; i < xs.length; i++) [px[i], py[i]] = toPixel(p, xs[i], ys[i]);
  return { px, py };
}

/** The pointer's position in CSS px relative to `canvas`. */
export function eventPoint(canvas: HTMLElement, ev: MouseEvent): [number, number] {
  const r = canvas.getBoundingClientRect();
  return [ev.clientX - r.left, ev.clientY - r.top];
}

/** The frame, a dashed line at 0 on each axis in range, the ranges' ends as ticks and the axes'
 * names (x below, y rotated at the left), in `fg`. */
export function drawFrame(ctx: CanvasRenderingContext2D, p: Plot, fg: string, xName: string, yName: string): void {
  ctx.save();
  ctx.strokeStyle = fg;
  ctx.globalAlpha = 0.6;
  ctx.lineWidth = 1;
  ctx.strokeRect(p.left - 0.5, p.top - 0.5, p.width + 1, p.height + 1);
  ctx.setLineDash([3, 3]);
  ctx.beginPath();
  if (p.ylo < 0 && p.yhi > 0) {
    const [, y0] = toPixel(p, 0, 0);
    ctx.moveTo(p.left, y0);
    ctx.lineTo(p.left + p.width, y0);
  }
  if (p.xlo < 0 && p.xhi > 0) {
    const [x0] = toPixel(p, 0, 0);
    ctx.moveTo(x0, p.top);
    ctx.lineTo(x0, p.top + p.height);
  }
  ctx.stroke();
  ctx.restore();
  ctx.fillStyle = fg;
  ctx.font = "10px sans-serif";
  const base = p.top + p.height;
  ctx.textAlign = "left";
  ctx.fillText(formatValue(p.xlo), p.left, base + 13);
  ctx.textAlign = "right";
  ctx.fillText(formatValue(p.xhi), p.left + p.width, base + 13);
  ctx.fillText(formatValue(p.yhi), p.left - 4, p.top + 8);
  ctx.fillText(formatValue(p.ylo), p.left - 4, base);
  ctx.textAlign = "center";
  ctx.fillText(xName, p.left + p.width / 2, base + 26);
  ctx.save();
  ctx.translate(p.left - 12, p.top + p.height / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(yName, 0, 0);
  ctx.restore();
}

/** Points bucketed on a uniform grid of `cell` px squares: nearest-point and rectangle queries
 * look only at the buckets they overlap. */
export class PointGrid {
  private readonly cols: number;
  private readonly rows: number;
  private readonly start: Int32Array; // bucket b's points are order[start[b]:start[b + 1]]
  private readonly order: Int32Array;

  constructor(readonly px: Float32Array, readonly py: Float32Array, width: number, height: number,
              private readonly cell = 8) {
    this.cols = Math.max(1, Math.ceil(width / cell));
    this.rows = Math.max(1, Math.ceil(height / cell));
    const counts = new Int32Array(this.cols * this.rows + 1);
    const bucket = new Int32Array(px.length);
    for (let i = 0; i < px.length; i++) {
      bucket[i] = this.bucketOf(px[i], py[i]);
      counts[bucket[i] + 1]++;
    }
    for (let b = 0; b < this.cols * this.rows; b++) counts[b + 1] += counts[b];
    this.start = counts;
    const fill = counts.slice(0, -1);
    this.order = new Int32Array(px.length);
    for (let i = 0; i < px.length; i++) this.order[fill[bucket[i]]++] = i;
  }

  private col(x: number): number {
    return Math.max(0, Math.min(this.cols - 1, Math.floor(x / this.cell)));
  }

  private row(y: number): number {
    return Math.max(0, Math.min(this.rows - 1, Math.floor(y / this.cell)));
  }

  private bucketOf(x: number, y: number): number {
    return this.row(y) * this.cols + this.col(x);
  }

  /** Call `f(i)` for every point in the buckets overlapping [x0, x1] x [y0, y1]. */
  private visit(x0: number, y0: number, x1: number, y1: number, f: (i: number) => void): void {
    for (let r = this.row(y0); r <= this.row(y1); r++) {
      for (let c = this.col(x0); c <= this.col(x1); c++) {
        const b = r * this.cols + c;
        for (let k = this.start[b]; k < this.start[b + 1]; k++) f(this.order[k]);
      }
    }
  }

  /** The point nearest (x, y) within `radius` px (the lowest index on a tie), or -1. */
  nearest(x: number, y: number, radius = 6): number {
    let best = -1;
    let bestD = radius * radius;
    this.visit(x - radius, y - radius, x + radius, y + radius, (i) => {
      const d = (this.px[i] - x) ** 2 + (this.py[i] - y) ** 2;
      if (d < bestD || (d === bestD && (best < 0 || i < best))) {
        bestD = d;
        best = i;
      }
    });
    return best;
  }

  /** Every point inside the rectangle with corners (x0, y0), (x1, y1), in index order. */
  inRect(x0: number, y0: number, x1: number, y1: number): number[] {
    const [ax, bx] = x0 <= x1 ? [x0, x1] : [x1, x0];
    const [ay, by] = y0 <= y1 ? [y0, y1] : [y1, y0];
    const out: number[] = [];
    this.visit(ax, ay, bx, by, (i) => {
      if (this.px[i] >= ax && this.px[i] <= bx && this.py[i] >= ay && this.py[i] <= by) out.push(i);
    });
    return out.sort((a, b) => a - b);
  }
}

/** Arrow key -> unit pixel direction (y down). */
export const SCATTER_ARROWS: Readonly<Record<string, readonly [number, number]>> = {
  ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1],
};

/** The point nearest point `from` in direction (dx, dy) from it: among the points within 45
 * degrees of that direction (distance off the axis counting double), else among any point ahead
 * of it that way, so repeated keys always reach the last point; -1 when none is ahead. */
export function nearestInDirection(px: Float32Array, py: Float32Array, from: number, dx: number, dy: number): number {
  let best = -1;
  let bestScore = Infinity;
  for (let i = 0; i < px.length; i++) {
    if (i === from) continue;
    const ex = px[i] - px[from];
    const ey = py[i] - py[from];
    const along = ex * dx + ey * dy;
    const across = Math.abs(ex * dy - ey * dx);
    if (along <= 0) continue;
    const score = along + 2 * across + (across > along ? 1e9 : 0);
    if (score < bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return best;
}
