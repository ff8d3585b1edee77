/**
 * Browser entry point: bundles fetched from a URL, images decoded by the browser (createImageBitmap,
 * no colour conversion), galleries in IndexedDB, ONNX Runtime Web for .onnx bundles and LiteRT.js for
 * .tflite bundles. Also runs in any JS engine with fetch + the onnxruntime-common API (React Native:
 * pass onnxruntime-react-native as `ort` and your own decoder).
 */
import type { Image } from "./align.js";
import { loadBundle, type Bundle, type BundleSource, type CropDecoder, type LoadOptions, type RunnerFactory } from "./bundle.js";
import { MAX_PIXELS, MIN_SIDE } from "./errors.js";
import type { Gallery } from "./gallery.js";
import { openIdbGallery } from "./gallery-idb.js";
import { ortRunner, type OrtModule, type OrtOptions } from "./ort.js";
import { YuNetDetector } from "./detect.js";
import { FaceRecognizer, rejection, toRgb, type Rejection, type RecognizerOptions } from "./recognizer.js";

export * from "./index.js";
export { openIdbGallery, deleteIdbGallery, IDB_SCHEMA_VERSION, type IdbGalleryOptions } from "./gallery-idb.js";
export { litertRunner, type LiteRtModule } from "./litert.js";

/** A bundle directory served over HTTP(S): `base` is its URL. Every file is revalidated with the server
 * (a cached edgeface.json.sha256 from an earlier export would refuse a re-exported bundle). */
export function urlSource(base: string): BundleSource {
  const root = base.replace(/\/+$/, "");
  return {
    location: root,
    async exists() {
      return true; // HTTP has no directories: a missing bundle shows as a missing edgeface.json
    },
    async readBytes(name: string, limit?: number) {
      const res = await fetch(`${root}/${name.split("/").map(encodeURIComponent).join("/")}`, { cache: "no-cache" });
      if (res.status === 404 || res.status === 410) return null;
      if (!res.ok) throw new Error(`${root}/${name}: HTTP ${res.status}`);
      if (limit === undefined || !res.body) return new Uint8Array(await res.arrayBuffer());
      // read no more than limit + 1 bytes: a huge file is refused without downloading it
      const reader = res.body.getReader();
      const parts: Uint8Array[] = [];
      let got = 0;
      while (got <= limit) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
      }
      await reader.cancel().catch(() => undefined);
      const out = new Uint8Array(Math.min(got, limit + 1));
      let off = 0;
      for (const p of parts) {
        const take = Math.min(p.length, out.length - off);
        out.set(p.subarray(0, take), off);
        off += take;
      }
      return out;
    },
  };
}

/** A stored conformance crop decoded exactly by the browser (PNG, no colour conversion), no size limits. */
export const decodeCrop: CropDecoder = async (bytes) => {
  try {
    const bitmap = await createImageBitmap(new Blob([bytes as BlobPart]), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const img = pixelsOf(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
    return img;
  } catch {
    return null;
  }
};

export interface WebBundleOptions extends LoadOptions, OrtOptions {
  /** the onnxruntime-web module (import * as ort from "onnxruntime-web") */
  ort?: OrtModule;
  runners?: Record<string, RunnerFactory>;
}

/** Open a bundle served at `url` (load_bundle): the same refusals as Python (EdgefaceError.bundleKind), the
 * manifest digest and file hashes through WebCrypto (pure JS outside secure contexts), the load-time
 * self-test on the bundle's conformance faces. Not checkable over HTTP: links leaving the bundle and
 * unhashed files inside a model package directory (the server decides what a URL serves). */
export async function openBundle(url: string, options: WebBundleOptions): Promise<Bundle> {
  const runners = options.runners ?? (options.ort ? { onnx: ortRunner(options.ort, options) } : {});
  return loadBundle(urlSource(url), runners, { decodeCrop, ...options });
}

function pixelsOf(source: CanvasImageSource | ImageBitmap, w: number, h: number): Image {
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" }) as OffscreenCanvasRenderingContext2D;
  ctx.drawImage(source, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h, { colorSpace: "srgb" }).data;
  return toRgb({ width: w, height: h, channels: 4, data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.length) }) as Image;
}

/** Decode an image for the recognizer: a Blob / File, bytes, a URL string, or a video / canvas / ImageBitmap / ImageData. */
export async function decodeImage(input: unknown): Promise<Image | Rejection> {
  const src = typeof input === "string" ? input : "<blob>";
  if (typeof ImageData !== "undefined" && input instanceof ImageData) {
    return toRgb({ width: input.width, height: input.height, channels: 4, data: new Uint8Array(input.data.buffer) }, src);
  }
  if (typeof HTMLVideoElement !== "undefined" && input instanceof HTMLVideoElement) {
    if (!input.videoWidth) return rejection("empty", "the video has no frame yet", "<video>");
    return pixelsOf(input, input.videoWidth, input.videoHeight);
  }
  if ((typeof HTMLCanvasElement !== "undefined" && input instanceof HTMLCanvasElement) || (typeof ImageBitmap !== "undefined" && input instanceof ImageBitmap)) {
    return pixelsOf(input as CanvasImageSource, (input as HTMLCanvasElement).width, (input as HTMLCanvasElement).height);
  }
  let blob: Blob;
  if (typeof input === "string") {
    const res = await fetch(input).catch(() => null);
    if (!res || res.status === 404) return rejection("missing", "no such file", src);
    if (!res.ok) return rejection("unreadable", `HTTP ${res.status}`, src);
    blob = await res.blob();
  } else if (input instanceof Blob) blob = input;
  else if (input instanceof Uint8Array || input instanceof ArrayBuffer) blob = new Blob([input as BlobPart]);
  else return rejection("invalid", `expected an image Blob, bytes, URL or a video/canvas element, got ${input === null ? "null" : typeof input}`, src);
  if (blob.size === 0) return rejection("empty", "the file is empty (0 bytes)", src);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image" });
  } catch (exc) {
    return rejection("unreadable", `not a decodable image (${(exc as Error).name})`, src);
  }
  const { width: w, height: h } = bitmap;
  if (w * h > MAX_PIXELS) return rejection("huge", `${w}x${h} pixels is over the ${MAX_PIXELS} pixel limit`, src);
  if (Math.min(w, h) < MIN_SIDE) return rejection("tiny", `${w}x${h} is smaller than ${MIN_SIDE} px on a side: too small to hold a usable face`, src);
  const img = pixelsOf(bitmap, w, h);
  bitmap.close();
  return img;
}

export interface WebRecognizerOptions extends Omit<RecognizerOptions, "decode" | "gallery">, WebBundleOptions {
  /** an IndexedDB gallery name (created when missing) or an open Gallery */
  gallery?: string | Gallery;
  codec?: string;
}

export async function createRecognizer(bundleUrl: string, options: WebRecognizerOptions): Promise<FaceRecognizer> {
  const bundle = await openBundle(bundleUrl, options);
  const gallery = typeof options.gallery === "string"
    ? await openIdbGallery(options.gallery, { card: bundle.card, codec: options.codec })
    : options.gallery ?? null;
  // as FaceRecognizer.from_bundle: no detector given (undefined) uses the one shipped in the bundle; null uses none
  let detector = options.detector;
  if (detector === undefined) {
    const model = await bundle.detectorModel();
    const ort = options.ort;
    if (model && ort) detector = await YuNetDetector.create(ort, model);
  }
  return new FaceRecognizer(bundle, { ...options, gallery, detector, decode: decodeImage });
}
