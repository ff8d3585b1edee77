// Runs in headless Chromium: the SDK (onnxruntime-web, canvas decoding, IndexedDB) on the shared
// vectors served by the test. Returns what it computed; test/browser.test.mjs compares it with the
// vectors in Node.
import * as ort from "onnxruntime-web";
import * as sdk from "/dist/web.js";

const hex = sdk.toHex;
const fromJson = (lm) => (Array.isArray(lm) ? lm.map(fromJson) : lm === "nan" ? NaN : lm);
async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}
const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const maxDiff = (a, b) => {
  let m = 0, n = 0;
  for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i] - b[i]); if (d > m) m = d; if (d) n++; }
  return { max: m, fraction: n / a.length };
};
const kindOf = async (p) => { try { await p; return "ok"; } catch (e) { return e.kind ?? `untyped: ${e.message}`; } };
// "kind/bundleKind" of a refused bundle (e.g. "bundle/file_hash"), "ok" when it loads
const refusal = async (p) => { try { const b = await p; await b.dispose(); return "ok"; } catch (e) { return e.kind ? `${e.kind}/${e.bundleKind ?? ""}` : `untyped: ${e.message}`; } };

export async function run({ bundleErrorDirs }) {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
  const doc = await (await fetch("/vectors/vectors.json")).json();
  const bundle = await sdk.openBundle("/bundle", { ort, executionProviders: ["wasm"] });
  const rec = new sdk.FaceRecognizer(bundle, { decode: sdk.decodeImage });
  const [h, w] = bundle.cropSize;
  const d = bundle.card.embedding_size;
  const out = {
    cardJson: sdk.cardToJson(bundle.card), fingerprint: sdk.modelFingerprint(bundle.card), thresholds: bundle.thresholds,
    codecThresholds: Object.fromEntries(["binary", "binary256", "binary512"].map((c) => [c, bundle.codecThresholds(c)])),
    gate: rec.gate.thresholds, faces: {}, compare: {}, galleries: {}, errors: {}, errorsFailed: {}, bundleErrors: {}, galleryErrors: {},
  };
  const face = (f) => ({ image: `/vectors/${f.image}`, landmarks: f.landmarks });
  const emb = {};
  for (const f of doc.faces) {
    const pixels = await bytes(`/vectors/${f.pixels}`);
    const decoded = await sdk.decodeImage(`/vectors/${f.image}`);
    const crop = sdk.alignFace({ width: f.width, height: f.height, channels: 3, data: pixels }, f.landmarks, bundle.template, [h, w]);
    const want = await bytes(`/vectors/${f.crop}`);
    const vcrop = { width: w, height: h, channels: 3, data: want };
    const both = await bundle.embed(new Uint8Array([...want, ...sdk.mirror(vcrop).data]), 2);
    const e = both.slice(0, d);
    emb[f.id] = e;
    const expected = new Float32Array((await bytes(`/vectors/${f.embedding}`)).buffer);
    const nonfaceMargin = rec.nonface ? sdk.nonfaceMargins(e, d, rec.nonface)[0] : null;
    const m = sdk.measure(vcrop, f.landmarks, { flipSimilarity: dot(e, both.slice(d)), nonfaceMargin, template: bundle.template });
    out.faces[f.id] = {
      decode: decoded.data ? maxDiff(decoded.data, pixels) : decoded.reason,
      crop: maxDiff(crop.data, want),
      cosine: dot(e, expected),
      measurements: m,
      quality: Object.fromEntries(sdk.MODES.map((mode) => { const r = rec.gate.assess(m, mode); return [mode, { passed: r.passed, failed: r.failed.map((c) => `${c.name}:${c.kind}`) }]; })),
      codes: Object.fromEntries(sdk.CODEC_NAMES.map((n) => [n, hex(sdk.getCodec(n, d).encode(expected))])),
    };
  }
  const analyzed = await rec.analyze(doc.faces.map(face), "verify");
  doc.faces.forEach((f, i) => { out.faces[f.id].analyze = analyzed[i].ok ? "ok" : analyzed[i].reason; });
  const byId = Object.fromEntries(doc.faces.map((f) => [f.id, f]));
  for (const p of doc.pairs.filter((p) => p.a === "f00")) {
    const c = await rec.compare(face(byId[p.a]), face(byId[p.b]), "1e-3");
    out.compare[`${p.a}~${p.b}`] = { decision: c.decision, similarity: c.similarity, cosine: dot(emb[p.a], emb[p.b]) };
  }
  // float32 and binary512 here (int8 runs in Node's test): each search re-analyses its probe in wasm
  for (const g of doc.galleries.filter((g) => g.codec !== "int8")) {
    const name = `edgeface-test-${g.codec}`;
    await sdk.deleteIdbGallery(name);
    const gallery = await sdk.openIdbGallery(name, { card: bundle.card, codec: g.codec });
    const grec = new sdk.FaceRecognizer(bundle, { gallery, decode: sdk.decodeImage });
    const res = { enrolment: {}, searches: {}, thresholds: grec.thresholds };
    for (const [person, e] of Object.entries(g.enrolment)) {
      const r = await grec.enroll(person, e.images.map((id) => face(byId[id])));
      res.enrolment[person] = { enrolled: r.enrolled, used: r.used.length, code: r.enrolled ? hex(await gallery.templateCode(person)) : null };
    }
    const reopened = await sdk.openIdbGallery(name, { readonly: true, card: bundle.card });
    const rrec = new sdk.FaceRecognizer(bundle, { gallery: reopened, decode: sdk.decodeImage });
    for (const s of g.searches) {
      const r = { identify: {}, verify: {} };
      for (const far of Object.keys(s.identify)) {
        const i = await rrec.identify(face(byId[s.probe]), s.top_k, far);
        r.identify[far] = { decision: i.decision, name: i.name, score: i.score };
        const v = await rrec.verify(face(byId[s.probe]), s.verify[far].name, far);
        r.verify[far] = { decision: v.decision, similarity: v.similarity, threshold: v.threshold };
      }
      res.searches[s.probe] = r;
    }
    await reopened.close();
    await gallery.close();
    out.galleries[g.codec] = res;
  }
  for (const e of doc.errors) {
    const [r] = await rec.analyze([{ image: `/vectors/${e.image}`, landmarks: fromJson(e.landmarks) }]);
    out.errors[e.id] = r.ok ? "ok" : r.reason;
    if (!r.ok && r.quality) out.errorsFailed[e.id] = r.quality.failed.map((c) => `${c.name}:${c.kind}`);
  }
  for (const [id, dir] of Object.entries(bundleErrorDirs)) out.bundleErrors[id] = await refusal(sdk.openBundle(`/vectors/${dir}`, { ort, executionProviders: ["wasm"] }));
  // gallery errors, made in IndexedDB the way the SQLite cases are made in files
  await sdk.deleteIdbGallery("edgeface-test-foreign");
  await new Promise((ok, bad) => { const r = indexedDB.open("edgeface-test-foreign", 1); r.onupgradeneeded = () => r.result.createObjectStore("t"); r.onsuccess = () => { r.result.close(); ok(); }; r.onerror = bad; });
  out.galleryErrors.foreign_sqlite = await kindOf(sdk.openIdbGallery("edgeface-test-foreign", { readonly: true }));
  await sdk.deleteIdbGallery("edgeface-test-newer");
  await new Promise((ok, bad) => { const r = indexedDB.open("edgeface-test-newer", 99); r.onsuccess = () => { r.result.close(); ok(); }; r.onerror = bad; });
  out.galleryErrors.newer_schema = await kindOf(sdk.openIdbGallery("edgeface-test-newer", { readonly: true }));
  const other = await sdk.openIdbGallery("edgeface-test-other", { card: { ...bundle.card, name: "another-model" }, codec: "float32" });
  await other.close();
  out.galleryErrors.other_model = await kindOf(sdk.openIdbGallery("edgeface-test-other", { readonly: true, card: bundle.card }));
  out.galleryErrors.missing = await kindOf(sdk.openIdbGallery("edgeface-test-never-made", { readonly: true }));
  out.conformance = await sdk.checkConformance(bundle, sdk.decodeCrop);
  await bundle.dispose();
  return out;
}
