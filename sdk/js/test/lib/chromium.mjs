// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.EDGEFACE_CHROMIUM ?? "/usr/bin/chromium";
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

/** fakeVideo: a .y4m file the fake camera plays */
export async function launch(fakeVideo) {
  const args = [...FLAGS];
  if (fakeVideo) args.push("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", `--use-file-for-fake-video-capture=${fakeVideo}`);
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}
