// Bad bundles made from the vectors' bundle, as described in vectors.json "bundle_errors". An edited
// edgeface.json is sealed again (edgeface.json.sha256 rewritten, like tests/tiny_bundle.py reseal) so the
// case reaches the rule it targets instead of stopping at the manifest digest.
import { createHash } from "node:crypto";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function reseal(dir) {
  const digest = createHash("sha256").update(readFileSync(join(dir, "edgeface.json"))).digest("hex");
  writeFileSync(join(dir, "edgeface.json.sha256"), `${digest}  edgeface.json\n`);
}

export function makeBundleCase(doc, tmp, id) {
  const dir = join(tmp, `bundle-${id}`);
  rmSync(dir, { recursive: true, force: true });
  if (id === "missing_dir") return dir;
  cpSync(doc.bundle.path, dir, { recursive: true });
  const metaPath = join(dir, "edgeface.json");
  const meta = JSON.parse(readFileSync(metaPath, "utf8"));
  const model = join(dir, meta.model_file);
  const edits = {
    no_meta: () => rmSync(metaPath),
    bad_json: () => writeFileSync(metaPath, "{not json"),
    schema: () => { delete meta.files; },
    tampered_model: () => { const b = readFileSync(model); b[b.length >> 1] ^= 0xff; writeFileSync(model, b); },
    status_failed: () => { meta.status = "failed"; },
    other_major_version: () => { meta.kit_version = `${Number(meta.kit_version.split(".")[0]) + 1}.0.0`; },
    path_escape: () => { meta.files["../x"] = "0".repeat(64); },
  };
  if (!edits[id]) throw new Error(`bundle error case ${id} is not known to this test`);
  edits[id]();
  if (id === "no_meta") return dir;
  if (id !== "bad_json") writeFileSync(metaPath, JSON.stringify(meta));
  if (id !== "tampered_model") reseal(dir);
  return dir;
}
