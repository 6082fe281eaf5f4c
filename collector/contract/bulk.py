"""Set-based validation of many events at once: the bulk ingest path (files, backfills).

The contract is the pydantic models of collector/events.py. `compile_contract` walks each event model's
pydantic-core schema (what pydantic itself executes: strictness, literals, length and range constraints, the
aware-datetime rule, defaults, nested models, field validators) into a plan per type; `BulkCompiler` turns the
plans into one DuckDB statement and a set of polars expressions that decide a whole chunk of JSON lines at once:

* DuckDB parses each line (envelope and every data field any type declares, as JSON text re-rendered by DuckDB)
  and computes what needs a JSON engine: key counts (extras, duplicates, explicit nulls), floats and date-times
  in their stored rendering, nested free-form values, lists of cells, the distinct-value validator look-ups;
* polars evaluates every field check column-wise, one expression per distinct check (not per type), combines
  them per type with bitmasks, and builds the stored `data` text and the common columns;
* the redactor's PREFILTER_PATTERN runs (polars `str.contains`) on the text the redactor would scan.

The fast path only ever says "accepted, and here is the row"; it never rejects. A row goes to the exact pydantic
path (`validation.check_item` + `validation.to_row`) whenever the fast path cannot vouch for it:

* the line is not plain JSON as orjson reads it (invalid, NaN/Infinity, trailing commas, duplicate keys, bad
  UTF-8, not an object), its `type` is unknown, or its type uses a construct the compiler does not support;
* a value is not in canonical form (a float given as "5", an int given as 5.0, a date-time that is not
  RFC 3339 with an offset, a number whose JSON rendering by DuckDB and by orjson could differ, a control
  character, nested objects inside free-form values, ...), or the event time is near the 24 h future limit;
* a field validator (`cron`, `timezone`) rejected or transformed the value: validators run in Python on the
  *distinct* values of a chunk, not per row;
* the prefilter flags a candidate secret: redaction then happens in `to_row`, exactly as for the API.

So every rejection, with pydantic's messages and field paths, comes from the same code as the HTTP API, and
every row the fast path accepts is one pydantic accepts with the same column values (`data` is the compact JSON
of the validated data: declared fields in model order, None dropped, floats as floats, date-times in pydantic's
rendering, extras after, in input order). tests/test_bulk_equivalence.py checks this property against
`validation.validate_items` on generated valid and mutated events.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from collector.contract.events import EVENT_MODELS, IDENTIFIER_KEYS, MAX_FUTURE_SKEW, EnvelopeBase
from collector.contract.redaction import PREFILTER_PATTERN, has_candidate, redact_text
from collector.contract.validation import COMMON_COLUMNS, Rejection, check_item, to_row
from collector.storage.schema import EVENT_SCHEMA

log = logging.getLogger(__name__)

_CONTROL = "[\\x00-\\x1f\\x7f]"
# Event times closer than this to the 24 h future limit are left to pydantic (its clock moves on).
FUTURE_MARGIN = timedelta(minutes=5)


# What the fast path's date-time pattern implies: a year in 1971-2198 with an offset of at most 14 h.
_DT_FAST_LOW = datetime(1970, 12, 31, tzinfo=timezone.utc)
_DT_FAST_HIGH = datetime(2199, 1, 2, tzinfo=timezone.utc)


class Unsupported(Exception):
    """A schema construct the SQL compiler does not translate; rows of that event type take the exact path."""


# ---------------------------------------------------------------------------------------------------------
# Compiling the pydantic models
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    tag: str  # str | literal | int | float | bool | datetime | dict | any | list | model
    min_length: int | None = None
    max_length: int | None = None
    bounds: tuple[tuple[str, float], ...] = ()  # (ge|gt|le|lt, value)
    values: tuple[str, ...] = ()  # literal
    item: "Kind | None" = None  # list
    fields: tuple["FieldPlan", ...] = ()  # model (extra="forbid")


@dataclass(frozen=True)
class FieldPlan:
    name: str
    kind: Kind
    required: bool
    nullable: bool
    validators: tuple[Callable[[Any], Any], ...] = ()
    validators_see_none: bool = False


@dataclass
class TypePlan:
    type: str
    envelope: list[FieldPlan]
    data: list[FieldPlan]
    supported: bool = True
    reason: str | None = None


def _keys_ok(s: dict, allowed: set[str], where: str) -> None:
    extra = set(s) - allowed - {"type", "metadata", "ref"}
    if extra:
        raise Unsupported(f"{where}: schema keys {sorted(extra)}")


def _bounds(s: dict) -> tuple[tuple[str, float], ...]:
    return tuple((op, s[op]) for op in ("ge", "gt", "le", "lt") if op in s)


def _kind(s: dict, where: str) -> Kind:
    t = s["type"]
    if t == "str":
        _keys_ok(s, {"min_length", "max_length", "strict"}, where)
        return Kind("str", s.get("min_length"), s.get("max_length"))
    if t == "literal":
        _keys_ok(s, {"expected"}, where)
        if not all(isinstance(v, str) for v in s["expected"]):
            raise Unsupported(f"{where}: non-string literal")
        return Kind("literal", values=tuple(s["expected"]))
    if t == "int":
        _keys_ok(s, {"strict", "ge", "gt", "le", "lt"}, where)
        return Kind("int", bounds=_bounds(s))
    if t == "float":
        _keys_ok(s, {"strict", "ge", "gt", "le", "lt", "allow_inf_nan"}, where)
        return Kind("float", bounds=_bounds(s))
    if t == "bool":
        _keys_ok(s, {"strict"}, where)
        return Kind("bool")
    if t == "datetime":
        _keys_ok(s, {"strict", "tz_constraint", "microseconds_precision", "ge", "gt", "le", "lt"}, where)
        if s.get("tz_constraint") != "aware":
            raise Unsupported(f"{where}: datetime without tz_constraint=aware")
        # The fast path's date-time pattern (_DT_RE) only admits years 1971-2198, which with any offset lie
        # inside these bounds; a bound tighter than that is not expressed.
        for op in ("ge", "gt"):
            if op in s and s[op] > _DT_FAST_LOW:
                raise Unsupported(f"{where}: datetime lower bound above {_DT_FAST_LOW:%Y-%m-%d}")
        for op in ("le", "lt"):
            if op in s and s[op] < _DT_FAST_HIGH:
                raise Unsupported(f"{where}: datetime upper bound below {_DT_FAST_HIGH:%Y-%m-%d}")
        return Kind("datetime")
    if t == "dict":
        _keys_ok(s, {"keys_schema", "values_schema", "strict"}, where)
        ks, vs = s.get("keys_schema", {"type": "any"}), s.get("values_schema", {"type": "any"})
        if ks.get("type") not in ("str", "any") or set(ks) - {"type", "metadata"} or vs.get("type") != "any":
            raise Unsupported(f"{where}: dict other than dict[str, Any]")
        return Kind("dict")
    if t == "any":
        return Kind("any")
    if t == "list":
        _keys_ok(s, {"items_schema", "min_length", "max_length", "strict"}, where)
        item = _kind(s.get("items_schema", {"type": "any"}), where + "[]")
        if item.tag in ("list", "dict", "any") or (item.tag == "model" and any(
                f.kind.tag in ("list", "model", "dict", "any") for f in item.fields)):
            raise Unsupported(f"{where}: nested containers in a list")
        return Kind("list", s.get("min_length"), s.get("max_length"), item=item)
    if t == "model":
        inner = s["schema"]
        if inner.get("type") != "model-fields" or inner.get("computed_fields") or s.get("post_init") \
                or s.get("custom_init") or s.get("root_model"):
            raise Unsupported(f"{where}: model with validators, computed fields or custom init")
        if s.get("config", {}).get("extra_fields_behavior") != "forbid":
            raise Unsupported(f"{where}: nested model must forbid extra fields")
        fields = tuple(_field(n, f, f"{where}.{n}") for n, f in inner["fields"].items())
        if any(f.validators for f in fields):
            raise Unsupported(f"{where}: validators inside a nested model")
        return Kind("model", fields=fields)
    raise Unsupported(f"{where}: schema type {t!r}")


def _field(name: str, fs: dict, where: str) -> FieldPlan:
    _keys_ok(fs, {"schema"}, where)
    s = fs["schema"]
    required, nullable, validators, see_none = True, False, [], False
    while True:
        t = s["type"]
        if t == "default":
            if "default_factory" in s or s.get("default", ...) is not None:
                raise Unsupported(f"{where}: default other than None")
            required = False
        elif t == "nullable":
            nullable = True
        elif t == "function-after":
            fn = s["function"]
            if fn.get("type") != "no-info":
                raise Unsupported(f"{where}: validator with info")
            validators.append(fn["function"])
            if not nullable:
                see_none = True  # the validator wraps the nullable: it is called with None too
        else:
            break
        s = s["schema"]
    return FieldPlan(name, _kind(s, where), required, nullable, tuple(validators), see_none and nullable)


def _is_future_check(fn: Callable) -> bool:
    return getattr(fn, "__func__", None) is EnvelopeBase._not_in_future.__func__  # type: ignore[attr-defined]


def compile_contract() -> dict[str, TypePlan]:
    plans: dict[str, TypePlan] = {}
    for etype, model in EVENT_MODELS.items():
        plan = TypePlan(etype, [], [])
        try:
            s = model.__pydantic_core_schema__
            if s.get("type") != "model" or s["schema"].get("type") != "model-fields" or s["schema"].get(
                    "computed_fields") or s.get("post_init") or s.get("custom_init"):
                raise Unsupported("event model with model validators or computed fields")
            env_fields = s["schema"]["fields"]
            if "data" not in env_fields:
                raise Unsupported("no data field")
            for name, fs in env_fields.items():
                if name == "data":
                    ds = fs["schema"]
                    if ds.get("type") != "model" or ds["schema"].get("type") != "model-fields" or ds["schema"].get(
                            "computed_fields") or ds.get("post_init") or ds.get("custom_init"):
                        raise Unsupported("data model with model validators or computed fields")
                    if ds.get("config", {}).get("extra_fields_behavior") != "allow":
                        raise Unsupported("data model must allow extras")
                    plan.data = [_field(n, f, f"data.{n}") for n, f in ds["schema"]["fields"].items()]
                    for f in plan.data:
                        if f.validators and f.kind.tag not in ("str", "literal"):
                            raise Unsupported(f"data.{f.name}: validator on a non-string field")
                    continue
                fp = _field(name, fs, name)
                if fp.validators:
                    if name == "time" and fp.kind.tag == "datetime" and all(map(_is_future_check, fp.validators)):
                        fp = FieldPlan(name, Kind("event_time"), fp.required, fp.nullable)
                    else:
                        raise Unsupported(f"{name}: envelope validator")
                plan.envelope.append(fp)
            env = {f.name: f for f in plan.envelope}
            for name, tags in (("source", ("str",)), ("id", ("str",)), ("time", ("event_time",)),
                               ("type", ("literal",)), ("subject", ("str",))):
                if name not in env or env[name].kind.tag not in tags:
                    raise Unsupported(f"envelope field {name} is not what storage expects")
            data = {f.name: f for f in plan.data}
            for c in COMMON_COLUMNS:
                want = ("int",) if c == "attempt" else ("str", "literal")
                if c in data and data[c].kind.tag not in want:
                    raise Unsupported(f"data.{c} is not what storage expects")
        except Unsupported as exc:
            plan.supported, plan.reason = False, str(exc)
            log.info("bulk: %s takes the exact path only (%s)", etype, exc)
        plans[etype] = plan
    return plans


# ---------------------------------------------------------------------------------------------------------
# SQL generation. Every value is handled as its JSON text as DuckDB re-serialises it (compact, escapes
# normalised, numbers re-printed); `v` is known to be present and not JSON null.
# ---------------------------------------------------------------------------------------------------------


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _jtext(s: str) -> str:
    return orjson.dumps(s).decode()


_INT_RE = "0|-?[1-9][0-9]{0,17}"
# RFC 3339 with an explicit offset and a year in 1971-2198 (so inside the contract's time bounds whatever the
# offset); pydantic accepts more, those rows take the exact path.
_DT_RE = (r'"(?:197[1-9]|19[89][0-9]|20[0-9]{2}|21[0-8][0-9]|219[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:'
          r'[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9])"')
_DT_PARTS = r'^"(.{19})(?:\.([0-9]{1,6}))?(Z|[+-][0-9]{2}:[0-9]{2})"$'
# Free-form values (extras, dict[str, Any]): numbers whose DuckDB and orjson renderings may differ (>= 1e16,
# [1e-6, 1e-5), exponents, long ints that orjson reads as floats) are left to the exact path.
_ANY_RISKY = r"[0-9]{16}|[0-9.][eE]|0\.00000"


def _unq(v: str) -> str:
    """The decoded string of a JSON string text."""
    return f"(CASE WHEN contains({v}, '\\') THEN json_extract_string({v}, '$') ELSE {v}[2:-2] END)"


def _num(v: str) -> str:
    return f"TRY_CAST({v} AS DOUBLE)"


def _bounds_sql(x: str, bounds: tuple[tuple[str, float], ...]) -> list[str]:
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return [f"{x} {ops[op]} {float(val)!r}" for op, val in bounds]


def _all(parts: list[str]) -> str:
    """A lazy AND (DuckDB evaluates every operand of AND/OR in a projection; CASE only where needed)."""
    if len(parts) == 1:
        return f"coalesce({parts[0]}, false)"
    return "(CASE " + " ".join(f"WHEN NOT coalesce({p}, false) THEN false" for p in parts) + " ELSE true END)"


def _steps(kind: Kind, v: str) -> list[str]:
    """Conditions that must all hold for a present, non-null value (JSON text `v`) of this kind."""
    t = kind.tag
    if t == "str":
        # Lengths are in code points, like Python's len(); the escaped text is never shorter than that, so the
        # decoded length is only computed when the byte length says it might matter.
        parts = [f"prefix({v}, '\"')"]
        if kind.min_length == 1:
            parts.append(f"{v} <> '\"\"'")
        elif kind.min_length:
            parts.append(f"length({_unq(v)}) >= {kind.min_length}")
        if kind.max_length is not None:
            parts.append(f"CASE WHEN strlen({v}) - 2 <= {kind.max_length} THEN true "
                         f"ELSE length({_unq(v)}) <= {kind.max_length} END")
        return parts
    if t == "literal":
        return [f"{v} IN ({', '.join(_lit(_jtext(x)) for x in kind.values)})"]
    if t == "int":
        return [f"regexp_full_match({v}, '{_INT_RE}')"] + _bounds_sql(f"TRY_CAST({v} AS BIGINT)", kind.bounds)
    if t == "float":
        # DuckDB re-renders JSON numbers; a JSON string, bool, object or array never casts (NaN and Infinity
        # literals are excluded per line). Within these ranges DuckDB's shortest round-trip rendering equals
        # orjson's (checked by a test).
        x = _num(v)
        return [f"isfinite({x})", f"abs({x}) < 1e15", f"NOT (abs({x}) >= 9e-7 AND abs({x}) < 2e-5)"] + \
            _bounds_sql(x, kind.bounds)
    if t == "bool":
        return [f"{v} IN ('true', 'false')"]
    if t == "datetime":
        return [f"regexp_full_match({v}, '{_DT_RE}')", f"TRY_CAST({v}[2:-2] AS TIMESTAMPTZ) IS NOT NULL"]
    if t == "dict":
        return [f"prefix({v}, '{{')", f"NOT contains({v}[2:], '{{')", f"NOT regexp_matches({v}, '{_ANY_RISKY}')",
                f"len(json_keys({v})) = len(list_distinct(json_keys({v})))"]
    if t == "any":
        return [f"NOT regexp_matches({v}, '{_ANY_RISKY}')",
                f"CASE WHEN NOT contains({v}, '{{') THEN true ELSE {_check(Kind('dict'), v)} END"]
    raise AssertionError(t)  # lists and models are handled by the callers


def _check(kind: Kind, v: str) -> str:
    return _all(_steps(kind, v))


def _out(kind: Kind, v: str) -> str:
    t = kind.tag
    if t == "float":
        return f"to_json({_num(v)})::VARCHAR"
    if t == "datetime":
        p = f"regexp_extract({v}, '{_DT_PARTS}', ['b', 'f', 'z'])"
        return (f"list_transform([{p}], lambda x: '\"' || x.b || CASE WHEN coalesce(x.f, '') = '' "
                f"OR rpad(x.f, 6, '0') = '000000' THEN '' ELSE '.' || rpad(x.f, 6, '0') END || "
                f"CASE WHEN x.z IN ('Z', '+00:00', '-00:00') THEN 'Z' ELSE x.z END || '\"')[1]")
    return v


def _canon_re(kind: Kind) -> str:
    """A regular expression for the canonical JSON text (as DuckDB renders it) of a valid value of `kind` whose
    orjson rendering after validation is the very same text; rarer forms are left to the exact path."""
    t = kind.tag
    bounds = dict(kind.bounds)
    # An upper bound is expressed by allowing fewer digits: values the pattern admits all lie below it, the
    # few between 10**digits and the bound take the exact path.
    upper = {op: b for op, b in bounds.items() if op in ("le", "lt")}
    bounds = {op: b for op, b in bounds.items() if op not in ("le", "lt")}
    if t == "int":
        if set(bounds) - {"ge", "gt"} or any(b not in (0, 1) for b in bounds.values()):
            raise Unsupported("int bounds other than >= 0 / >= 1 inside a list")
        d = min(18, *(len(str(int(b))) - 1 for b in upper.values())) - 1 if upper else 17
        if d < 0:
            raise Unsupported("int upper bound below 10 inside a list")
        low = bounds.get("ge", bounds.get("gt", None))
        if low is None:
            return f"-?(?:0|[1-9][0-9]{{0,{d}}})"
        if bounds.get("gt") == 0 or bounds.get("ge") == 1:
            return f"[1-9][0-9]{{0,{d}}}"
        if bounds.get("gt") == 1:
            raise Unsupported("int > 1 inside a list")
        return f"(?:0|[1-9][0-9]{{0,{d}}})"
    if t == "float":
        if set(bounds) - {"ge", "gt"} or any(b != 0 for b in bounds.values()):
            raise Unsupported("float bounds other than >= 0 / > 0 inside a list")
        d = min(15, *(len(str(int(b))) - 1 for b in upper.values())) - 1 if upper else 14
        if d < 0:
            raise Unsupported("float upper bound below 10 inside a list")
        # Decimal notation, under 1e15 (or the bound) and not below 1e-4 (where DuckDB's and orjson's renderings
        # agree).
        pos = rf"(?:[1-9][0-9]{{0,{d}}}\.[0-9]+|0\.(?:[1-9]|0[1-9]|00[1-9]|000[1-9])[0-9]*)"
        if "gt" in bounds:
            return pos
        if "ge" in bounds:
            return f"(?:{pos}|0\\.0)"
        return f"-?(?:{pos}|0\\.0)"
    if t == "literal":
        return "(?:" + "|".join(re.escape(_jtext(x)) for x in kind.values) + ")"
    if t == "bool":
        return "(?:true|false)"
    if t == "str":
        lo, hi = kind.min_length or 0, kind.max_length
        return '"[^"\\\\\\x00-\\x1f]{' + f"{lo},{'' if hi is None else hi}" + '}"'
    if t == "model":
        if any(not f.required or f.nullable for f in kind.fields):
            raise Unsupported("optional or nullable fields in list items")
        return r"\{" + ",".join(re.escape(_jtext(f.name)) + ":" + _canon_re(f.kind) for f in kind.fields) + r"\}"
    raise Unsupported(f"{t} inside a list")


def _order_families(plans: list["TypePlan"]) -> list[tuple[list[str], list[str]]]:
    """Group types whose declared field orders agree into families, each with one field order: the data text
    of every type of a family is the concatenation of that order's outputs (absent fields are skipped).
    Usually one family: a topological order of "declared before" over all types."""
    names = list(dict.fromkeys(f.name for p in plans for f in p.data))
    after: dict[str, set[str]] = {n: set() for n in names}
    indeg = dict.fromkeys(names, 0)
    for p in plans:
        fs = [f.name for f in p.data]
        for a, b in zip(fs, fs[1:]):
            if b not in after[a]:
                after[a].add(b)
                indeg[b] += 1
    order: list[str] = []
    ready = [n for n in names if indeg[n] == 0]
    while ready:
        n = min(ready, key=names.index)
        ready.remove(n)
        order.append(n)
        for m in after[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) == len(names):
        return [([p.type for p in plans], order)]
    families: list[tuple[list[str], list[str]]] = []  # (types, order)
    for p in plans:
        names = [f.name for f in p.data]
        for types, order in families:
            merged = _merge_orders(order, names)
            if merged is not None:
                order[:] = merged
                types.append(p.type)
                break
        else:
            families.append(([p.type], list(names)))
    return families


def _merge_orders(a: list[str], b: list[str]) -> list[str] | None:
    """A total order containing both sequences in their relative orders, or None when they conflict."""
    common = [x for x in a if x in b]
    if common != [x for x in b if x in a]:
        return None
    out: list[str] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and a[i] not in b:
            out.append(a[i])
            i += 1
        elif j < len(b) and b[j] not in a:
            out.append(b[j])
            j += 1
        else:  # both at the same common element
            out.append(a[i])
            i += 1
            j += 1
    return out


def _pl_lit_in(col: pl.Expr, values: list[str]) -> pl.Expr:
    return col.is_in(pl.Series(values, dtype=pl.String))


class BulkCompiler:
    """The fast path, generated once from the models.

    DuckDB parses each line once for the envelope and once more for the data fields (its JSON reader is what it
    is good at) and computes the few JSON-specific facts (floats and date-times as DuckDB renders them, nested
    objects, cells, validator look-ups, extra keys). Polars then evaluates every field check and builds the
    stored text column-wise: one vectorised expression per distinct field check, not one per event type, which
    keeps both engines' plans small.
    """

    def __init__(self) -> None:
        self.plans = compile_contract()
        self.supported = [p for p in self.plans.values() if p.supported]
        self.unsupported = {t: p.reason for t, p in self.plans.items() if not p.supported}
        self.validator_slots: list[tuple[str, list[str], FieldPlan]] = []  # (table, types, field)
        self.sql: str | None = None
        if self.supported:
            self._compile(self.supported)

    # -- DuckDB ---------------------------------------------------------------------------------------------

    def _compile(self, plans: list[TypePlan]) -> None:
        env0 = plans[0].envelope
        for p in plans[1:]:
            if [(f.name, f.kind.tag if f.name == "type" else f) for f in p.envelope] != \
                    [(f.name, f.kind.tag if f.name == "type" else f) for f in env0]:
                raise Unsupported(f"{p.type}: envelope differs from the other types")  # pragma: no cover
        self.env = env0
        env_names = [f.name for f in env0]
        names: list[str] = []
        for p in plans:
            for f in p.data:
                if f.name not in names:
                    names.append(f.name)
        self.names = names
        pos = {n: i for i, n in enumerate(names, start=1)}
        self.pos = pos
        type_texts = [_jtext(p.type) for p in plans]

        # Distinct field checks (signatures) and the DuckDB-side columns some kinds need.
        sigs: dict[tuple, int] = {}
        self.sig_fields: list[FieldPlan] = []
        self.sig_of: dict[tuple[str, str], int] = {}
        extra_cols: list[str] = []
        pre_cols: list[str] = []
        done_out: set[tuple[str, str]] = set()
        for p in plans:
            for f in p.data:
                key = (f.name, f.kind, f.validators)
                if key not in sigs:
                    sigs[key] = len(sigs)
                    self.sig_fields.append(f)
                    k, v, t = sigs[key], f"d{pos[f.name]}", f.kind.tag
                    if f.validators:
                        slot = f"bulk_vok_{k}"
                        self.validator_slots.append((slot, [], f))
                        extra_cols.append(f"CASE WHEN {v} IS NOT NULL THEN {v} IN (SELECT v FROM {slot}) END AS vok{k}")
                    if t in ("datetime", "dict", "any", "list"):
                        if t == "list":
                            chk, out = self._list(f.kind, v, pre_cols)
                        else:
                            chk, out = _check(f.kind, v), _out(f.kind, v)
                        extra_cols.append(f"CASE WHEN {v} IS NOT NULL AND {v} <> 'null' THEN {chk} END AS ok{k}")
                        if (f.name, t) not in done_out and t != "list":
                            done_out.add((f.name, t))
                            extra_cols.append(f"CASE WHEN {v} IS NOT NULL AND {v} <> 'null' THEN {out} END "
                                              f"AS out_{t}_{pos[f.name]}")
                    if t == "float" and (f.name, t) not in done_out:
                        done_out.add((f.name, t))
                        extra_cols.append(f"TRY_CAST({v} AS DOUBLE) AS x{pos[f.name]}")
                        extra_cols.append(f"CASE WHEN {v} IS NOT NULL AND {v} <> 'null' THEN "
                                          f"to_json(TRY_CAST({v} AS DOUBLE))::VARCHAR END AS out_float_{pos[f.name]}")
                self.sig_of[(p.type, f.name)] = sigs[key]
                if f.validators:
                    for slot, types, _ in self.validator_slots:
                        if slot == f"bulk_vok_{sigs[key]}" and p.type not in types:
                            types.append(p.type)
        # Decoded strings (the stored columns) where the JSON text has escapes; plain ones are sliced in polars.
        for n in ("source", "id", "subject"):
            v = f'"e_{n}"'
            extra_cols.append(f"CASE WHEN contains({v}, '\\') THEN json_extract_string({v}, '$') END AS u_e_{n}")
        for c in COMMON_COLUMNS:
            if c in pos and c != "attempt":
                v = f"d{pos[c]}"
                extra_cols.append(f"CASE WHEN contains({v}, '\\') THEN json_extract_string({v}, '$') END AS u_{c}")
        # Keys present that the type does not declare, duplicates, or declared keys given as JSON null (the
        # struct reads them as absent): the MAP path decides, for those rows only.
        present = " ".join(
            f"WHEN {_lit(_jtext(p.type))} THEN {' + '.join(f'(d{pos[f.name]} IS NOT NULL)::INT' for f in p.data) or '0'}"
            for p in plans)
        declared = " ".join(
            f"WHEN {_lit(_jtext(p.type))} THEN [{', '.join(_lit(f.name) for f in p.data)}]::VARCHAR[]" for p in plans)
        no_null = " ".join(
            f"WHEN {_lit(_jtext(p.type))} THEN [{', '.join(_lit(f.name) for f in p.data if not self._null_ok(f))}]"
            "::VARCHAR[]" for p in plans)
        mentries = "map_entries(json_transform(json_extract(line, '$.data'), '\"MAP(VARCHAR, JSON)\"'))"
        entries = f"list_filter({mentries}, lambda e: NOT list_contains(CASE \"e_type\" {declared} END, e.key))"
        null_declared = (f"list_filter({mentries}, lambda e: e.value IS NULL AND "
                         f"list_contains(CASE \"e_type\" {no_null} END, e.key))")
        any_check = _check(Kind("any"), "e.value")
        for f in env0:
            if not f.required and not f.nullable:
                raise Unsupported(f"envelope field {f.name}: optional but not nullable")  # pragma: no cover
        # One parse for the envelope and every data field any type declares (JSON null reads as NULL), one for
        # the top-level keys (duplicates, extension attributes), one for the data keys.
        struct = ("{" + ", ".join(f'"{n}": "JSON"' for n in env_names) + ', "data": {'
                  + ", ".join(f'"{n}": "JSON"' for n in names) + "}}")
        env_present = " + ".join([f"(j.\"{n}\" IS NOT NULL)::INT" for n in env_names] + ["(n_data IS NOT NULL)::INT"])
        tv = '"e_time"'
        self.sql = rf"""
SELECT x.* EXCLUDE (line),
  CASE WHEN has_extras THEN json_transform(json_extract(line, '$.data'), '"MAP(VARCHAR, JSON)"') IS NOT NULL
       AND coalesce(list_bool_and(list_transform({entries}, lambda e: CASE WHEN e.value IS NULL THEN true
                                                                        ELSE {any_check} END)), true)
       AND len({null_declared}) = 0 END AS extras_ok,
  CASE WHEN has_extras THEN NULLIF(array_to_string(list_transform(list_filter({entries},
       lambda e: e.value IS NOT NULL), lambda e: to_json(e.key)::VARCHAR || ':' || e.value), ','), '') END
    AS extras_out
FROM (
  SELECT y.*, {", ".join(extra_cols)},
    n_data <> CASE "e_type" {present} END AS has_extras,
    TRY_CAST({tv}[2:-2] AS TIMESTAMPTZ) AS t_ts,
    regexp_full_match({tv}, '{_DT_RE}') AND TRY_CAST({tv}[2:-2] AS TIMESTAMPTZ) <= $limit AS t_ok
  FROM (
    SELECT idx, line, {", ".join(f'j."{n}"::VARCHAR AS "e_{n}"' for n in env_names)},
           {", ".join(f'j.data."{n}"::VARCHAR AS d{i}' for i, n in enumerate(names, start=1))},
           n_data,
           CASE WHEN len(keys) <= {env_present} THEN false ELSE len(list_distinct(keys)) < len(keys) END AS top_dup
           {"".join(", " + c for c in pre_cols)}
    FROM (SELECT idx, line, json_transform(line, '{struct}') AS j, json_keys(line) AS keys,
                 len(json_keys(line, '$.data')) AS n_data
          FROM bulk_raw
          WHERE NOT slow AND json_valid(line) AND NOT contains(line, 'NaN') AND NOT contains(line, 'Infinity')
            AND NOT regexp_matches(line, ',\s*[\]}}]'))
    WHERE j."type"::VARCHAR IN ({", ".join(_lit(t) for t in type_texts)}) AND n_data >= 1
  ) y
) x
"""
        self.extra_cols = extra_cols
        self._polars(plans)

    def _list(self, kind: Kind, v: str, pre_cols: list[str]) -> tuple[str, str]:
        """A list is fast only in canonical form, decided by one regular expression on DuckDB's compact text: then
        it is valid and orjson renders the validated value byte for byte the same (so the output is the text)."""
        item = kind.item
        assert item is not None
        it = _canon_re(item)
        if kind.min_length:
            body = f"{it}(?:,{it})*"
        else:
            body = f"(?:{it}(?:,{it})*)?"
        checks = [f"regexp_full_match({v}, {_lit(chr(92) + '[' + body + chr(92) + ']')})"]
        if item.tag == "model":  # items are objects whose strings cannot hold '{"': count the objects
            count = f"(strlen({v}) - strlen(replace({v}, '{{\"', ''))) // 2"
        else:
            count = f"len(json_extract({v}, '$[*]'))"
        if kind.min_length and kind.min_length > 1:
            checks.append(f"{count} >= {kind.min_length}")
        if kind.max_length is not None:
            checks.append(f"{count} <= {kind.max_length}")
        return _all(checks), v

    @staticmethod
    def _null_ok(f: FieldPlan) -> bool:
        return f.nullable and (not f.validators_see_none or all(_call_ok(fn, None) for fn in f.validators))

    # -- polars ---------------------------------------------------------------------------------------------

    def _polars(self, plans: list[TypePlan]) -> None:
        pos = self.pos
        col = pl.col

        def no_bs(e: pl.Expr) -> pl.Expr:
            return ~e.str.contains("\\", literal=True)

        def str_ok(e: pl.Expr, kind: Kind) -> pl.Expr:
            ok = e.str.starts_with('"')
            if kind.min_length == 1:
                ok = ok & (e != '""')
            elif kind.min_length:
                ok = ok & no_bs(e) & (e.str.len_chars() - 2 >= kind.min_length)
            if kind.max_length is not None:
                ok = ok & ((e.str.len_bytes() - 2 <= kind.max_length) |
                           (no_bs(e) & (e.str.len_chars() - 2 <= kind.max_length)))
            return ok

        def bounds(x: pl.Expr, kind: Kind) -> pl.Expr:
            ok = pl.lit(True)
            for op, val in kind.bounds:
                ok = ok & {"ge": x >= val, "gt": x > val, "le": x <= val, "lt": x < val}[op]
            return ok

        def value_ok(k: int, f: FieldPlan) -> pl.Expr:
            d, t = col(f"d{pos[f.name]}"), f.kind.tag
            if t == "str":
                ok = str_ok(d, f.kind)
            elif t == "literal":
                ok = _pl_lit_in(d, [_jtext(x) for x in f.kind.values])
            elif t == "bool":
                ok = _pl_lit_in(d, ["true", "false"])
            elif t == "int":
                ok = d.str.contains(f"^(?:{_INT_RE})$") & bounds(d.cast(pl.Int64, strict=False), f.kind)
                if f.name in COMMON_COLUMNS:  # stored in an INTEGER column
                    ok = ok & d.cast(pl.Int32, strict=False).is_not_null()
            elif t == "float":
                x = col(f"x{pos[f.name]}")
                ok = x.is_finite() & (x.abs() < 1e15) & ~((x.abs() >= 9e-7) & (x.abs() < 2e-5)) & bounds(x, f.kind)
            else:  # datetime, dict, any, list: decided in DuckDB
                ok = col(f"ok{k}")
            if f.validators:
                ok = ok & col(f"vok{k}")
            return ok

        state_exprs = []
        for k, f in enumerate(self.sig_fields):
            d = col(f"d{pos[f.name]}")
            state_exprs.append(pl.when(d.is_null()).then(pl.lit(0, pl.UInt8)).when(d == "null").then(pl.lit(1, pl.UInt8))
                               .when(value_ok(k, f).fill_null(False)).then(pl.lit(2, pl.UInt8))
                               .otherwise(pl.lit(3, pl.UInt8)).alias(f"c{k}"))
        # The output text of each field ("name":value), per name and output kind.
        out_exprs, out_col = [], {}
        for p in plans:
            for f in p.data:
                t = f.kind.tag
                okind = t if t in ("float", "datetime", "dict", "any") else "raw"
                key = (f.name, okind)
                if key in out_col:
                    continue
                i = pos[f.name]
                src = col(f"d{i}") if okind == "raw" else col(f"out_{okind}_{i}")
                name = f"o{len(out_col)}"
                out_col[key] = name
                d = col(f"d{i}")
                out_exprs.append(pl.when(d.is_null() | (d == "null")).then(None)
                                 .otherwise(pl.lit(_jtext(f.name) + ":") + src).alias(name))

        def okind(f: FieldPlan) -> str:
            return f.kind.tag if f.kind.tag in ("float", "datetime", "dict", "any") else "raw"

        etype = col("e_type")
        if len(self.sig_fields) <= 63 and len(self.names) <= 63:
            # Bitmasks: which names are present, which field checks failed; per type, the checks it uses and
            # the names it requires. A JSON null reads as absent here (the MAP path checks nulls per type).
            present = pl.sum_horizontal([col(f"d{i}").is_not_null().cast(pl.UInt64) * (1 << (i - 1))
                                         for i in range(1, len(self.names) + 1)])
            bad = pl.sum_horizontal([(col(f"c{k}") == 3).cast(pl.UInt64) * (1 << k)
                                     for k in range(len(self.sig_fields))])
            used, req = {}, {}
            for p in plans:
                used[_jtext(p.type)] = sum(1 << self.sig_of[(p.type, f.name)] for f in p.data)
                req[_jtext(p.type)] = sum(1 << (pos[f.name] - 1) for f in p.data if f.required)
            u = etype.replace_strict(used, default=None, return_dtype=pl.UInt64)
            r = etype.replace_strict(req, default=None, return_dtype=pl.UInt64)
            type_ok = (((bad & u) == 0) & ((present & r) == r)).fill_null(False)
        else:  # pragma: no cover - a contract with more than 63 distinct fields
            allowed = {(False, False): [2], (False, True): [1, 2], (True, False): [0, 2], (True, True): [0, 1, 2]}
            chain = None
            for p in plans:
                verdict = pl.lit(True)
                for f in p.data:
                    verdict = verdict & col(f"c{self.sig_of[(p.type, f.name)]}").is_in(
                        pl.Series(allowed[(not f.required, self._null_ok(f))], dtype=pl.UInt8))
                chain = (pl.when(etype == _jtext(p.type)) if chain is None else chain.when(etype == _jtext(p.type)))
                chain = chain.then(verdict)
            assert chain is not None
            type_ok = chain.otherwise(False)

        def env_ok(f: FieldPlan) -> pl.Expr:
            e = col(f'e_{f.name}')
            if f.kind.tag == "event_time":
                chk = col("t_ok").fill_null(False)
            elif f.name == "type":
                chk = pl.lit(True)  # the per-type verdict only matches known types
            elif f.kind.tag == "str":
                chk = str_ok(e, f.kind)
            elif f.kind.tag == "literal":
                chk = _pl_lit_in(e, [_jtext(x) for x in f.kind.values])
            else:
                raise Unsupported(f"envelope field {f.name} of kind {f.kind.tag}")
            return (pl.when(e.is_null()).then(not f.required).when(e == "null").then(f.nullable)
                    .otherwise(chk.fill_null(False)))

        ok = ~col("top_dup") & type_ok & ~(col("has_extras") & ~col("extras_ok").fill_null(False))
        for f in self.env:
            ok = ok & env_ok(f)

        def decoded(e: pl.Expr, u: str) -> pl.Expr:
            return pl.when(e.is_null() | (e == "null")).then(None).otherwise(
                pl.coalesce(col(u), e.str.strip_prefix('"').str.strip_suffix('"')))

        # The data text: per family of types sharing one field order, the outputs in that order.
        families = _order_families(plans)
        data = None
        for types, order in families:
            by_name = {}
            for p in plans:
                if p.type in types:
                    for f in p.data:
                        by_name.setdefault(f.name, set()).add(out_col[(f.name, okind(f))])
            parts = []
            for n in order:
                cols_ = sorted(by_name[n])
                if len(cols_) == 1:
                    parts.append(col(cols_[0]))
                else:  # same name, different output kinds in different types of the family
                    e = None
                    for p in plans:
                        if p.type in types:
                            for f in p.data:
                                if f.name == n:
                                    c_ = col(out_col[(n, okind(f))])
                                    e = pl.when(etype == _jtext(p.type)).then(c_) if e is None else \
                                        e.when(etype == _jtext(p.type)).then(c_)
                    parts.append(e.otherwise(None))  # type: ignore[union-attr]
            text = pl.concat_str([pl.lit("{"), pl.concat_str(parts + [col("extras_out")], separator=",",
                                                                    ignore_nulls=True), pl.lit("}")])
            if len(families) == 1:
                data = text
                break
            cond = _pl_lit_in(etype, [_jtext(t) for t in types])
            data = pl.when(cond).then(text) if data is None else data.when(cond).then(text)
        assert data is not None
        self.families = families
        self.out_col = out_col
        # For rows with extra keys: a field another type declares is an extra here, not a declared output.
        self.declared_by = {n: [_jtext(p.type) for p in plans if any(f.name == n for f in p.data)]
                            for n in self.names}

        commons = []
        for c in COMMON_COLUMNS:
            if c not in pos:
                commons.append(pl.lit(None, pl.Int32 if c == "attempt" else pl.String).alias(c))
                continue
            d = col(f"d{pos[c]}")
            if c == "attempt":
                v = pl.when(d.is_null() | (d == "null")).then(None).otherwise(d.cast(pl.Int32, strict=False))
                runs = [_jtext(p.type) for p in plans if p.type.startswith("notebook.run.")]
                v = pl.when(_pl_lit_in(etype, runs)).then(v.fill_null(1)).otherwise(v)
            else:
                v = decoded(d, f"u_{c}")
            if len(self.declared_by[c]) < len(plans):
                v = pl.when(_pl_lit_in(etype, self.declared_by[c])).then(v).otherwise(None)
            commons.append(v.alias(c))
        scanned = [col(out_col[key]) for key in out_col if key[0] not in IDENTIFIER_KEYS]
        idents = [col(out_col[key]) for key in out_col if key[0] in IDENTIFIER_KEYS]
        scanned += [pl.when(col(f"d{pos[n]}").is_not_null()).then(pl.lit(n)) for n in self.names
                    if n in IDENTIFIER_KEYS and has_candidate(n)]
        self.stage_states = state_exprs + out_exprs
        self.stage_final = [
            col("idx"), ok.alias("ok"), col("t_ts").alias("time"),
            decoded(col("e_source"), "u_e_source").alias("source"), decoded(col("e_id"), "u_e_id").alias("id"),
            etype.str.strip_prefix('"').str.strip_suffix('"').alias("type"),
            decoded(col("e_subject"), "u_e_subject").alias("subject"), *commons,
            data.alias("data"),
            pl.concat_str(scanned + [col("extras_out")], separator=",", ignore_nulls=True).alias("scan"),
            pl.concat_str(idents, separator=",", ignore_nulls=True).alias("idents"),
        ]


_compiler: BulkCompiler | None = None
_compiler_lock = threading.Lock()


def compiler() -> BulkCompiler:
    global _compiler
    with _compiler_lock:
        if _compiler is None:
            _compiler = BulkCompiler()
        return _compiler


# ---------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BulkResult:
    """Accepted rows (in input order) as an Arrow table in writer.EVENT_SCHEMA, plus the rejections."""

    table: pa.Table  # rows sharing a (source, id) are in input order; others need not be
    row_index: pa.Array  # input index of each accepted row (int64), parallel to `table`
    rejections: list[Rejection]
    total: int
    fast: int = 0  # rows accepted by the vectorised path
    exact: int = 0  # rows that went through pydantic
    redacted: int = 0  # accepted rows with at least one secret redacted
    stats: dict[str, float] = field(default_factory=dict)


def _call_ok(fn: Callable[[Any], Any], value: Any) -> bool:
    try:
        out = fn(value)
    except Exception:  # noqa: BLE001 - a failing validator just means "not fast"
        return False
    return out == value and type(out) is type(value)


class BulkValidator:
    """Validates chunks of JSON lines with one private in-memory DuckDB connection. Not thread-safe."""

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        self.comp = compiler()
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {_lit(memory_limit)}")
        self.prefilter = PREFILTER_PATTERN
        self._prepared = False

    _RAW_SCHEMA = pa.schema([("idx", pa.int64()), ("line", pa.large_string()), ("slow", pa.bool_())])

    def _prepare(self) -> None:
        """Plan the statement once per connection (planning it costs more than running it on a small chunk);
        the validator tables are filled per chunk, never re-created, so the plan stays valid."""
        comp = self.comp
        assert comp.sql is not None
        for slot, _, _ in comp.validator_slots:
            self.con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {slot} (v VARCHAR)")
        self.con.register("bulk_raw", ds.dataset(self._RAW_SCHEMA.empty_table()))
        self.con.execute("PREPARE bulk_fast AS " + comp.sql.replace("$limit", "$1"))
        self._prepared = True

    def close(self) -> None:
        self.con.close()

    def validate_lines(self, lines: pa.Array, *, offset: int = 0, line_numbers: pa.Array | None = None,
                       slow: pa.Array | None = None, item_of: Callable[[int], Any] | None = None) -> BulkResult:
        """Validate JSON lines (blank lines already removed); row i gets the index `offset + i`.

        `lines` may be binary (UTF-8 is checked here) or string, with or without surrounding whitespace.
        `line_numbers` (1-based physical numbers) only feeds the message of unreadable lines (default: i + 1,
        what `body.split_items` says). `slow` marks rows that must take the exact path. `item_of(i)`
        builds the raw item of row i for the exact path (default: orjson on the stripped line; an unreadable
        line becomes a `json_invalid` rejection exactly like `body.split_items` makes it).
        """
        t0 = time.perf_counter()
        n = len(lines)
        binary = lines
        if pa.types.is_binary(lines.type) or pa.types.is_large_binary(lines.type):
            try:
                lines = lines.cast(pa.large_string())
            except pa.ArrowInvalid:  # invalid UTF-8 somewhere: those lines are unreadable, the rest stays fast
                good = pa.array([_utf8_ok(b) for b in binary.to_pylist()])
                lines = pc.if_else(good, binary, pa.scalar(b"", binary.type)).cast(pa.large_string())
                bad = pc.invert(good)
                slow = bad if slow is None else pc.or_(slow, bad)
        if slow is None:
            slow = pa.nulls(n, pa.bool_()).fill_null(False)
        raw = pa.table({"idx": pa.array(range(n), pa.int64()), "line": lines, "slow": slow})
        # DuckDB scans an Arrow table in parallel by record batch.
        raw = pa.Table.from_batches(raw.to_batches(max_chunksize=max(2048, -(-n // 16))))
        fast = self._fast(raw)
        t1 = time.perf_counter()

        def parse_line(i: int) -> Any:
            b = binary[i].as_py()
            b = b.encode() if isinstance(b, str) else b
            b = b.strip()  # bytes.strip: ASCII whitespace, as split_items does
            try:
                return orjson.loads(b)
            except orjson.JSONDecodeError as exc:
                ln = int(line_numbers[i].as_py()) if line_numbers is not None else i + 1
                text = b.decode("utf-8", "replace")
                return Rejection(offset + i, [{"path": "", "type": "json_invalid", "message": f"line {ln}: {exc}"}],
                                 redact_text(text[:65_536])[0])

        res = self._finish(fast, n, offset, item_of or parse_line)
        res.stats.update(fast_seconds=t1 - t0, exact_seconds=time.perf_counter() - t1)
        return res

    def validate_items(self, items: list[Any], offset: int = 0) -> BulkResult:
        """Parsed items (e.g. a JSON array document): each is re-serialised with orjson for the fast path, and
        the exact path sees the item itself."""
        lines = pa.array([orjson.dumps(x) for x in items], pa.large_binary())
        return self.validate_lines(lines, offset=offset, item_of=lambda i: items[i])

    def _fast(self, raw: pa.Table) -> pl.DataFrame | None:
        """The rows the vectorised path accepts: idx plus the EVENT_SCHEMA columns except `redactions`."""
        comp = self.comp
        if raw.num_rows == 0 or comp.sql is None:
            return None
        if not self._prepared:
            self._prepare()
        con = self.con
        con.register("bulk_raw", ds.dataset(raw.cast(self._RAW_SCHEMA)))  # a dataset is scanned in parallel
        try:
            for slot, types, fp in comp.validator_slots:
                # Validators run in Python on the distinct values of the chunk. The pre-scan only has to find
                # candidates: a value it misses is not in the table, so its row takes the exact path.
                cond = " OR ".join(f"contains(line, {_lit(_jtext(t))})" for t in types)
                vals = con.execute(
                    f"SELECT DISTINCT json_extract(line, {_lit('$.data.' + _jtext(fp.name))})::VARCHAR FROM bulk_raw "
                    f"WHERE NOT slow AND ({cond}) AND json_valid(line)").fetchall()
                ok = [v for (v,) in vals if v is not None and v.startswith('"') and _validators_ok(fp, v)]
                con.execute(f"DELETE FROM {slot}")
                if ok:
                    con.execute(f"INSERT INTO {slot} SELECT unnest($vals)", {"vals": ok})
            limit = datetime.now(timezone.utc) + MAX_FUTURE_SKEW - FUTURE_MARGIN
            res = con.sql(f"EXECUTE bulk_fast(TIMESTAMPTZ '{limit.isoformat()}')").to_arrow_table()
        finally:
            con.unregister("bulk_raw")
        df = pl.from_arrow(res)
        assert isinstance(df, pl.DataFrame)
        if df.height == 0:
            return None
        df = df.with_columns(comp.stage_states)
        if df["has_extras"].any():
            # A field another type declares is an extra for this row's type: it is output with the extras.
            etype = pl.col("e_type")
            df = df.with_columns([
                pl.when(pl.col("has_extras") & ~_pl_lit_in(etype, comp.declared_by[name])).then(None)
                .otherwise(pl.col(o)).alias(o) for (name, _), o in comp.out_col.items()])
        df = df.select(comp.stage_final)
        # Rows whose stored text holds a control character escape (rendered differently by DuckDB and orjson)
        # and candidate secrets (what the redactor would scan) take the exact path.
        # Identifiers (source, id, the IDENTIFIER_KEYS) are refused by the exact path when they hold a credential
        # or a control character: candidates and any escape in them take it.
        idents = df["idents"].fill_null("")
        cand = (df["scan"].str.contains(self.prefilter) | df["subject"].fill_null("").str.contains(self.prefilter)
                | df["data"].str.contains("\\u00", literal=True)
                | idents.str.contains(self.prefilter) | idents.str.contains("\\", literal=True)
                | df["source"].str.contains(self.prefilter) | df["id"].str.contains(self.prefilter)
                | df["source"].str.contains(_CONTROL) | df["id"].str.contains(_CONTROL))
        return df.filter(df["ok"] & ~cand).drop("ok", "scan", "idents")

    def _finish(self, fast: pl.DataFrame | None, n: int, offset: int, item_of: Callable[[int], Any]) -> BulkResult:
        n_fast = 0 if fast is None else fast.height
        if n_fast == n:
            exact_idx: list[int] = []
        elif n_fast == 0:
            exact_idx = list(range(n))
        else:
            assert fast is not None
            everything = pl.int_range(n, eager=True, dtype=pl.Int64)
            exact_idx = everything.filter(~everything.is_in(fast["idx"])).to_list()
        rows: list[dict[str, Any]] = []
        rows_idx: list[int] = []
        rejections: list[Rejection] = []
        for i in exact_idx:
            item = item_of(i)
            res = item if isinstance(item, Rejection) else check_item(offset + i, item)
            if isinstance(res, Rejection):
                rejections.append(res)
                continue
            rows.append(to_row(res))
            rows_idx.append(i)
        parts: list[pa.Table] = []
        schema = pa.schema([("idx", pa.int64())] + list(EVENT_SCHEMA))
        if n_fast:
            assert fast is not None
            ft = fast.with_columns(redactions=pl.lit(0, pl.Int32)).to_arrow()
            parts.append(ft.select(schema.names).cast(schema))
        if rows:
            st, rows_idx = _rows_table(rows, rows_idx, offset, rejections)
            if st.num_rows:
                parts.append(st.add_column(0, "idx", pa.array(rows_idx, pa.int64())))
        if parts:
            table = pa.concat_tables(parts)
            if len(parts) > 1 and _keys_collide(parts[0], parts[1]):
                # Same (source, id) in both parts: keep input order so the first occurrence wins downstream.
                table = table.take(pc.sort_indices(table.column("idx")))
            row_index = pc.add(table.column("idx"), offset).combine_chunks()
            table = table.drop_columns(["idx"])
        else:
            table, row_index = EVENT_SCHEMA.empty_table(), pa.array([], pa.int64())
        rejections.sort(key=lambda r: r.index)
        return BulkResult(table, row_index, rejections, n, fast=n_fast, exact=len(exact_idx),
                          redacted=sum(1 for r in rows if r["redactions"]))


def _rows_table(rows: list[dict[str, Any]], idx: list[int], offset: int,
                rejections: list[Rejection]) -> tuple[pa.Table, list[int]]:
    """Rows of the exact path as Arrow. A value the contract allows but the storage column cannot hold (an
    `attempt` beyond 32 bits) rejects that event with a precise error instead of failing the whole chunk."""
    try:
        return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), idx
    except (pa.ArrowInvalid, OverflowError):
        pass
    good, good_idx = [], []
    for row, i in zip(rows, idx):
        try:
            pa.Table.from_pylist([row], schema=EVENT_SCHEMA)
        except (pa.ArrowInvalid, OverflowError) as exc:
            bad = [c for c in EVENT_SCHEMA.names if pa.types.is_integer(EVENT_SCHEMA.field(c).type)
                   and isinstance(row.get(c), int) and not -(2**31) <= row[c] < 2**31]
            path = f"data.{bad[0]}" if bad and bad[0] != "redactions" else ""
            rejections.append(Rejection(offset + i, [{"path": path, "type": "storage_range",
                                                      "message": f"value does not fit the storage column: {exc}"}],
                                        redact_text(orjson.dumps(orjson.loads(row["data"]))[:65_536].decode())[0],
                                        row["source"], row["id"], row["type"]))
            continue
        good.append(row)
        good_idx.append(i)
    return pa.Table.from_pylist(good, schema=EVENT_SCHEMA), good_idx


def _keys_collide(a: pa.Table, b: pa.Table) -> bool:
    """Does any (source, id) of the (small) table `b` also occur in `a`?"""
    ids = pc.is_in(a.column("id"), value_set=b.column("id").combine_chunks())
    if not pc.any(ids).as_py():
        return False
    sub = a.filter(ids)
    keys_b = set(zip(b.column("source").to_pylist(), b.column("id").to_pylist()))
    return any(k in keys_b for k in zip(sub.column("source").to_pylist(), sub.column("id").to_pylist()))


def _utf8_ok(b: bytes | None) -> bool:
    try:
        (b or b"").decode()
        return True
    except UnicodeDecodeError:
        return False


def _validators_ok(fp: FieldPlan, text: str) -> bool:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, str) and all(_call_ok(fn, value) for fn in fp.validators)


# ---------------------------------------------------------------------------------------------------------
# Splitting NDJSON bytes into the same items as body.split_items
# ---------------------------------------------------------------------------------------------------------


def split_lines(buf: bytes, first_line: int = 1) -> tuple[pa.Array, pa.Array]:
    """The non-blank lines of an NDJSON buffer (binary, zero-copy slices of `buf`, possibly keeping surrounding
    whitespace) and their 1-based physical line numbers. Blank = empty after bytes.strip(), as in split_items."""
    lengths = list(map(len, buf.split(b"\n")))
    offsets = list(itertools.accumulate(lengths, lambda a, b: a + b + 1, initial=0))
    offsets[-1] = len(buf)  # the last line has no newline after it
    arr = pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                [None, pa.array(offsets, pa.int64()).buffers()[1], pa.py_buffer(buf)])
    numbers = pa.array(range(first_line, first_line + len(lengths)), pa.int64())
    blank = pc.match_substring_regex(arr, r"^[ \t\n\r\x0b\x0c]*$")  # each slice keeps its newline
    if pc.any(blank).as_py():
        keep = pc.invert(blank)
        arr, numbers = arr.filter(keep), numbers.filter(keep)
    return arr, numbers


_local = threading.local()


def default_validator() -> BulkValidator:
    """A per-thread validator (its own in-memory DuckDB connection)."""
    v = getattr(_local, "validator", None)
    if v is None:
        v = _local.validator = BulkValidator()
    return v


def validate_ndjson(body: bytes, offset: int = 0) -> BulkResult:
    """Bulk-validate an NDJSON body: the same items, indexes and outcome as
    `validation.validate_items(body.split_items(body, "application/x-ndjson"), offset)`."""
    lines, _ = split_lines(body)
    return default_validator().validate_lines(lines, offset=offset)


def validate_json_items(items: list[Any], offset: int = 0) -> BulkResult:
    """Bulk-validate parsed items (e.g. a JSON array document)."""
    return default_validator().validate_items(items, offset)


# ---------------------------------------------------------------------------------------------------------
# Parquet-shaped tables: columns specversion, id, source, type, time, subject, data
# ---------------------------------------------------------------------------------------------------------

PARQUET_COLUMNS = ("specversion", "id", "source", "type", "time", "subject", "data")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def parquet_lines(table: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> tuple[pa.Array, pa.Array]:
    """Each row as the JSON event it stands for (null columns left out; `data` a JSON string embedded as is or
    a struct rendered as JSON; a timestamp `time` in RFC 3339), plus a flag for rows whose `data` string is not
    one valid JSON value (those are rejected with a `data` error, never fast)."""
    own = con is None
    con = con or duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    parts, bad = [], "false"
    for name in PARQUET_COLUMNS:
        if name not in table.column_names:
            continue
        t, c = table.schema.field(name).type, f'"{name}"'
        if name == "data":
            if _is_text(t):
                val, bad = c, f"({c} IS NOT NULL AND NOT json_valid({c}))"
            else:
                val = f"to_json({c})::VARCHAR"
        elif name == "time" and pa.types.is_timestamp(t):
            fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.tz else "%Y-%m-%dT%H:%M:%S.%f"
            val = f"to_json(strftime({c}, '{fmt}'))::VARCHAR"
        else:
            val = f"to_json({c})::VARCHAR"
        parts.append(f"CASE WHEN {c} IS NOT NULL THEN {_lit(_jtext(name) + ':')} || {val} END")
    sql = f"SELECT '{{' || concat_ws(',', {', '.join(parts)}) || '}}' AS line, {bad} AS bad FROM bulk_pq"
    con.register("bulk_pq", table)
    try:
        res = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("bulk_pq")
        if own:
            con.close()
    return res.column("line").combine_chunks(), res.column("bad").combine_chunks()


def validate_parquet_table(validator: BulkValidator, table: pa.Table, offset: int = 0) -> BulkResult:
    """Bulk-validate a Parquet-shaped table (see `parquet_lines`)."""
    lines, bad = parquet_lines(table, validator.con)
    bad_list = bad.to_pylist() if pc.any(bad).as_py() else None

    def item_of(i: int) -> Any:
        text = lines[i].as_py()
        err = None
        if bad_list is not None and bad_list[i]:
            raw = table.column("data")[i].as_py()
            try:
                orjson.loads(raw)
                err = "not one JSON value"
            except orjson.JSONDecodeError as exc:
                err = str(exc)
        else:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:  # the envelope columns are rendered by DuckDB: data is at fault
                err = str(exc)
        def col(name: str) -> str | None:
            v = table.column(name)[i].as_py() if name in table.column_names else None
            return redact_text(v[:256])[0] if isinstance(v, str) else None

        return Rejection(offset + i, [{"path": "data", "type": "json_invalid",
                                       "message": f"column data is not valid JSON: {err}"}],
                         redact_text(text[:65_536])[0], col("source"), col("id"), col("type"))

    return validator.validate_lines(lines, offset=offset, slow=bad, item_of=item_of)
