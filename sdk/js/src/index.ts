/** @edgeface/sdk: the platform-neutral core (bundle, align, quality, codecs, gallery, recognizer).
 * Platform entry points: "@edgeface/sdk/node" (files, sharp, SQLite, onnxruntime-node) and
 * "@edgeface/sdk/web" (fetch, canvas, IndexedDB, onnxruntime-web / LiteRT.js). */
export * from "./errors.js";
export * from "./align.js";
export * from "./bundle.js";
export * from "./card.js";
export * from "./codecs.js";
export * from "./gallery.js";
export * from "./quality.js";
export * from "./recognizer.js";
export * from "./detect.js";
export { ortRunner, type OrtModule, type OrtOptions } from "./ort.js";
export * from "./conformance.js";
export * from "./manifest.js";
export { parsePythonJson, JsonSyntaxError, MAX_JSON_DEPTH } from "./pyjson.js";
export { sha256, sha256Hex, toHex, fromHex } from "./sha256.js";
export { KIT_VERSION } from "./generated/kit.js";
