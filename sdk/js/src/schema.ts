/**
 * A JSON Schema (draft 2020-12) validator for the keywords edgeface's bundle schema uses: type,
 * enum, const, required, properties, additionalProperties, minProperties, items, minItems,
 * maxItems, minimum, maximum, minLength, pattern, if/then. An unknown keyword is an error here,
 * so a schema change the SDK does not understand fails loudly instead of validating less.
 *
 * Same verdicts as the Python runtime's validator (edgeface/runtime/manifest.py validate_schema):
 * "number" and "integer" are finite (NaN / Infinity are no type), a number written as 1.0 is not an
 * "integer" (pass the `floats` of parsePythonJson), and `$` in a pattern also matches before a final
 * newline, as in Python's re.
 */
type Schema = Record<string, unknown>;

const IGNORED = new Set(["$schema", "$id", "title", "description", "default"]); // annotations
const KNOWN = new Set(["type", "enum", "const", "required", "properties", "additionalProperties", "minProperties", "items",
  "minItems", "maxItems", "minimum", "maximum", "minLength", "pattern", "if", "then"]);

function typeOf(v: unknown, isFloat: boolean): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return !Number.isFinite(v) ? "non-finite number" : Number.isInteger(v) && !isFloat ? "integer" : "number";
  return typeof v; // string, boolean, object
}

function isType(actual: string, t: string): boolean {
  return actual === t || (t === "number" && actual === "integer");
}

/** JSON equality with Python's semantics for these documents: 1 == 1.0, true != 1, NaN != NaN. */
function equal(a: unknown, b: unknown): boolean {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => k in b && equal((a as Schema)[k], (b as Schema)[k]));
}

const PATTERNS = new Map<string, RegExp>();
/** A Python `re` pattern as a JS RegExp: an unescaped `$` outside a class also matches before a final "\n". */
function pyRegExp(pattern: string): RegExp {
  let re = PATTERNS.get(pattern);
  if (!re) {
    let out = "", inClass = false;
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i];
      if (c === "\\") { out += c + (pattern[i + 1] ?? ""); i++; continue; }
      if (c === "[") inClass = true;
      else if (c === "]") inClass = false;
      out += c === "$" && !inClass ? "(?=\\n?$)" : c;
    }
    re = new RegExp(out, "u");
    PATTERNS.set(pattern, re);
  }
  return re;
}

/** Errors of `value` against `schema`; `floats`: where the document wrote numbers as floats (parsePythonJson). */
export function validate(value: unknown, schema: Schema, path: (string | number)[] = [], floats: Set<string> = new Set()): string[] {
  const errs: string[] = [];
  const at = path.join("/") || "(top)";
  for (const key of Object.keys(schema)) {
    if (!KNOWN.has(key) && !IGNORED.has(key)) throw new Error(`bundle schema keyword ${key} is not supported by this SDK`);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    const actual = typeOf(value, floats.has(JSON.stringify(path)));
    if (!types.some((t) => isType(actual, t))) {
      errs.push(`${at}: ${JSON.stringify(value)} is not of type ${types.map((t) => `'${t}'`).join(", ")}`);
      return errs;
    }
  }
  if (schema.enum !== undefined && !(schema.enum as unknown[]).some((e) => equal(e, value))) {
    errs.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if ("const" in schema && !equal(schema.const, value)) errs.push(`${at}: ${JSON.stringify(schema.const)} was expected`);
  if (typeof value === "string") {
    if (typeof schema.minLength === "number" && [...value].length < schema.minLength) errs.push(`${at}: ${JSON.stringify(value)} is too short`);
    if (typeof schema.pattern === "string" && !pyRegExp(schema.pattern).test(value)) {
      errs.push(`${at}: ${JSON.stringify(value)} does not match ${JSON.stringify(schema.pattern)}`);
    }
  }
  if (typeof value === "number" && Number.isFinite(value)) {
    if (typeof schema.minimum === "number" && value < schema.minimum) errs.push(`${at}: ${value} is less than the minimum of ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum) errs.push(`${at}: ${value} is greater than the maximum of ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) errs.push(`${at}: ${JSON.stringify(value)} is too short`);
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) errs.push(`${at}: ${JSON.stringify(value)} is too long`);
    if (schema.items && typeof schema.items === "object") {
      value.forEach((v, i) => errs.push(...validate(v, schema.items as Schema, [...path, i], floats)));
    }
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const req of (schema.required as string[] | undefined) ?? []) {
      if (!Object.hasOwn(obj, req)) errs.push(`${at}: '${req}' is a required property`);
    }
    if (typeof schema.minProperties === "number" && Object.keys(obj).length < schema.minProperties) errs.push(`${at}: should be non-empty`);
    const props = (schema.properties as Record<string, Schema> | undefined) ?? {};
    for (const [k, v] of Object.entries(obj)) {
      if (Object.hasOwn(props, k)) errs.push(...validate(v, props[k], [...path, k], floats));
      else if (schema.additionalProperties === false) errs.push(`${at}: unexpected field '${k}'`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
        errs.push(...validate(v, schema.additionalProperties as Schema, [...path, k], floats));
      }
    }
    if (schema.if && typeof schema.if === "object" && schema.then && validate(value, schema.if as Schema, path, floats).length === 0) {
      errs.push(...validate(value, schema.then as Schema, path, floats));
    }
  }
  return errs;
}
