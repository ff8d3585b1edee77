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

/** Every error the SDK throws: `kind` is stable across SDKs, `message` names the problem. */
export class EdgefaceError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string) {
    super(message);
    this.kind = kind;
    this.name = "EdgefaceError";
  }
}

export const MIN_SIDE = 24; // imageio.MIN_SIDE: below this no detector finds a face
export const MAX_SIDE = 4096; // imageio.MAX_SIDE: larger images are downscaled
export const MAX_PIXELS = 200_000_000; // imageio.MAX_PIXELS: decompression bombs are refused
