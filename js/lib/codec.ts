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

export interface DecodedArray {
  values: Float32Array;
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

/** Quantised uint8 / uint16: one lookup table of every code, then one pass over the codes. */
function decodeScaled(bytes: Uint8Array, n: number, dtype: WireDtype, s: Scale): Float32Array {
  const out = new Float32Array(n);
  if (dtype === "uint8" || dtype === "uint16") {
    const lut = new Float32Array(dtype === "uint8" ? 256 : 65536);
    for (let c = 0; c < lut.length; c++) lut[c] = dequantise(c, s);
    if (dtype === "uint8") {
      for (let i = 0; i < n; i++) out[i] = lut[bytes[i]];
    } else {
      for (let i = 0; i < n; i++) out[i] = lut[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
    }
    return out;
  }
  const raw = decode({ dtype, shape: [n], data: bytes }).values;
  for (let i = 0; i < n; i++) out[i] = dequantise(raw[i], s);
  return out;
}

/** Decode any wire dtype to a Float32Array (copying, so alignment never matters). */
export function decode(enc: EncodedArray): DecodedArray {
  const bytes = toBytes(enc.data);
  const n = enc.shape.reduce((a, b) => a * b, 1);
  if (enc.scale) return { values: decodeScaled(bytes, n, enc.dtype, enc.scale), shape: enc.shape };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (enc.dtype) {
    case "float32":
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case "float16":
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      break;
    case "uint8":
      for (let i = 0; i < n; i++) out[i] = view.getUint8(i);
      break;
    case "uint16":
      for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
      break;
    case "int32":
      for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
      break;
    default:
      throw new Error(`mechscope codec: unknown dtype ${String(enc.dtype)}`);
  }
  return { values: out, shape: enc.shape };
}
