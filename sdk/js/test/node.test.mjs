// The TypeScript SDK in Node (onnxruntime-node, sharp, better-sqlite3) on the shared test vectors:
// the same crops, measures, decisions, codes, gallery results and error kinds as the Python runtime.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import * as sdk from "../dist/node.js";
import { SKIP, VECTORS_DIR, loadVectors, raw, f32, dot, cosine, landmarksFromJson, gateBorderline, gateFlip } from "./lib/vectors.mjs";

let doc, bundle, rec, tmp;
const face = (f) => ({ image: join(VECTORS_DIR, f.image), landmarks: f.landmarks });

before(async () => {
  if (SKIP) return;
  doc = loadVectors();
  bundle = await sdk.openBundle(doc.bundle.path, { threads: 1 });
  rec = new sdk.FaceRecognizer(bundle, { decode: sdk.decodeImage });
  tmp = mkdtempSync(join(tmpdir(), "edgeface-js-"));
});
after(async () => {
  await bundle?.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("bundle: card, fingerprint, thresholds and gate thresholds are the Python runtime's", { skip: SKIP }, () => {
  assert.equal(sdk.cardToJson(bundle.card), doc.bundle.card_json);
  assert.equal(sdk.modelFingerprint(bundle.card), doc.bundle.model_fingerprint);
  assert.deepEqual(bundle.cropSize, doc.bundle.input_size);
  assert.deepEqual(bundle.thresholds, doc.thresholds.cosine);
  for (const codec of ["binary", "binary256", "binary512"]) assert.deepEqual(bundle.codecThresholds(codec), doc.thresholds[codec]);
  assert.deepEqual(rec.gate.thresholds, doc.quality_thresholds);
});

test("decode: PNG pixels exact, JPEG pixels within the decoder tolerance", { skip: SKIP }, async () => {
  const tol = doc.tolerances;
  for (const f of doc.faces) {
    const img = await sdk.decodeImage(join(VECTORS_DIR, f.image));
    assert.ok(img.data, `${f.id}: ${img.detail}`);
    assert.deepEqual([img.width, img.height, img.channels], [f.width, f.height, 3]);
    const want = raw(f.pixels);
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(want[i] - img.data[i]));
    assert.ok(maxDiff <= (f.image_format === "png" ? 0 : tol.jpeg_decode_max_abs_diff), `${f.id} (${f.image_format}): decoded pixels differ by ${maxDiff}`);
  }
});

test("align: raw pixels + landmarks -> the vector's crop within 1 level", { skip: SKIP }, () => {
  const tol = doc.tolerances;
  for (const f of doc.faces) {
    const pixels = { width: f.width, height: f.height, channels: 3, data: raw(f.pixels) };
    const crop = sdk.alignFace(pixels, f.landmarks, bundle.template, bundle.cropSize);
    const want = raw(f.crop);
    assert.equal(crop.data.length, want.length);
    let maxDiff = 0, differing = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(want[i] - crop.data[i]);
      maxDiff = Math.max(maxDiff, d);
      if (d) differing++;
    }
    assert.ok(maxDiff <= tol.crop_max_abs_diff, `${f.id}: crop differs by up to ${maxDiff}`);
    assert.ok(differing / want.length <= tol.crop_max_diff_fraction, `${f.id}: ${differing} crop values differ`);
  }
});

test("embed + quality: embeddings within tolerance, every measure and gate decision as in Python", { skip: SKIP }, async () => {
  const tol = doc.tolerances;
  const [h, w] = bundle.cropSize;
  for (const f of doc.faces) {
    const crop = { width: w, height: h, channels: 3, data: raw(f.crop) };
    const both = await bundle.embed(new Uint8Array([...crop.data, ...sdk.mirror(crop).data]), 2);
    const d = bundle.card.embedding_size;
    const e = both.slice(0, d);
    const cos = dot(e, f32(f.embedding));
    assert.ok(cos >= tol.embedding_min_cosine, `${f.id}: embedding cosine ${cos}`);
    const nonfaceMargin = rec.nonface ? sdk.nonfaceMargins(e, d, rec.nonface)[0] : null;
    const m = sdk.measure(crop, f.landmarks, { flipSimilarity: dot(e, both.slice(d)), nonfaceMargin, template: bundle.template });
    for (const [k, v] of Object.entries(f.measurements)) {
      assert.ok(Math.abs(m[k] - v) <= (tol.quality_abs[k] ?? 1e-3), `${f.id}: ${k} ${m[k]} vs ${v}`);
    }
    for (const mode of sdk.MODES) {
      const rep = rec.gate.assess(m, mode);
      assert.equal(rep.passed, f.quality[mode].passed, `${f.id} ${mode}`);
      assert.deepEqual(rep.failed.map((c) => `${c.name}:${c.kind}`), f.quality[mode].failed, `${f.id} ${mode}`);
      assert.ok(Math.abs(rep.weight - f.quality[mode].weight) <= tol.quality_abs.flip_similarity);
    }
  }
});

test("codecs: the bytes stored for each embedding are Python's, byte for byte", { skip: SKIP }, () => {
  const d = doc.bundle.embedding_size;
  for (const f of doc.faces) {
    const e = f32(f.embedding);
    for (const [name, hex] of Object.entries(f.codes)) {
      const codec = sdk.getCodec(name, d);
      const got = sdk.toHex(codec.encode(e));
      if (got === hex) continue;
      // a sign bit may differ only where the projected value is within 1e-6 of 0
      assert.ok(codec instanceof sdk.ProjectedBinaryCodec, `${f.id} ${name}: ${got} vs ${hex}`);
      const y = codec.project(e), a = sdk.fromHex(got), b = sdk.fromHex(hex);
      for (let j = 0; j < codec.codeBits; j++) {
        const bit = 0x80 >> (j & 7);
        if ((a[j >> 3] & bit) !== (b[j >> 3] & bit)) assert.ok(Math.abs(y[j]) <= 1e-6, `${f.id} ${name}: bit ${j} differs at ${y[j]}`);
      }
    }
  }
});

test("analyze from the image file: same outcome as FaceRecognizer.analyze", { skip: SKIP }, async () => {
  const results = await rec.analyze(doc.faces.map(face), "verify");
  doc.faces.forEach((f, i) => {
    const r = results[i];
    const got = r.ok ? "ok" : r.reason;
    if (!(gateBorderline(doc, f) && gateFlip(got, f.analyze_verify) && ["ok", "quality"].includes(got))) assert.equal(got, f.analyze_verify, `${f.id}: ${r.ok ? "ok" : r.detail}`);
    if (r.ok) assert.ok(dot(r.embedding, f32(f.embedding)) >= doc.tolerances.jpeg_embedding_min_cosine, f.id);
  });
});

test("pairs: cosine and Hamming scores and decisions at both FARs; compare() decisions", { skip: SKIP }, async () => {
  const tol = doc.tolerances;
  const d = doc.bundle.embedding_size;
  const emb = Object.fromEntries(doc.faces.map((f) => [f.id, f32(f.embedding)]));
  const byId = Object.fromEntries(doc.faces.map((f) => [f.id, f]));
  const codecs = Object.fromEntries(["binary", "binary256", "binary512"].map((n) => [n, sdk.getCodec(n, d)]));
  const outside = (s, t) => Math.abs(s - t) > tol.decision_margin;
  // compare() re-analyses both images: run it on the pairs of three faces (a match, a probe the gate
  // refuses, the blurred copy) against every other face, not all 210 pairs (each costs 4 inferences)
  const comparedIds = new Set(["f00", "f02", doc.faces.at(-2).id]);
  const compared = await Promise.all(doc.pairs.map((p) => (comparedIds.has(p.a) || comparedIds.has(p.b) ? rec.compare(face(byId[p.a]), face(byId[p.b]), "1e-3") : null)));
  doc.pairs.forEach((p, i) => {
    const s = dot(emb[p.a], emb[p.b]);
    assert.ok(Math.abs(s - p.cosine) <= tol.score_abs, `${p.a}~${p.b}: ${s} vs ${p.cosine}`);
    for (const [far, t] of Object.entries(doc.thresholds.cosine)) if (outside(s, t)) assert.equal(s >= t, p.same_at_far[far]);
    for (const [name, want] of Object.entries(p.codecs)) {
      const hs = codecs[name].similarity(emb[p.a], codecs[name].encode(emb[p.b]));
      assert.ok(Math.abs(hs - want.similarity) <= tol.score_abs, `${p.a}~${p.b} ${name}: ${hs} vs ${want.similarity}`);
      for (const [far, t] of Object.entries(doc.thresholds[name])) if (outside(hs, t)) assert.equal(hs >= t, want.same_at_far[far], `${name} ${far}`);
    }
    const c = compared[i];
    if (c === null) return;
    const border = gateBorderline(doc, byId[p.a]) || gateBorderline(doc, byId[p.b]);
    if (border && gateFlip(c.decision, p["compare_1e-3"])) return;
    if (c.decision === "rejected" || p["compare_1e-3"] === "rejected" || outside(c.similarity, doc.thresholds.cosine["1e-3"])) {
      assert.equal(c.decision, p["compare_1e-3"], `${p.a}~${p.b}: compare ${c.decision} vs ${p["compare_1e-3"]}`);
    }
  });
});

test("galleries written by Python: searched, identified and verified by Node with the same results", { skip: SKIP }, async () => {
  const tol = doc.tolerances;
  const byId = Object.fromEntries(doc.faces.map((f) => [f.id, f]));
  for (const g of doc.galleries) {
    const copy = join(tmp, g.file);
    cpSync(join(VECTORS_DIR, g.file), copy);
    const gallery = await sdk.openSqliteGallery(copy, { readonly: true, card: bundle.card });
    assert.equal(gallery.codec.name, g.codec);
    assert.deepEqual(await gallery.names(), g.identities);
    const grec = new sdk.FaceRecognizer(bundle, { gallery, decode: sdk.decodeImage });
    assert.deepEqual(grec.thresholds, g.thresholds);
    for (const s of g.searches) {
      if (s.candidates) {
        const got = await gallery.search(f32(byId[s.probe].embedding), s.top_k);
        assert.equal(got.length, s.candidates.length);
        got.forEach((m, i) => {
          const w = s.candidates[i];
          assert.ok(m.name === w.name || Math.abs(m.score - w.score) <= tol.score_abs, `${g.file} ${s.probe}: ${m.name} vs ${w.name}`);
          assert.ok(Math.abs(m.score - w.score) <= tol.score_abs, `${g.file} ${s.probe}: score ${m.score} vs ${w.score}`);
        });
      }
      for (const [far, want] of Object.entries(s.identify)) {
        const r = await grec.identify(face(byId[s.probe]), s.top_k, far);
        if (gateBorderline(doc, byId[s.probe]) && gateFlip(r.decision, want.decision)) continue;
        if (r.score === null || want.score === null || Math.abs(r.score - g.thresholds[far]) > tol.decision_margin) {
          assert.equal(r.decision, want.decision, `${g.file} ${s.probe} identify ${far}`);
          assert.equal(r.name, want.name);
        }
      }
      for (const [far, want] of Object.entries(s.verify)) {
        const r = await grec.verify(face(byId[s.probe]), want.name, far);
        assert.equal(r.threshold, want.threshold);
        if (gateBorderline(doc, byId[s.probe]) && gateFlip(r.decision, want.decision)) continue;
        if (r.similarity === null || want.similarity === null || Math.abs(r.similarity - want.threshold) > tol.decision_margin) {
          assert.equal(r.decision, want.decision, `${g.file} ${s.probe} verify ${far}`);
        }
      }
    }
    await assert.rejects(grec.verify(face(doc.faces[0]), "nobody-enrolled"), (e) => e.kind === "not_enrolled");
    await assert.rejects(async () => grec.threshold("1e-9"), (e) => e.kind === "argument");
    // identify(top_k < 1) is a programming error (Python: ValueError), never "unknown" for an enrolled person
    for (const badK of [0, -1, 1.5, NaN, "3"]) {
      await assert.rejects(grec.identify(face(doc.faces[0]), badK), (e) => e.kind === "argument" && /top_k/.test(e.message), String(badK));
    }
    await gallery.close();
  }
});

test("enrolment in Node: same images used and refused, template within tolerance of Python's stored one", { skip: SKIP }, async () => {
  const byId = Object.fromEntries(doc.faces.map((f) => [f.id, f]));
  const d = doc.bundle.embedding_size;
  for (const g of doc.galleries) {
    const path = join(tmp, `node-${g.codec}.db`);
    const gallery = await sdk.openSqliteGallery(path, { card: bundle.card, codec: g.codec });
    const grec = new sdk.FaceRecognizer(bundle, { gallery, decode: sdk.decodeImage });
    for (const [name, want] of Object.entries(g.enrolment)) {
      const r = await grec.enroll(name, want.images.map((id) => face(byId[id])));
      if (want.images.some((id) => gateBorderline(doc, byId[id])) && r.used.length !== want.used.length) continue; // an image at the gate's border went the other way
      assert.equal(r.enrolled, want.enrolled, name);
      assert.deepEqual(r.used.map((u) => want.images[want.images.map((id) => join(VECTORS_DIR, byId[id].image)).indexOf(u.source)]), want.used);
      assert.deepEqual(r.rejected.map((u) => u.reason), want.rejected.map((u) => u.reason));
      if (!want.enrolled) continue;
      assert.ok(Math.abs(r.quality - want.template_quality) <= 2e-3, `${name}: template quality ${r.quality} vs ${want.template_quality}`);
      const mine = await gallery.templateCode(name), theirs = sdk.fromHex(want.template_code);
      assert.equal(mine.length, theirs.length);
      if (gallery.codec.hammingScores) {
        assert.ok(gallery.codec.codeSimilarity(mine, theirs) >= 0.95, `${name}: ${g.codec} template differs`);
      } else {
        const cos = cosine(gallery.codec.decode(mine), gallery.codec.decode(theirs));
        assert.ok(cos >= doc.tolerances.embedding_min_cosine, `${name}: ${g.codec} template cosine ${cos}`);
      }
    }
    await gallery.close();
    if (process.env.EDGEFACE_SDK_JS_OUT) cpSync(path, join(process.env.EDGEFACE_SDK_JS_OUT, `node-${g.codec}.db`));
  }
});

test("bad images and landmarks: the Python runtime's rejection reasons", { skip: SKIP }, async () => {
  for (const e of doc.errors) {
    const [r] = await rec.analyze([{ image: join(VECTORS_DIR, e.image), landmarks: landmarksFromJson(e.landmarks) }], "verify");
    assert.equal(r.ok ? "ok" : r.reason, e.kind, `${e.id}: ${r.ok ? "accepted" : r.detail}`);
    if (e.failed) assert.deepEqual(r.quality.failed.map((c) => `${c.name}:${c.kind}`), e.failed, e.id);
  }
  const [arr] = await rec.analyze([{ image: { width: 10, height: 10, channels: 3, data: new Uint8Array(300) }, landmarks: doc.faces[0].landmarks }]);
  assert.equal(arr.reason, "tiny");
});

test("the bundle's conformance set: passes as in `edgeface export --check`; a wrong expectation is refused at load and fails the check", { skip: SKIP }, async () => {
  const ok = await sdk.checkConformance(bundle, sdk.decodeCrop);
  assert.ok(ok.passed && ok.faces === 8 && ok.cosine_min >= ok.required_min_cosine && ok.threshold_mismatches.length === 0, JSON.stringify(ok));
  const dir = join(tmp, "bundle-conformance");
  cpSync(doc.bundle.path, dir, { recursive: true });
  const f = join(dir, "conformance", "expected.json");
  const exp = JSON.parse(readFileSync(f, "utf8"));
  exp.embeddings[0] = exp.embeddings[0].map((v) => -v);
  writeFileSync(f, JSON.stringify(exp));
  // the conformance files are hashed in edgeface.json (file_hash); without hash checks the self-test refuses it
  await assert.rejects(sdk.openBundle(dir), (e) => e.kind === "bundle" && e.bundleKind === "file_hash");
  await assert.rejects(sdk.openBundle(dir, { verifyHash: false }), (e) => e.kind === "bundle" && e.bundleKind === "conformance");
  const other = await sdk.openBundle(dir, { verifyHash: false, selfTest: false });
  const bad = await sdk.checkConformance(other, sdk.decodeCrop);
  await other.dispose();
  assert.equal(bad.passed, false);
  assert.ok(bad.cosine_min < 0);
});

test("bad bundles (vectors' bundles/<id>): the same refusals as load_bundle, by the same rule", { skip: SKIP }, async () => {
  assert.ok(doc.bundle_errors.length >= 20);
  for (const c of doc.bundle_errors) {
    await assert.rejects(sdk.openBundle(join(VECTORS_DIR, c.dir)), (e) => {
      assert.ok(e instanceof sdk.EdgefaceError, `${c.id}: ${e}`);
      assert.equal(e.kind, c.kind, `${c.id}: ${e.message}`);
      assert.equal(e.bundleKind, c.bundle_kind, `${c.id}: ${e.message}`);
      return true;
    }, c.id);
  }
});

function makeGalleryCase(id) {
  const path = join(tmp, `gallery-${id}.db`);
  rmSync(path, { force: true });
  if (id === "not_sqlite") {
    writeFileSync(path, "this is a text file, not a gallery\n".repeat(40));
    return path;
  }
  if (id === "foreign_sqlite") {
    const db = new Database(path);
    db.exec("CREATE TABLE t (x)");
    db.close();
    return path;
  }
  cpSync(join(VECTORS_DIR, doc.galleries[0].file), path);
  const db = new Database(path);
  if (id === "newer_schema") db.pragma("user_version = 99");
  else if (id === "other_model") db.prepare("UPDATE meta SET value = ? WHERE key = 'model_fingerprint'").run("0123456789abcdef");
  else throw new Error(`gallery error case ${id} is not known to this test`);
  db.close();
  return path;
}

test("bad galleries: the same error kinds as the Python Gallery", { skip: SKIP }, async () => {
  for (const c of doc.gallery_errors) {
    await assert.rejects(sdk.openSqliteGallery(makeGalleryCase(c.id), { readonly: true, card: bundle.card }), (e) => e instanceof sdk.EdgefaceError && e.kind === c.kind, c.id);
  }
  await assert.rejects(sdk.openSqliteGallery(join(tmp, "nope.db"), { readonly: true }), (e) => e.kind === "gallery");
});
