// The one binary codec shared by every widget (mirror of src/mechscope/widgets/codec.py).
// An encoded array is {dtype, shape, data}; data arrives as a DataView (live widgets) or
// is decoded from base64 by the offline snapshot before render() sees it.
// An optional `scale` marks a quantised array: value = offset + step * code, and the codes named
// nan_code / posinf_code / neginf_code decode to NaN / +inf / -inf.

export type WireDtype = "float32" | "float16" | "uint8" | "int32" | "uint16";

export interface Scale {
  offset: number;
  step: number;
  nan_code?: number | null;
  posinf_code?: number | null;
  neginf_code?: number | null;
}

export interface EncodedArray {
  dtype: WireDtype;
  shape: number[];
  data: DataView | ArrayBuffer | Uint8Array;
  scale?: Scale | null;
}

/** What decode() returns: integer dtypes in an integer array of their own width (exact: an int32
 * token id above 2^24 stays itself), floats and quantised arrays as Float32Array. */
export type NumericArray = Float32Array | Int32Array | Uint8Array | Uint16Array;

export interface DecodedArray<T extends NumericArray = NumericArray> {
  values: T;
  shape: number[];
}

function toBytes(data: EncodedArray["data"]): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * Math.pow(2, -14) * (frac / 1024);
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * Math.pow(2, exp - 15) * (1 + frac / 1024);
}

/** The value a quantised code stands for (float64; stored into a Float32Array by the caller). */
function dequantise(code: number, s: Scale): number {
  if (code === s.nan_code) return NaN;
  if (code === s.posinf_code) return Infinity;
  if (code === s.neginf_code) return -Infinity;
  return s.offset + s.step * code;
}

/** Quantised arrays: one lookup table of every uint8 / uint16 code, else code by code. */
function decodeScaled(bytes: Uint8Array, n: number, dtype: WireDtype, s: Scale): Float32Array {
  const raw = decodeRaw(bytes, n, dtype);
  const out = new Float32Array(n);
  if (dtype === "uint8" || dtype === "uint16") {
    const lut = new Float32Array(dtype === "uint8" ? 256 : 65536);
    for (let c = 0; c < lut.length; c++) lut[c] = dequantise(c, s);
    for (let i = 0; i < n; i++) out[i] = lut[raw[i]];
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = dequantise(raw[i], s);
  return out;
}

/** `out` with out[i] = read(i) for every i. */
function fill<T extends NumericArray>(out: T, read: (i: number) => number): T {
  for (let i = 0; i < out.length; i++) out[i] = read(i);
  return out;
}

/** Little-endian values of `dtype` into a fresh array of the matching type (copying, so alignment
 * and the host's byte order never matter). */
function decodeRaw(bytes: Uint8Array, n: number, dtype: string): NumericArray {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "float32":
      return fill(new Float32Array(n), (i) => view.getFloat32(i * 4, true));
    case "float16":
      return fill(new Float32Array(n), (i) => halfToFloat(view.getUint16(i * 2, true)));
    case "uint8":
      return new Uint8Array(bytes.subarray(0, n));
    case "uint16":
      return fill(new Uint16Array(n), (i) => view.getUint16(i * 2, true));
    case "int32":
      return fill(new Int32Array(n), (i) => view.getInt32(i * 4, true));
    case "int64":
    case "uint64":
      throw new Error(`mechscope codec: ${dtype} is not a wire dtype (JS numbers are not exact past 2^53); encode as int32`);
    default:
      throw new Error(`mechscope codec: unknown dtype ${String(dtype)}`);
  }
}

/** Decode any wire dtype: integers exactly (Int32Array, Uint8Array, Uint16Array), floats and
 * quantised arrays as Float32Array. */
export function decode(enc: EncodedArray): DecodedArray {
  const bytes = toBytes(enc.data);
  const n = enc.shape.reduce((a, b) => a * b, 1);
  const itemsize = { float32: 4, float16: 2, uint8: 1, uint16: 2, int32: 4 }[enc.dtype] ?? 0;
  if (itemsize && bytes.byteLength < n * itemsize) {
    throw new Error(`mechscope codec: ${bytes.byteLength} bytes for shape [${enc.shape}] of ${enc.dtype}`);
  }
  if (enc.scale) return { values: decodeScaled(bytes, n, enc.dtype, enc.scale), shape: enc.shape };
  return { values: decodeRaw(bytes, n, enc.dtype), shape: enc.shape };
}

/** Decode to Float32Array whatever the dtype (for values that are drawn, not looked up). */
export function decodeFloat(enc: EncodedArray): DecodedArray<Float32Array> {
  const d = decode(enc);
  return { values: d.values instanceof Float32Array ? d.values : Float32Array.from(d.values), shape: d.shape };
}

/** An optional array trait ({} when absent): decoded, or null. */
export function decodeOptional(enc: EncodedArray | Record<string, never> | null | undefined): NumericArray | null {
  return enc && "data" in enc ? decode(enc as EncodedArray).values : null;
}
