/**
 * The manifest rules (edgeface/runtime/manifest.py): after the schema, the rules a JSON schema cannot
 * say — the model file is one of the hashed files and stays inside the bundle; the input contract is
 * self-consistent; sizes agree with the card; every threshold lies in its plausible range and a lower
 * FAR never has a lower threshold; quality thresholds are known keys within their physical ranges and
 * the non-face section is well formed. Each broken rule comes with Python's refusal kind, in Python's
 * order (the refusal takes the first one's kind).
 */
import type { BundleKind } from "./errors.js";
import { ALIASES, MODES, checkNonfaceSection } from "./quality.js";

/** edgeface.json is a few KB; a larger one is refused unread. */
export const MAX_MANIFEST_BYTES = 4 << 20;

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/** manifest.safe_relative: a bundle-relative POSIX path that cannot leave the bundle (no absolute path,
 * drive, backslash, '..' part, "//", NUL or control character; "." parts are dropped, as pathlib does). */
export function safeRelative(name: unknown): boolean {
  if (typeof name !== "string" || !name || /[\u0000-\u001f\\:]/.test(name)) return false;
  return !name.startsWith("/") && !name.includes("//") && !name.split("/").includes("..");
}

/** A FAR key ("1e-3") as a rate in (0, 1), or null: Python's float(key) (surrounding whitespace and
 * underscores between digits allowed; inf / nan are never a rate). */
export function farValue(key: string): number | null {
  const t = key.trim();
  if (!/^[-+]?(?:[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)(?:[eE][-+]?[0-9](?:_?[0-9])*)?$/.test(t)) return null;
  const f = Number(t.replace(/_/g, ""));
  return f > 0 && f < 1 ? f : null;
}

/** statistics.NormalDist().inv_cdf: Wichura's AS241, exactly as CPython computes it. */
export function normalInvCdf(p: number): number {
  const q = p - 0.5;
  let num: number, den: number;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    num = (((((((2.50908_09287_30122_6727e+3 * r + 3.34305_75583_58812_8105e+4) * r + 6.72657_70927_00870_0853e+4) * r +
      4.59219_53931_54987_1457e+4) * r + 1.37316_93765_50946_1125e+4) * r + 1.97159_09503_06551_4427e+3) * r +
      1.33141_66789_17843_7745e+2) * r + 3.38713_28727_96366_6080e+0) * q;
    den = (((((((5.22649_52788_52854_5610e+3 * r + 2.87290_85735_72194_2674e+4) * r + 3.93078_95800_09271_0610e+4) * r +
      2.12137_94301_58659_5867e+4) * r + 5.39419_60214_24751_1077e+3) * r + 6.87187_00749_20579_0830e+2) * r +
      4.23133_30701_60091_1252e+1) * r + 1.0);
    return num / den;
  }
  let r = q <= 0.0 ? p : 1.0 - p;
  r = Math.sqrt(-Math.log(r));
  if (r <= 5.0) {
    r = r - 1.6;
    num = (((((((7.74545_01427_83414_07640e-4 * r + 2.27238_44989_26918_45833e-2) * r + 2.41780_72517_74506_11770e-1) * r +
      1.27045_82524_52368_38258e+0) * r + 3.64784_83247_63204_60504e+0) * r + 5.76949_72214_60691_40550e+0) * r +
      4.63033_78461_56545_29590e+0) * r + 1.42343_71107_49683_57734e+0);
    den = (((((((1.05075_00716_44416_84324e-9 * r + 5.47593_80849_95344_94600e-4) * r + 1.51986_66563_61645_71966e-2) * r +
      1.48103_97642_74800_74590e-1) * r + 6.89767_33498_51000_04550e-1) * r + 1.67638_48301_83803_84940e+0) * r +
      2.05319_16266_37758_82187e+0) * r + 1.0);
  } else {
    r = r - 5.0;
    num = (((((((2.01033_43992_92288_13265e-7 * r + 2.71155_55687_43487_57815e-5) * r + 1.24266_09473_88078_43860e-3) * r +
      2.65321_89526_57612_30930e-2) * r + 2.96560_57182_85048_91230e-1) * r + 1.78482_65399_17291_33580e+0) * r +
      5.46378_49111_64114_36990e+0) * r + 6.65790_46435_01103_77720e+0);
    den = (((((((2.04426_31033_89939_78564e-15 * r + 1.42151_17583_16445_88870e-7) * r + 1.84631_83175_10054_68180e-5) * r +
      7.86869_13114_56132_59100e-4) * r + 1.48753_61290_85061_48525e-2) * r + 1.36929_88092_27358_05310e-1) * r +
      5.99832_20655_58879_37690e-1) * r + 1.0);
  }
  const x = num / den;
  return q < 0.0 ? -x : x;
}

/** manifest.threshold_floor: the lowest plausible decision threshold at `far` for `dims`-dimensional
 * similarities (half of what independent random directions reach at that rate). */
export function thresholdFloor(far: number, dims: number): number {
  return (0.5 * normalInvCdf(1.0 - far)) / Math.sqrt(Math.max(Math.trunc(dims), 1));
}

function thresholdErrors(atFar: Record<string, unknown>, dims: number, where: string): string[] {
  const errs: string[] = [];
  const byFar: [number, number, string][] = [];
  for (const [key, entry] of Object.entries(atFar)) {
    const f = farValue(key);
    const t = isObject(entry) ? entry.threshold : undefined;
    if (f === null) {
      errs.push(`${where}: FAR key ${JSON.stringify(key)} is not a rate between 0 and 1 (write it like "1e-3")`);
      continue;
    }
    if (!isNumber(t)) {
      errs.push(`${where} FAR ${key}: threshold ${JSON.stringify(t)} is not a finite number`);
      continue;
    }
    const floor = thresholdFloor(f, dims);
    if (!(floor <= t && t <= 1.0)) {
      errs.push(`${where} FAR ${key}: threshold ${t} is outside its plausible range [${floor.toFixed(3)}, 1] for ${dims}-d similarities (a lower threshold would accept most impostors)`);
    }
    byFar.push([f, t, key]);
  }
  byFar.sort((a, b) => a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
  for (let k = 0; k + 1 < byFar.length; k++) {
    const [, t1, k1] = byFar[k], [, t2, k2] = byFar[k + 1];
    if (t1 < t2 - 1e-9) errs.push(`${where}: threshold at FAR ${k1} (${t1}) is lower than at the looser FAR ${k2} (${t2})`);
  }
  return errs;
}

/** Physical range of each quality threshold (runtime names; ALIASES maps the export's older names). */
export const QUALITY_RANGES: Record<string, [number, number]> = {
  min_interocular: [0, 10_000], min_face_size: [0, 100_000], min_sharpness: [0, 1e9], min_brightness: [0, 255], max_brightness: [0, 255],
  min_contrast: [0, 255], max_abs_yaw: [0, 180], max_abs_pitch: [0, 180], max_abs_roll: [0, 180], min_detector_score: [0, 1],
  min_flip_similarity: [-1, 1], max_nonface_margin: [-1, 1],
  max_landmark_residual: [0, 1], // in template inter-ocular distances; above 1 it would accept any 5 points
};
const INFO_KEYS = new Set(["source", "notes", "description"]);

function qualityErrors(quality: Record<string, unknown>, dims: number): string[] {
  const errs: string[] = [];
  const sections: [string, unknown][] = [["quality", Object.fromEntries(Object.entries(quality).filter(([k]) => !(MODES as string[]).includes(k)))]];
  for (const m of MODES) if (Object.hasOwn(quality, m)) sections.push([`quality.${m}`, quality[m]]);
  for (const [where, section] of sections) {
    if (!isObject(section)) {
      errs.push(`${where}: expected an object`);
      continue;
    }
    for (const [k, v] of Object.entries(section)) {
      if (INFO_KEYS.has(k)) continue;
      if (k === "nonface" && where === "quality") {
        errs.push(...checkNonfaceSection(v, dims));
        continue;
      }
      const key = Object.hasOwn(ALIASES, k) ? ALIASES[k] : k;
      if (!Object.hasOwn(QUALITY_RANGES, key)) {
        errs.push(`${where}: unknown quality threshold ${JSON.stringify(k)}`);
        continue;
      }
      const [lo, hi] = QUALITY_RANGES[key];
      if (!isNumber(v) || !(lo <= v && v <= hi)) errs.push(`${where}.${k}: ${JSON.stringify(v)} is outside [${lo}, ${hi}]`);
    }
  }
  return errs;
}

/** Bits of a codec's code (the dimension its Hamming similarities live in), null for an unknown codec. */
function codecBits(codec: string, embeddingSize: number): number | null {
  return ({ float32: embeddingSize, fp16: embeddingSize, int8: embeddingSize, binary: embeddingSize, binary256: 256, binary512: 512 } as Record<string, number>)[codec] ?? null;
}

const sameNumbers = (a: unknown[], b: unknown[]) => a.length === b.length && a.every((v, i) => Number(v) === Number(b[i]));

/** manifest.semantic_errors: [kind, message] for every rule a schema-valid `meta` breaks, in Python's order. */
export function semanticErrors(meta: Record<string, any>): [BundleKind, string][] {
  const out: [BundleKind, string][] = [];
  const files = meta.files as Record<string, string>;
  for (const name of Object.keys(files)) {
    if (!safeRelative(name)) out.push(["model_file", `file entry ${JSON.stringify(name)} is not a plain relative path inside the bundle`]);
  }
  const mf = meta.model_file as string;
  if (!safeRelative(mf)) out.push(["model_file", `model_file ${JSON.stringify(mf)} is not a plain relative path inside the bundle`]);
  else if (!Object.hasOwn(files, mf) && !Object.keys(files).some((n) => n.startsWith(mf.replace(/\/+$/, "") + "/"))) {
    // a package directory (Core ML's .mlpackage) is covered by hashing the files inside it
    out.push(["model_file", `model_file ${JSON.stringify(mf)} is not one of the hashed files ${JSON.stringify(Object.keys(files).sort())}: it would be loaded unchecked`]);
  }
  const det = meta.detector;
  if (isObject(det)) { // a face detector shipped in the bundle: hashed like the model, never loaded unchecked
    for (const key of ["file", "licence_file"]) {
      const name = det[key];
      if (name === undefined || name === null) continue;
      if (!safeRelative(name)) out.push(["model_file", `detector.${key} ${JSON.stringify(name)} is not a plain relative path inside the bundle`]);
      else if (!Object.hasOwn(files, name as string)) out.push(["model_file", `detector.${key} ${JSON.stringify(name)} is not one of the hashed files: it would be loaded unchecked`]);
    }
  }
  const conf = meta.conformance;
  if (isObject(conf)) {
    for (const name of Object.keys(isObject(conf.files) ? conf.files : {})) {
      if (!safeRelative(name)) out.push(["model_file", `conformance file entry ${JSON.stringify(name)} is not a plain relative path inside the bundle`]);
    }
  }

  const card = meta.card as Record<string, any>;
  const inp = meta.input as Record<string, any>, outp = meta.output as Record<string, any>;
  const emb = meta.embedding_size as number;
  const [h, w] = Array.isArray(card.input_size) ? [card.input_size[0] ?? null, card.input_size[1] ?? null] : [null, null];
  if (card.embedding_size !== emb) out.push(["input_contract", `embedding_size ${emb} differs from the card's ${card.embedding_size}`]);
  if (outp.shape[1] !== null && outp.shape[1] !== emb) out.push(["input_contract", `output shape ${JSON.stringify(outp.shape)} disagrees with embedding_size ${emb}`]);
  const crop = meta.alignment.crop_size as number[];
  if (crop[0] !== h || crop[1] !== w) out.push(["input_contract", `alignment crop_size ${JSON.stringify(crop)} differs from the card's input_size ${JSON.stringify([h, w])}`]);
  const spatial = inp.layout === "NHWC" ? inp.shape.slice(1, 3) : inp.shape.slice(2, 4);
  const channels = inp.layout === "NHWC" ? inp.shape[3] : inp.shape[1];
  if (spatial[0] !== h || spatial[1] !== w || channels !== 3) {
    out.push(["input_contract", `input shape ${JSON.stringify(inp.shape)} (${inp.layout}) does not hold ${h}x${w}x3 crops`]);
  }
  const inGraph = inp.normalization_in_graph as boolean;
  if (inGraph !== (inp.dtype === "uint8")) {
    out.push(["input_contract", `input.normalization_in_graph is ${inGraph} but the input dtype is ${inp.dtype}: edgeface graphs normalise exactly when they take uint8 crops`]);
  }
  if (inGraph && !sameNumbers(inp.value_range, [0, 255])) out.push(["input_contract", `input value_range ${JSON.stringify(inp.value_range)} must be [0, 255] for uint8 crops`]);
  if (!inGraph) {
    for (const k of ["mean", "std"]) {
      if (Object.hasOwn(inp, k) && card[k] !== undefined && card[k] !== null && !sameNumbers(inp[k], card[k])) {
        out.push(["input_contract", `input.${k} ${JSON.stringify(inp[k])} differs from the card's ${JSON.stringify(card[k])}`]);
      }
    }
    if (Object.hasOwn(inp, "std") && (inp.std as number[]).some((v) => v === 0)) out.push(["input_contract", "input.std holds a zero"]);
  }

  const thr = meta.thresholds as Record<string, any>;
  for (const e of thresholdErrors(thr.at_far, emb, "thresholds.at_far")) out.push(["thresholds", e]);
  for (const [codec, sec] of Object.entries((thr.codecs as Record<string, any> | undefined) || {})) {
    const bits = codecBits(codec, emb);
    if (bits === null) {
      out.push(["thresholds", `thresholds.codecs: unknown codec ${JSON.stringify(codec)}`]);
      continue;
    }
    for (const e of thresholdErrors(sec.at_far, bits, `thresholds.codecs.${codec}.at_far`)) out.push(["thresholds", e]);
  }
  for (const e of qualityErrors(meta.quality, emb)) out.push(["quality", e]);
  return out;
}
