"""The DuckDB half of the fast path: one statement, generated from the plans, that parses each JSON line and
computes what needs a JSON engine.

Every value is handled as its JSON text as DuckDB re-serialises it (compact, escapes normalised, numbers
re-printed). The statement parses the envelope and every data field any type declares once (`json_transform`
into a struct of JSON), and computes key counts (extras, duplicates, explicit nulls), floats and date-times in
their stored rendering, nested free-form values, lists of cells, and the distinct-value validator look-ups.
The per-field checks of plain kinds are left to polars (checks.py).
"""

from __future__ import annotations

import re

import orjson

from collector.contract.vectorized.plan import FieldPlan, Kind, TypePlan, Unsupported, null_ok
from collector.contract.validation import COMMON_COLUMNS
from collector.storage.sqltext import lit


def jtext(s: str) -> str:
    """A string as its JSON text (how the statement compares and emits values)."""
    return orjson.dumps(s).decode()


INT_RE = "0|-?[1-9][0-9]{0,17}"
# RFC 3339 with an explicit offset and a year in 1971-2198 (inside the contract's time bounds whatever the offset,
# see plan.DT_FAST_LOW/HIGH); pydantic accepts more, those rows take the exact path.
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
        return [f"{v} IN ({', '.join(lit(jtext(x)) for x in kind.values)})"]
    if t == "int":
        return [f"regexp_full_match({v}, '{INT_RE}')"] + _bounds_sql(f"TRY_CAST({v} AS BIGINT)", kind.bounds)
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
    # An upper bound is expressed by admitting fewer digits: every value the pattern admits lies below it; the
    # few between 10**digits and the bound take the exact path.
    upper = [b for op, b in bounds.items() if op in ("le", "lt")]
    bounds = {op: b for op, b in bounds.items() if op not in ("le", "lt")}
    if t == "int":
        if set(bounds) - {"ge", "gt"} or any(b not in (0, 1) for b in bounds.values()):
            raise Unsupported("int bounds other than >= 0 / >= 1 inside a list")
        d = min([18] + [len(str(int(b))) - 1 for b in upper]) - 1
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
        d = min([15] + [len(str(int(b))) - 1 for b in upper]) - 1
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
        return "(?:" + "|".join(re.escape(jtext(x)) for x in kind.values) + ")"
    if t == "bool":
        return "(?:true|false)"
    if t == "str":
        lo, hi = kind.min_length or 0, kind.max_length
        return '"[^"\\\\\\x00-\\x1f]{' + f"{lo},{'' if hi is None else hi}" + '}"'
    if t == "model":
        if any(not f.required or f.nullable for f in kind.fields):
            raise Unsupported("optional or nullable fields in list items")
        return r"\{" + ",".join(re.escape(jtext(f.name)) + ":" + _canon_re(f.kind) for f in kind.fields) + r"\}"
    raise Unsupported(f"{t} inside a list")


class SqlPlan:
    """The statement (`sql`, one parameter `$limit`: the latest event time accepted fast) and the column layout
    the polars checks read: `names`/`pos` (data field -> column d<i>), the distinct field checks (`sig_fields`,
    `sig_of`), and the validator slots (temp tables of accepted distinct values, filled per chunk)."""

    def __init__(self, plans: list[TypePlan]) -> None:
        self.validator_slots: list[tuple[str, list[str], FieldPlan]] = []  # (table, types, field)
        self._compile(plans)

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
        type_texts = [jtext(p.type) for p in plans]

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
            f"WHEN {lit(jtext(p.type))} THEN {' + '.join(f'(d{pos[f.name]} IS NOT NULL)::INT' for f in p.data) or '0'}"
            for p in plans)
        declared = " ".join(
            f"WHEN {lit(jtext(p.type))} THEN [{', '.join(lit(f.name) for f in p.data)}]::VARCHAR[]" for p in plans)
        no_null = " ".join(
            f"WHEN {lit(jtext(p.type))} THEN [{', '.join(lit(f.name) for f in p.data if not null_ok(f))}]"
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
    WHERE j."type"::VARCHAR IN ({", ".join(lit(t) for t in type_texts)}) AND n_data >= 1
  ) y
) x
"""
        self.extra_cols = extra_cols

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
        checks = [f"regexp_full_match({v}, {lit(chr(92) + '[' + body + chr(92) + ']')})"]
        if item.tag == "model":  # items are objects whose strings cannot hold '{"': count the objects
            count = f"(strlen({v}) - strlen(replace({v}, '{{\"', ''))) // 2"
        else:
            count = f"len(json_extract({v}, '$[*]'))"
        if kind.min_length and kind.min_length > 1:
            checks.append(f"{count} >= {kind.min_length}")
        if kind.max_length is not None:
            checks.append(f"{count} <= {kind.max_length}")
        return _all(checks), v
