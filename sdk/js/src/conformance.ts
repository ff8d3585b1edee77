/**
 * The bundle's own conformance set (edgeface/runtime/conformance.py, `edgeface export --check`):
 * conformance/face_NN.png aligned crops, their expected embeddings and pair decisions. loadBundle
 * already refuses a model that does not reproduce them (its self-test); checkConformance reports the
 * full comparison, e.g. for an app's diagnostics screen.
 */
import type { Image } from "./align.js";
import { loadConformanceSet, type Bundle } from "./bundle.js";
import { EdgefaceError } from "./errors.js";
import type { Rejection } from "./recognizer.js";



export interface ConformanceResult {
  passed: boolean;
  faces: number;
  pairs: number;
  cosine_min: number;
  cosine_mean: number;
  required_min_cosine: number;
  decision_mismatches: string[];
  /** live thresholds that differ from those the set was recorded with */
  threshold_mismatches: string[];
}

/** decode: the platform's exact PNG decoder (decodeCrop of the node / web entry). */
export async function checkConformance(bundle: Bundle, decode: (bytes: Uint8Array) => Promise<Image | Rejection | null>): Promise<ConformanceResult> {
  const src = bundle.source;
  if (!src) throw new EdgefaceError("argument", `${bundle.location}: bundle was opened without a source to read its conformance set from`);
  let set: Awaited<ReturnType<typeof loadConformanceSet>>;
  try {
    set = await loadConformanceSet(src, async (bytes) => {
      const img = await decode(bytes);
      return img && "data" in img ? img : null;
    });
  } catch (exc) {
    throw new EdgefaceError("bundle", `${bundle.location}: ${(exc as Error).message}`, "conformance");
  }
  const exp = set.expected as {
    faces: string[]; embeddings: number[][]; pairs: Record<string, unknown>[]; thresholds: Record<string, number>;
    tolerance: { min_cosine_to_expected: number; decision_margin: number };
  };
  const [h, w] = bundle.cropSize;
  if (set.height !== h || set.width !== w) throw new EdgefaceError("bundle", `${bundle.location}: conformance crops are ${set.width}x${set.height}, the model takes ${w}x${h}`, "model_output");
  const d = bundle.card.embedding_size;
  const emb = await bundle.embed(set.crops, set.n);
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
  // the live thresholds must be the ones the set was recorded with (an edited threshold would otherwise
  // pass: the stored decisions are re-derived from the stored thresholds)
  const live = bundle.thresholds;
  const thresholdDiffs = Object.entries(exp.thresholds).filter(([k, v]) => !(k in live) || !(Math.abs(live[k] - v) <= 1e-6)).map(([k, v]) => `FAR ${k}: live ${live[k]} vs recorded ${v}`);
  thresholdDiffs.push(...Object.entries(live).filter(([k]) => !(k in exp.thresholds)).map(([k, v]) => `FAR ${k}: live ${v}, not in the conformance record`));
  const min = Math.min(...cos);
  return {
    passed: min >= exp.tolerance.min_cosine_to_expected && mismatched.length === 0 && thresholdDiffs.length === 0,
    faces: cos.length, pairs: exp.pairs.length, cosine_min: min, cosine_mean: cos.reduce((a, b) => a + b, 0) / cos.length,
    required_min_cosine: exp.tolerance.min_cosine_to_expected, decision_mismatches: mismatched, threshold_mismatches: thresholdDiffs,
  };
}
