// Unit checks that need no shared data: Python-compatible JSON (the gallery fingerprint hashes it),
// SHA-256, float16 rounding, the schema validator, the aligner on a known transform, the gate's
// threshold merging. Reference values come from CPython 3.11 / numpy 2 (json.dumps, repr, hashlib,
// astype(float16)).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "../dist/index.js";
import { validate } from "../dist/schema.js";
import { BUNDLE_SCHEMA } from "../dist/generated/kit.js";

test("pyFloat and pyJson print what Python's repr and json.dumps(sort_keys=True) print", () => {
  const xs = [127.5, 128.0, 1e-5, 0.0001, 1e16, 1.5e16, 123456789012345.6, 0.1 + 0.2, -2.0, 5e-324, 1e22, 189.4];
  const py = ["127.5", "128.0", "1e-05", "0.0001", "1e+16", "1.5e+16", "123456789012345.6", "0.30000000000000004", "-2.0", "5e-324", "1e+22", "189.4"];
  assert.deepEqual(xs.map(sdk.pyFloat), py);
  assert.equal(sdk.pyJson({ b: [1, 2.5], a: "café ☃ \"q\"", c: null, d: true }), '{"a": "caf\\u00e9 \\u2603 \\"q\\"", "b": [1, 2.5], "c": null, "d": true}');
});

test("card JSON and fingerprint of a default card", () => {
  const card = sdk.cardFromDict({ name: "n", arch: "a", input_size: [112, 112], embedding_size: 128, template: "arcface_112x112" });
  // ModelCard(name="n", arch="a", input_size=(112, 112), embedding_size=128, template="arcface_112x112").to_json()
  assert.equal(sdk.cardToJson(card), '{"arch": "a", "arch_kwargs": {}, "color_order": "RGB", "description": "", "embedding_size": 128, "input_size": [112, 112], ' +
    '"licence": "unknown", "mean": [127.5, 127.5, 127.5], "mflops": null, "name": "n", "params": null, "source": "", "std": [128.0, 128.0, 128.0], "template": "arcface_112x112"}');
  assert.equal(sdk.modelFingerprint(card), sdk.toHex(sdk.sha256(sdk.cardToJson(card))).slice(0, 16));
  assert.throws(() => sdk.cardFromDict({ name: "n" }), (e) => e.kind === "bundle");
});

test("a card with every field (int8_float_scope, floats in arch_kwargs, an integer mflops): Python's JSON and fingerprint", () => {
  // fields, required fields and defaults come from the bundle schema (tests/test_card_schema.py holds it to the dataclass)
  const src = '{"name": "n", "arch": "a", "input_size": [150, 150], "embedding_size": 128, "template": "dlib_150x150", "color_order": "BGR", ' +
    '"mean": [1, 2.5, 3], "std": [4, 5, 6], "licence": "CC0", "description": "d", "source": "s", "params": 7, "mflops": 220, ' +
    '"arch_kwargs": {"alpha": 1.0, "widths": [1, 2]}, "int8_float_scope": {"first": true, "last": 0}}';
  const { meta, floats } = sdk.parseManifest(new TextEncoder().encode(src), "card");
  const card = sdk.cardFromDict(meta, floats);
  // ModelCard.from_json(src).to_json() and its sha256[:16] (CPython 3.11)
  const py = '{"arch": "a", "arch_kwargs": {"alpha": 1.0, "widths": [1, 2]}, "color_order": "BGR", "description": "d", "embedding_size": 128, ' +
    '"input_size": [150, 150], "int8_float_scope": {"first": true, "last": 0}, "licence": "CC0", "mean": [1.0, 2.5, 3.0], "mflops": 220, "name": "n", ' +
    '"params": 7, "source": "s", "std": [4.0, 5.0, 6.0], "template": "dlib_150x150"}';
  assert.equal(sdk.cardToJson(card), py);
  assert.equal(sdk.modelFingerprint(card), "022906c4d6cd2846");
  // int8_float_scope: null is left out, as ModelCard.to_dict leaves it out
  const none = sdk.cardFromDict({ ...meta, int8_float_scope: null }, floats);
  assert.equal(sdk.cardToJson(none), py.replace('"int8_float_scope": {"first": true, "last": 0}, ', ""));
  assert.throws(() => sdk.cardFromDict({ ...meta, colour: "RGB" }), (e) => e.kind === "bundle" && /colour/.test(e.message));
  // the schema refuses a malformed int8_float_scope, as ModelCard does
  assert.deepEqual(validate(meta, BUNDLE_SCHEMA.properties.card, [], floats), []);
  for (const bad of [{ last: -1 }, { first: 1 }, { middle: 2 }, [1]]) assert.ok(validate({ ...meta, int8_float_scope: bad }, BUNDLE_SCHEMA.properties.card).length > 0, JSON.stringify(bad));
});

test("sha256 of known inputs", async () => {
  assert.equal(sdk.toHex(sdk.sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(sdk.toHex(sdk.sha256("a".repeat(1000))), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
  assert.equal(await sdk.sha256Hex(new TextEncoder().encode("a".repeat(1000))), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
});

test("float16 encoding rounds like numpy (ties to even, subnormals, overflow)", () => {
  const vals = [0.1, 1 / 3, 65504.0, 65520.0, 1e-8, 6e-8, 3e-5, -0.000123, 2 ** -25, 2 ** -24 * 1.5];
  assert.deepEqual(vals.map((v) => sdk.floatToHalf(Math.fround(v))), [11878, 13653, 31743, 31744, 0, 1, 503, 34824, 0, 2]);
});

test("schema validator: types, required, enum, pattern, if/then, additionalProperties; unknown keywords refused", () => {
  const schema = { type: "object", required: ["a"], properties: { a: { enum: [1, 2] }, b: { type: "string", pattern: "^x" }, n: { type: "boolean" } },
    additionalProperties: { type: "integer" }, if: { properties: { n: { const: false } } }, then: { required: ["b"] } };
  assert.deepEqual(validate({ a: 1, b: "xy", z: 3 }, schema), []);
  assert.equal(validate({ b: "y", z: 1.5 }, schema).length, 3); // missing a, pattern, z not integer
  assert.equal(validate({ a: 1, n: false }, schema).length, 1); // then: b required
  assert.throws(() => validate({}, { type: "object", oneOf: [] }), /not supported/);
});

test("alignment recovers a known similarity transform and warps within rounding", () => {
  const template = [[30.29, 51.7], [65.53, 51.5], [48.03, 71.74], [33.55, 92.37], [62.73, 92.2]];
  // landmarks = template mapped by scale 2, rotation 10°, shift (20, 30): the estimate must invert it
  const a = 2 * Math.cos(Math.PI / 18), b = 2 * Math.sin(Math.PI / 18);
  const lm = template.map(([x, y]) => [a * x - b * y + 20, b * x + a * y + 30]);
  const m = sdk.similarityTransform(lm, template);
  template.forEach(([x, y], i) => {
    assert.ok(Math.abs(m[0] * lm[i][0] + m[1] * lm[i][1] + m[2] - x) < 1e-9);
    assert.ok(Math.abs(m[3] * lm[i][0] + m[4] * lm[i][1] + m[5] - y) < 1e-9);
  });
  // a horizontal ramp shifted by half a pixel interpolates to the midpoints, zero outside
  const img = { width: 8, height: 2, channels: 1, data: Uint8Array.from({ length: 16 }, (_, i) => (i % 8) * 10) };
  const out = sdk.warpAffine(img, [1, 0, -0.5, 0, 1, 0], 2, 8);
  assert.deepEqual(Array.from(out.data.slice(0, 8)), [5, 15, 25, 35, 45, 55, 65, 35]);
  assert.throws(() => sdk.checkLandmarks([[1, 2], [3, 4]]), (e) => e.kind === "bad_landmarks");
  assert.throws(() => sdk.checkLandmarks([1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]), (e) => e.kind === "bad_landmarks");
});

test("quality thresholds: a flat bundle section sets verify and never loosens enrol; unknown keys refused", () => {
  const t = sdk.mergeThresholds({ min_sharpness: 30, max_abs_yaw_deg: 50, source: "calibrated" });
  assert.equal(t.verify.min_sharpness, 30);
  assert.equal(t.enroll.min_sharpness, 30); // stricter than the enrol default 25
  assert.equal(t.verify.max_abs_yaw, 50);
  assert.equal(t.enroll.max_abs_yaw, 30); // the enrol default stays the stricter
  assert.throws(() => sdk.mergeThresholds({ min_sharpnes: 1 }), (e) => e.kind === "argument");
  const rep = new sdk.QualityGate().assess({ sharpness: 5, brightness: NaN }, "verify");
  assert.deepEqual(rep.failed.map((c) => c.name), ["sharpness", "brightness", "brightness"]);
});

test("manifest rules: Python's inv_cdf, threshold floors, FAR keys, safe paths, JSON as Python reads it", () => {
  // statistics.NormalDist().inv_cdf(1 - far) for far in (1e-3, 1e-4, 1e-2, 0.5, 1e-9, 0.3, 0.99), CPython 3.11
  const want = [3.090232306167813, 3.7190164854557084, 2.3263478740408408, 0.0, 5.997807019601638, 0.5244005127080407, -2.3263478740408408];
  // (within 1e-14: V8's Math.log and glibc's log may differ in the last bit; only a threshold exactly on its floor could tell)
  [1e-3, 1e-4, 1e-2, 0.5, 1e-9, 0.3, 0.99].forEach((f, i) => assert.ok(Math.abs(sdk.normalInvCdf(1 - f) - want[i]) <= 1e-14, `${f}: ${sdk.normalInvCdf(1 - f)}`));
  assert.ok(Math.abs(sdk.thresholdFloor(1e-3, 128) - 0.13657) < 1e-5); // docs/runtime.md: 0.137 at 1e-3 for 128-d
  assert.deepEqual(["1e-3", " 1e-2 ", "5_0e-3", "0", "1", "abc", "1e-3_", "nan", "-1e-3"].map(sdk.farValue), [1e-3, 1e-2, 0.05, null, null, null, null, null, null]);
  assert.deepEqual(["model.onnx", "a/./b", "a//b", "../x", "/abs", "C:\\m", "a\\b", "a\u0001", "", "sub/../x"].map(sdk.safeRelative),
    [true, true, false, false, false, false, false, false, false, false]);
  const { value, floats } = sdk.parsePythonJson('{"a": NaN, "b": [1.0, 2, -Infinity], "__proto__": {"x": 1}, "a": 3}');
  assert.equal(value.a, 3); // a repeated key takes the last value
  assert.ok(Number.isNaN(sdk.parsePythonJson("NaN").value) && Object.getPrototypeOf(value) === Object.prototype && Object.hasOwn(value, "__proto__"));
  assert.deepEqual([...floats], ['["b",0]']);
  for (const bad of ["", "{", "[1,]", "01", "1.", '"\u0001"', "nan", "[".repeat(1000) + "]".repeat(1000), "{} x"]) {
    assert.throws(() => sdk.parsePythonJson(bad), sdk.JsonSyntaxError, JSON.stringify(bad.slice(0, 20)));
  }
  // 1.0 is a float to Python: not an "integer"; "$" also matches before a final newline, as in re
  assert.equal(validate(1.0, { type: "integer" }, [], new Set(["[]"])).length, 1);
  assert.equal(validate(1, { type: "integer" }).length, 0);
  assert.equal(validate(NaN, { type: "number" }).length, 1);
  assert.equal(validate("a".repeat(64) + "\n", { type: "string", pattern: "^[0-9a-f]{64}$" }).length, 0);
  assert.equal(validate({ x: 1 }, { type: "object", additionalProperties: false }).length, 1);
});

test("quality.nonface: the section check and the margins (max over prototypes of similarity - limit)", () => {
  const section = { prototypes: [[1, 0, 0], [0, 1, 0]], limits: [0.5, 0.9] };
  assert.deepEqual(sdk.checkNonfaceSection(section, 3), []);
  assert.equal(sdk.checkNonfaceSection(section, 4).length, 2);
  assert.equal(sdk.checkNonfaceSection({ prototypes: [[2, 0, 0]], limits: [true] }, 3).length, 2);
  assert.equal(sdk.checkNonfaceSection([], 3).length, 1);
  const m = sdk.nonfaceMargins(Float32Array.from([0.6, 0.8, 0, 1, 0, 0]), 3, section);
  assert.deepEqual(Array.from(m, (v) => Math.round(v * 1e6) / 1e6), [0.1, 0.5]);
  const gate = new sdk.QualityGate({ max_nonface_margin: 0.2 });
  assert.equal(gate.assess({ nonface_margin: 0.1 }).passed, true);
  const r = gate.assess({ nonface_margin: 0.5 }, "enroll"); // enrolment keeps the stricter of default (0) and 0.2
  assert.deepEqual(r.failed.map((c) => [c.name, c.threshold]), [["nonface_margin", 0]]);
  assert.match(r.reasons[0], /^not a face: .*margin \+0\.500/);
});

test("landmark_residual: docs/runtime.md's reference values, and the gate check", () => {
  const arcface = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];
  const L = [[106.772, 111.625], [145.867, 111.411], [124.32, 135.35], [110.753, 155.892], [141.391, 155.573]];
  assert.ok(Math.abs(sdk.landmarkResidual(L, arcface) - 0.03062103) < 5e-9, String(sdk.landmarkResidual(L, arcface)));
  const swapped = [L[0], L[1], L[2], L[4], L[3]];
  assert.ok(Math.abs(sdk.landmarkResidual(swapped, arcface) - 0.47459928) < 5e-9);
  assert.ok(sdk.landmarkResidual(arcface.map(([x, y]) => [2 * x + 5, 2 * y - 3]), arcface) < 1e-6); // a scaled, shifted copy
  const gate = new sdk.QualityGate({});
  assert.deepEqual(gate.assess({ landmark_residual: 0.47 }).failed.map((c) => `${c.name}:${c.kind}:${c.threshold}`), ["landmark_residual:max:0.25"]);
  assert.equal(gate.assess({ landmark_residual: 0.22 }, "enroll").passed, false);
});
