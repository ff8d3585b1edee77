// The bundle rules merged from issue 20, judged by the TypeScript SDK as by the Python runtime, in Node and
// in headless Chromium (bundles fetched over HTTP, hashed with WebCrypto):
// - EDGEFACE_BUNDLE_CASES: cases.json of tests/sdk_bundle_cases.py write_refusal_cases — mutated copies of
//   a tiny sealed bundle and Python load_bundle's verdict on each ("ok" or BundleError.kind);
// - EDGEFACE_NONFACE_CASE: nonface.json of write_nonface_case — the reference bundle with a quality.nonface
//   section and FaceRecognizer.analyze's outcome, failed checks and nonface_margin per image.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as sdk from "../dist/node.js";
import { HAVE_CHROMIUM, launch } from "./lib/chromium.mjs";
import { serve } from "./lib/server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CASES = process.env.EDGEFACE_BUNDLE_CASES ?? "";
const NONFACE = process.env.EDGEFACE_NONFACE_CASE ?? "";
const NO_CASES = CASES && existsSync(CASES) ? false : "EDGEFACE_BUNDLE_CASES is not set to a cases.json (tests/test_sdk_js.py sets it)";
const NO_NONFACE = NONFACE && existsSync(NONFACE) ? false : "EDGEFACE_NONFACE_CASE is not set to a nonface.json (tests/test_sdk_js.py sets it)";
const NO_CHROMIUM = HAVE_CHROMIUM ? false : "no Chromium at /usr/bin/chromium";
// |JS - Python| nonface margin: float32 dot products (PNG, and JPEG through sharp, decode to OpenCV's pixels);
// the browser's JPEG decoder differs by up to 32 levels (sdk/VECTORS.md: embeddings at cosine >= 0.99).
// Decisions are compared where the margin is farther than this from 0.
const MARGIN_TOL = 1e-4, BROWSER_JPEG_MARGIN_TOL = 0.03;

const cases = NO_CASES ? [] : JSON.parse(readFileSync(CASES, "utf8"));
const nonface = NO_NONFACE ? null : JSON.parse(readFileSync(NONFACE, "utf8"));
const verdict = (e) => (e instanceof sdk.EdgefaceError ? e.bundleKind ?? `${e.kind} (no bundle kind): ${e.message}` : `untyped: ${e?.stack ?? e}`);

test("Node: every bundle case gets load_bundle's verdict", { skip: NO_CASES }, async () => {
  assert.ok(cases.length >= 60, `only ${cases.length} cases`);
  const kinds = new Set(cases.map((c) => c.kind));
  assert.equal(kinds.size, sdk.BUNDLE_KINDS.length + 1, `cases cover ${[...kinds]}`); // every kind, and "ok"
  const wrong = [];
  for (const c of cases) {
    let got = "ok";
    try {
      const b = await sdk.openBundle(c.dir, { threads: 1 });
      if (c.fingerprint && sdk.modelFingerprint(b.card) !== c.fingerprint) got = `fingerprint ${sdk.modelFingerprint(b.card)} vs Python ${c.fingerprint}`;
      await b.dispose();
    } catch (e) {
      got = verdict(e);
      if (e.kind !== (c.kind === "not_found" ? "missing" : "bundle")) got += ` (kind ${e.kind})`;
    }
    if (got !== c.kind) wrong.push(`${c.id}: ${got} vs Python ${c.kind}`);
  }
  assert.deepEqual(wrong, []);
});

function nonfaceChecks(results, jpegTol = MARGIN_TOL) {
  assert.equal(results.length, nonface.images.length);
  const faces = nonface.images.filter((im) => !basename(im.image).startsWith("nonface_"));
  assert.ok(nonface.images.some((im) => im.failed?.includes("nonface_margin:max")), "no image is refused as a non-face: the case tests nothing");
  assert.ok(faces.some((im) => im.result === "ok"), "no face passes: the case tests nothing");
  nonface.images.forEach((want, i) => {
    const got = results[i];
    const tol = /\.jpe?g$/i.test(want.image) ? jpegTol : MARGIN_TOL;
    assert.ok(Math.abs(got.nonface_margin - want.nonface_margin) <= tol, `${want.image}: margin ${got.nonface_margin} vs ${want.nonface_margin}`);
    if (Math.abs(want.nonface_margin) > tol) {
      assert.equal(got.result, want.result, `${want.image}: ${got.result} vs ${want.result}`);
      assert.deepEqual(got.failed, want.failed, want.image);
    }
  });
}

test("Node: quality.nonface gives the Python gate's nonface_margin and decisions", { skip: NO_NONFACE }, async () => {
  const bundle = await sdk.openBundle(nonface.bundle, { threads: 1 });
  const rec = new sdk.FaceRecognizer(bundle, { decode: sdk.decodeImage });
  assert.ok(rec.nonface && rec.nonface.prototypes.length === 4);
  const results = [];
  for (const im of nonface.images) {
    const [r] = await rec.analyze([{ image: im.image, landmarks: im.landmarks }], "verify");
    const q = r.quality;
    results.push({ result: r.ok ? "ok" : r.reason, failed: q.failed.map((c) => `${c.name}:${c.kind}`), nonface_margin: q.measurements.nonface_margin });
  }
  await bundle.dispose();
  nonfaceChecks(results);
});

test("Node: createRecognizer uses the detector shipped in the bundle (export --detector) when given none", { skip: NO_NONFACE || (!existsSync(process.env.EDGEFACE_YUNET ?? "") && "EDGEFACE_YUNET is not set") }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), "edgeface-det-"));
  try {
    const dir = join(tmp, "bundle");
    cpSync(nonface.bundle, dir, { recursive: true });
    mkdirSync(join(dir, "detector"));
    cpSync(process.env.EDGEFACE_YUNET, join(dir, "detector", "yunet.onnx"));
    const sha = (p) => createHash("sha256").update(readFileSync(p)).digest("hex");
    const meta = JSON.parse(readFileSync(join(dir, "edgeface.json"), "utf8"));
    meta.files["detector/yunet.onnx"] = sha(join(dir, "detector", "yunet.onnx"));
    meta.detector = { file: "detector/yunet.onnx", kind: "yunet", licence: "MIT" };
    writeFileSync(join(dir, "edgeface.json"), JSON.stringify(meta));
    writeFileSync(join(dir, "edgeface.json.sha256"), `${sha(join(dir, "edgeface.json"))}  edgeface.json\n`);
    const face = { image: nonface.images[0].image }; // no landmarks
    const rec = await sdk.createRecognizer(dir, { threads: 1 });
    assert.ok(rec.detector, "no detector loaded from the bundle");
    const [r] = await rec.analyze([face]);
    assert.ok(r.ok || r.reason === "quality", `${r.reason}: ${r.detail}`);
    assert.ok(r.quality.measurements.detector_score > 0.6);
    const none = await sdk.createRecognizer(dir, { threads: 1, detector: null });
    assert.equal((await none.analyze([face]))[0].reason, "no_landmarks");
    await rec.bundle.dispose();
    await none.bundle.dispose();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

let server, browser, page;
const CHROMIUM_SKIP = NO_CHROMIUM || (NO_CASES && NO_NONFACE);
before(async () => {
  if (CHROMIUM_SKIP) return;
  const mounts = { "/": ROOT };
  if (!NO_CASES) mounts["/cases/"] = dirname(CASES);
  if (!NO_NONFACE) {
    mounts["/nonface-bundle/"] = nonface.bundle;
    mounts["/nonface/"] = dirname(NONFACE);
    mounts["/vectors/"] = dirname(dirname(nonface.images[0].image)); // the vectors' images/ folder's parent
  }
  server = await serve(mounts);
  browser = await launch();
  page = await browser.newPage();
  await page.goto(`${server.url}/test/browser/index.html`);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

test("Chromium: every bundle case served over HTTP gets load_bundle's verdict", { skip: NO_CHROMIUM || NO_CASES, timeout: 600_000 }, async () => {
  const http = cases.filter((c) => c.http);
  assert.ok(http.length >= cases.length - 1);
  const got = await page.evaluate(async (ids) => {
    const ort = await import("onnxruntime-web");
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
    const sdk = await import("/dist/web.js");
    const out = {};
    for (const id of ids) {
      try {
        const b = await sdk.openBundle(`/cases/${id}`, { ort, executionProviders: ["wasm"] });
        await b.dispose();
        out[id] = "ok";
      } catch (e) {
        out[id] = e instanceof sdk.EdgefaceError ? e.bundleKind ?? `${e.kind} (no bundle kind): ${e.message}` : `untyped: ${e?.stack ?? e}`;
      }
    }
    return out;
  }, http.map((c) => basename(c.dir)));
  const wrong = http.filter((c) => got[basename(c.dir)] !== c.kind).map((c) => `${c.id}: ${got[basename(c.dir)]} vs Python ${c.kind}`);
  assert.deepEqual(wrong, []);
});

test("Chromium: quality.nonface gives the Python gate's nonface_margin and decisions", { skip: NO_CHROMIUM || NO_NONFACE, timeout: 600_000 }, async () => {
  const vectorsRoot = dirname(dirname(nonface.images[0].image));
  const urls = nonface.images.map((im) => (im.image.startsWith(vectorsRoot + "/") ? `/vectors/${im.image.slice(vectorsRoot.length + 1)}` : `/nonface/${basename(im.image)}`));
  const results = await page.evaluate(async ({ urls, landmarks }) => {
    const ort = await import("onnxruntime-web");
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
    const sdk = await import("/dist/web.js");
    const bundle = await sdk.openBundle("/nonface-bundle", { ort, executionProviders: ["wasm"] });
    const rec = new sdk.FaceRecognizer(bundle, { decode: sdk.decodeImage });
    const out = [];
    for (let i = 0; i < urls.length; i++) {
      const [r] = await rec.analyze([{ image: urls[i], landmarks: landmarks[i] }], "verify");
      const q = r.quality;
      out.push({ result: r.ok ? "ok" : r.reason, failed: q.failed.map((c) => `${c.name}:${c.kind}`), nonface_margin: q.measurements.nonface_margin });
    }
    await bundle.dispose();
    return out;
  }, { urls, landmarks: nonface.images.map((im) => im.landmarks) });
  nonfaceChecks(results, BROWSER_JPEG_MARGIN_TOL);
});
