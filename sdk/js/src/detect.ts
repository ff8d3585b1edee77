/**
 * YuNet face detection (edgeface/core/detect.py) through ONNX Runtime's JS API, for apps (and the demo)
 * without their own detector: letterbox to 640x640 BGR, decode the per-stride outputs and NMS as
 * the Python detector does. The letterbox resize here is bilinear (Python uses OpenCV's area
 * filter when shrinking), so landmarks agree with the Python detector's to a fraction of a pixel,
 * not exactly; the SDK's conformance is measured on given landmarks.
 */
import { warpAffine, type Image } from "./align.js";
import { EdgefaceError } from "./errors.js";
import type { OrtModule } from "./ort.js";

export const INPUT_SIZE = 640;
const STRIDES = [8, 16, 32];

export interface Detection {
  /** x1, y1, x2, y2 in image pixels */
  box: [number, number, number, number];
  /** right eye, left eye, nose, right mouth, left mouth */
  landmarks: [number, number][];
  score: number;
}

interface Session {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: ArrayLike<number> }>>;
}

function nms(boxes: number[][], scores: number[], iouThr: number): number[] {
  let order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  const area = (b: number[]) => (b[2] - b[0]) * (b[3] - b[1]);
  const keep: number[] = [];
  while (order.length) {
    const i = order[0];
    keep.push(i);
    order = order.slice(1).filter((j) => {
      const a = boxes[i], b = boxes[j];
      const inter = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
      return inter / (area(a) + area(b) - inter + 1e-9) <= iouThr;
    });
  }
  return keep;
}

export class YuNetDetector {
  private constructor(private ort: OrtModule, private session: Session, readonly scoreThreshold: number, readonly nmsThreshold: number) {}

  static async create(ort: OrtModule, model: Uint8Array, scoreThreshold = 0.6, nmsThreshold = 0.3): Promise<YuNetDetector> {
    const session = (await ort.InferenceSession.create(model)) as unknown as Session;
    return new YuNetDetector(ort, session, scoreThreshold, nmsThreshold);
  }

  /** All faces above the score threshold, best first, in image coordinates (RGB input). */
  async detect(image: Image): Promise<Detection[]> {
    if (image.channels !== 3) throw new EdgefaceError("invalid", "detect: expected an RGB image");
    const { width: w, height: h } = image;
    const scale = INPUT_SIZE / Math.max(w, h);
    const nh = Math.min(INPUT_SIZE, Math.round(h * scale)), nw = Math.min(INPUT_SIZE, Math.round(w * scale));
    const sx = nw / w, sy = nh / h;
    const small = warpAffine(image, [sx, 0, 0.5 * sx - 0.5, 0, sy, 0.5 * sy - 0.5], nh, nw);
    const blob = new Float32Array(3 * INPUT_SIZE * INPUT_SIZE);
    const plane = INPUT_SIZE * INPUT_SIZE;
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) {
      const p = (y * nw + x) * 3, q = y * INPUT_SIZE + x;
      blob[q] = small.data[p + 2]; // BGR planes
      blob[plane + q] = small.data[p + 1];
      blob[2 * plane + q] = small.data[p];
    }
    const outs = await this.session.run({ [this.session.inputNames[0]]: new this.ort.Tensor("float32", blob, [1, 3, INPUT_SIZE, INPUT_SIZE]) });
    const boxes: number[][] = [], kps: number[][][] = [], scores: number[] = [];
    for (const s of STRIDES) {
      const n = INPUT_SIZE / s;
      const cls = outs[`cls_${s}`].data, obj = outs[`obj_${s}`].data, bb = outs[`bbox_${s}`].data, kp = outs[`kps_${s}`].data;
      for (let i = 0; i < n * n; i++) {
        const score = Math.sqrt(Math.min(1, Math.max(0, cls[i])) * Math.min(1, Math.max(0, obj[i])));
        if (score < this.scoreThreshold) continue;
        const gx = i % n, gy = Math.floor(i / n);
        const cx = (gx + bb[4 * i]) * s, cy = (gy + bb[4 * i + 1]) * s, bw = Math.exp(bb[4 * i + 2]) * s, bh = Math.exp(bb[4 * i + 3]) * s;
        boxes.push([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]);
        kps.push([0, 1, 2, 3, 4].map((k) => [(kp[10 * i + 2 * k] + gx) * s, (kp[10 * i + 2 * k + 1] + gy) * s]));
        scores.push(score);
      }
    }
    return nms(boxes, scores, this.nmsThreshold).map((i) => ({
      box: boxes[i].map((v) => v / scale) as Detection["box"],
      landmarks: kps[i].map(([x, y]) => [x / scale, y / scale] as [number, number]),
      score: scores[i],
    }));
  }
}

/** detect.pick_primary: the largest face nearest the image centre (InsightFace's rule). */
export function pickPrimary(detections: Detection[], width: number, height: number): Detection | null {
  let best: Detection | null = null, bestValue = -Infinity;
  for (const d of detections) {
    const area = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]);
    const mx = (d.box[0] + d.box[2]) / 2 - width / 2, my = (d.box[1] + d.box[3]) / 2 - height / 2;
    const value = area - 2 * (mx * mx + my * my);
    if (value > bestValue) { bestValue = value; best = d; }
  }
  return best;
}
