// Runs in headless Chromium: a .tflite bundle through LiteRT.js (wasm, XNNPACK), checked on the
// bundle's own conformance set.
import * as litert from "@litertjs/core";
import * as sdk from "/dist/web.js";

export async function run({ bundleUrl }) {
  await litert.loadLiteRt("/node_modules/@litertjs/core/wasm/");
  const bundle = await sdk.openBundle(bundleUrl, { runners: { tflite: sdk.litertRunner(litert) } });
  const result = await sdk.checkConformance(bundle, sdk.decodeCrop);
  await bundle.dispose();
  return { backend: bundle.runner.name, format: bundle.format, ...result };
}
