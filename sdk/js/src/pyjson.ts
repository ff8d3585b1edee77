/**
 * JSON read the way Python's `json.loads` reads it, so a manifest is refused (or accepted) by the
 * same rule in every runtime. JSON.parse differs from Python in three ways that change a verdict:
 * - Python accepts the literals NaN, Infinity and -Infinity (the schema then refuses them where a
 *   number is expected, and lets them through in free-form sections such as `verification`);
 * - Python keeps 1.0 a float, which the schema's "integer" type refuses (`floats` lists where
 *   numbers were written with a fraction or an exponent);
 * - Python refuses deep nesting (RecursionError at ~1000 levels minus the caller's stack depth).
 * Objects are built with defineProperty, so a "__proto__" key is data, not a prototype.
 */

/** Nesting deeper than this is refused (Python: RecursionError somewhere below ~1000 levels). */
export const MAX_JSON_DEPTH = 900;

export class JsonSyntaxError extends Error {}

export interface ParsedJson {
  value: unknown;
  /** JSON.stringify(path) of every number written with a fraction or an exponent (a Python float) */
  floats: Set<string>;
}

const WS = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

export function parsePythonJson(text: string): ParsedJson {
  let i = 0;
  const floats = new Set<string>();
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at char ${i}`);
  };
  const ws = () => {
    while (i < text.length && WS.has(text[i])) i++;
  };
  const str = (): string => {
    i++; // opening quote
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c === "\\") {
        const e = text[i + 1];
        if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!HEX4.test(hex)) fail("invalid \\uXXXX escape");
          out += String.fromCharCode(parseInt(hex, 16)); // surrogate pairs join in UTF-16, as Python joins them
          i += 6;
        } else if (e !== undefined && e in ESCAPES) {
          out += ESCAPES[e];
          i += 2;
        } else fail("invalid \\escape");
      } else if (c.charCodeAt(0) < 0x20) fail("invalid control character in a string");
      else {
        out += c;
        i++;
      }
    }
  };
  const value = (path: (string | number)[], depth: number): unknown => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      if (depth + 1 > MAX_JSON_DEPTH) fail(`nested deeper than ${MAX_JSON_DEPTH} levels`);
      i++;
      ws();
      if (c === "[") {
        const arr: unknown[] = [];
        if (text[i] === "]") {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value([...path, arr.length], depth + 1));
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === "]") { i++; return arr; }
          fail("expected ',' or ']'");
        }
      }
      const obj: Record<string, unknown> = {};
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a property name in double quotes");
        const key = str();
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        // a repeated key keeps its first position and takes the last value, as a Python dict
        Object.defineProperty(obj, key, { value: value([...path, key], depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return obj; }
        fail("expected ',' or '}'");
      }
    }
    if (c === '"') return str();
    for (const [word, v] of [["null", null], ["true", true], ["false", false], ["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail("expecting a value");
    i += m![0].length;
    if (m![1] !== undefined || m![2] !== undefined) floats.add(JSON.stringify(path));
    return Number(m![0]);
  };
  const v = value([], 0);
  ws();
  if (i !== text.length) fail("extra data");
  return { value: v, floats };
}
