/**
 * 5-point alignment (edgeface/core/align.py): least-squares similarity transform of the landmarks onto
 * the bundle's template, then a bilinear warp with a zero border, in double precision and pure JS
 * (so Node, browsers and React Native give the same crop). It matches OpenCV's warpAffine
 * (INTER_LINEAR, BORDER_CONSTANT 0), which the Python runtime uses, within 1 grey level.
 *
 * Landmark order: right eye, left eye, nose tip, right mouth corner, left mouth corner (the
 * subject's right, i.e. the image's left).
 */
import { EdgefaceError } from "./errors.js";

export type Point = [number, number];
/** 2x3 row-major [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f */
export type Affine = [number, number, number, number, number, number];

/** An RGB (or any channel count) image: row-major uint8 pixels. */
export interface Image {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** align.check_landmarks: 5 finite (x, y) points, nested or flat; throws bad_landmarks. */
export function checkLandmarks(landmarks: unknown, what = "landmarks"): Point[] {
  const flat: unknown[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) for (const x of Array.from(v as ArrayLike<unknown>)) walk(x);
    else flat.push(v);
  };
  walk(landmarks);
  if (flat.length !== 10) throw new EdgefaceError("bad_landmarks", `${what}: expected 5 (x, y) points, got ${flat.length} values`);
  const nums = flat.map((v) => (typeof v === "number" ? v : v === "nan" ? NaN : Number(v)));
  if (!nums.every(Number.isFinite)) throw new EdgefaceError("bad_landmarks", `${what}: contains NaN or infinite coordinates`);
  return [0, 1, 2, 3, 4].map((i) => [nums[2 * i], nums[2 * i + 1]] as Point);
}

/** Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst, without
 * reflection: the closed form of Umeyama (1991) in 2-D. */
export function similarityTransform(src: Point[], dst: Point[]): Affine {
  if (src.length !== dst.length || src.length < 2) throw new EdgefaceError("argument", "similarityTransform needs two equally long lists of >= 2 points");
  const n = src.length;
  let msx = 0, msy = 0, mdx = 0, mdy = 0;
  for (let i = 0; i < n; i++) { msx += src[i][0]; msy += src[i][1]; mdx += dst[i][0]; mdy += dst[i][1]; }
  msx /= n; msy /= n; mdx /= n; mdy /= n;
  let varS = 0, dotP = 0, crossP = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i][0] - msx, sy = src[i][1] - msy, dx = dst[i][0] - mdx, dy = dst[i][1] - mdy;
    varS += sx * sx + sy * sy;
    dotP += sx * dx + sy * dy;
    crossP += sx * dy - sy * dx;
  }
  if (varS / n < 1e-12) throw new EdgefaceError("bad_landmarks", "similarity_transform: source points are all at the same place");
  const a = dotP / varS, b = crossP / varS; // scale·cos, scale·sin
  return [a, -b, mdx - (a * msx - b * msy), b, a, mdy - (b * msx + a * msy)];
}

/** Python's round-half-to-even (numpy rint / OpenCV cvRound). */
function rint(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Bilinear inverse warp into an (h, w) crop; neighbours outside the image count as 0. */
export function warpAffine(image: Image, m: Affine, height: number, width: number): Image {
  const [a, b, c, d, e, f] = m;
  let det = a * e - b * d;
  det = det !== 0 ? 1 / det : 0; // OpenCV's invertAffineTransform
  const ia = e * det, ib = -b * det, id = -d * det, ie = a * det;
  const ic = -ia * c - ib * f, iff = -id * c - ie * f;
  const { width: iw, height: ih, channels: ch, data } = image;
  const out = new Uint8Array(width * height * ch);
  const acc = new Float64Array(ch);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sx = ia * x + ib * y + ic, sy = id * x + ie * y + iff;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      acc.fill(0);
      for (let dy = 0; dy < 2; dy++) {
        const yy = y0 + dy;
        if (yy < 0 || yy >= ih) continue;
        const wy = dy ? fy : 1 - fy;
        for (let dx = 0; dx < 2; dx++) {
          const xx = x0 + dx;
          if (xx < 0 || xx >= iw) continue;
          const wgt = (dx ? fx : 1 - fx) * wy;
          const p = (yy * iw + xx) * ch;
          for (let k = 0; k < ch; k++) acc[k] += data[p + k] * wgt;
        }
      }
      const q = (y * width + x) * ch;
      for (let k = 0; k < ch; k++) out[q + k] = Math.min(255, Math.max(0, rint(acc[k])));
    }
  }
  return { width, height, channels: ch, data: out };
}

/** Crop the face given by 5 landmarks onto the template (align.align_face). */
export function alignFace(image: Image, landmarks: unknown, template: Point[], size: [number, number]): Image {
  if (!image || !(image.data instanceof Uint8Array) || image.width <= 0 || image.height <= 0 || image.data.length !== image.width * image.height * image.channels) {
    throw new EdgefaceError("invalid", "alignFace: expected an image with width*height*channels uint8 values");
  }
  const pts = checkLandmarks(landmarks);
  return warpAffine(image, similarityTransform(pts, template), size[0], size[1]);
}

export interface Pose {
  roll: number;
  yaw: number;
  pitch: number;
  interocular: number;
}

const DEG = 180 / Math.PI;

/** align.estimate_pose: rough roll / yaw / pitch (degrees) and inter-ocular distance from the landmarks. */
export function estimatePose(landmarks: unknown): Pose {
  const [re, le, nose, rm, lm] = checkLandmarks(landmarks);
  const ev: Point = [le[0] - re[0], le[1] - re[1]];
  const roll = Math.atan2(ev[1], ev[0]) * DEG;
  const eyeMid: Point = [(re[0] + le[0]) / 2, (re[1] + le[1]) / 2];
  const mouthMid: Point = [(rm[0] + lm[0]) / 2, (rm[1] + lm[1]) / 2];
  const t = -(roll / DEG);
  const cs = Math.cos(t), sn = Math.sin(t);
  const rot = (p: Point): Point => [cs * p[0] - sn * p[1], sn * p[0] + cs * p[1]];
  const ex = rot(eyeMid), nx = rot(nose), mx = rot(mouthMid);
  const iod = Math.max(Math.hypot(ev[0], ev[1]), 1e-6);
  const clip = (v: number) => Math.min(1, Math.max(-1, v));
  const yawRatio = (nx[0] - (ex[0] + mx[0]) / 2) / iod;
  const yaw = Math.asin(clip(2 * yawRatio)) * DEG;
  const faceH = Math.max(mx[1] - ex[1], 1e-6);
  const pitchRatio = (nx[1] - ex[1]) / faceH;
  const pitch = Math.asin(clip(2 * (pitchRatio - 0.55))) * DEG;
  return { roll, yaw, pitch, interocular: iod };
}

/**
 * align.landmark_residual: how far 5 landmarks are from being a face — the RMS residual of the
 * least-squares similarity fit of the landmarks onto the template (the fit alignFace uses, which
 * cannot reflect), divided by the template's inter-ocular distance. Float64 closed form
 * (docs/runtime.md): with p, q the centred points as complex numbers, Spp = Σ|p|², Sqq = Σ|q|²,
 * C = Σ conj(p)·q, SSE = Sqq − |C|²/Spp (Sqq when Spp = 0, clamped at 0); residual = sqrt(SSE/5)/IOD.
 */
export function landmarkResidual(landmarks: unknown, template: unknown): number {
  const p = checkLandmarks(landmarks);
  const q = checkLandmarks(template, "template");
  const iod = Math.hypot(q[1][0] - q[0][0], q[1][1] - q[0][1]);
  if (!(iod > 0)) throw new EdgefaceError("argument", "template: the two eye points coincide");
  const centred = (pts: Point[]) => {
    const mx = pts.reduce((s, v) => s + v[0], 0) / pts.length, my = pts.reduce((s, v) => s + v[1], 0) / pts.length;
    return pts.map(([x, y]) => [x - mx, y - my]);
  };
  const pc = centred(p), qc = centred(q);
  let spp = 0, sqq = 0, cRe = 0, cIm = 0;
  for (let i = 0; i < 5; i++) {
    spp += pc[i][0] * pc[i][0] + pc[i][1] * pc[i][1];
    sqq += qc[i][0] * qc[i][0] + qc[i][1] * qc[i][1];
    cRe += pc[i][0] * qc[i][0] + pc[i][1] * qc[i][1];
    cIm += pc[i][0] * qc[i][1] - pc[i][1] * qc[i][0];
  }
  const sse = spp === 0 ? sqq : sqq - (cRe * cRe + cIm * cIm) / spp;
  return Math.sqrt(Math.max(sse, 0) / 5) / iod;
}
