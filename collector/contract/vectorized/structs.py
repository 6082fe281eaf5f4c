"""The first stage of a JSON line: decoded and checked in one C call, into msgspec Structs compiled from the plans.

Why a stage before the generated checks. On the line path (HTTP NDJSON, files) each event cost an orjson parse
(~1 µs) and its generated check (~3-4 µs), Python holding the GIL. msgspec decodes a line straight into a typed
Struct and checks types, literals, lengths and bounds as it reads (~1 µs for a kernel event, measured on the bench's
events); a small generated function then makes the same tuple the generated check returns (codegen.Compiled.checks).

It only ever says "accepted, and here is the row", like the generated checks. A line it does not vouch for goes on
to orjson and the generated check, and from there to pydantic: any line msgspec refuses, for whatever reason (a
type compiled here or not, an extra key: the Structs forbid unknown fields, a constraint, malformed JSON), and any
value only the Python checks decide (the date-times of `data` against codegen.DATETIME_RE, free-form values against
`shape_problem`, field validators through the same cached verdicts). The event time is text here, as in the
generated checks: its form, date and future limit are checked column-wise for the batch (validator.event_times).
What it accepts, the generated check accepts with the same tuple, because:

* msgspec is strict as the checks are: no float for an int, no bool or string for a number, no coercion of text;
* every int is bounded within what orjson reads as an int (-2**63 .. 2**64-1: beyond, orjson gives a float, msgspec
  an int), and every float within +-2**53 (msgspec turns an int into a float as the checks do, but beyond 2**53 the
  checks leave it to pydantic): bounds tighter than the contract's only send more lines on;
* invalid UTF-8, lone surrogates, a byte order mark, NaN and Infinity are refused by both parsers;
* a repeated key keeps its last value in both (a repeated `type` must equal the tag, or msgspec refuses the line);
* `data` is written in declared order with None dropped (`omit_defaults`; every optional field defaults to None),
  lists of cells as exact objects, which is what the checks store (tests/contract/test_struct_stage.py holds the
  two stages equal on generated and mutated lines).

The row keeps the data Struct itself as the stored data (its date-times re-rendered in place) and reads the typed
columns from its attributes: `msgspec.to_builtins` of it cost ~1 µs per event, and msgspec writes a Struct's text
(validator.json_texts) faster than a dict's. A list of item Structs (cells) is written by msgspec for its column's text.
"""

from __future__ import annotations

import keyword
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Optional, Union

import msgspec
import orjson

from collector.contract.validation import shape_problem
from collector.contract.vectorized.codegen import Compiled, _typed, _Verdicts, parse_datetime
from collector.contract.vectorized.plan import FieldPlan, Kind, Unsupported, null_ok

# What orjson reads as an int (beyond, a float), and the ints a float field stores exactly.
_INT_RANGE = (-(2**63), 2**64 - 1)
_FLOAT_RANGE = (-float(2**53), float(2**53))
# Whatever msgspec raises for a line only means "not vouched for": a DecodeError (ValidationError is one), a
# UnicodeDecodeError for bad UTF-8, a RecursionError for nesting beyond ~1,000 levels. The line goes on to orjson,
# whose own errors are worded as rejections.
_REFUSED = Exception


@dataclass(slots=True)
class Decisions:
    """The lines of a batch the struct stage accepted, in line order, as three parallel lists (each one's index in
    the batch, its type, and the generated check's tuple, but for the stored data, its Struct), and the indexes of
    the lines it left to orjson and the generated check. Lists, not an object per line: the validator takes them as
    they are (an object per line, then a pass to sort them out, cost ~0.4 µs per event more, on 8,192 bench lines)."""

    idx: list[int]
    types: list[str]
    rows: list[tuple]
    rest: list[int]  # the indexes of the other lines, in order


class StructStage:
    """Decodes lines with one msgspec decoder over a tagged union of every compiled event type. One instance serves
    every thread (the validator is shared by the HTTP worker threads): a msgspec call holds the GIL throughout and
    runs no Python hooks, so calls never interleave."""

    def __init__(self, decoder: msgspec.json.Decoder, rows: dict[type, tuple[str, Callable[[Any], Any]]],
                 source: str) -> None:
        self._decode = decoder.decode
        self._rows = rows
        self.source = source
        self.types = frozenset(t for t, _ in rows.values())

    def decide(self, lines: list[Any]) -> Decisions:
        """The lines accepted; every other line goes on to orjson and the generated check."""
        decode, rows = self._decode, self._rows
        idx: list[int] = []
        types: list[str] = []
        out: list[tuple] = []
        rest: list[int] = []
        for i, line in enumerate(lines):
            try:
                e = decode(line)
            except _REFUSED:
                rest.append(i)
                continue
            etype, fn = rows[e.__class__]
            r = fn(e)
            if r is None:
                rest.append(i)
                continue
            idx.append(i)
            types.append(etype)
            out.append(r)
        return Decisions(idx, types, out, rest)


def _bounded(kind: Kind, lo: float, hi: float, as_int: bool) -> msgspec.Meta:
    """The plan's bounds intersected with [lo, hi] (a tighter bound only sends more lines on)."""
    b = dict(kind.bounds)
    conv = (lambda v: int(v) if float(v).is_integer() else v) if as_int else float
    kw: dict[str, Any] = {}
    if "gt" in b and b["gt"] >= lo:
        kw["gt"] = conv(b["gt"])
    else:
        kw["ge"] = conv(max(b.get("ge", lo), lo))
    if "lt" in b and b["lt"] <= hi:
        kw["lt"] = conv(b["lt"])
    else:
        kw["le"] = conv(min(b.get("le", hi), hi))
    return msgspec.Meta(**kw)


class _Builder:
    """Plans -> Struct classes and, per type, the source of the function that turns a Struct into the tuple."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"_dt": parse_datetime, "_shape": shape_problem,
                                    "_enc": msgspec.json.encode, "_dumps": orjson.dumps}
        self.lines: list[str] = []
        self._n = 0

    def const(self, value: Any, prefix: str) -> str:
        self._n += 1
        name = f"_{prefix}{self._n}"
        self.env[name] = value
        return name

    def annotation(self, kind: Kind, where: str) -> Any:
        t = kind.tag
        if t == "str":
            return Annotated[str, msgspec.Meta(min_length=kind.min_length or 0, max_length=kind.max_length)] \
                if kind.min_length or kind.max_length is not None else str
        if t == "literal":
            return Literal[kind.values]  # type: ignore[valid-type]
        if t == "int":
            return Annotated[int, _bounded(kind, *_INT_RANGE, as_int=True)]
        if t == "float":
            return Annotated[float, _bounded(kind, *_FLOAT_RANGE, as_int=False)]
        if t == "bool":
            return bool
        if t in ("datetime", "event_time"):
            return str  # decided by the Python code, as the generated check decides it
        if t == "dict":
            return dict[str, Any]
        if t == "any":
            return Any
        if t == "list":
            assert kind.item is not None
            item = self.item_struct(kind.item, where)
            return Annotated[list[item], msgspec.Meta(min_length=kind.min_length or 0,  # type: ignore[valid-type]
                                                      max_length=kind.max_length)]
        raise Unsupported(f"{where}: {t}")

    def item_struct(self, kind: Kind, where: str) -> type:
        """A list item: an exact object of required, non-null scalar fields (as codegen's item functions)."""
        if kind.tag != "model" or any(not f.required or f.nullable or f.validators
                                      or f.kind.tag in ("list", "model", "datetime", "dict", "any")
                                      for f in kind.fields):
            raise Unsupported(f"{where}: list items other than exact objects of scalars")
        return msgspec.defstruct(f"Item{self._n}", [(f.name, self.annotation(f.kind, where)) for f in kind.fields],
                                 forbid_unknown_fields=True)

    def fields(self, plans: list[FieldPlan], where: str) -> list[tuple]:
        out: list[tuple] = []
        for f in plans:
            if f.validators and (f.validators_see_none or f.kind.tag not in ("str", "literal")):
                raise Unsupported(f"{where}.{f.name}: validator")
            ann = self.annotation(f.kind, f"{where}.{f.name}")
            if f.required and not f.nullable:
                out.append((f.name, ann))
            elif not f.required and null_ok(f):
                out.append((f.name, Optional[ann], None))  # None dropped by omit_defaults, as the check drops it
            else:
                raise Unsupported(f"{where}.{f.name}: required and nullable, or optional and not nullable")
        return out

    def type_row(self, plan: Any, fn: str, comp: Compiled) -> type:
        env_fields = [f for f in plan.envelope if f.name != "type"]
        for name in ("id", "source", "time"):
            if not any(f.name == name and f.required and not f.nullable for f in env_fields):
                raise Unsupported(f"envelope field {name} is optional")
        data = msgspec.defstruct(f"Data{self._n}", self.fields(plan.data, "data"), kw_only=True,
                                 forbid_unknown_fields=True, omit_defaults=True)
        envelope = msgspec.defstruct(f"Event{self._n}", self.fields(env_fields, "envelope") + [("data", data)],
                                     kw_only=True, forbid_unknown_fields=True, tag_field="type", tag=plan.type)
        body = [f"def {fn}(e):", "    ts = e.time", "    d = e.data"]  # the time: validator.event_times
        for f in plan.data:
            a = _attr(f.name, where=f"data.{f.name}")
            checks = []
            if f.kind.tag == "datetime":
                checks = ["r = _dt(v)", "if r is None: return None", f"d.{a} = r[0]"]
            elif f.kind.tag in ("dict", "any"):
                checks = ["if _shape(v, 3) is not None: return None"]
            if f.validators:
                checks.append(f"if not {self.const(_Verdicts(f.validators), 'V')}(v): return None")
            if checks:
                body += [f"    v = d.{a}", "    if v is not None:"] + ["        " + c for c in checks]
        declared = {f.name: f for f in plan.data}
        run = plan.type.startswith("notebook.run.")
        cols = []
        for c in comp.columns:
            f = declared.get(c)
            if f is None:
                cols.append("None")
                continue
            v = f"d.{_attr(c, where=f'data.{c}')}"
            typed = _typed(f, comp.types[c], v, timestamps_as_text=True)
            if f.kind.tag == "list" and typed != v:
                # a list of item Structs, its column orjson's text of them as plain objects: msgspec writes the
                # same text (declared order, floats within +-2**53) without the plain objects, ~0.6 us less a row
                typed = f"_enc({v}).decode()"
            if c == "attempt" and run:
                cols.append(f"({v} or 1)")  # a run event without an attempt is attempt 1, as in the check
            else:
                cols.append(typed if typed == v else f"(None if {v} is None else {typed})")
        body.append(f"    return (d, ts, e.source, e.id, e.subject, False, {', '.join(cols)})")
        self.lines += body + [""]
        return envelope


def _attr(name: str, where: str) -> str:
    """A field's Struct attribute as generated code reads it (a name that is not one is left to the checks)."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        raise Unsupported(f"{where}: not an attribute name")
    return name


def build(comp: Compiled) -> StructStage:
    """The struct stage for every type the generated checks cover (a type this module cannot express is left to
    them alone)."""
    b = _Builder()
    classes: dict[type, tuple[str, str]] = {}
    for i, (etype, plan) in enumerate(comp.plans.items()):
        if etype not in comp.checks:
            continue
        mark = len(b.lines)
        try:
            cls = b.type_row(plan, f"row_{i}", comp)
        except Unsupported:
            del b.lines[mark:]
            continue
        classes[cls] = (etype, f"row_{i}")
    source = "\n".join(b.lines)
    ns = dict(b.env)
    exec(compile(source, "<collector.contract.vectorized.structs>", "exec"), ns)  # noqa: S102 - our own code
    decoder = msgspec.json.Decoder(Union[tuple(classes)])
    return StructStage(decoder, {cls: (etype, ns[fn]) for cls, (etype, fn) in classes.items()}, source)


_stages: dict[int, tuple[Compiled, StructStage]] = {}
_lock = threading.Lock()


def struct_stage_of(comp: Compiled) -> StructStage:
    """The process-wide struct stage of a compiled contract (built once: ~10 ms)."""
    with _lock:
        got = _stages.get(id(comp))
        if got is None or got[0] is not comp:
            got = _stages[id(comp)] = (comp, build(comp))
        return got[1]
