/**
 * The bundle's own conformance set (edgeface/runtime/conformance.py, `edgeface export --check`):
 * conformance/face_NN.png aligned crops, their expected embeddings and pair decisions. An app runs
 * checkConformance once on the device to prove its integration reproduces the kit's numbers.
 */
import type { Image } from "./align.js";
import type { Bundle } from "./bundle.js";
import { EdgefaceError } from "./errors.js";
import type { Rejection } from "./recognizer.js";

export const CONFORMANCE_DIR = "conformance";

export interface ConformanceResult {
  passed: boolean;
  faces: number;
  pairs: number;
  cosine_min: number;
  cosine_mean: number;
  required_min_cosine: number;
  decision_mismatches: string[];
}

/** decode: the platform's image decoder (PNG bytes -> RGB pixels), e.g. decodeImage of the node / web entry. */
export async function checkConformance(bundle: Bundle, decode: (bytes: Uint8Array) => Promise<Image | Rejection>): Promise<ConformanceResult> {
  const src = bundle.source;
  if (!src) throw new EdgefaceError("argument", `${bundle.location}: bundle was opened without a source to read its conformance set from`);
  const raw = await src.readBytes(`${CONFORMANCE_DIR}/expected.json`);
  if (raw === null) throw new EdgefaceError("missing", `${bundle.location}: bundle has no conformance set (${CONFORMANCE_DIR}/expected.json missing)`);
  const exp = JSON.parse(new TextDecoder().decode(raw)) as {
    faces: string[]; embeddings: number[][]; pairs: Record<string, unknown>[]; thresholds: Record<string, number>;
    tolerance: { min_cosine_to_expected: number; decision_margin: number };
  };
  const [h, w] = bundle.cropSize;
  const size = h * w * 3;
  const batch = new Uint8Array(exp.faces.length * size);
  for (const [k, name] of exp.faces.entries()) {
    const bytes = await src.readBytes(`${CONFORMANCE_DIR}/${name}`);
    const img = bytes === null ? null : await decode(bytes);
    if (!img || !("data" in img) || img.width !== w || img.height !== h) {
      throw new EdgefaceError("bundle", `${bundle.location}: conformance crop ${name} missing or not a ${w}x${h} image`);
    }
    batch.set(img.data, k * size);
  }
  const d = bundle.card.embedding_size;
  const emb = await bundle.embed(batch, exp.faces.length);
  const row = (k: number) => emb.subarray(k * d, (k + 1) * d);
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => { let s = 0; for (let i = 0; i < d; i++) s += a[i] * b[i]; return s; };
  const cos = exp.faces.map((_, k) => dot(row(k), exp.embeddings[k]));
  const idx = Object.fromEntries(exp.faces.map((n, k) => [n, k]));
  const mismatched: string[] = [];
  for (const p of exp.pairs) {
    const s = dot(row(idx[p.a as string]), row(idx[p.b as string]));
    for (const [key, t] of Object.entries(exp.thresholds)) {
      const want = p[`same_at_far_${key}`];
      if ((s >= t) !== want && Math.abs(s - t) > exp.tolerance.decision_margin) {
        mismatched.push(`${p.a}~${p.b} at FAR ${key}: cosine ${s.toFixed(4)} vs expected ${Number(p.cosine).toFixed(4)}`);
      }
    }
  }
  const min = Math.min(...cos);
  return {
    passed: min >= exp.tolerance.min_cosine_to_expected && mismatched.length === 0,
    faces: cos.length, pairs: exp.pairs.length, cosine_min: min, cosine_mean: cos.reduce((a, b) => a + b, 0) / cos.length,
    required_min_cosine: exp.tolerance.min_cosine_to_expected, decision_mismatches: mismatched,
  };
}
