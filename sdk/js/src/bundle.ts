/**
 * Bundles (edgeface/runtime/bundle.py): edgeface.json + edgeface.json.sha256 + model file(s) + conformance/.
 *
 * loadBundle refuses exactly what Python's load_bundle refuses, in the same order and with the same
 * kind (EdgefaceError.bundleKind; docs/runtime.md "Bundle refusal rules"): not_found,
 * manifest_unreadable, manifest_digest, schema, the manifest rules of manifest.ts (model_file,
 * input_contract, thresholds, quality), version, status, model_file / file_hash for the hashed files,
 * model_load, input_contract for the model's real input, then the load-time self-test on the bundle's
 * own conformance faces (model_output, conformance, thresholds). EdgefaceError.kind is "missing" for
 * not_found and "bundle" for the rest, the kinds every SDK shares.
 *
 * Where the files come from is a BundleSource (a directory in Node, a URL in the browser, an asset
 * folder in React Native); what runs the model is a Runner (ONNX Runtime's common JS API, or LiteRT.js).
 */
import type { Image } from "./align.js";
import { cardFromDict, type ModelCard } from "./card.js";
import { bundleError, EdgefaceError } from "./errors.js";
import { KIT_VERSION, BUNDLE_SCHEMA, TARGETS } from "./generated/kit.js";
import { MAX_MANIFEST_BYTES, safeRelative, semanticErrors } from "./manifest.js";
import { JsonSyntaxError, parsePythonJson } from "./pyjson.js";
import { validate } from "./schema.js";
import { sha256Hex } from "./sha256.js";

export const BUNDLE_JSON = "edgeface.json";
export const MANIFEST_DIGEST_FILE = "edgeface.json.sha256";
export const CONFORMANCE_DIR = "conformance";
export const RUNNABLE_STATUS = ["verified"];
// Self-test limits (bundle.py): above this mean cosine between the conformance faces the model
// returns one vector whatever the face; output norms may drift this far from 1 on other CPUs.
export const CONSTANT_OUTPUT_COSINE = 0.98;
export const OUTPUT_NORM_TOLERANCE = 0.02;
export const HAMMING_CODECS = ["binary", "binary256", "binary512"];

export interface BundleSource {
  /** the path or URL, for messages */
  readonly location: string;
  /** false when the bundle directory itself does not exist */
  exists(): Promise<boolean>;
  /** a file's bytes, or null when it is not a file; with `limit`, at most limit + 1 bytes (enough to
   * tell that it is larger). Throws when the file exists but cannot be read. */
  readBytes(name: string, limit?: number): Promise<Uint8Array | null>;
  /** false when `name` resolves, through links, to outside the bundle (absent where there are no links: HTTP) */
  isInside?(name: string): Promise<boolean>;
  /** the files (and links) under directory `name` as bundle-relative POSIX paths, or null when it is not a
   * directory (absent where directories cannot be listed: HTTP) */
  listFiles?(name: string): Promise<string[] | null>;
}

/** Runs the model: input as the bundle describes it, output (N, D) float32 row-major. */
export interface Runner {
  readonly name: string;
  /** the element type the model really takes ("uint8" or "float32"), when the runtime can tell */
  readonly inputDtype?: string;
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

/** Decodes a stored conformance crop (PNG bytes) to RGB pixels exactly, with no size limits; null when undecodable. */
export type CropDecoder = (bytes: Uint8Array) => Promise<Image | null>;

export interface LoadOptions {
  /** check edgeface.json against edgeface.json.sha256 and every hashed file against edgeface.json
   * (default true; false skips the manifest_digest and file_hash rules only: development) */
  verifyHash?: boolean;
  /** refuse bundles whose status is not "verified" (default true) */
  requireVerified?: boolean;
  /** run the bundle's conformance faces at load and refuse a model that does not reproduce them
   * (default true; needs decodeCrop — the node / web entry points pass theirs) */
  selfTest?: boolean;
  decodeCrop?: CropDecoder;
  /** sha256 hex of bytes (default WebCrypto, or pure JS where WebCrypto is missing; Node passes node:crypto) */
  sha256?: (bytes: Uint8Array) => Promise<string>;
}

/** Parse edgeface.json's bytes as Python does (strict UTF-8, a BOM refused, NaN / Infinity read,
 * nesting limited): manifest_unreadable otherwise. */
export function parseManifest(raw: Uint8Array, where: string): { meta: unknown; floats: Set<string> } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw bundleError("manifest_unreadable", `${where}: not UTF-8 text`);
  }
  try {
    const { value, floats } = parsePythonJson(text);
    return { meta: value, floats };
  } catch (exc) {
    if (!(exc instanceof JsonSyntaxError)) throw exc;
    throw bundleError("manifest_unreadable", `${where}: not valid JSON (${exc.message})`);
  }
}

function shown(errs: string[]): string {
  return errs.slice(0, 5).join("; ") + (errs.length > 5 ? `; … ${errs.length - 5} more` : "");
}

/** validate_meta: the bundle schema (schema), then the manifest rules (their own kinds, the first one's). */
export function validateMeta(meta: unknown, where: string, floats: Set<string> = new Set()): BundleMeta {
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw bundleError("schema", `${where}: expected a JSON object, got ${meta === null ? "null" : Array.isArray(meta) ? "list" : typeof meta}`);
  }
  const errs = validate(meta, BUNDLE_SCHEMA, [], floats);
  if (errs.length) throw bundleError("schema", `${where} does not follow the bundle schema: ${shown(errs)}`);
  const sem = semanticErrors(meta as Record<string, unknown>);
  if (sem.length) throw bundleError(sem[0][0], `${where}: refused: ${shown(sem.map(([, m]) => m))}`);
  return meta as BundleMeta;
}

/** Parse and validate an edgeface.json document (read_meta + validate_meta). */
export function parseMeta(text: string, where: string): BundleMeta {
  const { meta, floats } = parseManifest(new TextEncoder().encode(text), where);
  return validateMeta(meta, where, floats);
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

  /** The face detector model shipped in the bundle (`edgeface export --detector`: manifest `detector`,
   * hashed in `files` and checked at load), or null. */
  async detectorModel(): Promise<Uint8Array | null> {
    const det = this.meta.detector as { file?: string; kind?: string } | undefined;
    if (!det?.file || !this.source) return null;
    return this.source.readBytes(det.file);
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

function major(version: string): string {
  return String(version).split(".")[0];
}

/** Python str.split() on ASCII text: runs of space, \t \n \v \f \r and \x1c-\x1f. */
const ASCII_WHITESPACE = /[\t\n\x0b\x0c\r\x1c-\x1f ]+/;

async function checkManifestDigest(source: BundleSource, raw: Uint8Array, hash: (b: Uint8Array) => Promise<string>): Promise<void> {
  const where = source.location;
  let line: Uint8Array | null;
  try {
    line = await source.readBytes(MANIFEST_DIGEST_FILE, 256);
  } catch {
    line = new Uint8Array(0); // unreadable: no recorded digest, so it cannot match
  }
  if (line === null) {
    throw bundleError("manifest_digest", `${where}: no ${MANIFEST_DIGEST_FILE}: the manifest is not sealed (a bundle from before digests, or edited by hand); re-export it`);
  }
  const head = line.subarray(0, 256);
  const recorded = head.every((b) => b < 0x80) ? (String.fromCharCode(...head).split(ASCII_WHITESPACE).filter(Boolean)[0] ?? "").toLowerCase() : "";
  const actual = await hash(raw);
  if (recorded !== actual) {
    throw bundleError("manifest_digest", `${where}: ${BUNDLE_JSON} does not match its digest in ${MANIFEST_DIGEST_FILE} (sha256 ${actual.slice(0, 16)}…): the manifest was changed after export; re-export the bundle`);
  }
}

/** check_files: every model and conformance file has the sha256 recorded in edgeface.json, stays inside
 * the bundle, and nothing inside a model package directory goes unhashed. Returns the files' bytes. */
async function checkFiles(source: BundleSource, meta: BundleMeta, hash: (b: Uint8Array) => Promise<string>): Promise<Map<string, Uint8Array>> {
  const where = source.location;
  const read = new Map<string, Uint8Array>();
  const conformance = (meta.conformance as { files?: Record<string, string> } | null | undefined)?.files ?? {};
  for (const [entries, what] of [[meta.files, "model file"], [conformance, "conformance file"]] as const) {
    for (const [name, digest] of Object.entries(entries)) {
      if (!safeRelative(name)) throw bundleError("model_file", `${where}: ${what} entry ${JSON.stringify(name)} points outside the bundle`);
      if (source.isInside && !(await source.isInside(name))) throw bundleError("model_file", `${where}: ${what} ${name} is a link to outside the bundle`);
      let bytes: Uint8Array | null;
      try {
        bytes = await source.readBytes(name);
      } catch (exc) {
        throw bundleError("file_hash", `${where}: ${what} ${name} cannot be read (${(exc as Error).message})`);
      }
      if (bytes === null) throw bundleError("file_hash", `${where}: ${what} ${name} listed in ${BUNDLE_JSON} is missing`);
      const actual = await hash(bytes);
      if (actual !== digest) {
        throw bundleError("file_hash", `${where}/${name}: sha256 ${actual.slice(0, 16)}… does not match ${digest.slice(0, 16)}… recorded in ${BUNDLE_JSON}: the ${what} was altered or replaced after export; re-export it`);
      }
      read.set(name, bytes);
    }
  }
  const inPackage = source.listFiles ? await source.listFiles(meta.model_file) : null;
  for (const name of (inPackage ?? []).sort()) {
    if (!Object.hasOwn(meta.files, name)) {
      throw bundleError("model_file", `${where}: ${name} inside the model package ${meta.model_file} is not hashed in ${BUNDLE_JSON}: it would be loaded unchecked`);
    }
  }
  return read;
}

/** The bundle's conformance set (conformance.load_conformance_set): the stored crops, stacked, and
 * expected.json. Throws a plain Error saying what is wrong (the caller gives it its kind). */
export async function loadConformanceSet(source: BundleSource, decodeCrop: CropDecoder): Promise<{ crops: Uint8Array; n: number; height: number; width: number; expected: Record<string, any> }> {
  const raw = await source.readBytes(`${CONFORMANCE_DIR}/expected.json`);
  if (raw === null) throw new Error(`bundle has no conformance set (${CONFORMANCE_DIR}/expected.json missing)`);
  let expected: unknown;
  try {
    expected = parsePythonJson(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw)).value;
  } catch (exc) {
    throw new Error(`${CONFORMANCE_DIR}/expected.json is not JSON (${(exc as Error).message})`);
  }
  const faces = (expected as Record<string, unknown> | null)?.faces;
  if (expected === null || typeof expected !== "object" || Array.isArray(expected) || faces === undefined) throw new Error(`${CONFORMANCE_DIR}/expected.json has no 'faces'`);
  const names = typeof faces === "string" ? [...faces] : Array.isArray(faces) ? faces : null;
  if (!names) throw new Error(`${CONFORMANCE_DIR}/expected.json: 'faces' is not a list`);
  const images: Image[] = [];
  for (const name of names) {
    const bytes = typeof name === "string" && safeRelative(name) ? await source.readBytes(`${CONFORMANCE_DIR}/${name}`) : null;
    const img = bytes === null ? null : await decodeCrop(bytes);
    if (!img) throw new Error(`${CONFORMANCE_DIR}/${name}: conformance crop missing or unreadable`);
    images.push(img);
  }
  if (images.length === 0) throw new Error("the conformance set holds no faces");
  const [{ width, height }] = images;
  if (images.some((im) => im.width !== width || im.height !== height)) throw new Error("the conformance crops differ in size");
  const size = width * height * 3;
  const crops = new Uint8Array(images.length * size);
  images.forEach((im, k) => crops.set(im.data, k * size));
  return { crops, n: images.length, height, width, expected: expected as Record<string, any> };
}

/** run_self_test: the bundle's conformance faces through the model; refuse outputs that are non-finite,
 * not unit-length (when the graph says it L2-normalises), constant across faces, or not the recorded
 * embeddings, and a conformance record whose thresholds differ from the manifest's. */
export async function runSelfTest(bundle: Bundle, decodeCrop: CropDecoder): Promise<{ faces: number; cosine_min: number; output_norm_min: number; output_norm_max: number }> {
  const where = bundle.location;
  const src = bundle.source;
  let set: Awaited<ReturnType<typeof loadConformanceSet>>;
  try {
    if (!src) throw new Error("opened without a source to read it from");
    set = await loadConformanceSet(src, decodeCrop);
  } catch (exc) {
    throw bundleError("conformance", `${where}: its conformance set cannot be used (${(exc as Error).message}); a verified bundle carries one — re-export it`);
  }
  const [h, w] = bundle.cropSize;
  const d = bundle.card.embedding_size;
  let raw: Float32Array;
  try {
    if (set.height !== h || set.width !== w) throw new Error(`model ${JSON.stringify(bundle.card.name)} expects aligned faces of shape (N, ${h}, ${w}, 3), got ${set.height}x${set.width} crops`);
    raw = await bundle.rawOutput(set.crops, set.n);
  } catch (exc) {
    throw bundleError("model_output", `${where}: running the model on its conformance faces failed (${(exc as Error).message.slice(0, 200)})`);
  }
  const n = set.n;
  if (!raw.every(Number.isFinite)) throw bundleError("model_output", `${where}/${bundle.meta.model_file}: the model returns NaN or infinite embeddings`);
  const norms = Array.from({ length: n }, (_, r) => Math.fround(Math.hypot(...raw.subarray(r * d, (r + 1) * d))));
  const normMin = Math.min(...norms), normMax = Math.max(...norms);
  if (normMin < 1e-6) throw bundleError("model_output", `${where}/${bundle.meta.model_file}: the model returns all-zero embeddings`);
  if (bundle.meta.output.l2_normalized_in_graph && Math.max(...norms.map((v) => Math.abs(v - 1))) > OUTPUT_NORM_TOLERANCE) {
    throw bundleError("model_output", `${where}/${bundle.meta.model_file}: output norms ${normMin.toFixed(3)}..${normMax.toFixed(3)}, but ${BUNDLE_JSON} says the graph L2-normalises`);
  }
  const emb = l2NormalizeRows(raw, d);
  const row = (m: ArrayLike<number>, r: number) => Array.prototype.slice.call(m, r * d, (r + 1) * d) as number[];
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => { let s = 0; for (let j = 0; j < d; j++) s += a[j] * b[j]; return s; };
  if (n > 1) {
    let off = 0;
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) off += dot(row(emb, a), row(emb, b));
    const meanOff = off / (n * (n - 1));
    if (meanOff > CONSTANT_OUTPUT_COSINE) {
      throw bundleError("model_output", `${where}/${bundle.meta.model_file}: the model returns (nearly) the same embedding for every face (mean cosine ${meanOff.toFixed(4)} between ${n} different conformance photos)`);
    }
  }
  const exp = set.expected;
  const ref = exp.embeddings;
  if (!Array.isArray(ref) || ref.length !== n || ref.some((e: unknown) => !Array.isArray(e) || e.length !== d || e.some((v) => typeof v !== "number"))) {
    throw bundleError("conformance", `${where}: conformance embeddings are not ${n} rows of ${d} numbers, as the model gives`);
  }
  let cosMin = Infinity;
  for (let r = 0; r < n; r++) {
    const want = Float32Array.from(ref[r] as number[]);
    const norm = Math.max(Math.hypot(...want), 1e-10);
    cosMin = Math.min(cosMin, dot(row(emb, r), want) / norm);
  }
  const need = Number(exp.tolerance?.min_cosine_to_expected);
  if (!(cosMin >= need)) {
    throw bundleError("conformance", `${where}: the model does not reproduce its conformance embeddings (min cosine ${cosMin.toFixed(4)} < ${need}); the model file, the input contract or the runtime differ from what was exported`);
  }
  const live = bundle.thresholds;
  const recorded = Object.entries((exp.thresholds ?? {}) as Record<string, unknown>);
  if (recorded.some(([k, v]) => !(k in live) || !(Math.abs(live[k] - Number(v)) <= 1e-6))) {
    throw bundleError("thresholds", `${where}: thresholds ${JSON.stringify(live)} differ from those recorded with the conformance set ${JSON.stringify(Object.fromEntries(recorded))}`);
  }
  return { faces: n, cosine_min: cosMin, output_norm_min: normMin, output_norm_max: normMax };
}

const STATUS_WHY: Record<string, (meta: BundleMeta) => string> = {
  failed: (m) => `its export failed verification (${JSON.stringify(m.verification?.failures ?? null)})`,
  "not-built": () => "its engine was not built on the export machine (see build settings in the bundle)",
  "not-verified": (m) => `its model file was not run at export (${(m.verification as { reason?: string } | undefined)?.reason ?? "no reason recorded"})`,
  unverified: () => "it has not been verified yet",
};

/** Open a bundle and its runtime (load_bundle): the refusals of the module doc, in Python's order. */
export async function loadBundle(source: BundleSource, makeRunner: RunnerFactory | Record<string, RunnerFactory>, options: LoadOptions = {}): Promise<Bundle> {
  const { verifyHash = true, requireVerified = true, selfTest = true } = options;
  const hash = options.sha256 ?? sha256Hex;
  const where = source.location;
  const metaPath = `${where}/${BUNDLE_JSON}`;
  if (!(await source.exists())) throw bundleError("not_found", `${where}: bundle directory not found`);
  let raw: Uint8Array | null;
  try {
    raw = await source.readBytes(BUNDLE_JSON, MAX_MANIFEST_BYTES);
  } catch (exc) {
    throw bundleError("manifest_unreadable", `${metaPath}: cannot read it (${(exc as Error).message})`);
  }
  if (raw === null) throw bundleError("not_found", `${where}: not a bundle (no ${BUNDLE_JSON}); make one with \`edgeface export\``);
  if (raw.length > MAX_MANIFEST_BYTES) throw bundleError("manifest_unreadable", `${metaPath}: larger than ${MAX_MANIFEST_BYTES >> 20} MB, not a bundle manifest`);
  if (verifyHash) await checkManifestDigest(source, raw, hash);
  const parsed = parseManifest(raw, metaPath);
  const meta = validateMeta(parsed.meta, metaPath, parsed.floats);
  if (major(meta.kit_version) !== major(KIT_VERSION)) {
    throw bundleError("version", `${where}: written by edgeface ${meta.kit_version}, this SDK reads edgeface ${KIT_VERSION} bundles; bundles are only read by the same major version — re-export the model`);
  }
  if (requireVerified && !RUNNABLE_STATUS.includes(meta.status)) {
    const why = STATUS_WHY[meta.status]?.(meta) ?? `its status is ${JSON.stringify(meta.status)}`;
    throw bundleError("status", `${where}: refusing to load this bundle: ${why}`);
  }
  const files = verifyHash ? await checkFiles(source, meta, hash) : new Map<string, Uint8Array>();
  let card: ModelCard;
  try {
    card = cardFromDict(meta.card, parsed.floats, ["card"]);
  } catch (exc) {
    throw bundleError("schema", `${metaPath}: ${(exc as Error).message}`);
  }
  if (!TARGETS.some(([f, p]) => f === meta.format && p === meta.precision)) {
    throw bundleError("schema", `${metaPath}: no export target ${meta.format}-${meta.precision}; the targets are: ${TARGETS.map(([f, p]) => `${f}-${p}`).join(", ")}`);
  }
  const factory = typeof makeRunner === "function" ? makeRunner : Object.hasOwn(makeRunner, meta.format) ? makeRunner[meta.format] : undefined;
  if (!factory) {
    throw new EdgefaceError("backend", `${where}: a ${meta.format} bundle needs a runtime this SDK was not given (have: ${Object.keys(makeRunner).join(", ") || "none"}); the JS SDK runs onnx bundles (ONNX Runtime) and tflite bundles (LiteRT.js, browser)`);
  }
  let runner: Runner;
  try {
    let model = files.get(meta.model_file) ?? null;
    if (model === null) model = await source.readBytes(meta.model_file);
    if (model === null) throw new Error(`${meta.model_file} is not a file`);
    runner = await factory(model, meta);
  } catch (exc) {
    if (exc instanceof EdgefaceError && exc.kind === "backend" && exc.bundleKind === undefined) throw exc; // a runtime missing here
    throw bundleError("model_load", `${where}/${meta.model_file}: ${typeof makeRunner === "function" ? "the runtime" : meta.format + " runtime"} cannot load this model (${(exc as Error).message?.slice(0, 200)})`);
  }
  if (runner.inputDtype !== undefined && (runner.inputDtype === "uint8") !== (meta.input.dtype === "uint8")) {
    await runner.dispose?.();
    throw bundleError("input_contract", `${where}: the model takes ${runner.inputDtype} input but ${BUNDLE_JSON} says ${meta.input.dtype} (normalization_in_graph ${meta.input.normalization_in_graph})`);
  }
  const bundle = new Bundle(where, meta, card, runner, source);
  const conformance = meta.conformance;
  const hasConformance = conformance !== null && conformance !== undefined && typeof conformance === "object" && Object.keys(conformance).length > 0;
  if (selfTest && (RUNNABLE_STATUS.includes(meta.status) || hasConformance)) {
    if (!options.decodeCrop) {
      await runner.dispose?.();
      throw new EdgefaceError("argument", `${where}: the load-time self-test needs decodeCrop (a PNG decoder); the node / web entry points pass one — or pass selfTest: false`);
    }
    try {
      await runSelfTest(bundle, options.decodeCrop);
    } catch (exc) {
      await runner.dispose?.();
      throw exc;
    }
  }
  return bundle;
}
