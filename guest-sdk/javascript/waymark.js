// Waymark workflow nodes in JavaScript: the JavaScript counterpart of the
// Rust SDK (`waymark-guest`), for components built with componentize-js.
//
//   import { workflow, Plan, Effect, log } from "../../../guest-sdk/javascript/waymark.js";
//
//   export const node = workflow({
//     id: "quickstart",
//     version: "0.1.0",
//     entry: "ask",
//     nodes: {
//       ask: (ctx) => Plan.next("done").effect(Effect.askUser("Continue?"), "answer"),
//       done: (ctx) => Plan.complete({ answer: ctx.var("answer.text", "string") }),
//     },
//   });
//
// A node is a function of a `Context` returning a `Plan`. It does no I/O:
// the plan lists var writes, at most one effect for the host to perform and
// where the run goes next. Plans, effects, var lookups and error codes behave
// like the Rust SDK's, so a node ported from Rust produces the same ledger.
//
// Errors. A node fails by throwing a `NodeError` (code, message, retryable);
// the helpers throw one too (`missing-var`, `invalid-var`, `invalid-path`,
// `invalid-vars`, `json`, `invalid-plan`, `unknown-node`,
// `data-unavailable`). Any other exception becomes the error code
// `exception` (message `TypeError: ...`), after an error log line with the
// stack; it never traps the instance.
//
// Numbers. Vars arrive as JSON from the host, which keeps integers and
// floats apart the way serde_json does. Integers are JS numbers, or BigInts
// beyond 2^53 - 1 (exact, serialized back as integers). A float whose value
// is integral (`5.0`, `1e3`) is kept as a `JSON.rawJSON` value so that it is
// written back as a float and typed access rejects it where Rust does; read
// it with `ctx.var(path, "f64")` to get a number. A number computed in JS
// serializes as an integer when integral (`5`, where Rust's f64 gives
// `5.0`); wrap it in `asF64` to write a float.
//
// Logging. `log.info(...)` etc. write host log lines (bounded per step by
// the host). `console.log/info/debug/trace/warn/error` are routed to host log
// lines too; without this, with stdio disabled at build time, they print
// nowhere. Do not log at module top level (there is no host then).
//
// Tool components (world `tools`, entry file `tools.js`): `export const tool
// = tools([{ name, description, parameters, readOnly, handler }])`; a
// handler takes the call's arguments and returns any JSON value or throws
// `new ToolFailure(code, message)`.
//
// Building. From a directory that contains both the app and this file (the
// repository root for the examples):
//
//   componentize-js --wit wit --world-name workflow \
//       -d stdio random clocks http fetch-event -o app.wasm path/to/app.js
//
// componentize-js resolves relative imports itself, but only inside the
// current directory. From anywhere else, bundle first:
//
//   esbuild path/to/app.js --bundle --format=esm --platform=neutral \
//       --external:waymark:* --outfile=app.bundle.js
//
// and componentize `app.bundle.js`. Top-level code runs once, at build time
// (the engine's state is snapshotted); each step starts from that state in
// a fresh instance, so keep no state between steps.

import {
  log as hostLog,
  readData as hostReadData,
} from "waymark:workflow/host@0.1.0";

// ---------------------------------------------------------------- errors --

/** A failure a node reports: the run fails unless `retryable` and the host's
 * retry policy allows another attempt. */
export class NodeError extends Error {
  constructor(code, message, retryable = false) {
    super(String(message));
    this.name = "NodeError";
    this.code = String(code);
    this.retryable = Boolean(retryable);
  }

  /** A retryable error with this code and message. */
  static retryable(code, message) {
    return new NodeError(code, message, true);
  }

  /** The error `workflow()` returns for a node it does not list. */
  static unknownNode(node) {
    return new NodeError(
      "unknown-node",
      `this workflow has no node named \`${node}\``,
    );
  }

  toString() {
    return `${this.code}: ${this.message}${this.retryable ? " (retryable)" : ""}`;
  }
}

function isNodeError(e) {
  return (
    e instanceof NodeError ||
    (e !== null &&
      typeof e === "object" &&
      e.name === "NodeError" &&
      typeof e.code === "string")
  );
}

const missingVar = (path) =>
  new NodeError("missing-var", `var \`${path}\` is required but missing`);
const invalidPath = (path) =>
  new NodeError(
    "invalid-path",
    `invalid var path \`${path}\`: it must be non-empty dot-separated keys`,
  );

// --------------------------------------------------------------- numbers --

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const HAS_RAW_JSON =
  typeof JSON.rawJSON === "function" && typeof JSON.isRawJSON === "function";

// BigInts (exact integers beyond 2^53 - 1) serialize as JSON integers.
if (typeof BigInt.prototype.toJSON !== "function") {
  Object.defineProperty(BigInt.prototype, "toJSON", {
    value: HAS_RAW_JSON
      ? function () {
          return JSON.rawJSON(this.toString());
        }
      : function () {
          return Number(this);
        },
    writable: true,
    configurable: true,
  });
}

const isRaw = HAS_RAW_JSON ? (v) => JSON.isRawJSON(v) : () => false;

/** An integer as a number when exactly representable, else a BigInt. */
function fromBig(b) {
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
}

/** A float as serde_json writes it: shortest round-trip digits, `.0` on
 * integral values, exponent form below 1e-5 and from 1e16. */
function f64Json(n) {
  if (!Number.isFinite(n)) return "null";
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0";
  const abs = Math.abs(n);
  if (abs >= 1e16 || abs < 1e-5) return n.toExponential();
  const s = String(n);
  return Number.isInteger(n) ? `${s}.0` : s;
}

/** A float as Rust's `Display` writes it: never an exponent. */
function f64Display(n) {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "inf";
  if (n === -Infinity) return "-inf";
  if (Object.is(n, -0)) return "-0";
  const s = String(n);
  if (!s.includes("e")) return s;
  const [mant, expText] = n.toExponential().split("e");
  const exp = Number(expText);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  let out;
  if (exp >= 0) {
    out =
      digits.length > exp + 1
        ? `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`
        : digits + "0".repeat(exp + 1 - digits.length);
  } else {
    out = `0.${"0".repeat(-exp - 1)}${digits}`;
  }
  return neg ? `-${out}` : out;
}

/** `n` marked to serialize as a Rust f64 would (`5` is written `5.0`). */
export function asF64(n) {
  const x = Number(n);
  return HAS_RAW_JSON && Number.isFinite(x) ? JSON.rawJSON(f64Json(x)) : x;
}

// ------------------------------------------------------------------ JSON --

// Number text that serde_json reads as a float, or an integer that may not
// fit a double exactly: only then is the slower, source-aware parse needed.
const NEEDS_SOURCE = /\d[.eE]|\d{16}|-0(?![.\d])/;
const FLOAT_TEXT = /[.eE]/;

function reviveNumber(_key, value, context) {
  if (typeof value !== "number") return value;
  const source = context === undefined ? undefined : context.source;
  if (typeof source !== "string") return value;
  if (FLOAT_TEXT.test(source) || Object.is(value, -0)) {
    // serde_json: a float (`-0` too). Keep integral values marked as floats.
    return Number.isInteger(value) ? JSON.rawJSON(f64Json(value)) : value;
  }
  if (Number.isSafeInteger(value)) return value;
  const big = BigInt(source);
  if (big >= I64_MIN && big <= U64_MAX) return big;
  return JSON.rawJSON(f64Json(value)); // serde_json falls back to f64
}

/** Parses JSON text with serde_json's view of numbers (see the top). */
export function parseJson(text) {
  return HAS_RAW_JSON && NEEDS_SOURCE.test(text)
    ? JSON.parse(text, reviveNumber)
    : JSON.parse(text);
}

/** The serde_json `Value` variant of a var value: "null", "boolean",
 * "number" (BigInts and float-marked values included), "string", "array"
 * or "object". Use it instead of `typeof` on raw vars. */
export function jsonType(v) {
  switch (typeof v) {
    case "number":
    case "bigint":
      return "number";
    case "string":
      return "string";
    case "boolean":
      return "boolean";
  }
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "array";
  return isRaw(v) ? "number" : "object";
}

/** JSON text for a plan, or a NodeError with code `json`. */
function toJson(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new NodeError("json", e instanceof Error ? e.message : String(e));
  }
  if (text === undefined) {
    throw new NodeError("json", `cannot serialize ${typeof value} as JSON`);
  }
  return text;
}

/** `[text, null]` or `[null, NodeError]`: errors are kept, as in Rust. */
function tryJson(value) {
  try {
    return [toJson(value), null];
  } catch (e) {
    return [null, e];
  }
}

/** A value as Rust's `Display` writes it (strings bare, JSON otherwise). */
function display(v) {
  switch (typeof v) {
    case "string":
      return v;
    case "number":
      return f64Display(v);
    case "bigint":
    case "boolean":
    case "undefined":
    case "symbol":
    case "function":
      return String(v);
  }
  if (v === null) return "null";
  if (isRaw(v)) return v.rawJSON;
  if (v instanceof Error) return String(v);
  try {
    const text = JSON.stringify(v);
    return text === undefined ? String(v) : text;
  } catch {
    return String(v);
  }
}

// ----------------------------------------------------------------- paths --

// (Hot paths use index loops: in the component's interpreter, `for...of`
// and `Array.from` cost about ten times more fuel.)

/** The keys of a dot-separated path; `invalid-path` for empty keys. */
function segments(path) {
  const p = String(path);
  const keys = p.split(".");
  if (p === "" || keys.includes("")) throw invalidPath(p);
  return keys;
}

const hasOwn = Object.prototype.hasOwnProperty;

/** The array index a key names: all ASCII digits, fitting a wasm32 usize. */
function arrayIndex(key) {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
  }
  const n = Number(key);
  return n > 4294967295 ? -1 : n;
}

/** The value at `path` in `root`, or undefined. A key made of digits indexes
 * an array; objects are looked up by key; scalars have no children. */
function lookup(root, path) {
  const keys = segments(path);
  let current = root;
  for (let k = 0; k < keys.length; k++) {
    if (current === null || typeof current !== "object" || isRaw(current)) {
      return undefined;
    }
    const key = keys[k];
    if (Array.isArray(current)) {
      const i = arrayIndex(key);
      if (i < 0 || i >= current.length) return undefined;
      current = current[i];
    } else {
      if (!hasOwn.call(current, key)) return undefined;
      current = current[key];
    }
  }
  return current;
}

/** The strings of an array or other iterable. */
function strings(items) {
  if (!Array.isArray(items)) return Array.from(items, String);
  const out = new Array(items.length);
  for (let i = 0; i < items.length; i++) out[i] = String(items[i]);
  return out;
}

// ----------------------------------------------------------------- types --

// [min, max] as BigInts; numbers (safe integers) are compared as numbers.
const INT_RANGES = {
  u8: [0n, 255n],
  u16: [0n, 65535n],
  u32: [0n, 4294967295n],
  u64: [0n, U64_MAX],
  usize: [0n, 4294967295n],
  i8: [-128n, 127n],
  i16: [-32768n, 32767n],
  i32: [-2147483648n, 2147483647n],
  i64: [I64_MIN, (1n << 63n) - 1n],
  isize: [-2147483648n, 2147483647n],
};
const INT_NUMBER_RANGES = {};
for (const name of Object.keys(INT_RANGES)) {
  INT_NUMBER_RANGES[name] = INT_RANGES[name].map(Number);
}
const SCALARS = new Set([
  "any",
  "string",
  "bool",
  "f32",
  "f64",
  ...Object.keys(INT_RANGES),
]);

/** Types for typed var access, named after the Rust types they mirror:
 * `"string"`, `"bool"`, `"u8"`…`"u64"`, `"usize"`, `"i8"`…`"i64"`,
 * `"isize"`, `"f32"`, `"f64"`, `"any"` (serde_json `Value`, the default),
 * and the composites below. */
export const Type = Object.freeze({
  any: "any",
  string: "string",
  bool: "bool",
  u8: "u8",
  u16: "u16",
  u32: "u32",
  u64: "u64",
  usize: "usize",
  i8: "i8",
  i16: "i16",
  i32: "i32",
  i64: "i64",
  isize: "isize",
  f32: "f32",
  f64: "f64",
  /** `Vec<T>`: an array. */
  array: (of) => Object.freeze({ kind: "array", of: checkType(of) }),
  /** `HashMap<String, T>`: an object. */
  map: (of) => Object.freeze({ kind: "map", of: checkType(of) }),
  /** `Option<T>`: null when null; a missing struct field is null too. */
  option: (of) => Object.freeze({ kind: "option", of: checkType(of) }),
  /** A `#[derive(Deserialize)] struct Name { ... }`: `fields` maps each
   * field to its type, in declaration order (an object, or [name, type]
   * pairs). Unknown keys are ignored; the result holds the fields only. */
  struct: (name, fields) => {
    const list = (Array.isArray(fields) ? fields : Object.entries(fields)).map(
      ([field, type]) => [String(field), checkType(type)],
    );
    return Object.freeze({
      kind: "struct",
      name: String(name),
      fields: list,
      types: new Map(list),
    });
  },
});

function checkType(t) {
  if (t === undefined) return "any";
  if (typeof t === "string" ? SCALARS.has(t) : t && typeof t.kind === "string") {
    return t;
  }
  throw new TypeError(`unknown var type ${display(t)}`);
}

/** A serde deserialization failure (message as serde_json words it). */
class DeError {
  constructor(message) {
    this.message = message;
  }
}

function kindOf(v) {
  switch (typeof v) {
    case "string":
      return "string";
    case "boolean":
      return "bool";
    case "bigint":
      return "int";
    case "number":
      return Number.isInteger(v) && !Object.is(v, -0) ? "int" : "float";
  }
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (isRaw(v)) return "float";
  return "object";
}

// Rust's `{:?}` for str escapes `\` and `"`, characters that are not
// printable (categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs but the space) and
// grapheme extenders. The engine has no Unicode property escapes (no ICU),
// so these are the common ranges: control and format characters, spaces,
// separators, surrogates, private use, noncharacters, combining marks.
const DEBUG_ESCAPE =
  /[\\"\0-\x1f\x7f-\xa0\xad\u0300-\u036f\u0483-\u0489\u0600-\u0605\u061c\u06dd\u070f\u1680\u180e\u1ab0-\u1aff\u1dc0-\u1dff\u2000-\u200f\u2028-\u202f\u205f-\u206f\u20d0-\u20ff\u3000\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufe00-\ufe0f\ufe20-\ufe2f\ufeff\ufff0-\ufffb\ufffe\uffff\u{e0000}-\u{e0fff}\u{f0000}-\u{10ffff}]/gu;
const DEBUG_NAMED = { "\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"' };

function debugString(s) {
  const body = s.replace(DEBUG_ESCAPE, (c) =>
    c === " "
      ? c
      : (DEBUG_NAMED[c] ?? `\\u{${c.codePointAt(0).toString(16)}}`),
  );
  return `"${body}"`;
}

function unexpected(v) {
  switch (kindOf(v)) {
    case "null":
      return "null";
    case "bool":
      return `boolean \`${v}\``;
    case "int":
      return `integer \`${v}\``;
    case "float":
      return `floating point \`${isRaw(v) ? v.rawJSON : f64Json(v)}\``;
    case "string":
      return `string ${debugString(v)}`;
    case "array":
      return "sequence";
    default:
      return "map";
  }
}

const invalidType = (v, expected) =>
  new DeError(`invalid type: ${unexpected(v)}, expected ${expected}`);

/** Converts a var value to `type`, or throws a DeError. */
function convert(v, type) {
  if (typeof type === "string") {
    switch (type) {
      case "any":
        return v;
      case "string":
        if (typeof v === "string") return v;
        throw invalidType(v, "a string");
      case "bool":
        if (typeof v === "boolean") return v;
        throw invalidType(v, "a boolean");
      case "f64":
      case "f32": {
        const k = kindOf(v);
        if (k !== "int" && k !== "float") throw invalidType(v, type);
        const n = Number(isRaw(v) ? v.rawJSON : v);
        return type === "f32" ? Math.fround(n) : n;
      }
      default: {
        if (kindOf(v) !== "int") throw invalidType(v, type);
        const range = typeof v === "number" ? INT_NUMBER_RANGES[type] : INT_RANGES[type];
        if (v < range[0] || v > range[1]) {
          throw new DeError(`invalid value: integer \`${v}\`, expected ${type}`);
        }
        return typeof v === "number" ? v : fromBig(v);
      }
    }
  }
  switch (type.kind) {
    case "option":
      return v === null ? null : convert(v, type.of);
    case "array": {
      if (!Array.isArray(v)) throw invalidType(v, "a sequence");
      const out = new Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = convert(v[i], type.of);
      return out;
    }
    case "map": {
      if (kindOf(v) !== "object") throw invalidType(v, "a map");
      const out = {};
      const keys = Object.keys(v).sort();
      for (let i = 0; i < keys.length; i++) {
        define(out, keys[i], convert(v[keys[i]], type.of));
      }
      return out;
    }
    case "struct":
      return convertStruct(v, type);
  }
  throw new TypeError(`unknown var type ${display(type)}`);
}

function define(obj, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    obj[key] = value;
  }
}

function convertStruct(v, { name, fields, types }) {
  const out = {};
  const kind = kindOf(v);
  const n = fields.length;
  if (kind === "array") {
    // serde's derive also accepts a struct as an array of its fields.
    for (let i = 0; i < n; i++) {
      if (i >= v.length) {
        throw new DeError(
          `invalid length ${i}, expected struct ${name} with ${n} element${n === 1 ? "" : "s"}`,
        );
      }
      define(out, fields[i][0], convert(v[i], fields[i][1]));
    }
    if (v.length > n) {
      throw new DeError(
        `invalid length ${v.length}, expected fewer elements in array`,
      );
    }
    return out;
  }
  if (kind !== "object") throw invalidType(v, `struct ${name}`);
  const found = new Map();
  // Keys in the order serde_json's map holds them (sorted).
  const keys = Object.keys(v).sort();
  for (let i = 0; i < keys.length; i++) {
    const type = types.get(keys[i]);
    if (type !== undefined) found.set(keys[i], convert(v[keys[i]], type));
  }
  for (let i = 0; i < n; i++) {
    const field = fields[i][0];
    const type = fields[i][1];
    if (found.has(field)) {
      define(out, field, found.get(field));
    } else if (typeof type === "object" && type.kind === "option") {
      define(out, field, null);
    } else {
      throw new DeError(`missing field \`${field}\``);
    }
  }
  return out;
}

// --------------------------------------------------------------- context --

const NOT_PARSED = Symbol("not parsed");

/** What the host tells a node when it runs it: which run and node this is,
 * the host's clock for this step, and the run's vars.
 *
 * Paths are dot-separated keys (`order.items.0.sku`); a key made of digits
 * indexes an array. `var`, `varOr` and `require` treat JSON null as absent;
 * they throw a NodeError (`invalid-path`, `invalid-vars`, `invalid-var`,
 * `missing-var`) where the Rust SDK returns one. */
export class Context {
  /** Wraps the context the host passed to `step`. */
  constructor(wit) {
    this._wit = wit;
    this._vars = NOT_PARSED;
  }

  /** A context for running a node outside the host (tests): run id
   * "test-run", workflow id "test", attempt 1, clock at 0 unless `options`
   * ({runId, workflowId, attempt, nowMs}) says otherwise. */
  static forNode(node, vars = {}, options = {}) {
    return new Context({
      runId: options.runId ?? "test-run",
      workflowId: options.workflowId ?? "test",
      nodeId: String(node),
      attempt: options.attempt ?? 1,
      vars: toJson(vars),
      nowMs: BigInt(options.nowMs ?? 0),
    });
  }

  /** The run being advanced. */
  get runId() {
    return this._wit.runId;
  }

  /** The workflow the run executes. */
  get workflowId() {
    return this._wit.workflowId;
  }

  /** The node being run. */
  get node() {
    return this._wit.nodeId;
  }

  /** 1 for the first attempt at this step; higher when the host retries. */
  get attempt() {
    return this._wit.attempt;
  }

  /** The host's clock for this step (ms since the Unix epoch): use it
   * instead of `Date.now()` so the step is reproducible. */
  get nowMs() {
    return fromBig(BigInt(this._wit.nowMs));
  }

  /** The clock plus `ms`, saturating at 2^64 - 1 (Rust's
   * `ctx.now_ms().saturating_add(ms)`), for deadlines. */
  msFromNow(ms) {
    return fromBig(saturatingAdd(this._wit.nowMs, u64(ms, "ms")));
  }

  /** The run's vars exactly as the host sent them (JSON text). */
  get varsJson() {
    return this._wit.vars;
  }

  /** The run's vars, parsed on first use; null if they are not JSON. */
  get vars() {
    const parsed = this._parsed();
    return parsed instanceof NodeError ? null : parsed;
  }

  /** The raw value at `path`: undefined when absent (JSON null is null). */
  get(path) {
    const parsed = this._parsed();
    if (parsed instanceof NodeError) throw parsed;
    return lookup(parsed, path);
  }

  /** The var at `path` converted to `type` (default "any"); null when
   * absent or null. A value of the wrong type is an `invalid-var` error. */
  var(path, type = "any") {
    const t = checkType(type);
    const value = this.get(path);
    if (value === undefined || value === null) return null;
    try {
      return convert(value, t);
    } catch (e) {
      if (e instanceof DeError) {
        throw new NodeError("invalid-var", `var \`${path}\`: ${e.message}`);
      }
      throw e;
    }
  }

  /** The var at `path`, or `fallback` when absent or null. */
  varOr(path, fallback, type = "any") {
    const value = this.var(path, type);
    return value === null ? fallback : value;
  }

  /** The var at `path`; a `missing-var` error when absent or null. */
  require(path, type = "any") {
    const value = this.var(path, type);
    if (value === null) throw missingVar(path);
    return value;
  }

  _parsed() {
    if (this._vars === NOT_PARSED) {
      try {
        this._vars = parseJson(this._wit.vars);
      } catch (e) {
        this._vars = new NodeError(
          "invalid-vars",
          `the run's vars are not JSON: ${e instanceof Error ? e.message : e}`,
        );
      }
    }
    return this._vars;
  }
}

// --------------------------------------------------------------- effects --

/** A u64 for the host (BigInt), or a NodeError with code `invalid-plan`. */
function u64(value, what) {
  let b = null;
  if (typeof value === "bigint") b = value;
  else if (typeof value === "number" && Number.isInteger(value)) b = BigInt(value);
  if (b === null || b < 0n || b > U64_MAX) {
    throw new NodeError(
      "invalid-plan",
      `${what} must be an integer from 0 to 2^64 - 1, not ${display(value)}`,
    );
  }
  return b;
}

function saturatingAdd(a, b) {
  const sum = BigInt(a) + BigInt(b);
  return sum > U64_MAX ? U64_MAX : sum;
}

/** Which runs an event reaches: a waiting run is resumed only by an event of
 * the same name in the same resolved scope. */
export const Scope = Object.freeze({
  /** Every run of the host. */
  global: Object.freeze({ tag: "global" }),
  /** Runs of the same session (a root run and its descendants); the
   * default. */
  session: Object.freeze({ tag: "session" }),
  /** Runs of the same workflow id. */
  workflow: Object.freeze({ tag: "workflow" }),
  /** Runs that name this exact run id as their scope. */
  run: (runId) => Object.freeze({ tag: "run", val: String(runId) }),
});

function checkScope(scope) {
  if (
    scope === Scope.global ||
    scope === Scope.session ||
    scope === Scope.workflow ||
    (scope && scope.tag === "run" && typeof scope.val === "string")
  ) {
    return scope;
  }
  throw new TypeError(`not a Scope: ${display(scope)}`);
}

/** A side effect for the host to perform after the node returns. Built with
 * the static constructors below; values are serialized to JSON when the
 * effect is built, and a failure is reported (code `json`) when the plan is
 * handed to the host. */
export class Effect {
  constructor(build) {
    this._build = build;
  }

  /** The WIT value (jco conventions), or throws the NodeError met while
   * building it. */
  toWit() {
    return this._build();
  }

  /** ASK_USER: block until a person answers; the answer is the result.
   * Free text is allowed when there are no choices, and not when there are,
   * unless `allowFreeText` says otherwise. */
  static askUser(prompt) {
    return new AskUser(prompt);
  }

  /** ANSWER_USER: show a message without blocking, at level "info" unless
   * `level` says otherwise. The result is {"message": ...}. */
  static answerUser(message) {
    return new AnswerUser(message);
  }

  /** WAIT_UNTIL: block until the host clock reaches `untilMs`. The result
   * is {"until_ms", "fired_at_ms"}. */
  static waitUntil(untilMs) {
    let ms;
    try {
      ms = u64(untilMs, "until_ms");
    } catch (e) {
      return new Effect(() => {
        throw e;
      });
    }
    return new Effect(() => ({ tag: "wait-until", val: { untilMs: ms } }));
  }

  /** WAIT_UNTIL `ms` milliseconds after this step's clock. */
  static waitForMs(ctx, ms) {
    let until;
    try {
      until = saturatingAdd(ctx._wit.nowMs, u64(ms, "ms"));
    } catch (e) {
      return new Effect(() => {
        throw e;
      });
    }
    return Effect.waitUntil(until);
  }

  /** WAIT_EVENT: block until an event with this name reaches the run, in
   * session scope unless `scope` says otherwise. The payload is the result;
   * with a `deadline` it is {"timeout": true, ...} if the deadline passes
   * first. */
  static waitEvent(name) {
    return new WaitEvent(name);
  }

  /** EMIT_EVENT: deliver an event to the runs waiting for it, in session
   * scope unless `scope` says otherwise. The result is {"delivered": n}. */
  static emitEvent(name, payload) {
    return new EmitEvent(name, payload);
  }

  /** START_SUBWORKFLOW: start a run of `workflowId` with these initial vars
   * (a JSON object). The parent waits for the child's output (`sync`, the
   * default) or continues at once with {"run_id"} (`detached`). */
  static startChild(workflowId, vars) {
    return new StartChild(workflowId, vars);
  }

  /** VARS_QUERY: read vars at these paths, of this run or (`ofRun`) of
   * another run of the session. The result maps each path to its value. */
  static varsQuery(paths) {
    return new VarsQuery(paths);
  }

  /** LLM_CALL: ask the host's model; `messages` is an array of
   * {"role", "content"} objects. */
  static llmCall(messages) {
    return new LlmCall(messages);
  }

  /** TOOL_CALLS: run a batch of `ToolCall`s through the host's registry. */
  static toolCalls(calls) {
    const list = Array.from(calls, (call) => {
      if (!(call instanceof ToolCall)) {
        throw new TypeError(`not a ToolCall: ${display(call)}`);
      }
      return call;
    });
    return new Effect(() => ({
      tag: "tool-calls",
      val: { calls: list.map((call) => call.toWit()) },
    }));
  }

  /** A custom effect registered by the host under `name`, with a payload. */
  static custom(name, payload) {
    const n = String(name);
    const [text, error] = tryJson(payload);
    return new Effect(() => {
      if (error) throw error;
      return { tag: "custom", val: { name: n, payload: text } };
    });
  }
}

/** Builder for `Effect.askUser`. */
export class AskUser extends Effect {
  constructor(prompt) {
    super(() => ({
      tag: "ask-user",
      val: {
        prompt: this._prompt,
        choices: this._choices.slice(),
        allowFreeText: this._allowFreeText ?? this._choices.length === 0,
      },
    }));
    this._prompt = String(prompt);
    this._choices = [];
    this._allowFreeText = null;
  }

  /** Suggested answers. */
  choices(choices) {
    this._choices = strings(choices);
    return this;
  }

  /** Whether an answer outside the choices is acceptable. */
  allowFreeText(allow = true) {
    this._allowFreeText = Boolean(allow);
    return this;
  }
}

/** Builder for `Effect.answerUser`. */
export class AnswerUser extends Effect {
  constructor(message) {
    super(() => ({
      tag: "answer-user",
      val: { message: this._message, level: this._level },
    }));
    this._message = String(message);
    this._level = "info";
  }

  /** A free-form level for the UI, such as "info" (default) or "warning". */
  level(level) {
    this._level = String(level);
    return this;
  }
}

/** Builder for `Effect.waitEvent`. */
export class WaitEvent extends Effect {
  constructor(name) {
    super(() => {
      if (this._error) throw this._error;
      return {
        tag: "wait-event",
        val: {
          name: this._name,
          scope: this._scope,
          deadlineMs: this._deadline ?? undefined,
        },
      };
    });
    this._name = String(name);
    this._scope = Scope.session;
    this._deadline = null;
    this._error = null;
  }

  /** Where the event must be emitted (default `Scope.session`). */
  scope(scope) {
    this._scope = checkScope(scope);
    return this;
  }

  /** Give up at this host time (ms since the Unix epoch). */
  deadline(deadlineMs) {
    try {
      this._deadline = u64(deadlineMs, "deadline_ms");
    } catch (e) {
      this._error ??= e;
    }
    return this;
  }
}

/** Builder for `Effect.emitEvent`. */
export class EmitEvent extends Effect {
  constructor(name, payload) {
    super(() => {
      if (this._error) throw this._error;
      return {
        tag: "emit-event",
        val: { name: this._name, scope: this._scope, payload: this._payload },
      };
    });
    this._name = String(name);
    this._scope = Scope.session;
    [this._payload, this._error] = tryJson(payload);
  }

  /** Which runs receive the event (default `Scope.session`). */
  scope(scope) {
    this._scope = checkScope(scope);
    return this;
  }
}

/** Builder for `Effect.startChild`. */
export class StartChild extends Effect {
  constructor(workflowId, vars) {
    super(() => {
      if (this._error) throw this._error;
      return {
        tag: "start-subworkflow",
        val: { workflowId: this._workflowId, vars: this._vars, mode: this._mode },
      };
    });
    this._workflowId = String(workflowId);
    this._mode = "sync";
    [this._vars, this._error] = tryJson(vars);
  }

  /** The parent waits and receives the child's output (the default). */
  sync() {
    this._mode = "sync";
    return this;
  }

  /** The parent continues at once; the result is {"run_id": <child>}. */
  detached() {
    this._mode = "async";
    return this;
  }
}

/** Builder for `Effect.varsQuery`. */
export class VarsQuery extends Effect {
  constructor(paths) {
    super(() => ({
      tag: "vars-query",
      val: { runId: this._runId ?? undefined, paths: this._paths.slice() },
    }));
    this._paths = strings(paths);
    this._runId = null;
  }

  /** Read another run of the same session instead of this one. */
  ofRun(runId) {
    this._runId = String(runId);
    return this;
  }
}

/** Builder for `Effect.llmCall`. */
export class LlmCall extends Effect {
  constructor(messages) {
    super(() => {
      const [messages, messagesError] = this._messages;
      if (messagesError) throw messagesError;
      const optional = (entry) => {
        if (entry === null) return undefined;
        if (entry[1]) throw entry[1];
        return entry[0];
      };
      return {
        tag: "llm-call",
        val: {
          provider: this._provider ?? undefined,
          model: this._model ?? undefined,
          systemPrompt: this._system ?? undefined,
          messages,
          tools: optional(this._tools),
          params: optional(this._params),
        },
      };
    });
    this._provider = null;
    this._model = null;
    this._system = null;
    this._messages = tryJson(messages);
    this._tools = null;
    this._params = null;
  }

  /** A system prompt. */
  system(prompt) {
    this._system = String(prompt);
    return this;
  }

  /** A model name (default: the provider's default). */
  model(model) {
    this._model = String(model);
    return this;
  }

  /** A provider from the host's configuration (default: its default). */
  provider(provider) {
    this._provider = String(provider);
    return this;
  }

  /** Tool schemas the model may call (a JSON array). */
  tools(tools) {
    this._tools = tryJson(tools);
    return this;
  }

  /** Sampling parameters (temperature, max_tokens...), a JSON object. */
  params(params) {
    this._params = tryJson(params);
    return this;
  }
}

/** One call in an `Effect.toolCalls` batch: tool `name` with `args` (a JSON
 * object); `callId` is echoed in the result. */
export class ToolCall {
  constructor(callId, name, args) {
    this._callId = String(callId);
    this._name = String(name);
    [this._arguments, this._error] = tryJson(args);
  }

  toWit() {
    if (this._error) throw this._error;
    return { callId: this._callId, name: this._name, arguments: this._arguments };
  }
}

// ------------------------------------------------------------------ plan --

/** What a node returns: var writes, at most one effect, and where the run
 * goes next. Start with `Plan.next` or `Plan.complete` and chain the rest.
 * Failures (a value that is not JSON, a second effect) do not throw here:
 * the first one is kept and the step fails with it. */
export class Plan {
  constructor(transition, error = null) {
    this._writes = [];
    this._effect = null;
    this._transition = transition;
    this._error = error;
  }

  /** Continue at `node` (once the effect, if any, has a result). */
  static next(node) {
    return new Plan({ tag: "next-node", val: String(node) });
  }

  /** Finish the run with this output, serialized to JSON. */
  static complete(output) {
    const [text, error] = tryJson(output);
    return new Plan({ tag: "complete-output", val: text ?? "" }, error);
  }

  /** Finish the run with the output {}. */
  static completeEmpty() {
    return new Plan({ tag: "complete-output", val: "{}" });
  }

  /** Set the var at `path` (missing objects are created). Writes apply in
   * order, before the effect. */
  set(path, value) {
    const [text, error] = tryJson(value);
    if (error) this._fail(error);
    else this._writes.push({ tag: "set", val: { path: String(path), value: text } });
    return this;
  }

  /** Remove the var at `path`; removing a missing var is not an error. */
  remove(path) {
    this._writes.push({ tag: "remove", val: String(path) });
    return this;
  }

  /** Ask the host to perform `effect` and store its result at `resultKey`
   * (omit it to discard the result). At most one effect per plan. */
  effect(effect, resultKey) {
    if (!(effect instanceof Effect)) {
      throw new TypeError(`not an Effect: ${display(effect)}`);
    }
    if (this._effect !== null) {
      this._fail(
        new NodeError("invalid-plan", "a step can request at most one effect"),
      );
    } else {
      this._effect = {
        effect,
        resultKey: resultKey === undefined || resultKey === null ? undefined : String(resultKey),
      };
    }
    return this;
  }

  /** Like `effect`, but the result is discarded. */
  effectDiscard(effect) {
    return this.effect(effect, undefined);
  }

  /** The WIT step-plan handed to the host, or throws the first NodeError
   * met while building the plan. */
  toWit() {
    if (this._error) throw this._error;
    const effect =
      this._effect === null
        ? undefined
        : { effect: this._effect.effect.toWit(), resultKey: this._effect.resultKey };
    return { writes: this._writes.slice(), effect, transition: this._transition };
  }

  _fail(error) {
    this._error ??= error;
  }
}

// ------------------------------------------------------------------- log --

const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

function emit(level, message, fields) {
  hostLog(level, message, fields);
}

function fieldPairs(fields) {
  if (fields === undefined || fields === null) return [];
  const entries = Array.isArray(fields) ? fields : Object.entries(fields);
  const out = new Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    out[i] = [String(entries[i][0]), display(entries[i][1])];
  }
  return out;
}

/** Structured log lines, attached by the host to the step's ledger record.
 * The host bounds the volume per step; a step that logs more fails. */
export const log = Object.freeze({
  Level: Object.freeze({
    Trace: "trace",
    Debug: "debug",
    Info: "info",
    Warn: "warn",
    Error: "error",
  }),
  trace: (message) => emit("trace", display(message), []),
  debug: (message) => emit("debug", display(message), []),
  info: (message) => emit("info", display(message), []),
  warn: (message) => emit("warn", display(message), []),
  error: (message) => emit("error", display(message), []),
  /** A line with key/value fields (an object or [key, value] pairs); values
   * are formatted like Rust's `Display` (strings bare, numbers without
   * exponent, objects as JSON). */
  withFields(level, message, fields) {
    if (!LEVELS.has(level)) throw new TypeError(`not a log level: ${display(level)}`);
    emit(level, display(message), fieldPairs(fields));
  },
});

// console.* would print nowhere (stdio is disabled): make them log lines.
function routeConsole() {
  const console = globalThis.console;
  if (console === null || typeof console !== "object") return;
  const route =
    (level) =>
    (...args) =>
      emit(level, args.map(display).join(" "), []);
  for (const [method, level] of [
    ["log", "info"],
    ["info", "info"],
    ["debug", "debug"],
    ["trace", "trace"],
    ["warn", "warn"],
    ["error", "error"],
  ]) {
    try {
      console[method] = route(level);
    } catch {
      // A read-only console stays as it is.
    }
  }
}
routeConsole();

// ------------------------------------------------------------------ data --

/** The operator's read-only data directory, for workflows granted it. */
export const data = Object.freeze({
  /** A whole file as bytes; `data-unavailable` with the host's reason when
   * there is no directory, no such file or the path is refused. */
  read(path) {
    const p = String(path);
    try {
      return hostReadData(p);
    } catch (e) {
      const reason =
        e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
      throw new NodeError("data-unavailable", `${p}: ${display(reason)}`);
    }
  },

  /** A whole UTF-8 file as a string. */
  readToString(path) {
    const bytes = data.read(path);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new NodeError("data-unavailable", `${path}: not UTF-8`);
    }
  },
});

// -------------------------------------------------------------- workflow --

function exceptionMessage(e) {
  if (e instanceof Error) return String(e);
  return display(e);
}

/** A stack trace for a log field: the first frames, without the bindings'
 * own (whose path changes from build to build), at most 2 KiB. */
function shortStack(stack) {
  if (typeof stack !== "string") return "";
  const frames = stack.split("\n");
  const kept = [];
  for (let i = 0; i < frames.length && kept.length < 16; i++) {
    if (frames[i] !== "" && !frames[i].includes("initializer.js")) kept.push(frames[i]);
  }
  const text = kept.join("\n");
  return text.length > 2048 ? `${text.slice(0, 2048)}...` : text;
}

/** The `err` value for a thrown `e`: NodeErrors as they are, anything else
 * as code `exception`, logged first with its stack (like a Rust panic). */
function errorResult(e, node) {
  if (isNodeError(e)) {
    return { code: String(e.code), message: String(e.message), retryable: Boolean(e.retryable) };
  }
  const message = exceptionMessage(e);
  const stack = e instanceof Error ? shortStack(e.stack) : "";
  emit(
    "error",
    `node \`${node}\` threw: ${message}`,
    stack === "" ? [] : [["stack", stack]],
  );
  return { code: "exception", message, retryable: false };
}

/** Exports a workflow: `export const node = workflow({...})`.
 *
 * `nodes` maps node names to functions `(ctx) => Plan` (an object, or
 * [name, fn] pairs when names look like integers, which JS objects
 * reorder). `describe` returns the id, the entry node, the node names in
 * order and the version; `step` runs the node named by the context, and
 * returns an `unknown-node` error for any other name. */
export function workflow({ id, version, entry, nodes }) {
  const table = new Map(Array.isArray(nodes) ? nodes : Object.entries(nodes ?? {}));
  for (const [name, handler] of table) {
    if (typeof handler !== "function") {
      throw new TypeError(`workflow(): node \`${name}\` is not a function`);
    }
  }
  if (!table.has(entry)) {
    throw new TypeError(`workflow(): \`entry\` (${display(entry)}) must be one of \`nodes\``);
  }
  const info = {
    workflowId: String(id),
    entryNode: String(entry),
    nodes: [...table.keys()].map(String),
    version: String(version),
  };
  return {
    describe() {
      return { ...info, nodes: info.nodes.slice() };
    },

    step(wit) {
      const ctx = new Context(wit);
      try {
        const handler = table.get(ctx.node);
        if (handler === undefined) throw NodeError.unknownNode(ctx.node);
        const plan = handler(ctx);
        if (!(plan instanceof Plan)) {
          const what =
            plan !== null && typeof plan === "object" && typeof plan.then === "function"
              ? "a Promise (nodes must be synchronous)"
              : display(plan);
          throw new NodeError(
            "invalid-plan",
            `node \`${ctx.node}\` returned ${what} instead of a Plan`,
          );
        }
        return plan.toWit();
      } catch (e) {
        // componentize-js turns a thrown {code, message, retryable} into the
        // `err` case of the result; anything else would trap.
        throw errorResult(e, ctx.node);
      }
    },
  };
}

// ----------------------------------------------------------------- tools --

/** A failure a tool reports itself (an unknown order, an amount too large):
 * the call's error, with a short machine-readable `code`. Limits and traps
 * are the host's to report; any other exception a tool throws becomes the
 * code `exception`. */
export class ToolFailure extends Error {
  constructor(code, message) {
    super(String(message));
    this.name = "ToolFailure";
    this.code = String(code);
  }
}

/** The `err` value of a tool call for a thrown `e`. */
function toolErrorResult(e) {
  if (e instanceof ToolFailure) return { code: e.code, message: e.message };
  return { code: "exception", message: exceptionMessage(e) };
}

/** Exports a tool component (world `tools`): `export const tool = tools([...])`.
 *
 * Each tool is `{ name, description, parameters, readOnly, handler }`:
 * `parameters` a JSON schema of the arguments object, `readOnly` the
 * author's claim that the tool only looks things up (the host's policy may
 * run such tools without approval), `handler` a function of the call's
 * arguments returning any JSON value or throwing `ToolFailure`. `describe`
 * lists the tools in the order given; `call` runs the one named and
 * answers `unknown-tool` for any other name. */
export function tools(list) {
  const table = new Map();
  const infos = [];
  for (const t of list ?? []) {
    const name = String(t?.name ?? "");
    if (name === "") throw new TypeError("tools(): every tool needs a name");
    if (table.has(name)) throw new TypeError(`tools(): two tools are named \`${name}\``);
    if (typeof t.handler !== "function") {
      throw new TypeError(`tools(): tool \`${name}\` has no handler function`);
    }
    table.set(name, t.handler);
    infos.push({
      name,
      description: String(t.description ?? ""),
      parameters: toJson(t.parameters ?? { type: "object" }),
      readOnly: Boolean(t.readOnly),
    });
  }
  if (table.size === 0) throw new TypeError("tools(): name at least one tool");
  return {
    describe() {
      return infos.map((info) => ({ ...info }));
    },

    call(name, argumentsJson) {
      const handler = table.get(name);
      if (handler === undefined) {
        throw { code: "unknown-tool", message: `this component has no tool named \`${name}\`` };
      }
      let args;
      try {
        args = parseJson(argumentsJson);
      } catch (e) {
        throw { code: "invalid-arguments", message: `the arguments are not JSON: ${exceptionMessage(e)}` };
      }
      let output;
      try {
        output = handler(args);
      } catch (e) {
        // componentize-js turns a thrown {code, message} into the `err`
        // case of the result; anything else would trap.
        throw toolErrorResult(e);
      }
      try {
        return toJson(output);
      } catch (e) {
        throw { code: "json", message: exceptionMessage(e) };
      }
    },
  };
}
