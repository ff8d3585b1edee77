/**
 * Template codecs (edgeface/runtime/codecs.py): the bytes a gallery stores per identity, byte for
 * byte the same as the Python runtime's, and the scores it compares them with.
 *
 * float32 (4·D bytes, little-endian), fp16 (2·D, round half to even), int8 (float32 scale then D
 * signed bytes), binary (sign bits, MSB first), binary256 / binary512 (SimHash: sign bits after a
 * fixed rotation of randomized Hadamard blocks whose signs come from SHA-256 of fixed strings).
 * Binary codes score by Hamming similarity 1 − 2h/bits, the others by cosine.
 */
import { EdgefaceError } from "./errors.js";
import { sha256 } from "./sha256.js";

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** float32 -> IEEE half bits, round to nearest even (numpy's astype(float16)). */
export function floatToHalf(v: number): number {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++;
  return sign | r;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function rint(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkVector(x: ArrayLike<number>, dim: number, what = "embeddings"): Float32Array {
  if (x.length !== dim) throw new EdgefaceError("argument", `${what}: expected dimension ${dim}, got ${x.length}`);
  const v = Float32Array.from(x);
  if (!v.every(Number.isFinite)) throw new EdgefaceError("argument", `${what}: contains NaN or infinite values`);
  return v;
}

export abstract class Codec {
  abstract get name(): string;
  /** scores are Hamming similarities (own thresholds), not cosines */
  readonly hammingScores: boolean = false;
  constructor(readonly dim: number) {
    if (!(dim > 0) || !Number.isInteger(dim)) throw new EdgefaceError("argument", `codec: dimension must be a positive integer, got ${dim}`);
  }
  abstract get bytesPerTemplate(): number;
  /** one embedding (D,) -> the bytes stored in a gallery row */
  abstract encode(x: ArrayLike<number>): Uint8Array;
  /** stored bytes -> a (D,) float32 vector whose dot product with a query is the score
   * (an approximation for the projected binary codecs: they score from the bits) */
  abstract decode(code: Uint8Array): Float32Array;
  /** the score of a float query against one stored code */
  similarity(query: ArrayLike<number>, code: Uint8Array): number {
    const q = checkVector(query, this.dim, "query");
    const t = this.decode(this.checkCode(code));
    let s = 0;
    for (let i = 0; i < this.dim; i++) s += q[i] * t[i];
    return Math.fround(s);
  }
  checkCode(code: Uint8Array, what = "code"): Uint8Array {
    if (!(code instanceof Uint8Array) || code.length !== this.bytesPerTemplate) {
      throw new EdgefaceError("gallery", `codec ${this.name}: ${what} is ${code?.length} bytes, expected ${this.bytesPerTemplate}`);
    }
    return code;
  }
}

export class Float32Codec extends Codec {
  get name() {
    return "float32";
  }
  get bytesPerTemplate() {
    return 4 * this.dim;
  }
  encode(x: ArrayLike<number>) {
    const v = checkVector(x, this.dim);
    const out = new Uint8Array(4 * this.dim), dv = new DataView(out.buffer);
    v.forEach((f, i) => dv.setFloat32(4 * i, f, true));
    return out;
  }
  decode(code: Uint8Array) {
    const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
    return Float32Array.from({ length: this.dim }, (_, i) => dv.getFloat32(4 * i, true));
  }
}

export class Float16Codec extends Codec {
  get name() {
    return "fp16";
  }
  get bytesPerTemplate() {
    return 2 * this.dim;
  }
  encode(x: ArrayLike<number>) {
    const v = checkVector(x, this.dim);
    const out = new Uint8Array(2 * this.dim), dv = new DataView(out.buffer);
    v.forEach((f, i) => dv.setUint16(2 * i, floatToHalf(f), true));
    return out;
  }
  decode(code: Uint8Array) {
    const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
    return Float32Array.from({ length: this.dim }, (_, i) => halfToFloat(dv.getUint16(2 * i, true)));
  }
}

export class Int8Codec extends Codec {
  get name() {
    return "int8";
  }
  get bytesPerTemplate() {
    return 4 + this.dim;
  }
  encode(x: ArrayLike<number>) {
    const v = checkVector(x, this.dim);
    let mx = 0;
    for (const f of v) mx = Math.max(mx, Math.abs(f));
    let scale = Math.fround(mx / 127);
    if (!(scale > 0)) scale = 1;
    const out = new Uint8Array(4 + this.dim);
    new DataView(out.buffer).setFloat32(0, scale, true);
    const q = new Int8Array(out.buffer, 4);
    v.forEach((f, i) => (q[i] = Math.min(127, Math.max(-127, rint(Math.fround(f / scale))))));
    return out;
  }
  decode(code: Uint8Array) {
    const scale = new DataView(code.buffer, code.byteOffset, 4).getFloat32(0, true);
    const q = new Int8Array(code.buffer, code.byteOffset + 4, this.dim);
    return Float32Array.from(q, (v) => Math.fround(v * scale));
  }
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => { let c = 0; for (let v = i; v; v >>= 1) c += v & 1; return c; });

/** Sign bits of x (1 where x >= 0), packed MSB first (np.packbits), zero-padded to a byte. */
export class BinaryCodec extends Codec {
  get name(): string {
    return "binary";
  }
  override readonly hammingScores = true;
  get codeBits() {
    return this.dim;
  }
  get bytesPerTemplate() {
    return (this.codeBits + 7) >> 3;
  }
  /** the values whose signs are stored */
  protected projected(v: Float32Array): ArrayLike<number> {
    return v;
  }
  encode(x: ArrayLike<number>) {
    const y = this.projected(checkVector(x, this.dim));
    const out = new Uint8Array(this.bytesPerTemplate);
    for (let j = 0; j < this.codeBits; j++) if (y[j] >= 0) out[j >> 3] |= 0x80 >> (j & 7);
    return out;
  }
  protected signs(code: Uint8Array): Float32Array {
    return Float32Array.from({ length: this.codeBits }, (_, j) => (code[j >> 3] & (0x80 >> (j & 7)) ? 1 : -1));
  }
  decode(code: Uint8Array) {
    const s = Math.sqrt(this.dim);
    return Float32Array.from(this.signs(this.checkCode(code)), (v) => v / s);
  }
  hamming(a: Uint8Array, b: Uint8Array): number {
    let h = 0;
    for (let i = 0; i < a.length; i++) h += POPCOUNT[a[i] ^ b[i]];
    return h;
  }
  /** Hamming similarity of two codes, 1 − 2h/bits */
  codeSimilarity(a: Uint8Array, b: Uint8Array): number {
    return Math.fround(1 - (2 * this.hamming(this.checkCode(a), this.checkCode(b))) / this.codeBits);
  }
  override similarity(query: ArrayLike<number>, code: Uint8Array): number {
    return this.codeSimilarity(this.encode(query), code);
  }
}

/** n values ±1 from SHA-256 of "edgeface-simhash/{tag}/{k}" (codecs._fixed_signs). */
function fixedSigns(tag: string, n: number): Float32Array {
  const blocks = Math.ceil(n / 256);
  const out = new Float32Array(n);
  for (let k = 0; k < blocks; k++) {
    const d = sha256(`edgeface-simhash/${tag}/${k}`);
    for (let j = 0; j < 256 && k * 256 + j < n; j++) out[k * 256 + j] = d[j >> 3] & (0x80 >> (j & 7)) ? 1 : -1;
  }
  return out;
}

function popcount32(v: number): number {
  let c = 0;
  for (; v; v &= v - 1) c++;
  return c;
}

/** SimHash: `bits` sign bits of x·P, P = [H·diag(s_0) | H·diag(s_1) | …] / sqrt(n) over the D rows. */
export class ProjectedBinaryCodec extends BinaryCodec {
  readonly bits: number;
  /** (D, bits) row-major float32 */
  readonly projection: Float32Array;
  constructor(dim: number, bits: number, readonly codecName: string) {
    super(dim);
    this.bits = bits;
    let n = 1;
    while (n < dim) n <<= 1;
    const inv = Math.fround(1 / Math.sqrt(n));
    this.projection = new Float32Array(dim * bits);
    const nBlocks = Math.ceil(bits / n);
    for (let k = 0; k < nBlocks; k++) {
      const s = fixedSigns(`n${n}/block${k}`, n);
      for (let i = 0; i < dim; i++) {
        for (let c = 0; c < n && k * n + c < bits; c++) {
          const h = popcount32(i & c) & 1 ? -1 : 1;
          this.projection[i * bits + k * n + c] = s[i] * h * inv;
        }
      }
    }
  }
  override get name() {
    return this.codecName;
  }
  override get codeBits() {
    return this.bits;
  }
  protected override projected(v: Float32Array): Float64Array {
    const y = new Float64Array(this.bits);
    for (let i = 0; i < this.dim; i++) {
      const xi = v[i], row = i * this.bits;
      if (xi === 0) continue;
      for (let j = 0; j < this.bits; j++) y[j] += xi * this.projection[row + j];
    }
    return y;
  }
  /** projected values (for checking bits near 0 against another implementation) */
  project(x: ArrayLike<number>): Float64Array {
    return this.projected(checkVector(x, this.dim));
  }
  override decode(code: Uint8Array) {
    const s = this.signs(this.checkCode(code));
    const y = new Float64Array(this.dim);
    for (let i = 0; i < this.dim; i++) {
      let acc = 0;
      for (let j = 0; j < this.bits; j++) acc += s[j] * this.projection[i * this.bits + j];
      y[i] = acc;
    }
    const norm = Math.max(Math.hypot(...y), 1e-12);
    return Float32Array.from(y, (v) => v / norm);
  }
}

export const CODEC_NAMES = ["float32", "fp16", "int8", "binary", "binary256", "binary512"] as const;
export type CodecName = (typeof CODEC_NAMES)[number];

export function getCodec(name: string, dim: number): Codec {
  switch (name) {
    case "float32": return new Float32Codec(dim);
    case "fp16": return new Float16Codec(dim);
    case "int8": return new Int8Codec(dim);
    case "binary": return new BinaryCodec(dim);
    case "binary256": return new ProjectedBinaryCodec(dim, 256, "binary256");
    case "binary512": return new ProjectedBinaryCodec(dim, 512, "binary512");
    default: throw new EdgefaceError("argument", `unknown template codec ${JSON.stringify(name)}; choose one of ${CODEC_NAMES.join(", ")}`);
  }
}
