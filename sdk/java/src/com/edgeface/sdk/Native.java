package com.edgeface.sdk;

/** The JNI entry points (sdk/java/jni/edgeface_jni.cpp over the C ABI). Handles are native pointers. */
final class Native {
    static {
        // Android: libedgeface_jni.so from the AAR's jniLibs/<abi>/; desktop: -Djava.library.path
        System.loadLibrary("edgeface_jni");
    }

    private Native() {}

    static native long openBundle(String dir, int threads);
    static native void closeBundle(long bundle);
    static native float threshold(long bundle, String codec, String far);
    static native long openGallery(String path, long bundle, String codec, boolean readonly);
    static native void closeGallery(long gallery);
    static native float galleryThreshold(long gallery, long bundle, String far);
    static native boolean galleryContains(long gallery, String name);
    static native long analyzeRgb(long bundle, byte[] rgb, int width, int height, double[] landmarks);
    static native long analyzeEncoded(long bundle, byte[] bytes, double[] landmarks);
    static native void freeFace(long face);
    static native float[] faceEmbedding(long face);
    static native boolean facePassed(long face, int mode);
    static native String faceReasons(long face, int mode);
    static native String faceFailed(long face, int mode);
    static native double faceWeight(long face);
    static native double[] enroll(long gallery, long bundle, String name, long[] faces);
    static native float[] verify(long gallery, long bundle, long face, String name, String far);
    static native Object[] identify(long gallery, long bundle, long face, int topK, String far);
    static native double[] checkConformance(long bundle);
}
