"""The contract as data: each event model's pydantic-core schema (what pydantic itself executes) walked into a plan
of field kinds, bounds, literals, nullability and validators, per event type.

The SQL (sql.py) and polars (checks.py) compilers read only these plans; a construct this module does not
translate marks its type `supported=False`, and every row of that type takes the exact pydantic path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from collector.contract.events import EVENT_MODELS, EnvelopeBase
from collector.contract.validation import COMMON_COLUMNS

log = logging.getLogger(__name__)

# Event times closer than this to the 24 h future limit are left to pydantic (its clock moves on).
FUTURE_MARGIN = timedelta(minutes=5)


# What the fast path's date-time pattern (codegen.DATETIME_RE) implies: a year in 1971-2198 with an offset under 14 h.
DT_FAST_LOW = datetime(1970, 12, 31, tzinfo=timezone.utc)
DT_FAST_HIGH = datetime(2199, 1, 2, tzinfo=timezone.utc)


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

    @property
    def declared(self) -> frozenset[str]:
        return frozenset(f.name for f in self.data)


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
        # The fast path's date-time pattern (codegen.DATETIME_RE) only admits years 1971-2198, which with any offset lie
        # inside these bounds; a bound tighter than that is not expressed.
        for op in ("ge", "gt"):
            if op in s and s[op] > DT_FAST_LOW:
                raise Unsupported(f"{where}: datetime lower bound above {DT_FAST_LOW:%Y-%m-%d}")
        for op in ("le", "lt"):
            if op in s and s[op] < DT_FAST_HIGH:
                raise Unsupported(f"{where}: datetime upper bound below {DT_FAST_HIGH:%Y-%m-%d}")
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



def call_ok(fn: Callable[[Any], Any], value: Any) -> bool:
    """Does the field validator `fn` accept `value` unchanged? (A failing validator just means "not fast".)"""
    try:
        out = fn(value)
    except Exception:  # noqa: BLE001
        return False
    return out == value and type(out) is type(value)


def null_ok(f: FieldPlan) -> bool:
    """May this field be given as JSON null?"""
    return f.nullable and (not f.validators_see_none or all(call_ok(fn, None) for fn in f.validators))
