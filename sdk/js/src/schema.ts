/**
 * A JSON Schema (draft 2020-12) validator for the keywords edgeface's bundle schema uses: type,
 * enum, const, required, properties, additionalProperties, minProperties, items, minItems,
 * maxItems, minimum, maximum, minLength, pattern, if/then. An unknown keyword is an error here,
 * so a schema change the SDK does not understand fails loudly instead of validating less.
 */
type Schema = Record<string, unknown>;

const IGNORED = new Set(["$schema", "$id", "title", "description"]);
const KNOWN = new Set(["type", "enum", "const", "required", "properties", "additionalProperties", "minProperties", "items",
  "minItems", "maxItems", "minimum", "maximum", "minLength", "pattern", "if", "then"]);

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v; // string, boolean, object
}

function isType(v: unknown, t: string): boolean {
  const actual = typeOf(v);
  return actual === t || (t === "number" && actual === "integer");
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function validate(value: unknown, schema: Schema, path: string[] = []): string[] {
  const errs: string[] = [];
  const at = path.join("/") || "(top)";
  for (const key of Object.keys(schema)) {
    if (!KNOWN.has(key) && !IGNORED.has(key)) throw new Error(`bundle schema keyword ${key} is not supported by this SDK`);
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => isType(value, t))) {
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
    if (typeof schema.pattern === "string" && !new RegExp(schema.pattern, "u").test(value)) {
      errs.push(`${at}: ${JSON.stringify(value)} does not match ${JSON.stringify(schema.pattern)}`);
    }
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) errs.push(`${at}: ${value} is less than the minimum of ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum) errs.push(`${at}: ${value} is greater than the maximum of ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) errs.push(`${at}: ${JSON.stringify(value)} is too short`);
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) errs.push(`${at}: ${JSON.stringify(value)} is too long`);
    if (schema.items && typeof schema.items === "object") {
      value.forEach((v, i) => errs.push(...validate(v, schema.items as Schema, [...path, String(i)])));
    }
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const req of (schema.required as string[] | undefined) ?? []) {
      if (!(req in obj)) errs.push(`${at}: '${req}' is a required property`);
    }
    if (typeof schema.minProperties === "number" && Object.keys(obj).length < schema.minProperties) errs.push(`${at}: should be non-empty`);
    const props = (schema.properties as Record<string, Schema> | undefined) ?? {};
    for (const [k, v] of Object.entries(obj)) {
      if (k in props) errs.push(...validate(v, props[k], [...path, k]));
      else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
        errs.push(...validate(v, schema.additionalProperties as Schema, [...path, k]));
      }
    }
    if (schema.if && typeof schema.if === "object" && schema.then && validate(value, schema.if as Schema, path).length === 0) {
      errs.push(...validate(value, schema.then as Schema, path));
    }
  }
  return errs;
}
