/**
 * Node entry point: bundles from a directory, images decoded with sharp (libvips: the same JPEG
 * pixels as the Python runtime's decoder on the shared vectors), galleries in SQLite files with the
 * Python gallery's format, ONNX Runtime through onnxruntime-node (or any module with its API).
 */
import { createHash } from "node:crypto";
import { lstat, open, readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import sharp from "sharp";
import type { Image } from "./align.js";
import { loadBundle, type Bundle, type BundleSource, type CropDecoder, type LoadOptions, type RunnerFactory } from "./bundle.js";
import { MAX_PIXELS, MAX_SIDE, MIN_SIDE } from "./errors.js";
import type { Gallery } from "./gallery.js";
import { openSqliteGallery } from "./gallery-sqlite.js";
import { ortRunner, type OrtModule, type OrtOptions } from "./ort.js";
import { YuNetDetector } from "./detect.js";
import { FaceRecognizer, rejection, toRgb, type Rejection, type RecognizerOptions } from "./recognizer.js";

export * from "./index.js";
export { openSqliteGallery, SCHEMA_VERSION as GALLERY_SCHEMA_VERSION, APPLICATION_ID, type SqliteGalleryOptions } from "./gallery-sqlite.js";

/** pathlib's non-strict resolve(): links followed as far as they exist (a dangling link still points somewhere). */
async function resolveLoose(p: string, hops = 0): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    if (hops > 40 || dirname(p) === p) return p;
    try {
      if ((await lstat(p)).isSymbolicLink()) return resolveLoose(resolve(dirname(p), await readlink(p)), hops + 1);
    } catch {
      // not there at all: resolve the parent
    }
    return join(await resolveLoose(dirname(p), hops + 1), basename(p));
  }
}

/** A bundle directory on disk. */
export function directorySource(dir: string): BundleSource {
  return {
    location: dir,
    async exists() {
      try {
        return (await stat(dir)).isDirectory();
      } catch {
        return false;
      }
    },
    async readBytes(name: string, limit?: number) {
      const p = join(dir, name);
      try {
        if (!(await stat(p)).isFile()) return null;
      } catch {
        return null; // missing, or a dangling link
      }
      if (limit === undefined) return new Uint8Array(await readFile(p));
      const fh = await open(p, "r"); // read no more than needed: a huge file is refused unread
      try {
        const buf = new Uint8Array(limit + 1);
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return buf.subarray(0, got);
      } finally {
        await fh.close();
      }
    },
    async isInside(name: string) {
      const rel = relative(await resolveLoose(dir), await resolveLoose(join(dir, name)));
      return rel !== ".." && !rel.startsWith(".." + sep) && !rel.startsWith(sep);
    },
    async listFiles(name: string) {
      const top = join(dir, name);
      try {
        if (!(await stat(top)).isDirectory()) return null;
      } catch {
        return null;
      }
      const out: string[] = [];
      const walk = async (d: string) => {
        for (const e of await readdir(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) await walk(p);
          else if (e.isFile() || e.isSymbolicLink()) out.push(relative(dir, p).split(sep).join("/"));
        }
      };
      await walk(top);
      return out;
    },
  };
}

/** node:crypto sha256 (hex). */
export async function sha256File(bytes: Uint8Array): Promise<string> {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A stored conformance crop decoded exactly (sharp: PNG pixels as OpenCV reads them), no size limits. */
export const decodeCrop: CropDecoder = async (bytes) => {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: false }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const rgb = toRgb({ width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data.buffer, data.byteOffset, data.length) });
    return "data" in rgb ? rgb : null;
  } catch {
    return null;
  }
};

export interface NodeBundleOptions extends LoadOptions, OrtOptions {
  /** the ONNX Runtime module (default: onnxruntime-node; onnxruntime-web works too) */
  ort?: OrtModule;
  /** a runner factory per bundle format, replacing the default ONNX Runtime one */
  runners?: Record<string, RunnerFactory>;
}

/** Open a bundle directory (load_bundle): same refusals as Python (EdgefaceError.bundleKind), ONNX Runtime
 * for onnx bundles, the load-time self-test on the bundle's conformance faces. */
export async function openBundle(dir: string, options: NodeBundleOptions = {}): Promise<Bundle> {
  const runners = options.runners ?? { onnx: ortRunner(options.ort ?? ((await import("onnxruntime-node")) as unknown as OrtModule), options) };
  return loadBundle(directorySource(dir), runners, { decodeCrop, sha256: sha256File, ...options });
}

/** imageio.read_image: decode an image file (or its bytes) to RGB with the Python runtime's refusals. */
export async function decodeImage(input: unknown): Promise<Image | Rejection> {
  const src = typeof input === "string" ? input : "<bytes>";
  let bytes: Uint8Array;
  if (typeof input === "string") {
    try {
      const st = await stat(input);
      if (!st.isFile()) return rejection("missing", "no such file", src);
      if (st.size === 0) return rejection("empty", "the file is empty (0 bytes)", src);
      bytes = new Uint8Array(await readFile(input));
    } catch {
      return rejection("missing", "no such file", src);
    }
  } else if (input instanceof Uint8Array) {
    if (input.length === 0) return rejection("empty", "the file is empty (0 bytes)", src);
    bytes = input;
  } else {
    return rejection("invalid", `expected an image file path, its bytes or decoded pixels, got ${input === null ? "null" : typeof input}`, src);
  }
  let img: Image;
  try {
    const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    if ((meta.width ?? 0) * (meta.height ?? 0) > MAX_PIXELS) {
      return rejection("huge", `${meta.width}x${meta.height} pixels is over the ${MAX_PIXELS.toLocaleString("en")} pixel limit`, src);
    }
    const { data, info } = await sharp(bytes, { limitInputPixels: false }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    img = { width: info.width, height: info.height, channels: info.channels, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (exc) {
    return rejection("unreadable", `not a decodable image (${(exc as Error).message.split("\n")[0]})`, src);
  }
  const rgb = toRgb(img, src);
  if (!("data" in rgb)) return rgb;
  const { width: w, height: h } = rgb;
  if (Math.min(w, h) < MIN_SIDE) return rejection("tiny", `${w}x${h} is smaller than ${MIN_SIDE} px on a side: too small to hold a usable face`, src);
  if (Math.max(w, h) > MAX_SIDE) {
    // Python downscales with OpenCV's INTER_AREA; libvips' box reduction is close, not bit-exact.
    const s = MAX_SIDE / Math.max(w, h);
    const { data, info } = await sharp(rgb.data, { raw: { width: w, height: h, channels: 3 } })
      .resize(Math.max(1, Math.round(w * s)), Math.max(1, Math.round(h * s)), { fit: "fill", kernel: "linear" }).raw().toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  }
  return rgb;
}

export interface NodeRecognizerOptions extends Omit<RecognizerOptions, "decode" | "gallery">, NodeBundleOptions {
  /** a gallery file (created when missing) or an open Gallery */
  gallery?: string | Gallery;
  codec?: string;
}

/** FaceRecognizer.from_bundle for Node. */
export async function createRecognizer(bundleDir: string, options: NodeRecognizerOptions = {}): Promise<FaceRecognizer> {
  const bundle = await openBundle(bundleDir, options);
  const gallery = typeof options.gallery === "string"
    ? await openSqliteGallery(options.gallery, { card: bundle.card, codec: options.codec })
    : options.gallery ?? null;
  // as FaceRecognizer.from_bundle: no detector given (undefined) uses the one shipped in the bundle; null uses none
  let detector = options.detector;
  if (detector === undefined) {
    const model = await bundle.detectorModel();
    const ort = options.ort ?? ((await import("onnxruntime-node")) as unknown as OrtModule);
    if (model && ort) detector = await YuNetDetector.create(ort, model);
  }
  return new FaceRecognizer(bundle, { ...options, gallery, detector, decode: decodeImage });
}
