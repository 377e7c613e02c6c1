// The one binary codec shared by every widget (mirror of src/mechscope/widgets/codec.py).
// An encoded array is {dtype, shape, data}; data arrives as a DataView (live widgets) or
// is decoded from base64 by the offline snapshot before render() sees it.

export type WireDtype = "float32" | "float16" | "uint8" | "int32" | "uint16";

export interface EncodedArray {
  dtype: WireDtype;
  shape: number[];
  data: DataView | ArrayBuffer | Uint8Array;
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

/** Decode any wire dtype to a Float32Array (copying, so alignment never matters). */
export function decode(enc: EncodedArray): DecodedArray {
  const bytes = toBytes(enc.data);
  const n = enc.shape.reduce((a, b) => a * b, 1);
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
