/* edgeface C ABI: the on-device runtime of an exported edgeface bundle.
 *
 * Mirrors the Python runtime (edgeface.runtime): the same bundle refusals, alignment, quality
 * gate, embeddings, thresholds, template codecs and SQLite gallery, checked on the shared
 * vectors (sdk/VECTORS.md).
 *
 * Rules of the interface:
 * - Opaque handles (ef_bundle, ef_face, ef_gallery), created by *_open / ef_analyze_* and freed by
 *   the matching *_close / ef_face_free (NULL is accepted and ignored). Handles are validated: a
 *   second close, or any call with a closed handle, returns EF_ERR_ARGUMENT instead of touching
 *   freed memory (closing a handle while another thread still uses it is not allowed).
 * - Every call that can fail returns an ef_status; EF_OK is 0. The message of the last failure on
 *   the calling thread is ef_last_error(); ef_status_kind() names the status with the error kinds
 *   every SDK shares ("bad_landmarks", "bundle", ...). No C++ exception crosses this boundary.
 * - Images: raw interleaved RGB uint8 (row-major, width*3 bytes per row) plus the app's own 5
 *   landmarks (right eye, left eye, nose tip, right mouth corner, left mouth corner; the subject's
 *   right is the image's left) are the main entry; JPEG/PNG bytes or files are decoded for
 *   convenience.
 * - A bundle handle may be used from several threads; a gallery handle from one thread at a time.
 */
#ifndef EDGEFACE_H
#define EDGEFACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define EF_API __declspec(dllexport)
#else
#define EF_API __attribute__((visibility("default")))
#endif

typedef enum ef_status {
    EF_OK = 0,
    EF_ERR_MISSING = 1,        /* a file or bundle directory that does not exist */
    EF_ERR_UNREADABLE = 2,     /* not a decodable image */
    EF_ERR_EMPTY = 3,          /* a 0-byte file or an empty pixel buffer */
    EF_ERR_TINY = 4,           /* image smaller than 24 px on a side */
    EF_ERR_HUGE = 5,           /* image over 200 million pixels */
    EF_ERR_INVALID = 6,        /* pixel buffer of the wrong shape */
    EF_ERR_BAD_LANDMARKS = 7,  /* not 5 finite points, eyes outside the image or coinciding */
    EF_ERR_QUALITY = 8,        /* the face failed the quality gate of the mode */
    EF_ERR_BUNDLE = 9,         /* a bundle refused: ef_last_bundle_kind() says by which rule */
    EF_ERR_GALLERY = 10,       /* a gallery that cannot be opened or used */
    EF_ERR_MODEL_MISMATCH = 11,/* a gallery of another model */
    EF_ERR_NOT_ENROLLED = 12,  /* verify against a name that is not in the gallery */
    EF_ERR_ARGUMENT = 13,      /* a programming error: NULL handle, unknown FAR or codec, bad size */
    EF_ERR_RUNTIME = 14,       /* ONNX Runtime failed, out of memory, an internal error */
    EF_ERR_NO_CONFORMANCE = 15 /* the bundle has no conformance set */
} ef_status;

typedef enum ef_mode { EF_MODE_VERIFY = 0, EF_MODE_ENROLL = 1 } ef_mode;

typedef struct ef_bundle ef_bundle;
typedef struct ef_face ef_face;
typedef struct ef_gallery ef_gallery;

/* -- errors ---------------------------------------------------------------------------- */
EF_API const char* ef_last_error(void);            /* message of this thread's last failure ("" if none) */
/* After ef_bundle_open failed (EF_ERR_BUNDLE, or EF_ERR_MISSING for "not_found"): the rule the bundle
 * broke, the Python BundleError.kind - "not_found", "manifest_unreadable", "manifest_digest", "schema",
 * "model_file", "input_contract", "thresholds", "quality", "version", "status", "file_hash",
 * "model_load", "model_output", "conformance" (docs/runtime.md "Bundle refusal rules"). "" otherwise. */
EF_API const char* ef_last_bundle_kind(void);
EF_API const char* ef_status_kind(ef_status status);/* "ok", "missing", "unreadable", ... "bundle", "gallery" */
EF_API const char* ef_version(void);                /* the kit version this core mirrors, e.g. "0.1.0" */

/* -- bundle ------------------------------------------------------------------------------ */
/* Open a bundle directory with the refusals of the Python load_bundle, in its order: the manifest's
 * digest (edgeface.json.sha256), the bundle schema and the semantic rules (paths, input contract,
 * threshold ranges, quality keys and quality.nonface), the kit's major version, the status
 * ("verified" only), the sha256 of every model and conformance file (and nothing unhashed inside a
 * model package directory); then loads the model in ONNX Runtime (threads 0 = its default) and runs
 * the load-time self-test on the bundle's conformance faces. ef_last_bundle_kind() names the rule. */
EF_API ef_status ef_bundle_open(const char* dir, int threads, ef_bundle** out);
EF_API ef_status ef_bundle_close(ef_bundle* bundle);
EF_API int ef_bundle_embedding_size(const ef_bundle* bundle);
EF_API ef_status ef_bundle_crop_size(const ef_bundle* bundle, int* height, int* width);
/* The gallery fingerprint of the bundle's model (16 hex digits + NUL: buffer of >= 17 bytes). */
EF_API ef_status ef_bundle_fingerprint(const ef_bundle* bundle, char* out, size_t cap);
/* Decision threshold at `far` ("1e-3" / "1e-4") for scores of `codec` ("cosine", "float32", "fp16",
 * "int8": the cosine thresholds; "binary", "binary256", "binary512": their own). */
EF_API ef_status ef_bundle_threshold(const ef_bundle* bundle, const char* codec, const char* far, float* out);
/* Quality-gate threshold (e.g. "min_sharpness") of a mode after merging the bundle's section. */
EF_API ef_status ef_bundle_quality_threshold(const ef_bundle* bundle, ef_mode mode, const char* key, double* out);

/* -- images -------------------------------------------------------------------------------- */
/* Decode JPEG/PNG bytes or a file to RGB (caller frees with ef_free). Errors: missing, empty,
 * unreadable, tiny, huge. */
EF_API ef_status ef_decode_image(const uint8_t* bytes, size_t size, uint8_t** rgb, int* width, int* height);
EF_API ef_status ef_read_image(const char* path, uint8_t** rgb, int* width, int* height);
EF_API void ef_free(void* p);

/* -- one face: align, embed, measure ------------------------------------------------------------ */
/* Align (least-squares similarity onto the bundle's template, bilinear warp, border 0): `crop`
 * receives height*width*3 bytes of the bundle's crop size. `n_values` must be 10. */
EF_API ef_status ef_align(const ef_bundle* bundle, const uint8_t* rgb, int width, int height, const double* landmarks,
                          size_t n_values, uint8_t* crop, size_t crop_size);
/* Embed aligned crops (n x crop height x width x 3 uint8 RGB) -> n x D float32 unit vectors. */
EF_API ef_status ef_embed_crops(const ef_bundle* bundle, const uint8_t* crops, size_t n, float* out, size_t out_len);

/* The full path of FaceRecognizer.analyze for one image: checks, align, embed (+ its mirror for the
 * flip similarity), quality measures and both gate modes. A face is returned even when it fails the
 * gate (see ef_face_passed); bad input returns its error kind and no face. detector_score < 0
 * means none (landmarks from the app's own detector). */
EF_API ef_status ef_analyze_rgb(const ef_bundle* bundle, const uint8_t* rgb, int width, int height, const double* landmarks,
                                size_t n_values, double detector_score, ef_face** out);
EF_API ef_status ef_analyze_encoded(const ef_bundle* bundle, const uint8_t* bytes, size_t size, const double* landmarks,
                                    size_t n_values, double detector_score, ef_face** out);
EF_API ef_status ef_analyze_file(const ef_bundle* bundle, const char* path, const double* landmarks, size_t n_values,
                                 double detector_score, ef_face** out);
/* An aligned crop as the input (the conformance / vector path): measures use `landmarks`. */
EF_API ef_status ef_analyze_crop(const ef_bundle* bundle, const uint8_t* crop, const double* landmarks, size_t n_values,
                                 ef_face** out);
EF_API ef_status ef_face_free(ef_face* face);
EF_API const float* ef_face_embedding(const ef_face* face, size_t* dim);
EF_API const uint8_t* ef_face_crop(const ef_face* face, int* height, int* width);
/* A measure by its Python name ("sharpness", "flip_similarity", "nonface_margin" (bundles with
 * quality.nonface), "abs_yaw", ...); EF_ERR_ARGUMENT if not measured. */
EF_API ef_status ef_face_measure(const ef_face* face, const char* name, double* out);
EF_API int ef_face_passed(const ef_face* face, ef_mode mode);
/* Failed checks of a mode as "measure:kind" joined by ',' (e.g. "sharpness:min,brightness:min"),
 * and the user-facing reasons joined by "; " (Python's Rejection detail). Valid until ef_face_free. */
EF_API const char* ef_face_failed(const ef_face* face, ef_mode mode);
EF_API const char* ef_face_reasons(const ef_face* face, ef_mode mode);
EF_API double ef_face_weight(const ef_face* face); /* enrolment weight: clip(flip_similarity, 0.05, 1) */

/* -- compare / codecs ------------------------------------------------------------------------------------ */
/* Cosine of two faces' embeddings and the decision at the bundle's threshold for `far`; a face
 * failing the verify gate gives EF_ERR_QUALITY (Python: decision "rejected"). */
EF_API ef_status ef_compare(const ef_bundle* bundle, const ef_face* a, const ef_face* b, const char* far, int* match,
                            float* similarity);
EF_API ef_status ef_codec_size(const char* codec, int dim, size_t* bytes);
EF_API ef_status ef_codec_encode(const char* codec, const float* embedding, int dim, uint8_t* out, size_t cap);
/* The codec's similarity of a float query to a stored code (cosine, or 1 - 2h/bits for Hamming codecs). */
EF_API ef_status ef_codec_similarity(const char* codec, const float* query, int dim, const uint8_t* code, size_t size,
                                     float* out);

/* -- gallery ---------------------------------------------------------------------------------------------- */
/* Open (or, unless readonly, create) a gallery for the bundle's model. `codec` is used when creating
 * (NULL = "float32"); an existing gallery keeps its own. Schema, application id and model fingerprint
 * are those of the Python Gallery. */
EF_API ef_status ef_gallery_open(const char* path, const ef_bundle* bundle, const char* codec, int readonly,
                                 ef_gallery** out);
EF_API ef_status ef_gallery_close(ef_gallery* gallery);
EF_API ef_status ef_gallery_count(ef_gallery* gallery, size_t* count);
EF_API const char* ef_gallery_codec(const ef_gallery* gallery);
/* Store one template (normalised here), replacing an existing one of that name. */
EF_API ef_status ef_gallery_add(ef_gallery* gallery, const char* name, const float* templ, int dim, int n_images,
                                double quality);
EF_API ef_status ef_gallery_contains(ef_gallery* gallery, const char* name, int* yes);
/* The threshold this gallery decides with at `far`: the bundle's cosine one, or its codec's own for
 * Hamming codecs. */
EF_API ef_status ef_gallery_threshold(ef_gallery* gallery, const ef_bundle* bundle, const char* far, float* out);
EF_API ef_status ef_gallery_remove(ef_gallery* gallery, const char* name, int* removed);
/* The stored bytes of `name` (EF_ERR_NOT_ENROLLED if absent); `size` in: capacity, out: length. */
EF_API ef_status ef_gallery_template_code(ef_gallery* gallery, const char* name, uint8_t* out, size_t* size);

typedef struct ef_match {
    const char* name; /* valid until the next search on this gallery or its close */
    float score;
} ef_match;
/* Exact search: best `top_k` identities for an embedding, highest score first. */
EF_API ef_status ef_gallery_search(ef_gallery* gallery, const float* query, int dim, int top_k, ef_match* out,
                                   size_t* n_out);

/* Enrol `name` from several faces: faces failing the enrol gate are skipped; the template is the
 * normalised mean of the others' embeddings weighted by ef_face_weight. EF_ERR_QUALITY when none
 * passes (nothing stored). used[i] (optional) says which faces were used. */
EF_API ef_status ef_enroll(ef_gallery* gallery, const ef_bundle* bundle, const char* name, const ef_face* const* faces,
                           size_t n, int* used, double* template_quality);
typedef struct ef_decision {
    int match;        /* 1 match, 0 no match */
    float similarity; /* in the gallery codec's score */
    float threshold;
} ef_decision;
/* Is this face `name`? EF_ERR_QUALITY when the face fails the verify gate, EF_ERR_NOT_ENROLLED. */
EF_API ef_status ef_verify(ef_gallery* gallery, const ef_bundle* bundle, const ef_face* face, const char* name,
                           const char* far, ef_decision* out);
/* Who is this? `name` receives the best candidate above the threshold or "unknown" (valid like
 * ef_match names); candidates as ef_gallery_search. top_k < 1 is EF_ERR_ARGUMENT (as in Python). */
EF_API ef_status ef_identify(ef_gallery* gallery, const ef_bundle* bundle, const ef_face* face, int top_k, const char* far,
                             const char** name, float* score, ef_match* candidates, size_t* n_candidates);

/* -- conformance -------------------------------------------------------------------------------------------- */
typedef struct ef_conformance {
    int passed;
    int faces;
    int pairs;
    int decision_mismatches;
    double cosine_min;
    double cosine_mean;
    double required_min_cosine;
} ef_conformance;
/* Re-embed the bundle's conformance crops (conformance/expected.json) and compare, like the
 * Python check_conformance. */
EF_API ef_status edgeface_check_conformance(const ef_bundle* bundle, ef_conformance* out);

#ifdef __cplusplus
}
#endif
#endif /* EDGEFACE_H */
