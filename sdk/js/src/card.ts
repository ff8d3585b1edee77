/** The model card (edgeface/core/card.py): how to feed the embedder, and the gallery fingerprint. */
import { EdgefaceError } from "./errors.js";
import { BUNDLE_SCHEMA } from "./generated/kit.js";
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
  /** the layers an int8 export keeps in float (absent: each quantizer's default) */
  int8_float_scope?: { first?: boolean; last?: number };
}

// The card's fields, required fields and defaults come from the bundle schema's "card" section
// (edgeface/schemas/bundle.schema.json, checked against the Python dataclass by tests/test_card_schema.py).
interface FieldSchema { default?: unknown }
const CARD_SCHEMA = (BUNDLE_SCHEMA.properties as Record<string, { properties: Record<string, FieldSchema>; required: string[] }>).card;
const FIELDS = CARD_SCHEMA.properties;
const REQUIRED = CARD_SCHEMA.required;
const DEFAULTS: Record<string, unknown> = Object.fromEntries(
  Object.entries(FIELDS).filter(([, f]) => Object.hasOwn(f, "default")).map(([k, f]) => [k, f.default]),
);
// Fields the Python dataclass makes float (ModelCard.__post_init__): json.dumps writes them with a decimal point.
const ALWAYS_FLOAT = new Set(["mean", "std"]);
// Where a card read from a manifest had numbers written as floats (1.0 stays 1.0 in Python): JSON.stringify(path in the card).
const CARD_FLOATS = new WeakMap<ModelCard, Set<string>>();

/** ModelCard.from_dict; `floats` (parsePythonJson's, with `prefix` = the card's path in that document) says
 * which numbers were written as floats, so the card's JSON (and fingerprint) is Python's to the byte. */
export function cardFromDict(data: Record<string, unknown>, floats?: Set<string>, prefix: (string | number)[] = []): ModelCard {
  const unknown = Object.keys(data).filter((k) => !Object.hasOwn(FIELDS, k)).sort();
  if (unknown.length) throw new EdgefaceError("bundle", `model card has unknown fields ${JSON.stringify(unknown)}`);
  const missing = REQUIRED.filter((k) => !(k in data));
  if (missing.length) throw new EdgefaceError("bundle", `model card is missing required fields ${JSON.stringify(missing)}`);
  const merged: Record<string, unknown> = { ...structuredClone(DEFAULTS), ...data };
  // ModelCard.to_dict leaves a field without a default (int8_float_scope) out when it is None
  for (const k of Object.keys(FIELDS)) if (!Object.hasOwn(FIELDS[k], "default") && merged[k] === null) delete merged[k];
  const card = merged as unknown as ModelCard;
  if (!["RGB", "BGR", "GRAY"].includes(card.color_order)) throw new EdgefaceError("bundle", `card ${card.name}: bad color_order ${card.color_order}`);
  if (card.input_size.length !== 2 || Math.min(...card.input_size) <= 0) throw new EdgefaceError("bundle", `card ${card.name}: bad input_size`);
  if (!(card.embedding_size > 0)) throw new EdgefaceError("bundle", `card ${card.name}: embedding_size must be > 0`);
  if (floats) {
    const mine = new Set<string>();
    const head = JSON.stringify(prefix).slice(0, -1);
    for (const f of floats) {
      if (prefix.length === 0) mine.add(f);
      else if (f.startsWith(head + ",")) mine.add("[" + f.slice(head.length + 1));
    }
    CARD_FLOATS.set(card, mine);
  }
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

/** json.dumps(value, sort_keys=True) with Python's separators; `float` marks values Python holds as float,
 * `floats`/`path`: numbers a parsed document wrote as floats (parsePythonJson's set). */
export function pyJson(value: unknown, float = false, floats?: Set<string>, path: (string | number)[] = []): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    const isFloat = floats ? float || floats.has(JSON.stringify(path)) : float;
    return isFloat || !Number.isInteger(value) ? pyFloat(value) : String(value);
  }
  if (typeof value === "string") return pyString(value);
  if (Array.isArray(value)) return `[${value.map((v, i) => pyJson(v, float, floats, [...path, i])).join(", ")}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  return `{${keys.map((k) => `${pyString(k)}: ${pyJson(obj[k], false, floats, [...path, k])}`).join(", ")}}`;
}

/** ModelCard.to_json(): the text the gallery stores and fingerprints. A card not read from a manifest
 * (no record of its floats) writes mflops as a float, as the dataclass types it. */
export function cardToJson(card: ModelCard): string {
  const d: Record<string, unknown> = { ...card };
  const floats = CARD_FLOATS.get(card);
  const keys = Object.keys(d).sort();
  return `{${keys.map((k) => `${pyString(k)}: ${pyJson(d[k], ALWAYS_FLOAT.has(k) || (!floats && k === "mflops"), floats, [k])}`).join(", ")}}`;
}

/** gallery.model_fingerprint: the embedding space's identity (first 16 hex digits of sha256). */
export function modelFingerprint(card: ModelCard): string {
  return toHex(sha256(cardToJson(card))).slice(0, 16);
}
