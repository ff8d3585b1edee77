package com.edgeface.sdk;

/**
 * A failure of the native core, with its error kind (the kinds every edgeface SDK shares:
 * "missing", "unreadable", "empty", "tiny", "huge", "invalid", "bad_landmarks", "quality", "bundle",
 * "gallery", "model_mismatch", "not_enrolled", "argument", "runtime") and the core's message.
 */
public class EdgefaceException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String kind;
    private final String bundleKind;

    public EdgefaceException(String kind, String message) {
        this(kind, message, "");
    }

    public EdgefaceException(String kind, String message, String bundleKind) {
        super(kind + ": " + message);
        this.kind = kind;
        this.bundleKind = bundleKind == null ? "" : bundleKind;
    }

    public String kind() {
        return kind;
    }

    /**
     * For a refused bundle (kind "bundle", or "missing" when there is none): the rule it broke, the
     * Python runtime's BundleError.kind ("manifest_digest", "schema", "model_file", "input_contract",
     * "thresholds", "quality", "version", "status", "file_hash", "model_load", "model_output",
     * "conformance", "not_found", "manifest_unreadable"; docs/runtime.md); "" otherwise.
     */
    public String bundleKind() {
        return bundleKind;
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
