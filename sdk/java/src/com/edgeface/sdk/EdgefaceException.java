package com.edgeface.sdk;

/**
 * A failure of the native core, with its error kind (the kinds every edgeface SDK shares:
 * "missing", "unreadable", "empty", "tiny", "huge", "invalid", "bad_landmarks", "quality", "bundle",
 * "gallery", "model_mismatch", "not_enrolled", "argument", "runtime") and the core's message.
 */
public class EdgefaceException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String kind;

    public EdgefaceException(String kind, String message) {
        super(kind + ": " + message);
        this.kind = kind;
    }

    public String kind() {
        return kind;
    }

    /** Input the user can fix (a bad photo, bad landmarks, the quality gate), not a programming error. */
    public boolean isRejection() {
        switch (kind) {
            case "missing": case "unreadable": case "empty": case "tiny": case "huge": case "invalid":
            case "bad_landmarks": case "quality":
                return true;
            default:
                return false;
        }
    }
}
