// A fake-camera video for Chromium (--use-file-for-fake-video-capture): YUV4MPEG2, 4:2:0, made at
// test time from a photo (never committed).
import { writeFileSync } from "node:fs";
import sharp from "sharp";

/** Write `frames` frames of `photo` letterboxed into width x height to `out`. */
export async function photoToY4m(photo, out, width = 640, height = 480, frames = 10) {
  const { data } = await sharp(photo).resize(width, height, { fit: "contain", background: { r: 40, g: 40, b: 40 } }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const y = new Uint8Array(width * height), u = new Uint8Array((width / 2) * (height / 2)), v = new Uint8Array(u.length);
  const clamp = (x) => Math.max(0, Math.min(255, Math.round(x)));
  for (let i = 0; i < width * height; i++) y[i] = clamp(0.299 * data[3 * i] + 0.587 * data[3 * i + 1] + 0.114 * data[3 * i + 2]);
  for (let cy = 0; cy < height / 2; cy++) for (let cx = 0; cx < width / 2; cx++) {
    let r = 0, g = 0, b = 0;
    for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
      const p = 3 * ((2 * cy + dy) * width + 2 * cx + dx);
      r += data[p] / 4; g += data[p + 1] / 4; b += data[p + 2] / 4;
    }
    u[cy * (width / 2) + cx] = clamp(-0.168736 * r - 0.331264 * g + 0.5 * b + 128);
    v[cy * (width / 2) + cx] = clamp(0.5 * r - 0.418688 * g - 0.081312 * b + 128);
  }
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\n`);
  const frame = Buffer.concat([Buffer.from("FRAME\n"), y, u, v]);
  writeFileSync(out, Buffer.concat([header, ...Array(frames).fill(frame)]));
  return out;
}
