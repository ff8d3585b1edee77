/**
 * Error kinds shared by every edgeface SDK (sdk/VECTORS.md, "Error kinds"): the Python runtime's
 * Rejection reasons for bad images / landmarks, plus the exception classes it raises.
 */
export type RejectionReason =
  | "missing" | "unreadable" | "empty" | "tiny" | "huge" | "invalid"
  | "no_landmarks" | "no_face" | "several_faces" | "bad_landmarks" | "quality";

export type ErrorKind =
  | RejectionReason
  | "bundle"          // Python BundleError
  | "gallery"         // Python GalleryError
  | "model_mismatch"  // Python ModelMismatchError
  | "not_enrolled"    // Python KeyError in verify()
  | "argument"        // Python ValueError for a programming error
  | "backend";        // the inference runtime failed or is missing

/**
 * Why a bundle is refused: Python's BundleError.kind (edgeface/runtime/manifest.py KINDS; docs/runtime.md
 * "Bundle refusal rules" explains each), in the order load_bundle checks them.
 */
export const BUNDLE_KINDS = ["not_found", "manifest_unreadable", "manifest_digest", "schema", "version", "status", "model_file", "file_hash",
  "input_contract", "thresholds", "quality", "model_load", "model_output", "conformance"] as const;
export type BundleKind = (typeof BUNDLE_KINDS)[number];

/** Every error the SDK throws: `kind` is stable across SDKs, `message` names the problem. A refused
 * bundle also carries `bundleKind`, the rule it broke (Python's BundleError.kind). */
export class EdgefaceError extends Error {
  readonly kind: ErrorKind;
  readonly bundleKind?: BundleKind;
  constructor(kind: ErrorKind, message: string, bundleKind?: BundleKind) {
    super(message);
    this.kind = kind;
    this.name = "EdgefaceError";
    if (bundleKind !== undefined) this.bundleKind = bundleKind;
  }
}

/** A refused bundle: kind "missing" for not_found (Python's BundleNotFoundError is a FileNotFoundError), else "bundle". */
export function bundleError(bundleKind: BundleKind, message: string): EdgefaceError {
  return new EdgefaceError(bundleKind === "not_found" ? "missing" : "bundle", message, bundleKind);
}

export const MIN_SIDE = 24; // imageio.MIN_SIDE: below this no detector finds a face
export const MAX_SIDE = 4096; // imageio.MAX_SIDE: larger images are downscaled
export const MAX_PIXELS = 200_000_000; // imageio.MAX_PIXELS: decompression bombs are refused
