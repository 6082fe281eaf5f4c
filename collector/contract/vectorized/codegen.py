"""The fast path, generated from the plans: one straight-line Python function per event type.

For each type, `check` takes the item exactly as orjson parsed it (the very object the exact path hands to
pydantic) and either returns the stored `data` object and the envelope columns, or None ("not sure": the row
takes the exact path). It never rejects. Because both paths read the same parsed object, there is no question of
JSON text forms (escapes, number renderings, duplicate keys): the fast path only has to mirror what pydantic does
with Python values, and only for the forms it accepts:

* strings, literals, strict ints and bools by class and bounds; floats from a float or an int within 2**53 (stored
  as a float, as pydantic does); date-times only in RFC 3339 with an offset (rendered as pydantic renders them);
  lists of cells only as exact objects; field validators (cron, time zone) through a small cache of their verdicts;
* the stored `data` is what `model_dump(mode="json", exclude_none=True)` gives: declared fields in model order,
  then extra keys in input order, top-level None dropped, nested values as they are.

The typed columns (the common columns of `events` and the `DERIVE_FIELDS` the derived tables need, declared
fields only) come out of `check` itself, in the same tuple, computed where each value is at hand (a second pass
over the stored data cost as much as the checks); `row` computes the same values from a stored `data` object, for
the rows of the exact path.

Generated code rather than closures: a type's checks run as one function body with locals, several times
faster than interpreting the plans per event; the source is kept on `Compiled.source` for reading.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
import pyarrow as pa

from collector.contract.validation import COMMON_COLUMNS, shape_problem
from collector.contract.vectorized.plan import FieldPlan, Kind, TypePlan, Unsupported, call_ok, compile_contract, \
    null_ok
from collector.storage.schema import DERIVE_FIELDS

# RFC 3339 with an explicit offset and a year in 1971-2198, inside the contract's time bounds whatever the offset
# (plan.DT_FAST_LOW/HIGH); pydantic accepts more, those values take the exact path (which applies the bounds).
DATETIME_RE = re.compile(
    r"(?:197[1-9]|19[89][0-9]|20[0-9]{2}|21[0-8][0-9]|219[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:"
    r"[0-5][0-9](?:\.([0-9]{1,6}))?(Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9])")
MAX_SAFE_INT = 2**53  # ints a float field stores exactly
MAX_FLOAT = 1.7976931348623157e308
INT32 = 2**31
INT64 = 2**63
_OPS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
MISSING = object()


def parse_datetime(text: str) -> tuple[str, datetime] | None:
    """A canonical RFC 3339 date-time -> (pydantic's JSON rendering, the aware value), else None."""
    m = DATETIME_RE.fullmatch(text)
    if m is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # e.g. February 30th
        return None
    frac, zone = m.group(1), m.group(2)
    frac = (frac or "").ljust(6, "0")
    rendered = text[:19] + ("" if frac == "000000" else "." + frac) + \
        ("Z" if zone in ("Z", "+00:00", "-00:00") else zone)
    return rendered, value


class _Verdicts:
    """Field validators (croniter, ZoneInfo) are slow and see few distinct values: their verdicts are cached."""

    def __init__(self, fns: tuple[Callable[[Any], Any], ...], size: int = 4096) -> None:
        self.fns, self.size, self.cache = fns, size, {}
        self.lock = threading.Lock()

    def __call__(self, value: str) -> bool:
        ok = self.cache.get(value)
        if ok is None:
            ok = all(call_ok(fn, value) for fn in self.fns)
            with self.lock:
                if len(self.cache) >= self.size:
                    self.cache.clear()
                self.cache[value] = ok
        return ok


@dataclass
class Compiled:
    """Per type: `checks[t](item)` -> (data, time text, source, id, subject, has extra keys, *the typed
    values of `columns`) | None (supported types only; the typed values are those `rows[t]` gives for the stored
    data, None for columns the type does not declare, time-stamps as RFC 3339 text), and `rows[t](data)` -> the
    typed values of `row_columns[t]`, the typed columns the type declares (the exact path's rows); `extra_values`
    gives the others from extra keys. `unsupported` names the types whose items always take the exact path."""

    checks: dict[str, Callable[[dict], tuple | None]]
    rows: dict[str, Callable[[dict], tuple]]
    row_columns: dict[str, tuple[str, ...]]
    columns: tuple[str, ...]
    types: dict[str, pa.DataType]
    unsupported: dict[str, str]
    source: str = ""
    plans: dict[str, TypePlan] = field(default_factory=dict)
    # The data keys whose values may hold a number the contract does not bound (free-form values: dicts, any).
    # Every other number of a fast path's row is a declared field's, a float within +-2**53 or an int, which
    # msgspec and orjson write alike (validator.json_texts).
    free_keys: tuple[str, ...] = ()

    def extra_values(self, etype: str, data: dict) -> dict[str, Any]:
        """Typed columns fed by extra keys of `data` (a key the type does not declare, e.g. `exit_code` on a
        restart): taken when the value already has the column's type, else left null."""
        mine = self.row_columns[etype]
        out = {}
        for c in self.columns:
            v = data.get(c)
            if v is None or c in mine or c in COMMON_COLUMNS:
                continue
            v = _lenient(v, self.types[c], c in JSON_COLUMNS)
            if v is not None:
                out[c] = v
        return out


JSON_COLUMNS = frozenset(f.name for f in DERIVE_FIELDS if f.metadata and f.metadata.get(b"json"))


def _lenient(v: Any, t: pa.DataType, as_json: bool) -> Any:
    if as_json:
        return orjson.dumps(v).decode()
    cls = v.__class__
    if pa.types.is_string(t):
        return v if cls is str else None
    if pa.types.is_floating(t):
        return float(v) if cls is float or (cls is int and -MAX_SAFE_INT <= v <= MAX_SAFE_INT) else None
    if pa.types.is_integer(t):
        return v if cls is int and -INT64 <= v < INT64 else None
    if pa.types.is_boolean(t):
        return v if cls is bool else None
    if pa.types.is_timestamp(t):
        parsed = parse_datetime(v) if cls is str else None
        return None if parsed is None else parsed[1]
    return None


class _Gen:
    """Builds the module source; `env` collects the constants and helpers the generated code refers to."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"M": MISSING, "_dt": parse_datetime, "_dumps": orjson.dumps,
                                    "_shape": shape_problem, "_fromiso": datetime.fromisoformat, "MAXF": MAX_FLOAT,
                                    "_UTC": timezone.utc}
        self.lines: list[str] = []
        self._names: dict[Any, str] = {}

    def const(self, value: Any, prefix: str = "K") -> str:
        key = (prefix, repr(value)) if not callable(value) else (prefix, id(value))
        if key not in self._names:
            name = f"_{prefix}{len(self._names)}"
            self._names[key] = name
            self.env[name] = value
        return self._names[key]

    # -- conditions on a present, non-None value `v` --------------------------------------------------------

    def cond(self, kind: Kind, v: str, where: str) -> str:
        t = kind.tag
        if t == "str":
            parts = [f"{v}.__class__ is str"]
            if kind.min_length:
                parts.append(f"len({v}) >= {kind.min_length}")
            if kind.max_length is not None:
                parts.append(f"len({v}) <= {kind.max_length}")
            return " and ".join(parts)
        if t == "literal":
            return f"{v}.__class__ is str and {v} in {self.const(frozenset(kind.values))}"
        if t == "int":
            return " and ".join([f"{v}.__class__ is int"] + [f"{v} {_OPS[op]} {b!r}" for op, b in kind.bounds])
        if t == "float":
            return " and ".join(
                [f"(({v}.__class__ is float and -MAXF <= {v} <= MAXF) or "
                 f"({v}.__class__ is int and -{MAX_SAFE_INT} <= {v} <= {MAX_SAFE_INT}))"]
                + [f"{v} {_OPS[op]} {float(b)!r}" for op, b in kind.bounds])
        if t == "bool":
            return f"{v}.__class__ is bool"
        if t == "dict":
            return f"{v}.__class__ is dict"
        if t == "any":
            return "True"
        raise Unsupported(f"{where}: {t} as a plain condition")

    def item_fn(self, kind: Kind, where: str) -> str:
        """A helper that returns a list item as pydantic dumps it, or None: exact objects of a nested model."""
        if kind.tag != "model":
            raise Unsupported(f"{where}: list of {kind.tag}")
        fields = kind.fields
        if any(not f.required or f.nullable or f.validators for f in fields):
            raise Unsupported(f"{where}: optional, nullable or validated fields in list items")
        name = self.const(None, "I")
        body = [f"def {name}(c):", f"    if c.__class__ is not dict or len(c) != {len(fields)}: return None"]
        outs = []
        for j, f in enumerate(fields):
            if f.kind.tag in ("list", "model", "datetime"):
                raise Unsupported(f"{where}.{f.name}: {f.kind.tag} inside list items")
            body.append(f"    x{j} = c.get({f.name!r}, M)")
            body.append(f"    if x{j} is M or not ({self.cond(f.kind, f'x{j}', where)}): return None")
            outs.append(f"{f.name!r}: {'float(x%d)' % j if f.kind.tag == 'float' else 'x%d' % j}")
        body.append(f"    return {{{', '.join(outs)}}}")
        self.lines += body + [""]
        return name

    # -- one field: statements that check it, convert it and store it in `out` ------------------------------

    def field(self, f: FieldPlan, where: str, store: str | None, count: bool = False,
              column: tuple[str, str] | None = None) -> list[str]:
        """Statements for field `f` read from the dict `src`: checked, converted (floats, date-times, cells) and
        stored in `out[name]` (store='out') or in the local `store`; `count` counts present keys in `n`.
        `column` (local, expression of `v`): the typed column value is also set, as `row` would compute it from
        the stored value (computed here once, where the value is at hand, rather than looked up again)."""
        k, name = f.kind, f.name
        st = [f"v = src.get({name!r}, M)", "if v is M:", "    return None" if f.required else "    pass", "else:"]
        if count:
            st.append("    n += 1")
        st += ["    if v is None:", "        pass" if null_ok(f) else "        return None", "    else:"]
        body: list[str] = []
        if k.tag == "datetime":
            body += ["r = _dt(v) if v.__class__ is str else None", "if r is None: return None", "v = r[0]"]
        elif k.tag == "event_time":  # text: its form, date and future limit are checked column-wise for the whole
            body += ["if v.__class__ is not str: return None"]  # batch (validator.event_times)
        elif k.tag == "list":
            assert k.item is not None
            fn = self.item_fn(k.item, where)
            lo, hi = k.min_length or 0, k.max_length
            bound = f"{lo} <= len(v)" + (f" <= {hi}" if hi is not None else "")
            body += [f"if v.__class__ is not list or not ({bound}): return None",
                     f"v = [{fn}(c) for c in v]", "if None in v: return None"]
        else:
            body.append(f"if not ({self.cond(k, 'v', where)}): return None")
            if k.tag == "float":
                body.append("v = float(v)")
            elif k.tag in ("dict", "any"):  # free-form: what JSON storage cannot hold takes the exact path
                body.append(f"if _shape(v, {3 if store == 'out' else 2}) is not None: return None")
        if f.validators:
            if k.tag not in ("str", "literal"):
                raise Unsupported(f"{where}: validator on a {k.tag} field")
            body.append(f"if not {self.const(_Verdicts(f.validators), 'V')}(v): return None")
        if store == "out":
            body.append(f"out[{name!r}] = v")
            if column is not None:
                body.append(f"{column[0]} = {column[1]}")
        elif store:
            body.append(f"{store} = v")
        return st + ["        " + b for b in body]

    # -- one type -------------------------------------------------------------------------------------------

    _ENVELOPE_LOCALS = {"id": "eid", "source": "esrc", "subject": "esubj", "time": "ts"}

    def check(self, p: TypePlan, fn: str, columns: tuple[str, ...], types: dict[str, pa.DataType]) -> None:
        envelope = self.const(frozenset([f.name for f in p.envelope] + ["data"]), "E")
        cols = {f.name: (f"c{j}", _typed(f, types[f.name], "v", timestamps_as_text=True)) for j, f in enumerate(p.data)
                if f.name in columns}
        body = [f"def {fn}(e):",
                # keys the envelope does not declare are not stored, but the exact path walks them (shape_problem)
                f"    if not {envelope}.issuperset(e) and _shape(e) is not None: return None",
                "    src = e", "    esubj = None"]
        for f in p.envelope:
            if f.name == "type":
                continue  # the dispatch on `type` matched it
            local = self._ENVELOPE_LOCALS.get(f.name)
            if local and local != "esubj" and not f.required:
                raise Unsupported(f"envelope field {f.name} is optional")
            body += ["    " + s for s in self.field(f, f.name, local)]
        body += ["    d = e.get('data')", "    if d.__class__ is not dict: return None", "    src = d",
                 "    out = {}", "    n = 0"]
        run = p.type.startswith("notebook.run.")
        body += [f"    {local} = {'1' if name == 'attempt' and run else 'None'}" for name, (local, _) in cols.items()]
        for f in p.data:
            body += ["    " + s for s in self.field(f, f"data.{f.name}", "out", count=True, column=cols.get(f.name))]
        declared = self.const(frozenset(f.name for f in p.data), "D")
        body += ["    if n != len(d):",
                 "        for key, v in d.items():",
                 f"            if v is not None and key not in {declared}:",
                 "                if _shape(v, 3) is not None: return None",
                 "                out[key] = v",
                 f"    return (out, ts, esrc, eid, esubj, n != len(d), "
                 f"{', '.join(cols[c][0] if c in cols else 'None' for c in columns)})"]
        self.lines += body + [""]

    def row(self, p: TypePlan, fn: str, columns: tuple[str, ...], types: dict[str, pa.DataType]) -> tuple[str, ...]:
        """`fn(data)` -> the typed values of the columns this type declares (returned, in `columns` order)."""
        declared = {f.name: f for f in p.data}
        mine = tuple(c for c in columns if c in declared)
        exprs = []
        for c in mine:
            f = declared[c]
            t = types[c]
            g = f"g({c!r})"
            typed = _typed(f, t, g, timestamps_as_text=False)
            exprs.append(g if typed == g else f"(None if {g} is None else {typed})")
            if c == "attempt" and p.type.startswith("notebook.run."):
                exprs[-1] = f"({g} or 1)"  # a run event without an attempt is attempt 1 (validation.to_row)
        self.lines += [f"def {fn}(data):", "    g = data.get", f"    return ({', '.join(exprs)}{',' if exprs else ''})",
                       ""]
        return mine


def _typed(f: FieldPlan, t: pa.DataType, v: str, *, timestamps_as_text: bool) -> str:
    """The expression giving a declared field's typed column value from its stored, non-null value `v`: one rule
    for the fast path's tuple and for `row` (the exact path's rows), so both give the writer the same columns.
    Time-stamps stay RFC 3339 text on the fast path (cast column-wise by the validator)."""
    if pa.types.is_timestamp(t):
        return v if timestamps_as_text else f"_fromiso({v})"
    if pa.types.is_int64(t):
        return f"({v} if -{INT64} <= {v} < {INT64} else None)"
    if pa.types.is_string(t) and f.kind.tag in ("dict", "list", "any"):
        return f"_dumps({v}).decode()"
    return v


_ARROW_OF = {"str": pa.string(), "literal": pa.string(), "float": pa.float64(), "int": pa.int64(),
             "bool": pa.bool_(), "datetime": pa.timestamp("us", tz="UTC"), "dict": pa.string(), "list": pa.string(),
             "any": pa.string()}


def _check_types(plans: list[TypePlan]) -> dict[str, pa.DataType]:
    """The Arrow type of every typed column, checked against each type's declared field kind."""
    types: dict[str, pa.DataType] = {c: (pa.int32() if c == "attempt" else pa.string()) for c in COMMON_COLUMNS}
    types.update({f.name: f.type for f in DERIVE_FIELDS})
    for p in plans:
        for f in p.data:
            if f.name in types and f.name != "attempt":
                want = _ARROW_OF.get(f.kind.tag)
                if want is None or want != types[f.name]:
                    raise TypeError(f"{p.type}: data.{f.name} is {f.kind.tag}; storage expects {types[f.name]}")
    return types


def compile_fast_path() -> Compiled:
    plans = compile_contract()
    columns = tuple(COMMON_COLUMNS) + tuple(DERIVE_FIELDS.names)
    types = _check_types([p for p in plans.values() if p.supported])
    gen = _Gen()
    checks: dict[str, str] = {}
    row_columns: dict[str, tuple[str, ...]] = {}
    unsupported = {t: p.reason or "" for t, p in plans.items() if not p.supported}
    for i, (t, p) in enumerate(plans.items()):
        if not p.data:
            raise Unsupported(f"{t}: no plan of its data fields ({p.reason})")  # the exact path needs row() too
        row_columns[t] = gen.row(p, f"row_{i}", columns, types)
        if not p.supported:
            continue
        mark = len(gen.lines)
        try:
            gen.check(p, f"check_{i}", columns, types)
        except Unsupported as exc:
            del gen.lines[mark:]
            unsupported[t] = str(exc)
            continue
        checks[t] = f"check_{i}"
    source = "\n".join(gen.lines)
    ns = dict(gen.env)
    exec(compile(source, "<collector.contract.vectorized.codegen>", "exec"), ns)  # noqa: S102 - our own code
    rows = {t: ns[f"row_{i}"] for i, t in enumerate(plans)}
    free = sorted({f.name for p in plans.values() for f in p.data if _unbounded(f.kind)})
    return Compiled({t: ns[c] for t, c in checks.items()}, rows, row_columns, columns, types, unsupported, source,
                    plans, tuple(free))


def _unbounded(kind: Kind) -> bool:
    """Whether a value of `kind` may hold a number the fast paths do not bound (they hold floats to +-2**53)."""
    if kind.tag in ("dict", "any"):
        return True
    if kind.tag == "list":
        return kind.item is None or _unbounded(kind.item)
    return kind.tag == "model" and any(_unbounded(f.kind) for f in kind.fields)


_compiled: Compiled | None = None
_lock = threading.Lock()


def compiled() -> Compiled:
    """The process-wide generated fast path (built once; the contract does not change while running)."""
    global _compiled
    with _lock:
        if _compiled is None:
            _compiled = compile_fast_path()
        return _compiled
