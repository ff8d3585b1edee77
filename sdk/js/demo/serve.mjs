#!/usr/bin/env node
// Serve the web demo on 127.0.0.1:  node demo/serve.mjs --bundle BUNDLE_DIR [--yunet YUNET.onnx] [--port 8080]
// (build the package first: npm run build). The bundle and YuNet come from your disk; nothing is copied.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { serve } from "../test/lib/server.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Serve the demo, the built SDK, onnxruntime-web's files, one bundle and the YuNet model. */
export function startDemoServer({ bundle, yunet, port = 0 }) {
  const mounts = { "/": join(ROOT, "demo"), "/dist/": join(ROOT, "dist"), "/node_modules/onnxruntime-web/": join(ROOT, "node_modules", "onnxruntime-web"),
    "/bundle/": bundle, "/yunet.onnx": yunet };
  return serve(mounts, port);
}

export const DEFAULT_YUNET = join(ROOT, "..", "..", "..", "shared", "models", "yunet", "face_detection_yunet_2023mar.onnx");

async function main() {
  const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
  const bundle = args.bundle && resolve(args.bundle);
  const yunet = resolve(args.yunet ?? DEFAULT_YUNET);
  if (!bundle || !existsSync(join(bundle, "edgeface.json"))) {
    console.error("usage: node demo/serve.mjs --bundle BUNDLE_DIR [--yunet face_detection_yunet_2023mar.onnx] [--port 8080]\n(no edgeface.json in the --bundle directory)");
    process.exit(2);
  }
  if (!existsSync(yunet)) {
    console.error(`YuNet model not found at ${yunet}: pass --yunet PATH`);
    process.exit(2);
  }
  if (!existsSync(join(ROOT, "dist", "web.js"))) {
    console.error("dist/web.js missing: run `npm run build` in sdk/js first");
    process.exit(2);
  }
  const server = await startDemoServer({ bundle, yunet, port: Number(args.port ?? 8080) });
  console.log(`edgeface demo: ${server.url}/  (Ctrl-C to stop)`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main();
