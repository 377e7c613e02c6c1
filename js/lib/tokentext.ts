// Text drawn token by token, each token's background coloured by a value: one <span class="ms-tok">
// per token (its text made visible by visibleToken and set as textContent, bidi-isolated by the
// shared CSS), NaN / inf hatched grey, the value in data-act; a colour scale chosen from the
// values (diverging around 0 when they have both signs, sequential otherwise), a horizontal
// colour bar, and one delegated hover listener for a readout. Used by TokenText and by
// Selectivity's top examples.
import { colorIndex, colorTable, type Range } from "./colors";
import { h } from "./dom";
import { inkOn, type RGB } from "./grid";
import { visibleToken } from "./tokens";

/** How a value becomes a token's background (and, optionally, its ink); null for NaN / inf. */
export interface TokenPaint {
  background(v: number): string | null;
  ink?(v: number): string;
}

/** CSS for token spans under `scope` (a widget's root class): monospace, wrapping, NaN hatched. */
export function tokenCss(scope: string): string {
  return `
${scope} .ms-tok { white-space: pre-wrap; font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  border-radius: 2px; padding: 1px 0; }
${scope} .ms-tok-nan { background: repeating-linear-gradient(45deg, rgba(128,128,128,0.6) 0 3px, transparent 3px 6px); }
`;
}

/** Colour an existing token span for `value` (background, ink, NaN hatching, data-act). */
export function paintToken(span: HTMLElement, value: number, paint: TokenPaint): void {
  const bg = Number.isFinite(value) ? paint.background(value) : null;
  span.classList.toggle("ms-tok-nan", bg === null);
  span.style.background = bg ?? "";
  span.style.color = bg !== null && paint.ink ? paint.ink(value) : "";
  span.dataset.act = String(value);
}

/** One token: its visible text as textContent, coloured for `value`. */
export function tokenSpan(token: string, value: number, paint: TokenPaint): HTMLSpanElement {
  const span = h("span", "ms-tok", visibleToken(token));
  paintToken(span, value, paint);
  return span;
}

/** The largest finite |values[k]| over the k that `keep` accepts (1 when there is none). */
export function peakAbs(values: ArrayLike<number>, keep: (k: number) => boolean = () => true): number {
  let peak = 0;
  for (let k = 0; k < values.length; k++) {
    const a = values[k];
    if (Number.isFinite(a) && keep(k)) peak = Math.max(peak, Math.abs(a));
  }
  return peak || 1;
}

/** Orange for positive, blue for negative, opacity |v| / peak (at most 0.85): Selectivity's look. */
export function alphaPaint(peak: number): TokenPaint {
  return {
    background(v: number): string {
      const alpha = Math.min(1, Math.abs(v) / peak) * 0.85;
      return v >= 0 ? `rgba(245,133,24,${alpha.toFixed(3)})` : `rgba(76,120,168,${alpha.toFixed(3)})`;
    },
  };
}

/** A colour scale over some values: its kind, its 256-entry RGB table and its range. */
export interface TokenScale {
  kind: "diverging" | "sequential";
  table: Uint8ClampedArray;
  range: Range;
}

/** Half of the diverging table stretched over 256 entries: white to red (`upper`) or blue to white. */
function halfTable(upper: boolean): Uint8ClampedArray {
  const div = colorTable("diverging");
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const k = upper ? 128 + Math.round((i * 127) / 255) : Math.round((i * 127) / 255);
    for (let c = 0; c < 3; c++) out[i * 3 + c] = div[k * 3 + c];
  }
  return out;
}

/**
 * The scale for `values` (finite ones only): both signs -> diverging blue-white-red over
 * [-m, m], m the largest |v|; otherwise sequential over [min, max], white to red when no value
 * is negative, blue to white when none is positive. A single value v spans [v, v + 1].
 */
export function autoScale(values: ArrayLike<number>): TokenScale {
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (lo < 0 && hi > 0) {
    const m = Math.max(-lo, hi);
    return { kind: "diverging", table: colorTable("diverging"), range: { lo: -m, hi: m } };
  }
  if (hi === lo) hi = lo + 1;
  return { kind: "sequential", table: halfTable(lo >= 0), range: { lo, hi } };
}

/** A scale's colours as token paint: rgb(...) backgrounds, black or white ink that reads on them. */
export function scalePaint(scale: TokenScale): TokenPaint {
  const rgb = (v: number): RGB => {
    const k = colorIndex(v, scale.range) * 3;
    return [scale.table[k], scale.table[k + 1], scale.table[k + 2]];
  };
  return {
    background: (v) => `rgb(${rgb(v).join(",")})`,
    ink: (v) => inkOn(rgb(v)),
  };
}

/** A horizontal colour bar of a scale's table, low on the left, `width` x `height` CSS px. */
export function scaleBar(table: Uint8ClampedArray, width: number, height: number): HTMLCanvasElement {
  const bar = h("canvas", "ms-scalebar");
  bar.width = width;
  bar.height = height;
  bar.style.width = `${width}px`;
  bar.style.height = `${height}px`;
  const ctx = bar.getContext("2d")!;
  for (let x = 0; x < width; x++) {
    const k = Math.round((x / Math.max(1, width - 1)) * 255) * 3;
    ctx.fillStyle = `rgb(${table[k]},${table[k + 1]},${table[k + 2]})`;
    ctx.fillRect(x, 0, 1, height);
  }
  return bar;
}

/** Call `show(span, event)` when the pointer enters a token span inside `container` and `hide()`
 * when it leaves the container (one listener for any number of tokens). */
export function hoverTokens(container: HTMLElement, show: (span: HTMLElement, ev: MouseEvent) => void,
                            hide: () => void): void {
  container.addEventListener("mouseover", (ev) => {
    const target = ev.target instanceof Element ? ev.target.closest(".ms-tok") : null;
    if (target instanceof HTMLElement && container.contains(target)) show(target, ev);
    else hide();
  });
  container.addEventListener("mouseleave", hide);
}
