package com.edgeface.sdk;

/**
 * One photo and the 5 landmarks of the face in it from the app's own detector (e.g. ML Kit, YuNet):
 * right eye, left eye, nose tip, right mouth corner, left mouth corner (the subject's right is the
 * image's left), as x0, y0, x1, y1, ... in pixels. Either raw RGB pixels (the main entry: what a
 * camera frame converts to) or encoded JPEG/PNG bytes.
 */
public final class FaceImage {
    final byte[] rgb;
    final byte[] encoded;
    final int width, height;
    final double[] landmarks;

    private FaceImage(byte[] rgb, byte[] encoded, int width, int height, double[] landmarks) {
        this.rgb = rgb;
        this.encoded = encoded;
        this.width = width;
        this.height = height;
        this.landmarks = landmarks;
    }

    /** Interleaved RGB, row-major, width * height * 3 bytes. */
    public static FaceImage fromRgb(byte[] rgb, int width, int height, double[] landmarks) {
        return new FaceImage(rgb, null, width, height, landmarks);
    }

    /** JPEG or PNG bytes (decoded by the core). */
    public static FaceImage fromEncoded(byte[] bytes, double[] landmarks) {
        return new FaceImage(null, bytes == null ? new byte[0] : bytes, 0, 0, landmarks);
    }
}
