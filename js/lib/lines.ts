// Line charts on canvas (curves against a shared x such as steps or tokens), on scatter.ts's
// plot box and frame: the data range of several series, the polylines (NaN breaks a line), and
// the point nearest the pointer for hover.
import { toPixel, type Plot } from "./scatter";

/** One line: x and y values (same length) and its colour. */
export interface Series {
  xs: ArrayLike<number>;
  ys: ArrayLike<number>;
  colour: string;
}

/** [lo, hi] over every series' finite values (padded by `pad` of the span; [0, 1] for none;
 * a single value v gives [v - 0.5, v + 0.5]). */
export function seriesRange(values: ArrayLike<number>[], pad = 0.05): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const vs of values) {
    for (let i = 0; i < vs.length; i++) {
      const v = vs[i];
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo > hi) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

/** Each series as a polyline inside the plot box (a single point drawn as a dot). */
export function drawLines(ctx: CanvasRenderingContext2D, p: Plot, series: readonly Series[], width = 1.5): void {
  ctx.save();
  ctx.beginPath();
  ctx.rect(p.left, p.top, p.width, p.height);
  ctx.clip();
  ctx.lineWidth = width;
  ctx.lineJoin = "round";
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.fillStyle = s.colour;
    ctx.beginPath();
    let open = false;
    let count = 0;
    for (let i = 0; i < s.xs.length; i++) {
      if (!Number.isFinite(s.ys[i]) || !Number.isFinite(s.xs[i])) {
        open = false;
        continue;
      }
      const [x, y] = toPixel(p, s.xs[i], s.ys[i]);
      if (open) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      open = true;
      count++;
    }
    ctx.stroke();
    if (count === 1) {
      const i = Array.from({ length: s.xs.length }, (_, j) => j).find((j) => Number.isFinite(s.ys[j]))!;
      const [x, y] = toPixel(p, s.xs[i], s.ys[i]);
      ctx.fillRect(x - 2, y - 2, 4, 4);
    }
  }
  ctx.restore();
}

/** The point nearest the pointer (CSS px `px`, `py`) over every series: [series, index], or
 * null when none lies within `maxDist` px. */
export function nearestPoint(p: Plot, series: readonly Series[], px: number, py: number,
                             maxDist = 24): [number, number] | null {
  let best: [number, number] | null = null;
  let bestD = maxDist * maxDist;
  series.forEach((s, k) => {
    for (let i = 0; i < s.xs.length; i++) {
      if (!Number.isFinite(s.ys[i])) continue;
      const [x, y] = toPixel(p, s.xs[i], s.ys[i]);
      const d = (x - px) ** 2 + (y - py) ** 2;
      if (d <= bestD) {
        bestD = d;
        best = [k, i];
      }
    }
  });
  return best;
}
