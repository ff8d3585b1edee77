// The web demo end to end in headless Chromium with a fake camera playing a video made from a
// shared photo: enrol from photos, identify and verify the camera's person, see the quality gate's
// reasons for a blurred probe. EDGEFACE_DEMO_SCREENSHOT=FILE.png saves a screenshot with every face
// blurred (the demo's ?blur=1 style).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDemoServer, DEFAULT_YUNET } from "../demo/serve.mjs";
import { HAVE_CHROMIUM, launch } from "./lib/chromium.mjs";
import { photoToY4m } from "./lib/y4m.mjs";
import { SKIP as NO_VECTORS, VECTORS_DIR, loadVectors } from "./lib/vectors.mjs";

const YUNET = process.env.EDGEFACE_YUNET ?? DEFAULT_YUNET;
const SKIP = NO_VECTORS || (!HAVE_CHROMIUM && "no Chromium at /usr/bin/chromium") || (!existsSync(YUNET) && `no YuNet model at ${YUNET} (set EDGEFACE_YUNET)`);
let doc, tmp, server, browser, page;
const logs = [];

before(async () => {
  if (SKIP) return;
  doc = loadVectors();
  tmp = mkdtempSync(join(tmpdir(), "edgeface-demo-"));
  const g = doc.galleries[0];
  const [person] = Object.keys(g.enrolment);
  const probe = doc.faces.find((f) => f.identity === person && f.role === "probe" && f.image_format === "jpeg");
  const video = await photoToY4m(join(VECTORS_DIR, probe.image), join(tmp, "camera.y4m"));
  server = await startDemoServer({ bundle: doc.bundle.path, yunet: YUNET });
  browser = await launch(video);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await ctx.grantPermissions(["camera"], { origin: server.url });
  page = await ctx.newPage();
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(String(e)));
  await page.goto(`${server.url}/`);
  await page.waitForSelector("#status[data-state=ready], #status[data-state=error]", { timeout: 120_000 });
  assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#status"));
}, { timeout: 300_000 });
after(async () => {
  await browser?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function click(id) {
  await page.evaluate(() => { document.getElementById("result").dataset.decision = "pending"; });
  await page.click(id);
  await page.waitForFunction(() => document.getElementById("result").dataset.decision !== "pending" && !document.querySelector("button:disabled"), null, { timeout: 120_000 });
  return { decision: await page.getAttribute("#result", "data-decision"), text: await page.textContent("#result .decision") };
}

test("demo: enrol two people from photos, identify and verify the camera's person, gate reasons for a blurred probe", { skip: SKIP, timeout: 600_000 }, async () => {
  const g = doc.galleries[0];
  const byId = Object.fromEntries(doc.faces.map((f) => [f.id, f]));
  // enrolled under neutral names: screenshots of the demo must not name the photographed people
  const [first, second] = Object.keys(g.enrolment);
  const [person, other] = ["alice", "bob"];
  for (const [name, identity] of [[person, first], [other, second]]) {
    await page.fill("#enroll-name", name);
    await page.setInputFiles("#enroll-files", g.enrolment[identity].images.map((id) => join(VECTORS_DIR, byId[id].image)));
    const r = await click("#enroll-photos");
    assert.equal(r.decision, "enrolled", `${r.text}\n${logs.join("\n")}`);
    assert.ok(await page.locator("#result table.checks").count() >= 1, "the enrolment shows the gate's checks");
  }
  assert.deepEqual((await page.locator("#gallery-list li").allTextContents()).sort(), [person, other].sort());

  await page.click("#start-camera");
  await page.waitForFunction(() => document.getElementById("camera").videoWidth > 0, null, { timeout: 60_000 });
  const ident = await click("#identify-camera");
  assert.equal(ident.decision, "identified", ident.text);
  assert.match(ident.text, new RegExp(`Identified: ${person}`));

  await page.fill("#verify-name", person);
  const same = await click("#verify-camera");
  assert.equal(same.decision, "match", same.text);
  await page.fill("#verify-name", other);
  const diff = await click("#verify-camera");
  assert.equal(diff.decision, "no_match", diff.text);
  await page.fill("#verify-name", "nobody");
  assert.equal((await click("#verify-camera")).decision, "not_enrolled");

  if (process.env.EDGEFACE_DEMO_SCREENSHOT) {
    await page.fill("#verify-name", person);
    await click("#verify-camera");
    await page.evaluate(() => document.body.classList.add("privacy"));
    await page.screenshot({ path: process.env.EDGEFACE_DEMO_SCREENSHOT, fullPage: true });
    await page.evaluate(() => document.body.classList.remove("privacy"));
  }

  // the blurred copy of a photo: the verify gate refuses it and the page says why
  const blurred = doc.faces.find((f) => f.analyze_verify === "quality" && f.quality.verify.failed.includes("sharpness:min"));
  await page.fill("#verify-name", person);
  await page.setInputFiles("#probe-file", join(VECTORS_DIR, blurred.image));
  const rej = await click("#verify-photo");
  assert.equal(rej.decision, "rejected", rej.text);
  assert.match(await page.textContent("#result"), /image too blurred/);
  assert.ok(await page.locator("#result tr.fail[data-check=sharpness]").count() === 1);
});
