// A .tflite bundle through LiteRT.js (@litertjs/core, wasm/XNNPACK) in headless Chromium: the
// bundle's own conformance set must pass. EDGEFACE_TFLITE_BUNDLE names the bundle directory
// (tests/test_sdk_js.py exports one at test time and caches it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HAVE_CHROMIUM, launch } from "./lib/chromium.mjs";
import { serve } from "./lib/server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BUNDLE = process.env.EDGEFACE_TFLITE_BUNDLE ?? "";
const SKIP = !BUNDLE || !existsSync(join(BUNDLE, "edgeface.json")) ? "EDGEFACE_TFLITE_BUNDLE is not set to a tflite bundle" : !HAVE_CHROMIUM && "no Chromium";

test("LiteRT.js runs a tflite bundle in Chromium and passes its conformance set", { skip: SKIP, timeout: 300_000 }, async () => {
  const server = await serve({ "/": ROOT, "/bundle-tflite/": BUNDLE });
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/test/browser/index.html`);
    const r = await page.evaluate(async () => (await import("/test/browser/litert.mjs")).run({ bundleUrl: "/bundle-tflite" }));
    assert.equal(r.format, "tflite");
    assert.equal(r.backend, "litert");
    assert.ok(r.passed && r.faces === 8 && r.cosine_min >= r.required_min_cosine, JSON.stringify(r));
    assert.deepEqual(r.decision_mismatches, []);
  } finally {
    await browser.close();
    await server.close();
  }
});
