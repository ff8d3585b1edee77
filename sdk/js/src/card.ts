/** The model card (edgeface/core/card.py): how to feed the embedder, and the gallery fingerprint. */
import { EdgefaceError } from "./errors.js";
import { sha256, toHex } from "./sha256.js";

export interface ModelCard {
  name: string;
  arch: string;
  input_size: [number, number]; // (height, width)
  embedding_size: number;
  template: string;
  color_order: "RGB" | "BGR" | "GRAY";
  mean: [number, number, number];
  std: [number, number, number];
  licence: string;
  description: string;
  source: string;
  params: number | null;
  mflops: number | null;
  arch_kwargs: Record<string, unknown>;
}

const DEFAULTS = { color_order: "RGB", mean: [127.5, 127.5, 127.5], std: [128.0, 128.0, 128.0], licence: "unknown", description: "",
  source: "", params: null, mflops: null, arch_kwargs: {} };
const REQUIRED = ["name", "arch", "input_size", "embedding_size", "template"];
// Fields the Python dataclass stores as float: Python's json writes them with a decimal point.
const FLOAT_FIELDS = new Set(["mean", "std", "mflops"]);

export function cardFromDict(data: Record<string, unknown>): ModelCard {
  const known = new Set([...REQUIRED, ...Object.keys(DEFAULTS)]);
  const unknown = Object.keys(data).filter((k) => !known.has(k)).sort();
  if (unknown.length) throw new EdgefaceError("bundle", `model card has unknown fields ${JSON.stringify(unknown)}`);
  const missing = REQUIRED.filter((k) => !(k in data));
  if (missing.length) throw new EdgefaceError("bundle", `model card is missing required fields ${JSON.stringify(missing)}`);
  const card = { ...structuredClone(DEFAULTS), ...data } as unknown as ModelCard;
  if (!["RGB", "BGR", "GRAY"].includes(card.color_order)) throw new EdgefaceError("bundle", `card ${card.name}: bad color_order ${card.color_order}`);
  if (card.input_size.length !== 2 || Math.min(...card.input_size) <= 0) throw new EdgefaceError("bundle", `card ${card.name}: bad input_size`);
  if (!(card.embedding_size > 0)) throw new EdgefaceError("bundle", `card ${card.name}: embedding_size must be > 0`);
  return card;
}

/** Python's repr(float): shortest round-trip digits, scientific below 1e-4 and from 1e16. */
export function pyFloat(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expStr] = x.toExponential().split("e");
  const exp = Number(expStr);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  let s: string;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    s = `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  } else if (exp < 0) {
    s = `0.${"0".repeat(-exp - 1)}${digits}`;
  } else if (digits.length > exp + 1) {
    s = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  } else {
    s = `${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
  }
  return neg ? `-${s}` : s;
}

function pyString(s: string): string {
  // json.dumps(ensure_ascii=True): every non-ASCII UTF-16 unit as \uXXXX
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => (c === "\u007f" ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

/** json.dumps(value, sort_keys=True) with Python's separators; `float` marks values Python holds as float. */
export function pyJson(value: unknown, float = false): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return float || !Number.isInteger(value) ? pyFloat(value) : String(value);
  if (typeof value === "string") return pyString(value);
  if (Array.isArray(value)) return `[${value.map((v) => pyJson(v, float)).join(", ")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${keys.map((k) => `${pyString(k)}: ${pyJson(obj[k], false)}`).join(", ")}}`;
}

/** ModelCard.to_json(): the text the gallery stores and fingerprints. */
export function cardToJson(card: ModelCard): string {
  const d: Record<string, unknown> = { ...card };
  const keys = Object.keys(d).sort();
  return `{${keys.map((k) => `${pyString(k)}: ${pyJson(d[k], FLOAT_FIELDS.has(k))}`).join(", ")}}`;
}

/** gallery.model_fingerprint: the embedding space's identity (first 16 hex digits of sha256). */
export function modelFingerprint(card: ModelCard): string {
  return toHex(sha256(cardToJson(card))).slice(0, 16);
}
