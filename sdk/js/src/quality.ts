/**
 * The quality gate (edgeface/runtime/quality.py): the same measures, names, thresholds (kit
 * defaults merged with the bundle's `quality` section) and decisions as the Python runtime.
 */
import { estimatePose, landmarkResidual, type Image } from "./align.js";
import { EdgefaceError } from "./errors.js";

export type Mode = "verify" | "enroll";
export const MODES: Mode[] = ["verify", "enroll"];

export const DEFAULT_THRESHOLDS: Record<Mode, Record<string, number>> = {
  verify: { min_interocular: 16.0, min_face_size: 40.0, min_sharpness: 12.0, min_brightness: 35.0, max_brightness: 225.0, min_contrast: 18.0,
    max_abs_yaw: 45.0, max_abs_pitch: 35.0, max_abs_roll: 40.0, min_detector_score: 0.6, min_flip_similarity: 0.8, max_nonface_margin: 0.0, max_landmark_residual: 0.25 },
  enroll: { min_interocular: 24.0, min_face_size: 56.0, min_sharpness: 25.0, min_brightness: 50.0, max_brightness: 210.0, min_contrast: 22.0,
    max_abs_yaw: 30.0, max_abs_pitch: 25.0, max_abs_roll: 30.0, min_detector_score: 0.8, min_flip_similarity: 0.88, max_nonface_margin: 0.0, max_landmark_residual: 0.21 },
};

const f0 = (v: number) => v.toFixed(0), f1 = (v: number) => v.toFixed(1), f2 = (v: number) => v.toFixed(2);
const signed3 = (v: number) => (v >= 0 ? "+" : "") + v.toFixed(3);
/** [measure, threshold key, kind, message when it fails], in the Python gate's order. */
const CHECKS: [string, string, "min" | "max", (v: number, t: number) => string][] = [
  ["interocular", "min_interocular", "min", (v, t) => `face too small (eyes ${f0(v)} px apart, need ${f0(t)}): move closer or use a larger image`],
  ["face_size", "min_face_size", "min", (v, t) => `face box too small (${f0(v)} px, need ${f0(t)})`],
  ["sharpness", "min_sharpness", "min", (v, t) => `image too blurred (Laplacian variance ${f1(v)} < ${f1(t)})`],
  ["brightness", "min_brightness", "min", (v, t) => `too dark (mean level ${f0(v)} < ${f0(t)})`],
  ["brightness", "max_brightness", "max", (v, t) => `over-exposed (mean level ${f0(v)} > ${f0(t)})`],
  ["contrast", "min_contrast", "min", (v, t) => `too little contrast (std ${f1(v)} < ${f1(t)})`],
  ["abs_yaw", "max_abs_yaw", "max", (v, t) => `head turned too far sideways (yaw ${f0(v)}° > ${f0(t)}°)`],
  ["abs_pitch", "max_abs_pitch", "max", (v, t) => `head tilted too far up/down (pitch ${f0(v)}° > ${f0(t)}°)`],
  ["abs_roll", "max_abs_roll", "max", (v, t) => `head rotated too far (roll ${f0(v)}° > ${f0(t)}°)`],
  ["landmark_residual", "max_landmark_residual", "max", (v, t) => `landmarks do not have the shape of a face (residual ${v.toFixed(3)} of the fit onto the template > ${t.toFixed(3)}: swapped, mirrored or misplaced points)`],
  ["detector_score", "min_detector_score", "min", (v, t) => `detector unsure this is a face (score ${f2(v)} < ${f2(t)})`],
  ["flip_similarity", "min_flip_similarity", "min", (v, t) => `unstable embedding: face and its mirror image disagree (cosine ${f2(v)} < ${f2(t)}; occlusion, pose or lighting)`],
  ["nonface_margin", "max_nonface_margin", "max", (v) => `not a face: the embedding lies with those of noise / blank / texture crops (margin ${signed3(v)} over the calibrated limit)`],
];

/** Names the bundle writer uses for the same thresholds. */
export const ALIASES: Record<string, string> = {
  min_detection_score: "min_detector_score", min_interocular_px: "min_interocular", min_face_size_px: "min_face_size",
  max_abs_yaw_deg: "max_abs_yaw", max_abs_pitch_deg: "max_abs_pitch", max_abs_roll_deg: "max_abs_roll",
};
// provenance and the non-face prototypes, not thresholds
const INFO_KEYS = new Set(["source", "notes", "description", "nonface"]);

export interface Check {
  name: string;
  value: number;
  threshold: number;
  kind: "min" | "max";
  passed: boolean;
  message: string;
}

export class QualityReport {
  constructor(readonly mode: Mode, readonly checks: Check[], readonly measurements: Record<string, number>) {}
  get passed(): boolean {
    return this.checks.every((c) => c.passed);
  }
  get failed(): Check[] {
    return this.checks.filter((c) => !c.passed);
  }
  get reasons(): string[] {
    return this.failed.map((c) => c.message);
  }
  /** weight in a multi-image template: the flip similarity clipped to [0.05, 1] */
  get weight(): number {
    const fs = this.measurements.flip_similarity;
    return fs !== undefined && Number.isFinite(fs) ? Math.min(1, Math.max(0.05, fs)) : 1.0;
  }
  toJSON() {
    return { mode: this.mode, passed: this.passed, reasons: this.reasons, weight: this.weight, checks: this.checks };
  }
}

/** quality.merge_thresholds: defaults updated with a bundle's quality section. */
export function mergeThresholds(overrides?: Record<string, unknown> | null): Record<Mode, Record<string, number>> {
  const out = { verify: { ...DEFAULT_THRESHOLDS.verify }, enroll: { ...DEFAULT_THRESHOLDS.enroll } };
  if (!overrides || Object.keys(overrides).length === 0) return out;
  const known = new Set(Object.keys(DEFAULT_THRESHOLDS.verify));
  const clean = (d: Record<string, unknown>, where: string) => {
    const res: Record<string, number> = {};
    for (const [k, v] of Object.entries(d)) {
      if (INFO_KEYS.has(k) || (MODES as string[]).includes(k)) continue;
      const key = ALIASES[k] ?? k;
      if (!known.has(key)) throw new EdgefaceError("argument", `quality thresholds (${where}): unknown key ${JSON.stringify(k)}`);
      const num = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
      if (typeof v === "boolean" || Number.isNaN(num) && !(typeof v === "string" && /^\s*nan\s*$/i.test(v))) {
        throw new EdgefaceError("argument", `quality thresholds (${where}): ${JSON.stringify(k)} must be a number, got ${JSON.stringify(v)}`);
      }
      res[key] = num;
    }
    return res;
  };
  for (const [k, v] of Object.entries(clean(overrides, "flat"))) {
    out.verify[k] = v;
    out.enroll[k] = k.startsWith("min_") ? Math.max(out.enroll[k], v) : Math.min(out.enroll[k], v);
  }
  for (const mode of MODES) {
    const sub = overrides[mode];
    if (sub && typeof sub === "object" && !Array.isArray(sub)) Object.assign(out[mode], clean(sub as Record<string, unknown>, mode));
  }
  return out;
}

const W_R = Math.fround(0.299), W_G = Math.fround(0.587), W_B = Math.fround(0.114);

/** Grey levels of an RGB crop as float32, as numpy computes `crop @ [0.299, 0.587, 0.114]`. */
export function gray(crop: Image): Float32Array {
  const n = crop.width * crop.height, out = new Float32Array(n), d = crop.data;
  if (crop.channels === 1) return Float32Array.from(d);
  for (let i = 0; i < n; i++) {
    const p = i * crop.channels;
    out[i] = Math.fround(Math.fround(Math.fround(d[p] * W_R) + Math.fround(d[p + 1] * W_G)) + Math.fround(d[p + 2] * W_B));
  }
  return out;
}

/** Variance of the 4-neighbour Laplacian (float32 Laplacian, like the Python gate). */
export function laplacianVariance(g: Float32Array, w: number, h: number): number {
  let s = 0, s2 = 0, n = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const lap = Math.fround(Math.fround(Math.fround(Math.fround(g[i - 1] + g[i + 1]) + g[i - w]) + g[i + w]) - Math.fround(4 * g[i]));
      s += lap; s2 += lap * lap; n++;
    }
  }
  const mean = s / n;
  return s2 / n - mean * mean;
}

/** Mean and standard deviation of the inner face region (rows 0.3-0.9 h, columns 0.2-0.8 w). */
export function centralStats(g: Float32Array, w: number, h: number): { mean: number; std: number } {
  const y0 = Math.trunc(0.3 * h), y1 = Math.trunc(0.9 * h), x0 = Math.trunc(0.2 * w), x1 = Math.trunc(0.8 * w);
  let s = 0, n = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) { s += g[y * w + x]; n++; }
  const mean = s / n;
  let v = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) v += (g[y * w + x] - mean) ** 2;
  return { mean, std: Math.sqrt(v / n) };
}

/** quality.measure: every measurement for one face (crop aligned, landmarks in the original image). */
export function measure(crop: Image, landmarks: unknown,
  extra: { detectorScore?: number | null; box?: number[] | null; flipSimilarity?: number | null; nonfaceMargin?: number | null;
    /** the bundle's 5 alignment points in crop pixels (Bundle.template), for landmark_residual */
    template?: unknown } = {}): Record<string, number> {
  const pose = estimatePose(landmarks);
  const g = gray(crop);
  const inner = centralStats(g, crop.width, crop.height);
  const m: Record<string, number> = {
    interocular: pose.interocular,
    sharpness: laplacianVariance(g, crop.width, crop.height),
    brightness: inner.mean,
    contrast: inner.std,
    yaw: pose.yaw,
    pitch: pose.pitch,
    roll: pose.roll,
    abs_yaw: Math.abs(pose.yaw),
    abs_pitch: Math.abs(pose.pitch),
    abs_roll: Math.abs(pose.roll),
  };
  if (extra.template != null) m.landmark_residual = landmarkResidual(landmarks, extra.template);
  if (extra.box != null) m.face_size = Math.min(extra.box[2] - extra.box[0], extra.box[3] - extra.box[1]);
  if (extra.detectorScore != null) m.detector_score = extra.detectorScore;
  if (extra.flipSimilarity != null) m.flip_similarity = extra.flipSimilarity;
  if (extra.nonfaceMargin != null) m.nonface_margin = extra.nonfaceMargin;
  return m;
}

// -- non-face evidence (quality.py) ------------------------------------------------------
// With the app's own landmarks no detector vouches for a face: noise crops embed close to one another
// and flip similarity scores them higher than faces. The export keeps, per synthetic non-face family
// (uniform / smooth noise, flat, gratings), a unit prototype and a limit just above the highest
// similarity any calibration face reaches; a crop whose embedding exceeds a limit is "not a face".

/** The bundle's quality.nonface section (prototypes: unit vectors, limits: similarities). */
export interface NonfaceSection {
  prototypes: number[][];
  limits: number[];
  families?: string[];
  [key: string]: unknown;
}

/** quality.check_nonface_section: what is wrong with a quality.nonface section (empty: usable). */
export function checkNonfaceSection(section: unknown, dims: number): string[] {
  if (section === null || typeof section !== "object" || Array.isArray(section)) return ["quality.nonface: expected an object"];
  const { prototypes: protos, limits } = section as Record<string, unknown>;
  if (!Array.isArray(protos) || !Array.isArray(limits) || protos.length === 0 || protos.length !== limits.length) {
    return ["quality.nonface: needs 'prototypes' and 'limits' lists of the same non-zero length"];
  }
  const errs: string[] = [];
  protos.forEach((p, i) => {
    const ok = Array.isArray(p) && p.length === dims && p.every((v) => typeof v === "number" && Number.isFinite(v));
    if (!ok || Math.abs(Math.hypot(...(p as number[])) - 1) > 1e-3) errs.push(`quality.nonface.prototypes[${i}]: not a unit vector of ${dims} finite numbers`);
    const lim = limits[i];
    if (typeof lim !== "number" || !(lim >= -1 && lim <= 1)) errs.push(`quality.nonface.limits[${i}]: ${JSON.stringify(lim)} is not a similarity in [-1, 1]`);
  });
  return errs;
}

/** quality.nonface_margins: per embedding (rows of `d`), max over prototypes of (similarity - limit),
 * in float32 like numpy's; > 0 means "not a face". */
export function nonfaceMargins(embeddings: Float32Array, d: number, section: NonfaceSection): Float32Array {
  const protos = section.prototypes.map((p) => Float32Array.from(p));
  const limits = Float32Array.from(section.limits);
  const n = embeddings.length / d;
  const out = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    let best = -Infinity;
    for (let k = 0; k < protos.length; k++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += embeddings[r * d + j] * protos[k][j];
      best = Math.max(best, Math.fround(Math.fround(s) - limits[k]));
    }
    out[r] = best;
  }
  return out;
}

export class QualityGate {
  readonly thresholds: Record<Mode, Record<string, number>>;
  constructor(overrides?: Record<string, unknown> | null) {
    this.thresholds = mergeThresholds(overrides);
  }
  assess(measurements: Record<string, number>, mode: Mode = "verify"): QualityReport {
    if (!MODES.includes(mode)) throw new EdgefaceError("argument", `quality mode must be one of ${MODES.join(", ")}, got ${JSON.stringify(mode)}`);
    const thr = this.thresholds[mode];
    const checks: Check[] = [];
    for (const [name, key, kind, msg] of CHECKS) {
      if (!(name in measurements)) continue; // e.g. no detector score for the app's own landmarks
      const v = Number(measurements[name]), t = thr[key];
      const ok = Number.isFinite(v) && (kind === "min" ? v >= t : v <= t);
      checks.push({ name, value: v, threshold: t, kind, passed: ok, message: ok ? "" : msg(v, t) });
    }
    return new QualityReport(mode, checks, { ...measurements });
  }
}

/** A horizontally mirrored copy of a crop (crops[:, :, ::-1]). */
export function mirror(crop: Image): Image {
  const { width: w, height: h, channels: c, data } = crop;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const s = (y * w + x) * c, d = (y * w + (w - 1 - x)) * c;
    for (let k = 0; k < c; k++) out[d + k] = data[s + k];
  }
  return { width: w, height: h, channels: c, data: out };
}
