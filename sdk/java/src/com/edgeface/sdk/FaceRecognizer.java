package com.edgeface.sdk;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Enrol, verify and identify faces with an exported edgeface bundle and an SQLite gallery — the
 * Android-facing shape of the Python {@code edgeface.runtime.FaceRecognizer}, over the native core.
 *
 * <pre>
 * try (FaceRecognizer rec = FaceRecognizer.open(bundleDir, galleryPath, "float32")) {
 *     rec.enroll("alice", images);
 *     FaceRecognizer.VerifyResult v = rec.verify(probe, "alice", "1e-3");
 *     FaceRecognizer.IdentifyResult id = rec.identify(probe, 5, "1e-3");
 * }
 * </pre>
 *
 * As in Python, a photo that gives no usable face (unreadable, bad landmarks, failing the quality
 * gate) is a result with decision "rejected" and its reason, not an exception; programming and
 * deployment errors (a refused bundle, an unusable gallery, an unknown FAR, a name not enrolled)
 * throw {@link EdgefaceException} carrying the core's kind and message. Not thread-safe: use one
 * instance per thread (the bundle itself may be shared natively).
 */
public final class FaceRecognizer implements AutoCloseable {
    public static final String UNKNOWN = "unknown";
    private static final int VERIFY = 0, ENROLL = 1;

    private long bundle;
    private long gallery;

    private FaceRecognizer(long bundle, long gallery) {
        this.bundle = bundle;
        this.gallery = gallery;
    }

    /**
     * Open a bundle directory (schema, sha256 and status checked) and a gallery file (created with
     * {@code codec} when absent: "float32", "fp16", "int8", "binary", "binary256", "binary512").
     */
    public static FaceRecognizer open(String bundleDir, String galleryPath, String codec) {
        return open(bundleDir, galleryPath, codec, 0);
    }

    /** As {@link #open(String, String, String)} with ONNX Runtime limited to {@code threads} (0: its default, all cores). */
    public static FaceRecognizer open(String bundleDir, String galleryPath, String codec, int threads) {
        long b = Native.openBundle(bundleDir, threads);
        try {
            long g = galleryPath == null ? 0 : Native.openGallery(galleryPath, b, codec, false);
            return new FaceRecognizer(b, g);
        } catch (RuntimeException e) {
            Native.closeBundle(b);
            throw e;
        }
    }

    /** The decision threshold the bundle was calibrated with at {@code far} ("1e-3" or "1e-4"). */
    public float threshold(String codec, String far) {
        return Native.threshold(bundle(), codec, far);
    }

    /** Re-runs the bundle's conformance crops: true when this device reproduces the kit's embeddings. */
    public boolean checkConformance() {
        return Native.checkConformance(bundle())[0] != 0;
    }

    /** The face's L2-normalised embedding; throws for a photo that gives no usable face. */
    public float[] embed(FaceImage image) {
        long f = analyze(image);
        try {
            return Native.faceEmbedding(f);
        } finally {
            Native.freeFace(f);
        }
    }

    public EnrollResult enroll(String name, List<FaceImage> images) {
        List<Rejection> rejected = new ArrayList<>();
        List<Long> faces = new ArrayList<>();
        List<Integer> index = new ArrayList<>();
        try {
            for (int i = 0; i < images.size(); i++) {
                try {
                    faces.add(analyze(images.get(i)));
                    index.add(i);
                } catch (EdgefaceException e) {
                    if (!e.isRejection()) throw e;
                    rejected.add(new Rejection(i, e.kind(), e.getMessage()));
                }
            }
            if (faces.isEmpty()) return new EnrollResult(name, false, Collections.emptyList(), rejected, 0);
            long[] handles = new long[faces.size()];
            for (int i = 0; i < handles.length; i++) handles[i] = faces.get(i);
            double[] out;
            try {
                out = Native.enroll(gallery(), bundle, name, handles);
            } catch (EdgefaceException e) {
                if (!e.kind().equals("quality")) throw e;
                for (int i = 0; i < handles.length; i++)
                    rejected.add(new Rejection(index.get(i), "quality", Native.faceReasons(handles[i], ENROLL)));
                return new EnrollResult(name, false, Collections.emptyList(), rejected, 0);
            }
            List<Integer> used = new ArrayList<>();
            for (int i = 0; i < handles.length; i++) {
                if (out[1 + i] != 0) used.add(index.get(i));
                else rejected.add(new Rejection(index.get(i), "quality", Native.faceReasons(handles[i], ENROLL)));
            }
            return new EnrollResult(name, true, used, rejected, out[0]);
        } finally {
            for (long f : faces) Native.freeFace(f);
        }
    }

    public VerifyResult verify(FaceImage image, String name, String far) {
        long g = gallery();
        float thr = Native.galleryThreshold(g, bundle, far);  // an unknown FAR throws first, as in Python
        if (!Native.galleryContains(g, name)) throw new EdgefaceException("not_enrolled", "'" + name + "' is not enrolled");
        long f;
        try {
            f = analyze(image);
        } catch (EdgefaceException e) {
            if (!e.isRejection()) throw e;
            return new VerifyResult(name, "rejected", Float.NaN, thr, new Rejection(0, e.kind(), e.getMessage()));
        }
        try {
            float[] r;
            try {
                r = Native.verify(g, bundle, f, name, far);
            } catch (EdgefaceException e) {
                if (!e.kind().equals("quality")) throw e;
                return new VerifyResult(name, "rejected", Float.NaN, thr, new Rejection(0, "quality", Native.faceReasons(f, VERIFY)));
            }
            return new VerifyResult(name, r[0] != 0 ? "match" : "no_match", r[1], r[2], null);
        } finally {
            Native.freeFace(f);
        }
    }

    public IdentifyResult identify(FaceImage image, int topK, String far) {
        if (topK < 1) throw new EdgefaceException("argument", "top_k must be a whole number >= 1, got " + topK);  // as in Python
        long g = gallery();
        Native.galleryThreshold(g, bundle, far);  // an unknown FAR throws first, as in Python
        long f;
        try {
            f = analyze(image);
        } catch (EdgefaceException e) {
            if (!e.isRejection()) throw e;
            return new IdentifyResult(null, Float.NaN, Collections.emptyList(), new Rejection(0, e.kind(), e.getMessage()));
        }
        try {
            Object[] r;
            try {
                r = Native.identify(g, bundle, f, topK, far);
            } catch (EdgefaceException e) {
                if (!e.kind().equals("quality")) throw e;
                return new IdentifyResult(null, Float.NaN, Collections.emptyList(), new Rejection(0, "quality", Native.faceReasons(f, VERIFY)));
            }
            String[] names = (String[]) r[2];
            float[] scores = (float[]) r[3];
            List<Match> cands = new ArrayList<>();
            for (int i = 0; i < names.length; i++) cands.add(new Match(names[i], scores[i]));
            return new IdentifyResult((String) r[0], ((float[]) r[1])[0], cands, null);
        } finally {
            Native.freeFace(f);
        }
    }

    @Override
    public void close() {
        if (gallery != 0) Native.closeGallery(gallery);
        if (bundle != 0) Native.closeBundle(bundle);
        gallery = 0;
        bundle = 0;
    }

    // -- helpers ---------------------------------------------------------------------------------
    private long bundle() {
        if (bundle == 0) throw new IllegalStateException("FaceRecognizer is closed");
        return bundle;
    }

    private long gallery() {
        bundle();
        if (gallery == 0) throw new IllegalStateException("this FaceRecognizer has no gallery: open it with a gallery path");
        return gallery;
    }

    private long analyze(FaceImage image) {
        if (image == null) throw new EdgefaceException("argument", "image is null");
        if (image.encoded != null) return Native.analyzeEncoded(bundle(), image.encoded, image.landmarks);
        return Native.analyzeRgb(bundle(), image.rgb, image.width, image.height, image.landmarks);
    }

    // -- results -----------------------------------------------------------------------------------
    /** Why one image gave no usable face: the error kind and the core's sentence. */
    public static final class Rejection {
        public final int image;
        public final String reason, detail;

        Rejection(int image, String reason, String detail) {
            this.image = image;
            this.reason = reason;
            this.detail = detail;
        }
    }

    public static final class Match {
        public final String name;
        public final float score;

        Match(String name, float score) {
            this.name = name;
            this.score = score;
        }
    }

    public static final class EnrollResult {
        public final String name;
        public final boolean enrolled;
        public final List<Integer> used;
        public final List<Rejection> rejected;
        public final double templateQuality;

        EnrollResult(String name, boolean enrolled, List<Integer> used, List<Rejection> rejected, double quality) {
            this.name = name;
            this.enrolled = enrolled;
            this.used = used;
            this.rejected = rejected;
            this.templateQuality = quality;
        }
    }

    public static final class VerifyResult {
        public final String name, decision;  // "match", "no_match" or "rejected"
        public final float similarity, threshold;
        public final Rejection rejection;

        VerifyResult(String name, String decision, float similarity, float threshold, Rejection rejection) {
            this.name = name;
            this.decision = decision;
            this.similarity = similarity;
            this.threshold = threshold;
            this.rejection = rejection;
        }
    }

    public static final class IdentifyResult {
        public final String name;  // the identity, "unknown", or null when the photo was rejected
        public final float score;
        public final List<Match> candidates;
        public final Rejection rejection;

        IdentifyResult(String name, float score, List<Match> candidates, Rejection rejection) {
            this.name = name;
            this.score = score;
            this.candidates = candidates;
            this.rejection = rejection;
        }

        public String decision() {
            return name == null ? "rejected" : UNKNOWN.equals(name) ? "unknown" : "identified";
        }
    }
}
