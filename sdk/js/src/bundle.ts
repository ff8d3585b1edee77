/**
 * Bundles (edgeface/runtime/bundle.py): edgeface.json + model file(s) + conformance/.
 *
 * loadBundle refuses exactly what Python's load_bundle refuses, with the same error kinds: no
 * directory / no edgeface.json ("missing"); invalid JSON, a schema-invalid document, another major
 * kit version, a failed / not-built / unverified bundle, a files entry outside the bundle, a missing
 * model file or one whose sha256 differs from the recorded one ("bundle").
 *
 * Where the files come from is a BundleSource (a directory in Node, a URL in the browser, an asset
 * folder in React Native); what runs the model is a Runner (ONNX Runtime's common JS API, or LiteRT.js).
 */
import { cardFromDict, type ModelCard } from "./card.js";
import { EdgefaceError } from "./errors.js";
import { KIT_VERSION, BUNDLE_SCHEMA } from "./generated/kit.js";
import { validate } from "./schema.js";
import { sha256Hex } from "./sha256.js";

export const BUNDLE_JSON = "edgeface.json";
export const RUNNABLE_STATUS = ["verified"];
export const HAMMING_CODECS = ["binary", "binary256", "binary512"];

export interface BundleSource {
  /** the path or URL, for messages */
  readonly location: string;
  /** false when the bundle directory itself does not exist */
  exists(): Promise<boolean>;
  /** a file's bytes, or null when it does not exist */
  readBytes(name: string): Promise<Uint8Array | null>;
}

/** Runs the model: input as the bundle describes it, output (N, D) float32 row-major. */
export interface Runner {
  readonly name: string;
  run(input: Uint8Array | Float32Array, dims: number[]): Promise<Float32Array>;
  /** largest batch one run() takes (1 for TFLite), or 0 for any */
  readonly maxBatch: number;
  dispose?(): Promise<void>;
}

/** Makes the runner for a bundle's model file: the SDK's backends (ort.ts, litert.ts) are factories. */
export type RunnerFactory = (model: Uint8Array, meta: BundleMeta) => Promise<Runner>;

export interface BundleMeta {
  schema_version: number;
  kit_version: string;
  status: string;
  format: string;
  precision: string;
  backend: string;
  model_file: string;
  files: Record<string, string>;
  input: { name: string; shape: (number | null)[]; dtype: string; layout: "NHWC" | "NCHW"; color_order: string; normalization_in_graph: boolean;
    value_range: number[]; mean?: number[]; std?: number[] };
  output: { name: string; shape: (number | null)[]; dtype: string; l2_normalized_in_graph: boolean };
  alignment: { template: string; crop_size: [number, number]; landmarks: [number, number][]; landmark_order: string };
  embedding_size: number;
  thresholds: { metric: string; at_far: Record<string, { threshold: number }>; codecs?: Record<string, { at_far: Record<string, { threshold: number }> }> };
  quality: Record<string, unknown>;
  card: Record<string, unknown>;
  verification?: { failures?: unknown };
  [key: string]: unknown;
}

export interface LoadOptions {
  /** check every model file's sha256 against edgeface.json (default true) */
  verifyHash?: boolean;
  /** refuse bundles whose status is not "verified" (default true) */
  requireVerified?: boolean;
}

function major(version: string): string {
  return String(version).split(".")[0];
}

/** Parse and validate an edgeface.json document (read_meta + validate_meta). */
export function parseMeta(text: string, where: string): BundleMeta {
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (exc) {
    throw new EdgefaceError("bundle", `${where}: not valid JSON (${(exc as Error).message})`);
  }
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw new EdgefaceError("bundle", `${where}: expected a JSON object, got ${meta === null ? "null" : Array.isArray(meta) ? "list" : typeof meta}`);
  }
  const errs = validate(meta, BUNDLE_SCHEMA);
  if (errs.length) {
    const shown = errs.slice(0, 5).join("; ") + (errs.length > 5 ? `; … ${errs.length - 5} more` : "");
    throw new EdgefaceError("bundle", `${where} does not follow the bundle schema: ${shown}`);
  }
  return meta as BundleMeta;
}

export class Bundle {
  constructor(
    readonly location: string,
    readonly meta: BundleMeta,
    readonly card: ModelCard,
    readonly runner: Runner,
    /** where the bundle's files are (for its conformance set) */
    readonly source?: BundleSource,
  ) {}

  get format(): string {
    return this.meta.format;
  }
  get precision(): string {
    return this.meta.precision;
  }
  /** (height, width) of the aligned crop */
  get cropSize(): [number, number] {
    return [this.card.input_size[0], this.card.input_size[1]];
  }
  /** template landmarks in crop pixels (alignment.landmarks) */
  get template(): [number, number][] {
    return this.meta.alignment.landmarks;
  }

  /** Cosine thresholds at FAR 1e-3 / 1e-4: {"1e-3": t, "1e-4": t}. */
  get thresholds(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.meta.thresholds?.at_far ?? {}).map(([k, v]) => [k, Number(v.threshold)]));
  }

  /** Thresholds for a gallery storing templates in `codec` (Bundle.codec_thresholds). */
  codecThresholds(codec: string): Record<string, number> {
    if (!HAMMING_CODECS.includes(codec)) return this.thresholds;
    const own = this.meta.thresholds?.codecs?.[codec]?.at_far ?? {};
    return Object.fromEntries(Object.entries(own).map(([k, v]) => [k, Number(v.threshold)]));
  }

  get quality(): Record<string, unknown> {
    return { ...(this.meta.quality ?? {}) };
  }

  /** Raw model outputs for N aligned crops ((N, H, W, 3) uint8 RGB, concatenated): (N, D) float32. */
  async rawOutput(faces: Uint8Array, n: number): Promise<Float32Array> {
    const [h, w] = this.cropSize;
    const size = h * w * 3;
    if (!(faces instanceof Uint8Array) || faces.length !== n * size) {
      throw new EdgefaceError("argument", `model ${JSON.stringify(this.card.name)} expects aligned faces of shape (N, ${h}, ${w}, 3) uint8, got ${faces?.length} values for N=${n}`);
    }
    const d = this.card.embedding_size;
    const out = new Float32Array(n * d);
    if (n === 0) return out;
    const batch = this.runner.maxBatch > 0 ? this.runner.maxBatch : 64;
    const inp = this.meta.input;
    for (let i = 0; i < n; i += batch) {
      const m = Math.min(batch, n - i);
      const chunk = faces.subarray(i * size, (i + m) * size);
      const x = inp.normalization_in_graph ? chunk : normalize(chunk, m, h, w, this.card, inp.layout);
      const dims = inp.layout === "NCHW" && !inp.normalization_in_graph ? [m, 3, h, w] : [m, h, w, 3];
      const y = await this.runner.run(x, dims);
      if (y.length !== m * d) {
        throw new EdgefaceError("bundle", `${this.location}: the model produced ${y.length / m}-d embeddings, ${BUNDLE_JSON} says ${d}`);
      }
      out.set(y, i * d);
    }
    return out;
  }

  /** Unit embeddings of N aligned crops: rows of a (N, D) float32 array. */
  async embed(faces: Uint8Array, n: number): Promise<Float32Array> {
    const raw = await this.rawOutput(faces, n);
    return l2NormalizeRows(raw, this.card.embedding_size);
  }

  async dispose(): Promise<void> {
    await this.runner.dispose?.();
  }
}

/** preprocess.l2_normalize: x / max(||x||, 1e-10) per row, float32. */
export function l2NormalizeRows(x: Float32Array, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[r * d + j] * x[r * d + j];
    const norm = Math.max(Math.fround(Math.sqrt(s)), 1e-10);
    for (let j = 0; j < d; j++) out[r * d + j] = x[r * d + j] / norm;
  }
  return out;
}

/** preprocess.normalize: uint8 RGB -> float32 (x - mean) / std in the card's colour order and layout. */
export function normalize(faces: Uint8Array, n: number, h: number, w: number, card: ModelCard, layout: string): Float32Array {
  const out = new Float32Array(faces.length);
  const mean = card.mean.map(Math.fround), std = card.std.map(Math.fround);
  for (let i = 0; i < n * h * w; i++) {
    let r = faces[3 * i], g = faces[3 * i + 1], b = faces[3 * i + 2];
    if (card.color_order === "BGR") [r, b] = [b, r];
    let px = [r, g, b];
    if (card.color_order === "GRAY") {
      const y = Math.fround(Math.fround(Math.fround(r * Math.fround(0.299)) + Math.fround(g * Math.fround(0.587))) + Math.fround(b * Math.fround(0.114)));
      px = [y, y, y];
    }
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(Math.fround(px[c] - mean[c]) / std[c]);
      if (layout === "NCHW") {
        const img = Math.floor(i / (h * w)), pos = i % (h * w);
        out[img * 3 * h * w + c * h * w + pos] = v;
      } else out[3 * i + c] = v;
    }
  }
  return out;
}

/** Open a bundle and its runtime (load_bundle). */
export async function loadBundle(source: BundleSource, makeRunner: RunnerFactory | Record<string, RunnerFactory>, options: LoadOptions = {}): Promise<Bundle> {
  const { verifyHash = true, requireVerified = true } = options;
  const where = source.location;
  if (!(await source.exists())) throw new EdgefaceError("missing", `${where}: bundle directory not found`);
  const raw = await source.readBytes(BUNDLE_JSON);
  if (raw === null) throw new EdgefaceError("missing", `${where}: not a bundle (no ${BUNDLE_JSON}); make one with \`edgeface export\``);
  const meta = parseMeta(new TextDecoder().decode(raw), `${where}/${BUNDLE_JSON}`);
  if (major(meta.kit_version) !== major(KIT_VERSION)) {
    throw new EdgefaceError("bundle", `${where}: written by edgeface ${meta.kit_version}, this SDK reads edgeface ${KIT_VERSION} bundles; bundles are only read by the same major version — re-export the model`);
  }
  if (requireVerified && !RUNNABLE_STATUS.includes(meta.status)) {
    const why = ({
      failed: `its export failed verification (${JSON.stringify(meta.verification?.failures ?? null)})`,
      "not-built": "its engine was not built on the export machine (see build settings in the bundle)",
      unverified: "it has not been verified yet",
    } as Record<string, string>)[meta.status] ?? `its status is ${JSON.stringify(meta.status)}`;
    throw new EdgefaceError("bundle", `${where}: refusing to load this bundle: ${why}`);
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, digest] of Object.entries(meta.files)) {
    const parts = name.split(/[\\/]/);
    if (name.startsWith("/") || /^[A-Za-z]:/.test(name) || parts.includes("..")) {
      throw new EdgefaceError("bundle", `${where}: file entry ${JSON.stringify(name)} points outside the bundle`);
    }
    const bytes = await source.readBytes(name);
    if (bytes === null) throw new EdgefaceError("bundle", `${where}: model file ${name} listed in ${BUNDLE_JSON} is missing`);
    if (verifyHash) {
      const actual = await sha256Hex(bytes);
      if (actual !== digest) {
        throw new EdgefaceError("bundle", `${where}/${name}: sha256 ${actual.slice(0, 16)}… does not match ${digest.slice(0, 16)}… recorded in ${BUNDLE_JSON}: the model file was altered or replaced after export; re-export it`);
      }
    }
    files.set(name, bytes);
  }
  const card = cardFromDict(meta.card);
  const model = files.get(meta.model_file) ?? (await source.readBytes(meta.model_file));
  if (model === null) throw new EdgefaceError("bundle", `${where}: model file ${meta.model_file} is missing`);
  const factory = typeof makeRunner === "function" ? makeRunner : makeRunner[meta.format];
  if (!factory) {
    throw new EdgefaceError("backend", `${where}: a ${meta.format} bundle needs a runtime this SDK was not given (have: ${Object.keys(makeRunner).join(", ")}); the JS SDK runs onnx bundles (ONNX Runtime) and tflite bundles (LiteRT.js, browser)`);
  }
  const runner = await factory(model, meta);
  return new Bundle(where, meta, card, runner, source);
}
