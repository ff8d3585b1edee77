// Unit checks that need no shared data: Python-compatible JSON (the gallery fingerprint hashes it),
// SHA-256, float16 rounding, the schema validator, the aligner on a known transform, the gate's
// threshold merging. Reference values come from CPython 3.11 / numpy 2 (json.dumps, repr, hashlib,
// astype(float16)).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "../dist/index.js";
import { validate } from "../dist/schema.js";

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
