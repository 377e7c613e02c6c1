// Colour scales as 256-entry RGB tables, and a distinct colour for NaN/inf.

export type ScaleName = "viridis" | "magma" | "diverging";

const STOPS: Record<ScaleName, [number, number, number][]> = {
  viridis: [
    [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
  ],
  magma: [
    [0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
    [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191],
  ],
  // blue - white - red, centred on 0
  diverging: [
    [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
    [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43],
    [103, 0, 31],
  ],
};

/** RGB used for NaN and infinite values: a mid grey no scale uses. */
export const INVALID_RGB: [number, number, number] = [128, 128, 128];

export function colorTable(name: ScaleName): Uint8ClampedArray {
  const stops = STOPS[name] ?? STOPS.viridis;
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const f = x - k;
    for (let c = 0; c < 3; c++) table[i * 3 + c] = stops[k][c] * (1 - f) + stops[k + 1][c] * f;
  }
  return table;
}

export interface Range {
  lo: number;
  hi: number;
}

/** Colour range: explicit bounds win; diverging scales are symmetric around 0. */
export function valueRange(values: Float32Array, scale: ScaleName, vmin?: number | null, vmax?: number | null): Range {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (scale === "diverging") {
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    lo = -m;
    hi = m;
  }
  if (vmin !== null && vmin !== undefined) lo = vmin;
  if (vmax !== null && vmax !== undefined) hi = vmax;
  if (hi === lo) hi = lo + 1;
  return { lo, hi };
}

export function colorIndex(v: number, r: Range): number {
  const t = (v - r.lo) / (r.hi - r.lo);
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+inf" : "-inf";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
  return v.toPrecision(4);
}

/** A 12 px wide vertical colour bar of `table` (colorTable's 256 RGB entries), high at the top,
 * `height` px tall (clamped to 60..200). */
export function colorBarCanvas(table: Uint8ClampedArray, height: number): HTMLCanvasElement {
  const bar = document.createElement("canvas");
  bar.width = 12;
  bar.height = Math.max(60, Math.min(height, 200));
  const ctx = bar.getContext("2d")!;
  for (let y = 0; y < bar.height; y++) {
    const k = Math.round((1 - y / (bar.height - 1)) * 255) * 3;
    ctx.fillStyle = `rgb(${table[k]},${table[k + 1]},${table[k + 2]})`;
    ctx.fillRect(0, y, 12, 1);
  }
  return bar;
}
