// Per-face stage timings shared by the Node and the browser benchmark: decode, align, quality,
// embed (one crop, batch 1), match (one query against a gallery of `galleryIdentities`).
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** ms per call: >= 5 warm-up calls, then >= minCalls calls and >= minMs of calls; median and p90 */
export async function time(fn, { minCalls = 20, minMs = 1000 } = {}) {
  for (let i = 0; i < 5; i++) await fn(i);
  const xs = [];
  const t0 = performance.now();
  for (let i = 0; xs.length < minCalls || performance.now() - t0 < minMs; i++) {
    const t = performance.now();
    await fn(i);
    xs.push(performance.now() - t);
    if (xs.length >= 2000) break;
  }
  const s = [...xs].sort((a, b) => a - b);
  return { median_ms: median(xs), p90_ms: s[Math.floor(0.9 * (s.length - 1))], calls: xs.length };
}

/** sdk: the SDK module; bundle: an open Bundle; faces: [{image (decodable input), pixels: Image, landmarks}];
 * makeGallery(codec): an empty Gallery */
export async function benchStages(sdk, bundle, faces, decode, makeGallery, galleryIdentities = 1000) {
  const [h, w] = bundle.cropSize;
  const crops = faces.map((f) => sdk.alignFace(f.pixels, f.landmarks, bundle.template, [h, w]));
  const gate = new sdk.QualityGate(bundle.quality);
  const out = {};
  out.decode = await time(async (i) => decode(faces[i % faces.length].image));
  out.align = await time(async (i) => sdk.alignFace(faces[i % faces.length].pixels, faces[i % faces.length].landmarks, bundle.template, [h, w]));
  out.quality = await time(async (i) => gate.assess(sdk.measure(crops[i % crops.length], faces[i % faces.length].landmarks), "verify"));
  out.embed = await time(async (i) => bundle.embed(crops[i % crops.length].data, 1));
  const d = bundle.card.embedding_size;
  const query = await bundle.embed(crops[0].data, 1);
  let seed = 1;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (const codec of ["float32", "binary512"]) {
    const g = await makeGallery(codec);
    const items = Array.from({ length: galleryIdentities }, (_, k) => ({ name: `id${k}`, template: Float32Array.from({ length: d }, rand) }));
    await g.addMany(items);
    await g.search(query, 5); // loads the cache
    out[`match_${codec}_${galleryIdentities}`] = await time(async () => g.search(query, 5));
    await g.close();
  }
  return out;
}
