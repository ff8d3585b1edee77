#!/usr/bin/env node
// ms per face for each stage (decode, align, quality, embed, match) of the TypeScript SDK in Node and
// in headless Chromium, next to the Python runtime on the same faces, plus package sizes:
//   node bench/bench.mjs --vectors DIR [--python VENV/bin/python] [--out DIR]
// DIR is a shared vector directory (sdk/VECTORS.md; `python tests/sdk_vectors.py` prints one).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as sdk from "../dist/node.js";
import { benchStages } from "./stages.mjs";
import { launch } from "../test/lib/chromium.mjs";
import { serve } from "../test/lib/server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const VECTORS = args.vectors ?? process.env.EDGEFACE_SDK_VECTORS;
if (!VECTORS) { console.error("usage: node bench/bench.mjs --vectors DIR [--python PYTHON] [--out DIR]"); process.exit(2); }
const OUT = args.out ?? join(ROOT, "..", "..", "benchmarks", "results");
const IDENTITIES = Number(args.identities ?? 1000);
const doc = JSON.parse(readFileSync(join(VECTORS, "vectors.json"), "utf8"));
const faces = doc.faces.filter((f) => f.image_format === "jpeg").slice(0, 8);

/** largest |difference| between our decoded JPEG pixels and the Python runtime's (OpenCV) */
function maxDecodeDiff(images) {
  let m = 0;
  images.forEach((img, k) => {
    const want = readFileSync(join(VECTORS, faces[k].pixels));
    for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(want[i] - img.data[i]));
  });
  return m;
}

function du(p) {
  const st = statSync(p);
  return st.isDirectory() ? readdirSync(p).reduce((s, n) => s + du(join(p, n)), 0) : st.size;
}
const MB = (b) => Math.round((b / 2 ** 20) * 100) / 100;

async function nodeBench() {
  const t0 = performance.now();
  const bundle = await sdk.openBundle(doc.bundle.path, { threads: 1 });
  const load_ms = performance.now() - t0;
  const loaded = [];
  for (const f of faces) loaded.push({ image: join(VECTORS, f.image), pixels: await sdk.decodeImage(join(VECTORS, f.image)), landmarks: f.landmarks });
  const jpeg_decode_max_abs_diff_to_python = maxDecodeDiff(loaded.map((f) => f.pixels));
  const tmp = mkdtempSync(join(tmpdir(), "edgeface-bench-"));
  let n = 0;
  const stages = await benchStages(sdk, bundle, loaded, sdk.decodeImage, (codec) => sdk.openSqliteGallery(join(tmp, `g${n++}.db`), { card: bundle.card, codec }), IDENTITIES);
  rmSync(tmp, { recursive: true, force: true });
  return { load_ms, stages, jpeg_decode_max_abs_diff_to_python, peak_rss_mb: MB(process.resourceUsage().maxRSS * 1024), node: process.version };
}

async function browserBench() {
  const server = await serve({ "/": ROOT, "/vectors/": VECTORS, "/bundle/": doc.bundle.path });
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/test/browser/index.html`);
    const res = await page.evaluate(async (a) => (await import("/bench/browser.mjs")).run(a), { faces, galleryIdentities: IDENTITIES });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Performance.enable").catch(() => undefined);
    const { metrics } = await cdp.send("Performance.getMetrics").catch(() => ({ metrics: [] }));
    const heap = metrics.find((m) => m.name === "JSHeapTotalSize");
    return { ...res, jpeg_decode_max_abs_diff_to_python: maxDecodeDiff(res.pixels.map((p) => ({ data: Uint8Array.from(Buffer.from(p, "base64")) }))), pixels: undefined, js_heap_mb: heap ? MB(heap.value) : null, chromium: browser.version() };
  } finally {
    await browser.close();
    await server.close();
  }
}

const PY = `
import json, sys, time, tempfile, os
import numpy as np
from edgeface.core.align import align_face
from edgeface.core.imageio import read_image
from edgeface.runtime import load_bundle
from edgeface.runtime.gallery import Gallery
from edgeface.runtime.quality import QualityGate, measure
vec, ids = sys.argv[1], int(sys.argv[2])
doc = json.load(open(os.path.join(vec, "vectors.json")))
faces = [f for f in doc["faces"] if f["image_format"] == "jpeg"][:8]
t0 = time.perf_counter(); b = load_bundle(doc["bundle"]["path"], threads=1); load_ms = (time.perf_counter() - t0) * 1e3
imgs = [read_image(os.path.join(vec, f["image"])).pixels for f in faces]
lms = [np.array(f["landmarks"]) for f in faces]
crops = [align_face(p, l, b.card.template, b.card.input_size) for p, l in zip(imgs, lms)]
gate = QualityGate(b.quality)
def t(fn, min_calls=20, min_s=1.0):
    for i in range(5): fn(i)
    xs, t0, i = [], time.perf_counter(), 0
    while len(xs) < min_calls or time.perf_counter() - t0 < min_s:
        s = time.perf_counter(); fn(i); xs.append((time.perf_counter() - s) * 1e3); i += 1
    xs.sort(); return {"median_ms": float(np.median(xs)), "p90_ms": xs[int(0.9 * (len(xs) - 1))], "calls": len(xs)}
n = len(faces)
out = {"decode": t(lambda i: read_image(os.path.join(vec, faces[i % n]["image"]))),
       "align": t(lambda i: align_face(imgs[i % n], lms[i % n], b.card.template, b.card.input_size)),
       "quality": t(lambda i: gate.assess(measure(crops[i % n], lms[i % n]), "verify")),
       "embed": t(lambda i: b.embed(crops[i % n][None]))}
q = b.embed(crops[0][None])[0]
rng = np.random.default_rng(1)
d = tempfile.mkdtemp()
for codec in ("float32", "binary512"):
    g = Gallery(os.path.join(d, codec + ".db"), card=b.card, codec=codec)
    g.add_many([(f"id{k}", rng.standard_normal(b.card.embedding_size), 1, 1.0) for k in range(ids)])
    g.search(q, top_k=5, use_index=False)
    out[f"match_{codec}_{ids}"] = t(lambda i: g.search(q, top_k=5, use_index=False))
    g.close()
import resource
print(json.dumps({"load_ms": load_ms, "stages": out, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2)}))
`;

function pythonBench(python) {
  const stdout = execFileSync(python, ["-c", PY, VECTORS, String(IDENTITIES)], { encoding: "utf8", env: { ...process.env, OMP_NUM_THREADS: "1" } });
  return JSON.parse(stdout.trim().split("\n").at(-1));
}

function sizes() {
  const nm = join(ROOT, "node_modules");
  const browserFiles = [join(ROOT, "dist"), join(nm, "onnxruntime-web/dist/ort.wasm.bundle.min.mjs"), join(nm, "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm")];
  const jsOnly = readdirSync(join(ROOT, "dist")).filter((n) => n.endsWith(".js")).map((n) => join(ROOT, "dist", n));
  const gz = (files) => files.reduce((s, f) => s + gzipSync(readFileSync(f)).length, 0);
  return {
    sdk_dist_js_mb: MB(jsOnly.reduce((s, f) => s + statSync(f).size, 0)),
    sdk_dist_js_gzip_mb: MB(gz(jsOnly)),
    browser_download_mb: MB(du(browserFiles[1]) + du(browserFiles[2]) + jsOnly.reduce((s, f) => s + statSync(f).size, 0)),
    browser_download_gzip_mb: MB(gz([browserFiles[1], browserFiles[2], ...jsOnly])),
    node_onnxruntime_linux_x64_mb: MB(du(join(nm, "onnxruntime-node/bin/napi-v6/linux/x64"))),
    node_sharp_libvips_mb: MB(du(join(nm, "sharp")) + du(join(nm, "@img"))),
    node_better_sqlite3_mb: MB(du(join(nm, "better-sqlite3/build/Release/better_sqlite3.node"))),
    bundle_model_mb: MB(statSync(join(doc.bundle.path, doc.bundle.model_file)).size),
  };
}

const result = {
  measured: new Date().toISOString(),
  command: `node bench/bench.mjs --vectors DIR${args.python ? " --python PYTHON" : ""}`,
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, ram_gb: Math.round(totalmem() / 2 ** 30), load_average_1min_at_start: loadavg()[0] },
  faces: faces.length, gallery_identities: IDENTITIES, threads: 1,
  node: await nodeBench(),
  chromium: await browserBench(),
  python: args.python ? pythonBench(args.python) : null,
  sizes: sizes(),
};
mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, "sdk_js.json"), JSON.stringify(result, null, 1) + "\n");
const stages = Object.keys(result.node.stages);
const cols = [["Python runtime", result.python], ["Node (onnxruntime-node, sharp, SQLite)", result.node], ["Chromium (onnxruntime-web wasm, canvas, IndexedDB)", result.chromium]].filter(([, r]) => r);
const lines = [
  `Measured ${result.measured} with \`${result.command}\` (${result.machine.cpu}, ${result.machine.cores} cores, load average ${result.machine.load_average_1min_at_start.toFixed(1)} at the start: absolute times are inflated by that much sharing; one inference thread; median ms per call, p90 in brackets; ${faces.length} LFW-dev faces from the shared vectors; match = one query against ${IDENTITIES} templates).`,
  "",
  `| stage | ${cols.map(([n]) => n).join(" | ")} |`,
  `|---|${cols.map(() => "---|").join("")}`,
  ...stages.map((s) => `| ${s} | ${cols.map(([, r]) => (r.stages[s] ? `${r.stages[s].median_ms.toFixed(2)} (${r.stages[s].p90_ms.toFixed(2)})` : "–")).join(" | ")} |`),
  `| bundle load (hash check + session) | ${cols.map(([, r]) => `${r.load_ms.toFixed(0)}`).join(" | ")} |`,
  `| JPEG decode: max abs diff to Python's pixels | ${cols.map(([, r]) => r.jpeg_decode_max_abs_diff_to_python ?? "0 (the reference)").join(" | ")} |`,
  `| peak memory MB | ${cols.map(([n, r]) => (r.peak_rss_mb ? `${r.peak_rss_mb} (process RSS)` : r.js_heap_mb ? `${r.js_heap_mb} (JS heap)` : "–")).join(" | ")} |`,
  "",
  "Sizes (MB): " + Object.entries(result.sizes).map(([k, v]) => `${k} ${v}`).join(", ") + ".",
];
writeFileSync(join(OUT, "sdk_js.md"), lines.join("\n") + "\n");
console.log(lines.join("\n"));
