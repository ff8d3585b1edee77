// A tiny static file server on 127.0.0.1 for the browser tests, the demo and the benchmark:
// URL prefixes map to directories; nothing outside them is served.
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
  ".wasm": "application/wasm", ".png": "image/png", ".jpg": "image/jpeg", ".css": "text/css", ".map": "application/json" };

/** mounts: {"/": dir, "/vectors/": dir, ...}; returns {url, close()} */
export function serve(mounts, port = 0) {
  const table = Object.entries(mounts).sort((a, b) => b[0].length - a[0].length);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname);
    const hit = table.find(([prefix]) => path.startsWith(prefix));
    if (!hit) return res.writeHead(404).end();
    const root = resolve(hit[1]);
    let file = resolve(join(root, path.slice(hit[0].length)));
    if (file !== root && !file.startsWith(root + sep)) return res.writeHead(403).end();
    try {
      if (statSync(file).isDirectory()) file = join(file, "index.html");
      const size = statSync(file).size;
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": size, "cache-control": "no-store" });
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(port, "127.0.0.1", () => ok({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((c) => server.close(c)) })));
}
