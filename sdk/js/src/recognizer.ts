/**
 * The app-facing API (edgeface/runtime/face.py): enrol, compare, verify and identify faces given the
 * app's own 5 landmarks per image. Bad input never throws and never matches: it comes back as a
 * Rejection with the Python runtime's reason code (missing, unreadable, empty, tiny, huge, invalid,
 * no_landmarks, bad_landmarks, quality). Programming errors throw EdgefaceError (kind "argument",
 * "not_enrolled", ...).
 */
import { alignFace, checkLandmarks, type Image, type Point } from "./align.js";
import type { Bundle } from "./bundle.js";
import { EdgefaceError, MIN_SIDE, type RejectionReason } from "./errors.js";
import type { Gallery, Match } from "./gallery.js";
import { pickPrimary, type Detection } from "./detect.js";
import { checkNonfaceSection, measure, mirror, nonfaceMargins, QualityGate, QualityReport, type Mode, type NonfaceSection } from "./quality.js";

export const UNKNOWN = "unknown";

export interface Rejection {
  ok: false;
  reason: RejectionReason;
  detail: string;
  source: string;
  quality?: QualityReport;
}

export interface Face {
  ok: true;
  source: string;
  crop: Image;
  landmarks: Point[];
  embedding: Float32Array;
  quality: QualityReport;
  detectorScore: number | null;
  box: number[] | null;
}

/** What decodes an app's image input (a path, bytes, a Blob, an already decoded Image) into RGB pixels. */
export type ImageDecoder = (input: unknown) => Promise<Image | Rejection>;

export interface CompareResult {
  decision: "match" | "no_match" | "rejected";
  match: boolean | null;
  similarity: number | null;
  threshold: number;
  far: string;
  rejected: Rejection[];
  name?: string;
}

export interface IdentifyResult {
  decision: "identified" | "unknown" | "rejected";
  name: string | null;
  score: number | null;
  threshold: number;
  far: string;
  candidates: Match[];
  rejected: Rejection[];
}

export interface EnrollResult {
  name: string;
  enrolled: boolean;
  used: Face[];
  rejected: Rejection[];
  /** mean weight of the images used */
  quality: number;
}

export interface FaceInput {
  image: unknown;
  /** 5 (x, y) points (nested or flat), right eye, left eye, nose, right mouth, left mouth */
  landmarks?: unknown;
  detectorScore?: number | null;
  box?: number[] | null;
}

export interface RecognizerOptions {
  gallery?: Gallery | null;
  /** {FAR: threshold}; default the bundle's (the codec's own for a Hamming-code gallery) */
  thresholds?: Record<string, number>;
  /** quality-gate overrides; default the bundle's quality section */
  quality?: Record<string, unknown>;
  gate?: boolean;
  decode: ImageDecoder;
  /** finds faces when an input has no landmarks (e.g. YuNetDetector) */
  detector?: { detect(image: Image): Promise<Detection[]> } | null;
  /** with a detector: "primary" uses the largest, most central face, "reject" refuses several */
  multipleFaces?: "primary" | "reject";
}

export function rejection(reason: RejectionReason, detail: string, source = "<array>"): Rejection {
  return { ok: false, reason, detail, source };
}

function sourceName(input: unknown): string {
  return typeof input === "string" ? input : "<array>";
}

function isImage(v: unknown): v is Image {
  const im = v as Image;
  return !!im && typeof im === "object" && im.data instanceof Uint8Array && typeof im.width === "number" && typeof im.height === "number";
}

/** imageio.to_uint8_rgb for decoded pixels: 1, 3 or 4 channels -> 3 (RGB), with the same refusals. */
export function toRgb(image: Image, source = "<array>"): Image | Rejection {
  const { width: w, height: h, channels: c, data } = image;
  if (!(w > 0 && h > 0) || data.length === 0) return rejection("empty", "the image is empty", source);
  if (![1, 3, 4].includes(c) || data.length !== w * h * c) {
    return rejection("invalid", `expected HxW, HxWx3 or HxWx4 pixels, got ${w}x${h} with ${c} channels and ${data.length} values`, source);
  }
  if (c === 3) return image;
  const out = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    if (c === 1) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i];
    else { out[3 * i] = data[4 * i]; out[3 * i + 1] = data[4 * i + 1]; out[3 * i + 2] = data[4 * i + 2]; }
  }
  return { width: w, height: h, channels: 3, data: out };
}

export class FaceRecognizer {
  readonly gate: QualityGate;
  /** the non-face prototypes calibrated at export (quality.nonface); null for bundles without them */
  readonly nonface: NonfaceSection | null;
  readonly gallery: Gallery | null;
  /** the thresholds gallery scores are decided with */
  readonly thresholds: Record<string, number>;
  /** compare(a, b) scores cosines whatever the gallery stores */
  readonly cosineThresholds: Record<string, number>;
  readonly gateEnabled: boolean;
  private readonly decode: ImageDecoder;
  readonly detector: RecognizerOptions["detector"];
  readonly multipleFaces: "primary" | "reject";

  constructor(readonly bundle: Bundle, options: RecognizerOptions) {
    this.decode = options.decode;
    this.detector = options.detector ?? null;
    this.multipleFaces = options.multipleFaces ?? "primary";
    if (!["primary", "reject"].includes(this.multipleFaces)) throw new EdgefaceError("argument", `multipleFaces must be "primary" or "reject", got ${JSON.stringify(this.multipleFaces)}`);
    const qualitySection = options.quality ?? bundle.quality;
    this.gate = new QualityGate(qualitySection);
    this.nonface = (qualitySection?.nonface ?? null) as NonfaceSection | null;
    if (this.nonface !== null) {
      const errs = checkNonfaceSection(this.nonface, bundle.card.embedding_size);
      if (errs.length) throw new EdgefaceError("argument", errs.join("; "));
    }
    this.gateEnabled = options.gate ?? true;
    this.gallery = options.gallery ?? null;
    const explicit = options.thresholds !== undefined;
    this.thresholds = { ...(options.thresholds ?? bundle.thresholds) };
    this.cosineThresholds = { ...this.thresholds };
    if (this.gallery) {
      this.gallery.checkModel(bundle.card);
      if (this.gallery.codec.hammingScores && !explicit) {
        const own = bundle.codecThresholds(this.gallery.codec.name);
        if (Object.keys(own).length === 0) {
          throw new EdgefaceError("argument", `${this.gallery.location}: ${this.gallery.codec.name}-codec gallery scores are Hamming similarities and the model has no thresholds calibrated for that codec`);
        }
        this.thresholds = own;
      }
    }
  }

  /** The decision threshold at `far` for gallery scores, or for plain cosines (compare). */
  threshold(far: string, cosine = false): number {
    const table = cosine ? this.cosineThresholds : this.thresholds;
    if (Object.keys(table).length === 0) throw new EdgefaceError("argument", `model ${JSON.stringify(this.bundle.card.name)} has no calibrated thresholds`);
    if (!(far in table)) throw new EdgefaceError("argument", `no threshold calibrated for FAR ${far}; available: ${Object.keys(table).sort().join(", ")}`);
    return table[far];
  }

  private async load(input: unknown): Promise<Image | Rejection> {
    const src = sourceName(input);
    if (isImage(input)) {
      const rgb = toRgb(input, src);
      if (!("data" in rgb)) return rgb;
      if (Math.min(rgb.width, rgb.height) < MIN_SIDE) return rejection("tiny", `${rgb.width}x${rgb.height} is smaller than ${MIN_SIDE} px on a side`, src);
      return rgb;
    }
    return this.decode(input);
  }

  /** Pixels and checked landmarks, or why not (FaceRecognizer.locate with the app's landmarks). */
  async locate(face: FaceInput): Promise<{ pixels: Image; landmarks: Point[]; detectorScore?: number; box?: number[]; notes?: string[] } | Rejection> {
    const src = sourceName(face.image);
    const pixels = await this.load(face.image);
    if (!("data" in pixels)) return pixels;
    if (face.landmarks === undefined || face.landmarks === null) {
      if (!this.detector) return rejection("no_landmarks", "no landmarks given and no detector configured (pass landmarks or a detector)", src);
      const dets = await this.detector.detect(pixels);
      if (dets.length === 0) return rejection("no_face", "the detector found no face", src);
      const notes: string[] = [];
      if (dets.length > 1) {
        if (this.multipleFaces === "reject") return rejection("several_faces", `the detector found ${dets.length} faces; expected one`, src);
        notes.push(`${dets.length} faces found; used the primary (largest, most central) one`);
      }
      const det = pickPrimary(dets, pixels.width, pixels.height)!;
      return { pixels, landmarks: det.landmarks, detectorScore: det.score, box: det.box, notes };
    }
    let lm: Point[];
    try {
      lm = checkLandmarks(face.landmarks);
    } catch (exc) {
      return rejection("bad_landmarks", (exc as Error).message, src);
    }
    const { width: w, height: h } = pixels;
    const eyes = lm.slice(0, 2);
    if (eyes.some(([x, y]) => x < 0 || y < 0 || x >= w || y >= h)) {
      return rejection("bad_landmarks", `eye landmarks ${JSON.stringify(eyes.map((p) => p.map((v) => Math.round(v * 10) / 10)))} lie outside the ${w}x${h} image`, src);
    }
    if (Math.hypot(lm[1][0] - lm[0][0], lm[1][1] - lm[0][1]) < 2.0) return rejection("bad_landmarks", "the two eye landmarks coincide: not a face", src);
    return { pixels, landmarks: lm };
  }

  /** Align, quality-check and embed each face (one batched embed call, crops + their mirrors). */
  async analyze(faces: FaceInput[], mode: Mode = "verify"): Promise<(Face | Rejection)[]> {
    const [h, w] = this.bundle.cropSize;
    const located: ({ crop: Image; landmarks: Point[]; face: FaceInput } | Rejection)[] = [];
    for (const face of faces) {
      const loc = await this.locate(face);
      if (!("pixels" in loc)) { located.push(loc); continue; }
      try {
        const withDetection = loc.detectorScore === undefined ? face : { ...face, detectorScore: loc.detectorScore, box: loc.box };
        located.push({ crop: alignFace(loc.pixels, loc.landmarks, this.bundle.template, [h, w]), landmarks: loc.landmarks, face: withDetection });
      } catch (exc) {
        located.push(rejection("bad_landmarks", `cannot align: ${(exc as Error).message}`, sourceName(face.image)));
      }
    }
    const good = located.flatMap((l, i) => ("crop" in l ? [i] : []));
    const out: (Face | Rejection)[] = located.map((l) => ("crop" in l ? (null as unknown as Face) : l));
    if (good.length === 0) return out;
    const size = h * w * 3, d = this.bundle.card.embedding_size, n = good.length;
    const batch = new Uint8Array(2 * n * size);
    good.forEach((i, j) => {
      const crop = (located[i] as { crop: Image }).crop;
      batch.set(crop.data, j * size);
      batch.set(mirror(crop).data, (n + j) * size);
    });
    const emb = await this.bundle.embed(batch, 2 * n);
    if (!emb.every(Number.isFinite)) throw new EdgefaceError("backend", `embedder ${this.bundle.card.name} returned non-finite values`);
    const margins = this.nonface ? nonfaceMargins(emb.subarray(0, n * d), d, this.nonface) : null;
    good.forEach((i, j) => {
      const { crop, landmarks, face } = located[i] as { crop: Image; landmarks: Point[]; face: FaceInput };
      const e = emb.slice(j * d, (j + 1) * d);
      let flip = 0;
      for (let k = 0; k < d; k++) flip += e[k] * emb[(n + j) * d + k];
      const report = this.gate.assess(measure(crop, landmarks, { detectorScore: face.detectorScore, box: face.box, flipSimilarity: Math.fround(flip),
        nonfaceMargin: margins ? margins[j] : null, template: this.bundle.template }), mode);
      const src = sourceName(face.image);
      out[i] = this.gateEnabled && !report.passed
        ? { ...rejection("quality", report.reasons.join("; "), src), quality: report }
        : { ok: true, source: src, crop, landmarks, embedding: e, quality: report, detectorScore: face.detectorScore ?? null, box: face.box ?? null };
    });
    return out;
  }

  private needGallery(): Gallery {
    if (!this.gallery) throw new EdgefaceError("argument", "this FaceRecognizer has no gallery: pass gallery");
    return this.gallery;
  }

  /** Several images of one person -> one quality-weighted template (the stricter enrol gate). */
  async enroll(name: string, faces: FaceInput[], replace = true): Promise<EnrollResult> {
    const gallery = this.needGallery();
    if (typeof name !== "string" || !name.trim()) throw new EdgefaceError("argument", `identity name must be a non-empty string, got ${JSON.stringify(name)}`);
    if (faces.length === 0) throw new EdgefaceError("argument", `enroll ${JSON.stringify(name)}: no images given`);
    const results = await this.analyze(faces, "enroll");
    const used = results.filter((r): r is Face => r.ok);
    const rejected = results.filter((r): r is Rejection => !r.ok);
    if (used.length === 0) return { name, enrolled: false, used, rejected, quality: 0 };
    const d = this.bundle.card.embedding_size;
    const template = new Float64Array(d);
    let wsum = 0;
    for (const f of used) {
      wsum += f.quality.weight;
      for (let k = 0; k < d; k++) template[k] += f.quality.weight * f.embedding[k];
    }
    const norm = Math.max(Math.hypot(...template), 1e-10);
    const quality = wsum / used.length;
    await gallery.add(name, Array.from(template, (v) => v / norm), used.length, quality, replace);
    return { name, enrolled: true, used, rejected, quality };
  }

  /** Are these two faces the same person? (cosine at the bundle's threshold for `far`) */
  async compare(a: FaceInput, b: FaceInput, far = "1e-3"): Promise<CompareResult> {
    const thr = this.threshold(far, true);
    const [fa, fb] = await this.analyze([a, b], "verify");
    const rejected = [fa, fb].filter((r): r is Rejection => !r.ok);
    if (rejected.length || !fa.ok || !fb.ok) return { decision: "rejected", match: null, similarity: null, threshold: thr, far, rejected };
    let s = 0;
    for (let k = 0; k < fa.embedding.length; k++) s += fa.embedding[k] * fb.embedding[k];
    const sim = Math.fround(s);
    return { decision: sim >= thr ? "match" : "no_match", match: sim >= thr, similarity: sim, threshold: thr, far, rejected: [] };
  }

  /** Is this the enrolled `name`? */
  async verify(face: FaceInput, name: string, far = "1e-3"): Promise<CompareResult> {
    const gallery = this.needGallery();
    const thr = this.threshold(far);
    const code = await gallery.templateCode(name);
    if (code === null) throw new EdgefaceError("not_enrolled", `${JSON.stringify(name)} is not enrolled in ${gallery.location}`);
    const [f] = await this.analyze([face], "verify");
    if (!f.ok) return { decision: "rejected", match: null, similarity: null, threshold: thr, far, rejected: [f], name };
    const sim = gallery.codec.similarity(f.embedding, code);
    return { decision: sim >= thr ? "match" : "no_match", match: sim >= thr, similarity: sim, threshold: thr, far, rejected: [], name };
  }

  /** Who is this? Open set: the best match below the threshold for `far` is "unknown". */
  async identify(face: FaceInput, topK = 5, far = "1e-3"): Promise<IdentifyResult> {
    if (typeof topK !== "number" || !Number.isInteger(topK) || topK < 1) {
      throw new EdgefaceError("argument", `top_k must be a whole number >= 1, got ${String(topK)}`); // as in Python
    }
    const gallery = this.needGallery();
    const thr = this.threshold(far);
    const [f] = await this.analyze([face], "verify");
    if (!f.ok) return { decision: "rejected", name: null, score: null, threshold: thr, far, candidates: [], rejected: [f] };
    const cands = await gallery.search(f.embedding, topK);
    if (cands.length === 0) return { decision: "unknown", name: UNKNOWN, score: null, threshold: thr, far, candidates: [], rejected: [] };
    const best = cands[0];
    const known = best.score >= thr;
    return { decision: known ? "identified" : "unknown", name: known ? best.name : UNKNOWN, score: best.score, threshold: thr, far, candidates: cands, rejected: [] };
  }
}
