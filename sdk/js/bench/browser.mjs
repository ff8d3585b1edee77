// The stage benchmark inside Chromium (onnxruntime-web wasm, one thread; IndexedDB gallery).
import * as ort from "onnxruntime-web";
import * as sdk from "/dist/web.js";
import { benchStages } from "/bench/stages.mjs";

export async function run({ faces, galleryIdentities }) {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = "/node_modules/onnxruntime-web/dist/";
  const t0 = performance.now();
  const bundle = await sdk.openBundle("/bundle", { ort, executionProviders: ["wasm"] });
  const load_ms = performance.now() - t0;
  const loaded = [];
  for (const f of faces) loaded.push({ image: `/vectors/${f.image}`, pixels: await sdk.decodeImage(`/vectors/${f.image}`), landmarks: f.landmarks });
  let n = 0;
  const stages = await benchStages(sdk, bundle, loaded, sdk.decodeImage, async (codec) => {
    const name = `edgeface-bench-${codec}-${n++}`;
    await sdk.deleteIdbGallery(name);
    return sdk.openIdbGallery(name, { card: bundle.card, codec });
  }, galleryIdentities);
  const pixels = loaded.map((f) => btoa(Array.from(f.pixels.data, (c) => String.fromCharCode(c)).join("")));
  return { load_ms, stages, pixels, userAgent: navigator.userAgent };
}
