"""Write Waymark workflow nodes in Python.

The Python counterpart of the Rust SDK (`waymark-guest`): the same context
accessors, plan and effect builders, defaults and error codes, so a Python
guest records the same ledger as a Rust guest with the same logic.

A workflow is a graph of named nodes. The host runs one node per step, in a
fresh WebAssembly instance, and hands it a `Context` (run id, the host's
clock, the run's vars). A node does no I/O itself: it returns a `Plan` (var
writes, at most one `Effect` for the host to perform, where to go next).

    import waymark
    from waymark import Context, Effect, Plan, log

    def ask(ctx: Context) -> Plan:
        question = Effect.ask_user("Continue?", choices=["yes", "no"], allow_free_text=True)
        return Plan.next("done").effect(question, "answer")

    def done(ctx: Context) -> Plan:
        text = ctx.var("answer.text", str)
        log.info(f"answered {text!r}")
        return Plan.complete({"answer": text})

    Node = waymark.workflow(
        id="quickstart", version="0.1.0", entry="ask",
        nodes={"ask": ask, "done": done},
    )

The app module must bind the class returned by `workflow` to the name
`Node`: componentize-py exports it as the `node` interface.

Building (from the repository root, componentize-py 0.25.1; the host gives
guests no WASI, hence `--stub-wasi`):

    componentize-py -d wit -w workflow componentize app \\
        -p examples/python/quickstart -p guest-sdk/python \\
        --stub-wasi -o quickstart.wasm

Rules for nodes (as in Rust):

* Use `ctx.now_ms` as the clock. Under `--stub-wasi` the WASI clock, random
  source, files and stdio are trapping stubs: this module turns `print` and
  writes to `sys.stdout`/`sys.stderr` into host log lines (info and warn)
  and makes `time.time()`, `time.sleep()` & co. raise instead of trapping.
  `random` works but replays the same sequence (its seed is baked in at
  build time). Lines logged or printed outside a step (at import, while
  componentize-py builds the snapshot) are dropped. The host bounds the
  lines per step (256 by default): a node that prints more fails the step.
* Import every module at the top of the app: an `import` inside a node may
  need the (stubbed) filesystem and trap.
* Keep no state between calls: every step runs in a fresh instance.
* Raise `NodeError` for failures you expect. Any other exception escaping a
  node becomes a `NodeError` with code `exception` (and an error log line
  with the traceback), not a trap.

Vars: paths are dot-separated keys (`order.items.0.sku`); a key made of
digits indexes an array when the value there is an array. A JSON `null` is
treated as absent by `var`, `var_or` and `require`; `get` returns the raw
value (None for both) and `has` tells a `null` from nothing.

Typed vars: `ctx.var(path, u64)` checks the value like serde does in Rust
and fails with the same `invalid-var` message. Types: `u8 u16 u32 u64 usize
i8 i16 i32 i64 isize f64` from this module, the builtins `int` (i64),
`float` (f64), `bool`, `str`, `list` / `dict` (any items), `list[T]`,
`dict[str, T]`, `Optional[T]` / `T | None`, `Value` (any JSON, the
default), and dataclasses (a Rust `#[derive(Deserialize)]` struct: unknown
keys are ignored, `Optional` fields may be missing, fields with defaults
are `#[serde(default)]`).

JSON text put in plans matches serde_json's compact output for the same
value: object keys sorted (serde_json's `Value` map, as `json!` builds),
floats formatted as serde_json does, integers kept integers, NaN and
infinities as `null`. Dataclass instances serialize in field order, like a
Rust struct.

Tool components (world `tools`, entry module `tools.py`): mark each
function with `@waymark.tool(name, description=..., parameters=<JSON
schema>, read_only=...)` and bind `Tool = waymark.tools(f, g)`. A tool
takes the call's arguments and returns any JSON value, or raises
`ToolFailure(code, message)`; `waymark build` builds a directory holding
`tools.py` with `-w tools componentize tools`.

Testing nodes natively: generate the bindings once
(`componentize-py -d wit -w workflow bindings /tmp/py-bind`), put them and
this directory on `PYTHONPATH`, build contexts with `Context.for_node` and
call the node functions; `plan.into_wit()` gives the WIT value and
`log.take_captured()` the lines logged (outside wasm they are not sent
anywhere).
"""

import dataclasses
import io
import json
import sys
import time
import types as _pytypes
import typing
import unicodedata

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import host as _host
from wit_world.imports import types as _t

__all__ = [
    "Context", "Effect", "Plan", "NodeError", "Scope", "ToolCall", "Value",
    "log", "data", "workflow", "tool", "tools", "ToolFailure", "dumps", "loads", "U64_MAX",
    "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f64",
]

_WASM = sys.platform == "wasi"

U64_MAX = _U64_MAX = (1 << 64) - 1
"""The largest u64, for saturating arithmetic on host times (`min(a + b, U64_MAX)`)."""
_I64_MIN = -(1 << 63)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class NodeError(Exception):
    """A failure reported by a node.

    The run fails with this error unless `retryable` is set and the host's
    retry policy allows another attempt. `code` is short and machine-readable
    (`"invalid-input"`), `message` is for people. Raise it from a node (or
    from any function a node calls).

    Codes the SDK produces itself (the same as the Rust SDK's):
    `missing-var`, `invalid-var`, `invalid-path`, `invalid-vars`, `json`,
    `invalid-plan`, `unknown-node`, `data-unavailable`; plus `exception`
    for an uncaught Python exception.
    """

    def __init__(self, code: str, message: str, retryable: bool = False):
        super().__init__(code, message)
        self.code = str(code)
        self.message = str(message)
        self.retryable = bool(retryable)

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        return text + " (retryable)" if self.retryable else text

    def __repr__(self) -> str:
        return f"NodeError({self.code!r}, {self.message!r}, retryable={self.retryable})"

    def __eq__(self, other) -> bool:
        return isinstance(other, NodeError) and (
            (self.code, self.message, self.retryable)
            == (other.code, other.message, other.retryable)
        )

    __hash__ = Exception.__hash__

    @classmethod
    def unknown_node(cls, node: str) -> "NodeError":
        """The error `workflow` returns for a node it does not list."""
        return cls("unknown-node", f"this workflow has no node named `{node}`")

    @classmethod
    def missing_var(cls, path: str) -> "NodeError":
        return cls("missing-var", f"var `{path}` is required but missing")

    @classmethod
    def invalid_path(cls, path: str) -> "NodeError":
        return cls(
            "invalid-path",
            f"invalid var path `{path}`: it must be non-empty dot-separated keys",
        )

    def into_wit(self) -> _t.NodeError:
        return _t.NodeError(code=self.code, message=self.message, retryable=self.retryable)


# ---------------------------------------------------------------------------
# JSON, byte-compatible with serde_json's compact output
# ---------------------------------------------------------------------------


_U64_RANGE = range(-(1 << 63), 1 << 64)


def _parse_int(text: str):
    """An integer as serde_json reads it: u64 or i64 when it fits, else the
    nearest f64 (and `-0` is the float -0.0)."""
    value = int(text)
    if value in _U64_RANGE and text != "-0":
        return value
    return float(text)


def _parse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# One decoder, made at build time (a `json.loads` with hooks makes a new one
# per call). Floats are read correctly rounded, as the host and the Rust
# guests read them (serde_json with `float_roundtrip`). Integers are left to
# the C scanner unless `strict_numbers`: serde_json never writes one outside
# u64/i64 (nor `-0`), and vars always come from the host's serde_json.
_DECODER = json.JSONDecoder(parse_constant=_parse_constant)
_FULL_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_constant=_parse_constant)


def loads(text: str, *, strict_numbers: bool = False):
    """Parses JSON text into the values serde_json would hold; `NaN` and
    `Infinity` are refused. Integers outside u64/i64 (and `-0`), which
    serde_json never writes, are read as serde_json reads them only with
    `strict_numbers` (slower)."""
    decoder = _FULL_DECODER if strict_numbers else _DECODER
    try:
        # The C scanner alone, skipping `decode`'s whitespace regexes: the
        # host's text has no surrounding whitespace.
        value, end = decoder.scan_once(text, 0)
        if end == len(text):
            return value
    except StopIteration:
        pass
    return decoder.decode(text)  # whitespace, trailing text or an error


def _fmt_f64(value: float) -> str:
    """A finite float as serde_json writes it (shortest round-trip digits;
    fixed notation for decimal exponents -5..=15, else `1.5e+16`, `1e-6`)."""
    text = repr(value)
    if "e" not in text:
        return text  # "0.0001", "123.0", "1000000000000000.0"
    mantissa, exp = text.split("e")
    exp = int(exp)
    if exp == -5:
        # Python switches to exponents one step earlier than serde_json.
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"


def _display_f64(value: float) -> str:
    """A float as Rust's `Display` writes it: no exponent, no `.0`."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    if "e" in text:
        mantissa, exp = text.split("e")
        exp = int(exp)
    else:
        mantissa, exp = text, 0
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + exp  # position of the decimal point in `digits`
    # `repr` breaks an exact tie between two shortest candidates to even,
    # Rust's `Display` upwards.
    scale = point - len(digits)  # the value is int(digits) * 10**scale
    p, q = abs(value).as_integer_ratio()
    d = int(digits)
    tie = (2 * p == (2 * d + 1) * 10 ** scale * q) if scale >= 0 else (
        2 * p * 10 ** -scale == (2 * d + 1) * q)
    if tie and float(f"{d + 1}e{scale}") == abs(value):
        up = str(d + 1)
        point += len(up) - len(digits)
        digits = up
    if point <= 0:
        body = "0." + "0" * -point + digits
    elif point >= len(digits):
        body = digits + "0" * (point - len(digits))
    else:
        body = digits[:point] + "." + digits[point:]
    if "." in body:
        body = body.rstrip("0").rstrip(".")
    body = body.lstrip("0") or "0"
    if body.startswith("."):
        body = "0" + body
    return sign + body


_encode_str = json.encoder.encode_basestring  # escapes like serde_json


class _JsonError(Exception):
    pass


def _first(pair):
    return pair[0]


def _key(key) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"  # as the json module writes it
    if key is True or key is False:
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float) and key - key == 0:
        return _fmt_f64(key)
    raise _JsonError("key must be a string")


def _write(value, out: list, depth: int) -> None:
    if depth > 256:
        raise _JsonError("value nested too deeply (a cycle?)")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        # Exact digits, as serde_json writes any integer (u128 included).
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_fmt_f64(value) if value - value == 0 else "null")
    elif isinstance(value, dict):
        # Sorted by key, as the C encoder sorts (ints numerically, like a
        # Rust BTreeMap<u64, _>); mixed key types by their text.
        try:
            items = sorted(value.items(), key=_first)
        except TypeError:
            items = sorted(((_key(k), v) for k, v in value.items()), key=_first)
        out.append("{")
        first = True
        for k, v in items:
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(_key(k)))
            out.append(":")
            _write(v, out, depth + 1)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _write(v, out, depth + 1)
        out.append("]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Like a Rust struct: fields in declaration order.
        out.append("{")
        for i, f in enumerate(dataclasses.fields(value)):
            if i:
                out.append(",")
            out.append(_encode_str(f.name))
            out.append(":")
            _write(getattr(value, f.name), out, depth + 1)
        out.append("}")
    else:
        raise _JsonError(f"a value of type {type(value).__name__} cannot be serialized as JSON")


class _Fallback(Exception):
    pass


def _no_default(value):
    raise _Fallback


# The C encoder writes what serde_json writes for dicts, lists, strings,
# ints, bools and None; floats only differ below 1e-4 (`1e-05` for serde's
# `0.00001`, `1e-07` for `1e-7`), which the check on "e-0" catches. Anything
# else (NaN, dataclasses, odd keys, cycles) takes the Python writer. Made
# once: `json.dumps` would build a new encoder per call.
try:
    _C_ENCODE = json.encoder.c_make_encoder(
        None, _no_default, _encode_str, None, ":", ",", True, False, False)
except (AttributeError, TypeError):  # no `_json` accelerator
    _C_ENCODE = None


def dumps(value) -> str:
    """Compact JSON text, byte-identical to serde_json's for the same value
    (object keys sorted, as in serde_json's `Value`; dataclasses in field
    order, like a Rust struct). Raises `NodeError` (code `json`) for values
    JSON cannot hold."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)
    if _C_ENCODE is not None:
        try:
            text = "".join(_C_ENCODE(value, 0))
            if "e-0" not in text:
                return text
        except (_Fallback, ValueError, TypeError, RecursionError):
            pass
    out: list = []
    try:
        _write(value, out, 0)
    except _JsonError as e:
        raise NodeError("json", str(e)) from None
    return "".join(out)


# ---------------------------------------------------------------------------
# Var paths
# ---------------------------------------------------------------------------

_ABSENT = object()
_USIZE_MAX = (1 << 32) - 1  # wasm32


def _segments(path: str) -> list:
    if not isinstance(path, str):
        raise TypeError(f"a var path must be a str, not {type(path).__name__}")
    keys = path.split(".")
    if not path or "" in keys:
        raise NodeError.invalid_path(path)
    return keys


def _lookup(root, path: str):
    """The value at `path` inside `root`, or `_ABSENT`."""
    current = root
    for key in _segments(path):
        if isinstance(current, dict):
            current = current.get(key, _ABSENT)
        elif isinstance(current, list):
            digits = key.lstrip("0") or "0"
            if key.isascii() and key.isdigit() and len(digits) <= 10:
                i = int(digits)
                current = current[i] if i <= _USIZE_MAX and i < len(current) else _ABSENT
            else:
                current = _ABSENT
        else:
            current = _ABSENT
        if current is _ABSENT:
            return _ABSENT
    return current


# ---------------------------------------------------------------------------
# Typed vars: what serde's `Deserialize` accepts from a serde_json `Value`
# ---------------------------------------------------------------------------


class _DeError(Exception):
    pass


def _rust_debug_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif (not ch.isprintable() and ch != " ") or unicodedata.category(ch) in ("Mn", "Me") or ch == "\u200c":
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _unexpected(v) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return f"boolean `{'true' if v else 'false'}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{_fmt_f64(v)}`"
    if isinstance(v, str):
        return f"string {_rust_debug_str(v)}"
    if isinstance(v, list):
        return "sequence"
    if isinstance(v, dict):
        return "map"
    return type(v).__name__


def _invalid_type(v, expected: str) -> _DeError:
    return _DeError(f"invalid type: {_unexpected(v)}, expected {expected}")


class _Type:
    """A type to read a var as; `u64(3)` checks a value and returns it."""

    expecting = "?"

    def de(self, v):
        raise NotImplementedError

    def __call__(self, v):
        try:
            return self.de(v)
        except _DeError as e:
            raise ValueError(str(e)) from None

    def __repr__(self) -> str:
        return f"waymark.{self.expecting}"


class _Int(_Type):
    def __init__(self, name: str, lo: int, hi: int):
        self.expecting, self.lo, self.hi = name, lo, hi

    def de(self, v):
        if isinstance(v, int) and v is not True and v is not False:
            if self.lo <= v <= self.hi:
                return v
            raise _DeError(f"invalid value: integer `{v}`, expected {self.expecting}")
        raise _invalid_type(v, self.expecting)


class _F64(_Type):
    expecting = "f64"

    def de(self, v):
        if isinstance(v, (int, float)) and v is not True and v is not False:
            return float(v)
        raise _invalid_type(v, "f64")


class _Bool(_Type):
    expecting = "a boolean"

    def de(self, v):
        if v is True or v is False:
            return v
        raise _invalid_type(v, "a boolean")

    def __repr__(self):
        return "bool"


class _Str(_Type):
    expecting = "a string"

    def de(self, v):
        if isinstance(v, str):
            return v
        raise _invalid_type(v, "a string")

    def __repr__(self):
        return "str"


class _Any(_Type):
    expecting = "any valid JSON value"

    def de(self, v):
        return v

    def __repr__(self):
        return "waymark.Value"


class _Seq(_Type):
    expecting = "a sequence"

    def __init__(self, item: _Type):
        self.item = item

    def de(self, v):
        if isinstance(v, list):
            return [self.item.de(x) for x in v]
        raise _invalid_type(v, "a sequence")


class _Map(_Type):
    expecting = "a map"

    def __init__(self, item: _Type):
        self.item = item

    def de(self, v):
        if isinstance(v, dict):
            # serde_json's map iterates in key order.
            return {k: self.item.de(v[k]) for k in sorted(v)}
        raise _invalid_type(v, "a map")


class _Opt(_Type):
    def __init__(self, item: _Type):
        self.item = item
        self.expecting = item.expecting

    def de(self, v):
        return None if v is None else self.item.de(v)


class _Struct(_Type):
    def __init__(self, cls):
        self.cls = cls
        self.expecting = f"struct {cls.__name__}"
        self.fields = None  # resolved on first use (the class may refer to later names)

    def _resolve(self):
        if self.fields is None:
            fields = []
            for f in dataclasses.fields(self.cls):
                if not f.init:
                    continue
                hint = f.type
                if isinstance(hint, str):  # `from __future__ import annotations`
                    module = sys.modules.get(self.cls.__module__)
                    namespace = {**globals(), **(vars(module) if module else {})}
                    hint = eval(hint, namespace)  # noqa: S307 (the author's own annotation)
                ty = _as_type(hint)
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                fields.append((f.name, ty, isinstance(ty, _Opt), has_default))
            # serde_json's map iterates in key order, so the first field in
            # name order that fails is the one reported.
            self.by_name = sorted((f[0], f[1]) for f in fields)
            self.fields = fields
        return self.fields

    def de(self, v):
        fields = self._resolve()
        n = len(fields)
        got = {}
        if isinstance(v, list):
            for i, (name, ty, _opt, has_default) in enumerate(fields):
                if i >= len(v):
                    if has_default:
                        continue
                    raise _DeError(f"invalid length {i}, expected {self.expecting} with {n} elements")
                got[name] = ty.de(v[i])
            if len(v) > n:
                raise _DeError(f"invalid length {len(v)}, expected fewer elements in array")
        elif isinstance(v, dict):
            for name, ty in self.by_name:
                if name in v:
                    got[name] = ty.de(v[name])
            for name, _ty, optional, has_default in fields:
                if name not in got and not has_default:
                    if not optional:
                        raise _DeError(f"missing field `{name}`")
                    got[name] = None
        else:
            raise _invalid_type(v, self.expecting)
        return self.cls(**got)


u8 = _Int("u8", 0, (1 << 8) - 1)
u16 = _Int("u16", 0, (1 << 16) - 1)
u32 = _Int("u32", 0, (1 << 32) - 1)
u64 = _Int("u64", 0, _U64_MAX)
usize = _Int("usize", 0, _USIZE_MAX)  # wasm32
i8 = _Int("i8", -(1 << 7), (1 << 7) - 1)
i16 = _Int("i16", -(1 << 15), (1 << 15) - 1)
i32 = _Int("i32", -(1 << 31), (1 << 31) - 1)
i64 = _Int("i64", _I64_MIN, (1 << 63) - 1)
isize = _Int("isize", -(1 << 31), (1 << 31) - 1)  # wasm32
f64 = _F64()
Value = _Any()
"""Any JSON value (serde_json's `Value`): the default type of `var`."""

_BOOL, _STR = _Bool(), _Str()
_SIMPLE = {int: i64, float: f64, bool: _BOOL, str: _STR, object: Value, typing.Any: Value,
           list: _Seq(Value), dict: _Map(Value)}
_STRUCTS: dict = {}


def _as_type(ty) -> _Type:
    if isinstance(ty, _Type):
        return ty
    if ty is None:
        return Value
    try:
        simple = _SIMPLE.get(ty) or _STRUCTS.get(ty)
    except TypeError:  # unhashable
        simple = None
    if simple is not None:
        return simple
    origin = typing.get_origin(ty)
    args = typing.get_args(ty)
    if origin is list and len(args) == 1:
        return _Seq(_as_type(args[0]))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError("dict var types need str keys")
        return _Map(_as_type(args[1]))
    if origin in (typing.Union, _pytypes.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _Opt(_as_type(rest[0]))
    if isinstance(ty, type) and dataclasses.is_dataclass(ty):
        spec = _STRUCTS.get(ty)
        if spec is None:
            spec = _STRUCTS[ty] = _Struct(ty)
        return spec
    raise TypeError(f"cannot read a var as {ty!r}")


def _infer_type(default) -> _Type:
    if default is True or default is False:
        return _BOOL
    if isinstance(default, int):
        return i64
    if isinstance(default, float):
        return f64
    if isinstance(default, str):
        return _STR
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return _as_type(type(default))
    return Value


# ---------------------------------------------------------------------------
# Context
# ---------------------------------------------------------------------------


class Context:
    """What the host tells a node when it runs it.

    Attributes: `run_id` (the run being advanced), `workflow_id`, `node`
    (the node being run), `attempt` (1 for the first attempt at this step;
    higher when the host retries), `now_ms` (the host's clock for this step,
    ms since the Unix epoch: use it instead of any clock of your own so the
    step is reproducible) and `vars_json` (the run's vars exactly as the
    host sent them). The vars are parsed the first time they are read.
    """

    __slots__ = ("run_id", "workflow_id", "node", "attempt", "now_ms", "vars_json", "_parsed")

    def __init__(self, run_id: str, workflow_id: str, node: str, attempt: int,
                 vars_json: str, now_ms: int):
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.node = node
        self.attempt = attempt
        self.now_ms = now_ms
        self.vars_json = vars_json
        self._parsed = None

    @classmethod
    def from_wit(cls, ctx: _t.Context) -> "Context":
        return cls(ctx.run_id, ctx.workflow_id, ctx.node_id, ctx.attempt, ctx.vars, ctx.now_ms)

    @classmethod
    def for_node(cls, node: str, vars=None, *, now_ms: int = 0, attempt: int = 1,
                 run_id: str = "test-run", workflow_id: str = "test") -> "Context":
        """A context for running a node outside the host, in unit tests."""
        vars = {} if vars is None else vars
        ctx = cls(run_id, workflow_id, node, attempt, dumps(vars), now_ms)
        ctx._parsed = (True, loads(ctx.vars_json))
        return ctx

    def _root(self):
        if self._parsed is None:
            try:
                self._parsed = (True, loads(self.vars_json))
            except ValueError as e:  # json.JSONDecodeError included
                self._parsed = (False, str(e))
        ok, value = self._parsed
        if not ok:
            raise NodeError("invalid-vars", f"the run's vars are not JSON: {value}")
        return value

    @property
    def vars(self):
        """The run's vars, parsed on first use; None if the host sent text
        that is not JSON (the accessors report that as an error)."""
        try:
            return self._root()
        except NodeError:
            return None

    def has(self, path: str) -> bool:
        """Whether there is a value at `path` (JSON `null` included)."""
        return _lookup(self._root(), path) is not _ABSENT

    def get(self, path: str, default=None):
        """The raw JSON value at `path` (dicts, lists, str, int, float, bool,
        None for `null`), or `default` when absent. See `has` to tell `null`
        from absent."""
        value = _lookup(self._root(), path)
        return default if value is _ABSENT else value

    def var(self, path: str, ty=Value):
        """The var at `path` read as `ty`; None when absent or `null`.
        A value of another type fails with code `invalid-var`."""
        value = _lookup(self._root(), path)
        if value is _ABSENT or value is None:
            return None
        try:
            return _as_type(ty).de(value)
        except _DeError as e:
            raise NodeError("invalid-var", f"var `{path}`: {e}") from None

    def var_or(self, path: str, default, ty=None):
        """The var at `path`, or `default` when absent or `null`. Without
        `ty` the type is that of `default` (bool, int as i64, float, str;
        anything else reads any JSON value)."""
        value = self.var(path, _infer_type(default) if ty is None else ty)
        return default if value is None else value

    def require(self, path: str, ty=Value):
        """The var at `path`; `NodeError` with code `missing-var` when absent
        or `null`."""
        value = self.var(path, ty)
        if value is None:
            raise NodeError.missing_var(path)
        return value

    def __repr__(self) -> str:
        return (f"Context(run_id={self.run_id!r}, workflow_id={self.workflow_id!r}, "
                f"node={self.node!r}, attempt={self.attempt}, now_ms={self.now_ms})")


# ---------------------------------------------------------------------------
# Effects
# ---------------------------------------------------------------------------


def _check_str(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _check_u64(value, what: str) -> int:
    if not isinstance(value, int) or value is True or value is False or not 0 <= value <= _U64_MAX:
        raise ValueError(f"{what} must be an int in 0..=2**64-1, not {value!r}")
    return value


def _strs(values, what: str) -> list:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of str, not a str")
    return [_check_str(v, what) for v in values]


def _json_or_error(value):
    """(text, None) or (None, NodeError): serialization failures are kept
    and reported when the plan is handed to the host, as in Rust."""
    try:
        return dumps(value), None
    except NodeError as e:
        return None, e


class Scope:
    """Which runs an event reaches: `Scope.GLOBAL`, `Scope.SESSION` (the
    default), `Scope.WORKFLOW` or `Scope.run(run_id)`. The strings
    "global", "session" and "workflow" are accepted too."""

    __slots__ = ("kind", "run_id")

    def __init__(self, kind: str, run_id=None):
        self.kind, self.run_id = kind, run_id

    @staticmethod
    def run(run_id: str) -> "Scope":
        """Runs that name this exact run id as their scope."""
        return Scope("run", _check_str(run_id, "run_id"))

    def into_wit(self):
        if self.kind == "global":
            return _t.EventScope_Global()
        if self.kind == "session":
            return _t.EventScope_Session()
        if self.kind == "workflow":
            return _t.EventScope_Workflow()
        return _t.EventScope_Run(self.run_id)

    def __eq__(self, other):
        return isinstance(other, Scope) and (self.kind, self.run_id) == (other.kind, other.run_id)

    def __hash__(self):
        return hash((self.kind, self.run_id))

    def __repr__(self):
        return f"Scope.run({self.run_id!r})" if self.kind == "run" else f"Scope.{self.kind.upper()}"


Scope.GLOBAL = Scope("global")
Scope.SESSION = Scope("session")
Scope.WORKFLOW = Scope("workflow")


def _scope(scope) -> Scope:
    if isinstance(scope, Scope):
        return scope
    if scope in ("global", "session", "workflow"):
        return Scope(scope)
    raise ValueError(f"unknown event scope {scope!r}")


class Effect:
    """A side effect for the host to perform after the node returns.

    Build one with the static methods (`Effect.ask_user(...)`, ...); those
    with options return a builder that is itself an `Effect` and takes the
    options either as keyword arguments or as chained calls:
    `Effect.wait_event("paid", deadline=t)` is
    `Effect.wait_event("paid").deadline(t)`.
    """

    __slots__ = ()

    def into_wit(self):
        """The WIT value; raises `NodeError` if building it failed."""
        raise NotImplementedError

    @staticmethod
    def ask_user(prompt: str, choices=None, allow_free_text=None) -> "AskUser":
        """ASK_USER: block until a person answers; the answer is stored at
        the result key. Free text is allowed by default when there are no
        choices, and not when there are."""
        return AskUser(prompt, choices, allow_free_text)

    @staticmethod
    def answer_user(message: str, level: str = "info") -> "AnswerUser":
        """ANSWER_USER: show a message in the host's UI without blocking, at
        level "info" unless told otherwise. The result is `{"message": ...}`."""
        return AnswerUser(message, level)

    @staticmethod
    def wait_until(until_ms: int) -> "Effect":
        """WAIT_UNTIL: block until the host clock reaches `until_ms`. The
        result is `{"until_ms", "fired_at_ms"}`."""
        return _Built(_t.Effect_WaitUntil(_t.WaitUntil(until_ms=_check_u64(until_ms, "until_ms"))))

    @staticmethod
    def wait_for_ms(ctx: Context, ms: int) -> "Effect":
        """WAIT_UNTIL `ms` milliseconds after this step's clock."""
        return Effect.wait_until(min(ctx.now_ms + _check_u64(ms, "ms"), _U64_MAX))

    @staticmethod
    def wait_event(name: str, scope=None, deadline=None) -> "WaitEvent":
        """WAIT_EVENT: block until an event with this name reaches the run,
        in the session scope unless told otherwise. With a deadline (host
        time, ms) the result is `{"timeout": true, ...}` if it passes first."""
        return WaitEvent(name, scope, deadline)

    @staticmethod
    def emit_event(name: str, payload, scope=None) -> "EmitEvent":
        """EMIT_EVENT: deliver an event to the runs waiting for it, in the
        session scope unless told otherwise. The result is `{"delivered": n}`."""
        return EmitEvent(name, payload, scope)

    @staticmethod
    def start_child(workflow_id: str, vars, detached: bool = False) -> "StartChild":
        """START_SUBWORKFLOW: start a run of `workflow_id` with these initial
        vars (a dict). By default the parent waits and receives the child's
        output (`.sync()`); `.detached()` continues at once with `{"run_id"}`."""
        return StartChild(workflow_id, vars, detached)

    @staticmethod
    def vars_query(paths, run_id=None) -> "VarsQuery":
        """VARS_QUERY: read vars at these paths, of this run or (`.of_run`)
        of another run in the session. The result maps each path to its value."""
        return VarsQuery(paths, run_id)

    @staticmethod
    def llm_call(messages, *, system=None, model=None, provider=None,
                 tools=None, params=None) -> "LlmCall":
        """LLM_CALL: ask the host's model. `messages` is a list of
        `{"role", "content"}` dicts. The result is
        `{"content", "tool_calls", "usage", "finish_reason"}`."""
        return LlmCall(messages, system, model, provider, tools, params)

    @staticmethod
    def tool_calls(calls) -> "Effect":
        """TOOL_CALLS: run a batch of `ToolCall`s through the host's registry.
        The result is a list of `{"call_id", "name", "success", "output", "error"}`."""
        built = []
        for call in calls:
            if not isinstance(call, ToolCall):
                raise TypeError(f"tool_calls takes ToolCall values, not {type(call).__name__}")
            if call.error is not None:
                return _Built(None, call.error)
            built.append(call.wit)
        return _Built(_t.Effect_ToolCalls(_t.ToolCalls(calls=built)))

    @staticmethod
    def custom(name: str, payload) -> "Effect":
        """A custom effect registered by the host under `name`
        ("inventory.reserve"), with a JSON payload."""
        name = _check_str(name, "name")
        text, error = _json_or_error(payload)
        if error is not None:
            return _Built(None, error)
        return _Built(_t.Effect_Custom(_t.CustomEffect(name=name, payload=text)))


class _Built(Effect):
    __slots__ = ("wit", "error")

    def __init__(self, wit, error=None):
        self.wit, self.error = wit, error

    def into_wit(self):
        if self.error is not None:
            raise self.error
        return self.wit


class AskUser(Effect):
    """Builder for `Effect.ask_user`."""

    __slots__ = ("_prompt", "_choices", "_allow")

    def __init__(self, prompt, choices=None, allow_free_text=None):
        self._prompt = _check_str(prompt, "prompt")
        self._choices = [] if choices is None else _strs(choices, "choices")
        self._allow = None if allow_free_text is None else bool(allow_free_text)

    def choices(self, choices) -> "AskUser":
        """Suggested answers."""
        self._choices = _strs(choices, "choices")
        return self

    def allow_free_text(self, allow: bool = True) -> "AskUser":
        """Whether an answer outside the choices is acceptable."""
        self._allow = bool(allow)
        return self

    def into_wit(self):
        allow = (not self._choices) if self._allow is None else self._allow
        return _t.Effect_AskUser(_t.AskUser(
            prompt=self._prompt, choices=list(self._choices), allow_free_text=allow))


class AnswerUser(Effect):
    """Builder for `Effect.answer_user`."""

    __slots__ = ("_message", "_level")

    def __init__(self, message, level="info"):
        self._message = _check_str(message, "message")
        self._level = _check_str(level, "level")

    def level(self, level: str) -> "AnswerUser":
        """A free-form level for the UI, such as "info" (the default) or "warning"."""
        self._level = _check_str(level, "level")
        return self

    def into_wit(self):
        return _t.Effect_AnswerUser(_t.AnswerUser(message=self._message, level=self._level))


class WaitEvent(Effect):
    """Builder for `Effect.wait_event`."""

    __slots__ = ("_name", "_scope", "_deadline")

    def __init__(self, name, scope=None, deadline=None):
        self._name = _check_str(name, "name")
        self._scope = Scope.SESSION if scope is None else _scope(scope)
        self._deadline = None if deadline is None else _check_u64(deadline, "deadline")

    def scope(self, scope) -> "WaitEvent":
        """Where the event must be emitted (default `Scope.SESSION`)."""
        self._scope = _scope(scope)
        return self

    def deadline(self, deadline_ms: int) -> "WaitEvent":
        """Give up at this host time (ms since the Unix epoch)."""
        self._deadline = _check_u64(deadline_ms, "deadline")
        return self

    def into_wit(self):
        return _t.Effect_WaitEvent(_t.WaitEvent(
            name=self._name, scope=self._scope.into_wit(), deadline_ms=self._deadline))


class EmitEvent(Effect):
    """Builder for `Effect.emit_event`."""

    __slots__ = ("_name", "_scope", "_payload", "_error")

    def __init__(self, name, payload, scope=None):
        self._name = _check_str(name, "name")
        self._scope = Scope.SESSION if scope is None else _scope(scope)
        self._payload, self._error = _json_or_error(payload)

    def scope(self, scope) -> "EmitEvent":
        """Which runs receive the event (default `Scope.SESSION`)."""
        self._scope = _scope(scope)
        return self

    def into_wit(self):
        if self._error is not None:
            raise self._error
        return _t.Effect_EmitEvent(_t.EmitEvent(
            name=self._name, scope=self._scope.into_wit(), payload=self._payload))


class StartChild(Effect):
    """Builder for `Effect.start_child`."""

    __slots__ = ("_workflow_id", "_vars", "_error", "_mode")

    def __init__(self, workflow_id, vars, detached=False):
        self._workflow_id = _check_str(workflow_id, "workflow_id")
        self._vars, self._error = _json_or_error(vars)
        self._mode = _t.ChildMode.ASYNC if detached else _t.ChildMode.SYNC

    def sync(self) -> "StartChild":
        """The parent waits for the child and receives its output (the default)."""
        self._mode = _t.ChildMode.SYNC
        return self

    def detached(self) -> "StartChild":
        """The parent continues at once; the result is `{"run_id": <child>}`."""
        self._mode = _t.ChildMode.ASYNC
        return self

    def into_wit(self):
        if self._error is not None:
            raise self._error
        return _t.Effect_StartSubworkflow(_t.StartSubworkflow(
            workflow_id=self._workflow_id, vars=self._vars, mode=self._mode))


class VarsQuery(Effect):
    """Builder for `Effect.vars_query`."""

    __slots__ = ("_paths", "_run_id")

    def __init__(self, paths, run_id=None):
        self._paths = _strs(paths, "paths")
        self._run_id = None if run_id is None else _check_str(run_id, "run_id")

    def of_run(self, run_id: str) -> "VarsQuery":
        """Read another run of the same session instead of this one."""
        self._run_id = _check_str(run_id, "run_id")
        return self

    def into_wit(self):
        return _t.Effect_VarsQuery(_t.VarsQuery(run_id=self._run_id, paths=list(self._paths)))


class LlmCall(Effect):
    """Builder for `Effect.llm_call`."""

    __slots__ = ("_provider", "_model", "_system", "_messages", "_tools", "_params")

    def __init__(self, messages, system=None, model=None, provider=None, tools=None, params=None):
        self._messages = _json_or_error(messages)
        self._system = None if system is None else _check_str(system, "system")
        self._model = None if model is None else _check_str(model, "model")
        self._provider = None if provider is None else _check_str(provider, "provider")
        self._tools = None if tools is None else _json_or_error(tools)
        self._params = None if params is None else _json_or_error(params)

    def system(self, prompt: str) -> "LlmCall":
        """A system prompt."""
        self._system = _check_str(prompt, "system")
        return self

    def model(self, model: str) -> "LlmCall":
        """A model name (default: the provider's default)."""
        self._model = _check_str(model, "model")
        return self

    def provider(self, provider: str) -> "LlmCall":
        """A provider from the host's configuration (default: its default)."""
        self._provider = _check_str(provider, "provider")
        return self

    def tools(self, tools) -> "LlmCall":
        """Tool schemas the model may call (a list)."""
        self._tools = _json_or_error(tools)
        return self

    def params(self, params) -> "LlmCall":
        """Sampling parameters (`temperature`, `max_tokens`...): a dict."""
        self._params = _json_or_error(params)
        return self

    def into_wit(self):
        def text(pair):
            if pair is None:
                return None
            value, error = pair
            if error is not None:
                raise error
            return value

        messages = text(self._messages)
        return _t.Effect_LlmCall(_t.LlmCall(
            provider=self._provider, model=self._model, system_prompt=self._system,
            messages=messages, tools=text(self._tools), params=text(self._params)))


class ToolCall:
    """One call in an `Effect.tool_calls` batch: tool `name` with
    `arguments` (a dict); `call_id` is echoed in the result."""

    __slots__ = ("wit", "error")

    def __init__(self, call_id: str, name: str, arguments):
        call_id = _check_str(call_id, "call_id")
        name = _check_str(name, "name")
        text, self.error = _json_or_error(arguments)
        self.wit = None if text is None else _t.ToolCall(call_id=call_id, name=name, arguments=text)


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------

_EMPTY = object()


class Plan:
    """What a node returns: the var writes to apply, at most one effect, and
    where the run goes next. Start with `Plan.next` or `Plan.complete` and
    chain the rest:

        Plan.next("review").set("draft.title", "Q3").remove("_temp") \\
            .effect(Effect.ask_user("Publish?", choices=["yes", "no"]), "decision")

    Serialization failures do not raise here: the first one is kept and the
    step fails with it (code `json`) when the plan is handed to the host.
    Paths are not checked here; the host validates them.
    """

    __slots__ = ("_writes", "_effect", "_result_key", "_transition", "_error")

    def __init__(self, transition, error=None):
        self._writes = []
        self._effect = None
        self._result_key = None
        self._transition = transition
        self._error = error

    @staticmethod
    def next(node: str) -> "Plan":
        """Continue at `node` (once the effect, if any, has a result)."""
        return Plan(_t.Transition_NextNode(_check_str(node, "node")))

    @staticmethod
    def complete(output=_EMPTY) -> "Plan":
        """Finish the run with this output (any JSON value; `{}` if omitted)."""
        if output is _EMPTY:
            return Plan.complete_empty()
        text, error = _json_or_error(output)
        if error is not None:
            return Plan(_t.Transition_CompleteOutput(""), error)
        return Plan(_t.Transition_CompleteOutput(text))

    @staticmethod
    def complete_empty() -> "Plan":
        """Finish the run with the output `{}`."""
        return Plan(_t.Transition_CompleteOutput("{}"))

    def set(self, path: str, value) -> "Plan":
        """Set the var at `path` (missing objects are created). Writes apply
        in order, before the effect."""
        path = _check_str(path, "path")
        text, error = _json_or_error(value)
        if error is not None:
            self._fail(error)
        else:
            self._writes.append(_t.VarWrite_Set(_t.VarSet(path=path, value=text)))
        return self

    def remove(self, path: str) -> "Plan":
        """Remove the var at `path`; removing a missing var is not an error."""
        self._writes.append(_t.VarWrite_Remove(_check_str(path, "path")))
        return self

    def effect(self, effect: Effect, result_key) -> "Plan":
        """Ask the host to perform `effect` and store its result at
        `result_key` (a var path; None discards it). A plan holds at most
        one effect; a second one makes the plan invalid (`invalid-plan`)."""
        if not isinstance(effect, Effect):
            raise TypeError(f"Plan.effect takes an Effect, not {type(effect).__name__}")
        if result_key is not None:
            _check_str(result_key, "result_key")
        if self._effect is not None:
            self._fail(NodeError("invalid-plan", "a step can request at most one effect"))
        else:
            self._effect, self._result_key = effect, result_key
        return self

    def effect_discard(self, effect: Effect) -> "Plan":
        """Like `effect`, but the result is discarded."""
        return self.effect(effect, None)

    def _fail(self, error: NodeError) -> None:
        if self._error is None:
            self._error = error

    def into_wit(self) -> _t.StepPlan:
        """The WIT value handed to the host; raises the first error met
        while building the plan."""
        if self._error is not None:
            raise self._error
        request = None
        if self._effect is not None:
            request = _t.EffectRequest(effect=self._effect.into_wit(), result_key=self._result_key)
        return _t.StepPlan(writes=list(self._writes), effect=request, transition=self._transition)


# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------


def _display(value) -> str:
    """A field value as Rust's `Display` would write it."""
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _display_f64(value)
    if value is None or isinstance(value, (dict, list, tuple)):
        try:
            return dumps(value)
        except NodeError:
            pass
    return str(value)


class _Log:
    """Structured log lines, attached by the host to the step's ledger
    record. The host bounds the volume per step (256 lines, 64 KiB by
    default); a node that logs more fails the step.

        log.info("packing started")
        log.with_fields(log.WARN, "low stock", {"sku": "A-1", "left": 2})
    """

    Level = _host.LogLevel
    TRACE = _host.LogLevel.TRACE
    DEBUG = _host.LogLevel.DEBUG
    INFO = _host.LogLevel.INFO
    WARN = _host.LogLevel.WARN
    ERROR = _host.LogLevel.ERROR

    def __init__(self):
        self._captured = []

    def _level(self, level) -> _host.LogLevel:
        if isinstance(level, _host.LogLevel):
            return level
        if isinstance(level, str):
            try:
                return _host.LogLevel[level.upper()]
            except KeyError:
                pass
        raise ValueError(f"unknown log level {level!r}")

    def _emit(self, level, message, fields) -> None:
        if _WASM:
            # Outside a step (at import, while componentize-py builds the
            # snapshot) there is no host to take the line: it is dropped.
            if _step_running:
                _host.log(level, message, fields)
        else:
            self._captured.append((level, message, fields))

    def trace(self, message) -> None:
        self._emit(self.TRACE, str(message), [])

    def debug(self, message) -> None:
        self._emit(self.DEBUG, str(message), [])

    def info(self, message) -> None:
        self._emit(self.INFO, str(message), [])

    def warn(self, message) -> None:
        self._emit(self.WARN, str(message), [])

    warning = warn

    def error(self, message) -> None:
        self._emit(self.ERROR, str(message), [])

    def with_fields(self, level, message, fields) -> None:
        """Logs `message` with key/value fields (a dict or (key, value)
        pairs); values are written like Rust's `Display` (str as is, ints
        as digits, bools as true/false, containers as JSON)."""
        items = fields.items() if isinstance(fields, dict) else fields
        pairs = [(str(k), _display(v)) for k, v in items]
        self._emit(self._level(level), str(message), pairs)

    def take_captured(self) -> list:
        """Outside wasm only: the lines logged since the last call, as
        (level, message, fields) tuples."""
        lines, self._captured = self._captured, []
        return lines


log = _Log()


class _HostStream(io.TextIOBase):
    """`sys.stdout` / `sys.stderr` inside the component: each line becomes a
    host log line (stdout at info, stderr at warn). The WASI stdio the
    interpreter would use is a trapping stub under `--stub-wasi`."""

    def __init__(self, name: str, level):
        super().__init__()
        self._name, self._level, self._pending = name, level, ""

    @property
    def name(self):
        return self._name

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        text = self._pending + s
        if "\n" in text:
            *lines, text = text.split("\n")
            for line in lines:
                log._emit(self._level, line, [])
        self._pending = text
        return len(s)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            log._emit(self._level, line, [])


def _no_clock(*_args, **_kwargs):
    raise RuntimeError("a Waymark node has no clock of its own: use ctx.now_ms")


def _no_sleep(*_args, **_kwargs):
    raise RuntimeError("a Waymark node cannot sleep: return a wait effect (Effect.wait_for_ms)")


if _WASM:
    sys.stdout = _HostStream("<stdout>", log.INFO)
    sys.stderr = _HostStream("<stderr>", log.WARN)
    for _name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                  "perf_counter_ns", "process_time", "process_time_ns", "thread_time",
                  "thread_time_ns"):
        setattr(time, _name, _no_clock)
    time.sleep = _no_sleep


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if type(stream) is _HostStream and stream._pending:
            stream.flush()


# ---------------------------------------------------------------------------
# Data directory
# ---------------------------------------------------------------------------


class _Data:
    """The operator's read-only data directory, for workflows granted it.
    Errors carry code `data-unavailable` with the host's reason."""

    def read(self, path: str) -> bytes:
        """Reads a whole file."""
        _check_str(path, "path")
        if not _WASM:
            raise NodeError("data-unavailable", f"{path}: no host outside wasm")
        try:
            return bytes(_host.read_data(path))
        except Err as e:
            raise NodeError("data-unavailable", f"{path}: {e.value}") from None

    def read_text(self, path: str) -> str:
        """Reads a whole UTF-8 file."""
        raw = self.read(path)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NodeError("data-unavailable", f"{path}: not UTF-8") from None


data = _Data()


# ---------------------------------------------------------------------------
# Exporting a workflow
# ---------------------------------------------------------------------------


def _traceback_text(exc: BaseException, limit: int = 4096) -> str:
    # No `traceback` module: it reads source files, which would trap.
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    text = " <- ".join(reversed(frames))
    return text if len(text) <= limit else text[:limit] + "..."


def _exception_error(node: str, exc: BaseException) -> NodeError:
    detail = str(exc)
    name = type(exc).__name__
    try:
        log.with_fields(log.ERROR, f"uncaught {name} in node `{node}`",
                        [("traceback", _traceback_text(exc))])
    except BaseException:  # the log budget may be spent; the error still goes back
        pass
    return NodeError("exception", f"{name}: {detail}" if detail else name)


_step_running = False


def _run(nodes: dict, wit_ctx) -> _t.StepPlan:
    global _step_running
    _step_running = True
    error = None
    node = wit_ctx.node_id
    try:
        ctx = Context.from_wit(wit_ctx)
        handler = nodes.get(node)
        if handler is None:
            raise NodeError.unknown_node(node)
        plan = handler(ctx)
        if isinstance(plan, NodeError):
            raise plan
        if not isinstance(plan, Plan):
            raise NodeError("invalid-plan",
                            f"node `{node}` returned {type(plan).__name__}, not a waymark.Plan")
        return plan.into_wit()
    except NodeError as e:
        error = e
    except BaseException as e:  # noqa: BLE001 (a trap would lose the reason)
        error = _exception_error(node, e)
    finally:
        try:
            _flush_streams()
        except BaseException:
            pass
        _step_running = False
    raise Err(error.into_wit())


def _warm_structs(handlers) -> None:
    # Read the dataclasses the nodes can see now, at build time, so that the
    # snapshot holds them ready and no step pays for it.
    seen = set()
    for handler in handlers:
        for value in list(getattr(handler, "__globals__", {}).values()):
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value not in seen:
                seen.add(value)
                try:
                    _as_type(value)._resolve()
                except Exception:  # noqa: BLE001 (reported when a node reads it)
                    _STRUCTS.pop(value, None)


def workflow(*, id: str, version: str, entry: str, nodes: dict) -> type:
    """Declares a workflow and returns the class componentize-py exports;
    bind it to `Node` in the app module:

        Node = waymark.workflow(id="order", version="0.1.0", entry="start",
                                nodes={"start": start, "pack": pack})

    `nodes` maps node names to functions taking a `Context` and returning a
    `Plan` (or raising `NodeError`). `describe` returns the names in the
    order given; `step` runs the function named by the context and answers
    `unknown-node` for any other name. `entry` must be one of the nodes.
    """
    _check_str(id, "id")
    _check_str(version, "version")
    _check_str(entry, "entry")
    nodes = dict(nodes)
    if not nodes:
        raise ValueError("waymark.workflow: `nodes` is empty")
    for name, handler in nodes.items():
        _check_str(name, "a node name")
        if not callable(handler):
            raise TypeError(f"waymark.workflow: node `{name}` is not callable")
    if entry not in nodes:
        raise ValueError("waymark.workflow: `entry` must be one of `nodes`")
    names = list(nodes)
    _warm_structs(nodes.values())

    class Node(_exports.Node):
        workflow_id = id
        workflow_version = version
        entry_node = entry
        handlers = nodes

        def describe(self) -> _t.WorkflowInfo:
            return _t.WorkflowInfo(workflow_id=id, entry_node=entry, nodes=list(names),
                                   version=version)

        def step(self, ctx: _t.Context) -> _t.StepPlan:
            return _run(nodes, ctx)

    Node.__qualname__ = Node.__name__ = "Node"
    return Node


# ----------------------------------------------------------------- tools --

class ToolFailure(Exception):
    """A failure a tool reports itself (an unknown order, an amount too
    large): the call's error, with a short machine-readable `code`. Limits
    and traps are the host's to report. Any other exception escaping a tool
    becomes the code `exception`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = str(code)
        self.message = str(message)

    def __repr__(self) -> str:
        return f"ToolFailure({self.code!r}, {self.message!r})"


def tool(name: str, *, description: str, parameters=None, read_only: bool = False):
    """Declares a function as a tool a model or a `tool_calls` effect can
    call by `name`; pass the functions to `tools`:

        @waymark.tool("lookup_order", description="Look an order up by id.",
                      parameters={"type": "object",
                                  "properties": {"order_id": {"type": "string"}},
                                  "required": ["order_id"]},
                      read_only=True)
        def lookup_order(args: dict):
            ...

    The function takes the call's arguments (usually a dict following
    `parameters`, a JSON schema) and returns any JSON value, or raises
    `ToolFailure`. `read_only` is the author's claim that the tool only
    looks things up: the host's policy may run such tools without approval.
    """
    _check_str(name, "a tool name")
    _check_str(description, "description")
    if parameters is None:
        parameters = {"type": "object"}
    schema = dumps(parameters)

    def mark(fn):
        if not callable(fn):
            raise TypeError(f"waymark.tool: `{name}` is not callable")
        fn.__waymark_tool__ = (name, description, schema, bool(read_only))
        return fn

    return mark


def _tool_error(code: str, message: str):
    from wit_world.exports import tool as _tool_types
    return Err(_tool_types.ToolError(code=code, message=message))


def _call_tool(handler, name: str, arguments: str) -> str:
    try:
        args = loads(arguments)
    except Exception as e:  # noqa: BLE001 (the host sends JSON; be sure)
        raise _tool_error("invalid-arguments", f"the arguments are not JSON: {e}")
    try:
        output = handler(args)
    except ToolFailure as e:
        raise _tool_error(e.code, e.message)
    except Err:
        raise
    except BaseException as e:  # noqa: BLE001 (a trap would lose the reason)
        detail = str(e)
        kind = type(e).__name__
        raise _tool_error("exception", f"{kind}: {detail}" if detail else kind)
    finally:
        try:
            _flush_streams()
        except BaseException:
            pass
    try:
        return dumps(output)
    except Exception as e:  # noqa: BLE001
        raise _tool_error("json", f"tool `{name}` returned a value JSON cannot hold: {e}")


def tools(*handlers) -> type:
    """Returns the class componentize-py exports for a tool component
    (world `tools`); bind it to `Tool` in the module:

        Tool = waymark.tools(lookup_order, refund_order)

    Each function must carry `@waymark.tool(...)`. `describe` lists them in
    the order given; `call` runs the one named and answers `unknown-tool`
    for any other name.
    """
    from wit_world.exports import tool as _tool_types

    table = {}
    infos = []
    for handler in handlers:
        meta = getattr(handler, "__waymark_tool__", None)
        if meta is None:
            raise TypeError(f"waymark.tools: {handler!r} has no @waymark.tool(...)")
        name, description, schema, read_only = meta
        if name in table:
            raise ValueError(f"waymark.tools: two tools are named `{name}`")
        table[name] = handler
        infos.append((name, description, schema, read_only))
    if not table:
        raise ValueError("waymark.tools: name at least one tool")

    class Tool(_exports.Tool):
        def describe(self) -> list:
            return [
                _tool_types.ToolInfo(name=n, description=d, parameters=p, read_only=r)
                for (n, d, p, r) in infos
            ]

        def call(self, name: str, arguments: str) -> str:
            handler = table.get(name)
            if handler is None:
                raise _tool_error("unknown-tool", f"this component has no tool named `{name}`")
            return _call_tool(handler, name, arguments)

    Tool.__qualname__ = Tool.__name__ = "Tool"
    return Tool
