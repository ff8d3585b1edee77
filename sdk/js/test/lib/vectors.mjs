// Shared helpers: where the shared SDK test vectors are (sdk/VECTORS.md) and how to read them.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

export const VECTORS_DIR = process.env.EDGEFACE_SDK_VECTORS ?? "";
export const HAVE_VECTORS = VECTORS_DIR !== "" && existsSync(join(VECTORS_DIR, "vectors.json"));
export const SKIP = HAVE_VECTORS ? false : "EDGEFACE_SDK_VECTORS is not set to a vector directory (the pytest wrapper tests/test_sdk_js.py sets it)";

export function loadVectors() {
  const doc = JSON.parse(readFileSync(join(VECTORS_DIR, "vectors.json"), "utf8"));
  if (doc.format !== "edgeface-sdk-vectors" || doc.version !== 1) throw new Error(`${VECTORS_DIR}: not edgeface-sdk-vectors version 1`);
  return doc;
}

export function raw(rel) {
  return new Uint8Array(readFileSync(join(VECTORS_DIR, rel)));
}

export function f32(rel) {
  const b = readFileSync(join(VECTORS_DIR, rel));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

export function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The cosine of two vectors that need not be unit (an int8 template decodes to q * scale, whose norm is not 1). */
export function cosine(a, b) {
  const n = Math.sqrt(dot(a, a) * dot(b, b));
  return n > 0 ? dot(a, b) / n : 0;
}

/** From a JPEG file, a face whose measure lies within tolerances.jpeg_gate_margin of a verify-gate threshold may
 * get another verdict from this decoder (sdk/VECTORS.md): the decisions hanging on it may differ in rejected / not. */
export function gateBorderline(doc, f) {
  if (f.image_format !== "jpeg" || !doc.tolerances.jpeg_gate_margin) return false;
  const thr = doc.quality_thresholds.verify;
  return Object.entries(doc.tolerances.jpeg_gate_margin).some(([m, margin]) =>
    typeof f.measurements[m] === "number" && ["min_", "max_"].some((side) => typeof thr[side + m] === "number" && Math.abs(f.measurements[m] - thr[side + m]) <= margin));
}

/** Two decisions that differ only in whether the gate refused the face ("rejected" on one side). */
export function gateFlip(a, b) {
  return a !== b && (a === "rejected" || b === "rejected" || a === "quality" || b === "quality");
}

export function landmarksFromJson(lm) {
  return Array.isArray(lm) ? lm.map(landmarksFromJson) : lm === "nan" ? NaN : Number(lm);
}
