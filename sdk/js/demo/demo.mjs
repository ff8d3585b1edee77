// The edgeface web demo: enrol a person from photos or the camera, then verify and identify,
// showing the quality gate's measures and reasons. Served by demo/serve.mjs (the bundle at
// /bundle/, YuNet at /yunet.onnx); ?blur=1 blurs every face on screen (for screenshots).
import * as ort from "onnxruntime-web";
import * as sdk from "/dist/web.js";

const $ = (id) => document.getElementById(id);
const GALLERY = "edgeface-demo";
let rec = null;
if (new URLSearchParams(location.search).has("blur")) document.body.classList.add("privacy");

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

async function refreshGallery() {
  const names = await rec.gallery.names();
  $("gallery-list").innerHTML = names.length ? names.map((n) => `<li>${escapeHtml(n)}</li>`).join("") : "<li><i>empty</i></li>";
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function cropCanvas(img) {
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height; c.className = "crop";
  const rgba = new Uint8ClampedArray(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++) { rgba.set(img.data.subarray(3 * i, 3 * i + 3), 4 * i); rgba[4 * i + 3] = 255; }
  c.getContext("2d").putImageData(new ImageData(rgba, img.width, img.height), 0, 0);
  return c;
}

function faceCard(label, r) {
  const div = document.createElement("div");
  div.className = "face";
  const q = r.quality;
  if (r.ok) div.append(cropCanvas(r.crop));
  const head = document.createElement("div");
  head.innerHTML = `<b>${escapeHtml(label)}</b>: ${r.ok ? "accepted" : `rejected (${escapeHtml(r.reason)})`}`;
  div.append(head);
  if (!r.ok && r.reason !== "quality") div.insertAdjacentHTML("beforeend", `<p class="reasons">${escapeHtml(r.detail)}</p>`);
  if (q) {
    if (q.reasons.length) div.insertAdjacentHTML("beforeend", `<ul class="reasons">${q.reasons.map((m) => `<li>${escapeHtml(m)}</li>`).join("")}</ul>`);
    const rows = q.checks.map((c) => `<tr class="${c.passed ? "pass" : "fail"}" data-check="${c.name}"><td>${c.passed ? "✓" : "✗"}</td><td>${c.name}</td><td>${c.value.toFixed(2)}</td><td>${c.kind === "min" ? "≥" : "≤"} ${c.threshold}</td></tr>`);
    div.insertAdjacentHTML("beforeend", `<table class="checks"><tr><td></td><td><i>${q.mode} gate</i></td><td>value</td><td>threshold</td></tr>${rows.join("")}</table>`);
  }
  return div;
}

function show(decision, text, faces = []) {
  const box = $("result");
  box.dataset.decision = decision;
  box.innerHTML = `<p class="decision">${escapeHtml(text)}</p>`;
  const wrap = document.createElement("div");
  wrap.className = "faces";
  for (const [label, r] of faces) wrap.append(faceCard(label, r));
  box.append(wrap);
}

async function frames(n, gapMs) {
  const video = $("camera");
  if (!video.srcObject) await startCamera();
  const out = [];
  for (let i = 0; i < n; i++) {
    if (i) await new Promise((r) => setTimeout(r, gapMs));
    out.push(await sdk.decodeImage(video));
  }
  return out;
}

async function startCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  const video = $("camera");
  video.srcObject = stream;
  await new Promise((r) => (video.readyState >= 2 ? r() : (video.onloadeddata = r)));
}

async function enroll(images) {
  const name = $("enroll-name").value.trim();
  if (!name) return show("error", "Type a name to enrol.");
  const res = await rec.enroll(name, images.map((image) => ({ image })));
  const faces = [...res.used.map((f, i) => [`accepted ${i + 1}`, f]), ...res.rejected.map((r, i) => [`refused ${i + 1}`, r])];
  await refreshGallery();
  if (!$("verify-name").value) $("verify-name").value = name;
  show(res.enrolled ? "enrolled" : "rejected",
    res.enrolled ? `Enrolled ${name} from ${res.used.length} of ${images.length} images (template quality ${res.quality.toFixed(3)})` : `Not enrolled: no image passed the enrolment gate`,
    faces);
}

async function verify(image) {
  const name = $("verify-name").value.trim();
  const far = $("far").value;
  try {
    const r = await rec.verify({ image }, name, far);
    const face = r.rejected[0] ?? (await rec.analyze([{ image }], "verify"))[0];
    const text = r.decision === "rejected" ? "No decision: the probe failed the quality gate"
      : `${r.match ? "Match" : "No match"}: ${name} (similarity ${r.similarity.toFixed(3)} vs threshold ${r.threshold.toFixed(3)} at FAR ${far})`;
    show(r.decision, text, [["probe", face]]);
  } catch (e) {
    show(e.kind === "not_enrolled" ? "not_enrolled" : "error", e.message);
  }
}

async function identify(image) {
  const far = $("far").value;
  const r = await rec.identify({ image }, 3, far);
  const face = r.rejected[0] ?? (await rec.analyze([{ image }], "verify"))[0];
  const cands = r.candidates.map((c) => `${c.name} ${c.score.toFixed(3)}`).join(", ");
  const text = r.decision === "rejected" ? "No decision: the probe failed the quality gate"
    : r.decision === "identified" ? `Identified: ${r.name} (score ${r.score.toFixed(3)} ≥ ${r.threshold.toFixed(3)}; candidates ${cands})`
    : `Unknown person (best ${r.score === null ? "none" : r.score.toFixed(3)} < ${r.threshold.toFixed(3)}${cands ? `; candidates ${cands}` : ""})`;
  show(r.decision, text, [["probe", face]]);
}

function guard(fn) {
  return async () => {
    document.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try { await fn(); } catch (e) { show("error", `${e.kind ?? "error"}: ${e.message}`); }
    finally { document.querySelectorAll("button").forEach((b) => (b.disabled = false)); }
  };
}

async function main() {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
  const t0 = performance.now();
  const bundle = await sdk.openBundle("/bundle", { ort });
  const yunet = new Uint8Array(await (await fetch("/yunet.onnx")).arrayBuffer());
  const detector = await sdk.YuNetDetector.create(ort, yunet);
  const gallery = await sdk.openIdbGallery(GALLERY, { card: bundle.card, codec: "float32" });
  rec = new sdk.FaceRecognizer(bundle, { gallery, detector, decode: sdk.decodeImage });
  await refreshGallery();
  setStatus(`Model ${bundle.card.name} (${bundle.format} ${bundle.precision}, ${bundle.card.embedding_size}-d), thresholds ${JSON.stringify(bundle.thresholds)}; ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`, "ready");
  $("start-camera").onclick = guard(startCamera);
  $("enroll-photos").onclick = guard(async () => {
    const files = [...$("enroll-files").files];
    if (!files.length) return show("error", "Choose one or more photos first.");
    await enroll(files);
  });
  $("enroll-camera").onclick = guard(async () => enroll(await frames(3, 300)));
  $("verify-camera").onclick = guard(async () => verify((await frames(1, 0))[0]));
  $("identify-camera").onclick = guard(async () => identify((await frames(1, 0))[0]));
  $("verify-photo").onclick = guard(async () => ($("probe-file").files[0] ? verify($("probe-file").files[0]) : show("error", "Choose a probe photo first.")));
  $("identify-photo").onclick = guard(async () => ($("probe-file").files[0] ? identify($("probe-file").files[0]) : show("error", "Choose a probe photo first.")));
  $("clear-gallery").onclick = guard(async () => { for (const n of await rec.gallery.names()) await rec.gallery.remove(n); await refreshGallery(); show("none", "Gallery cleared."); });
}

main().catch((e) => setStatus(`Could not start: ${e.kind ?? "error"}: ${e.message}`, "error"));
