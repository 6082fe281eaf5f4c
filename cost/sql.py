"""SQL building blocks shared by the normalisers, allocation and reports.

Everything here returns SQL text (DuckDB dialect, kept portable where it costs nothing) and does no I/O.
"""
from __future__ import annotations

import re

from collector.storage.sqltext import lit
from cost.schema import MONEY

MONEY_T = MONEY


def nz(expr: str) -> str:
    """Text value with blanks and the literal string NULL turned into SQL NULL."""
    return f"NULLIF(NULLIF(trim(CAST({expr} AS VARCHAR)), ''), 'NULL')"


def money(expr: str) -> str:
    """Exact decimal from text, a decimal or a double (through its shortest round-trip text, so 0.1 stays 0.1)."""
    return f"CAST({nz(expr)} AS {MONEY})"


def try_money(expr: str) -> str:
    return f"TRY_CAST({nz(expr)} AS {MONEY})"


NUMERIC = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER")


def is_text(typ: str | None) -> bool:
    return typ is None or typ.upper().startswith(("VARCHAR", "JSON"))


def text_t(expr: str, typ: str | None) -> str:
    """Type-aware ``nz``: text is NULL-ed when blank or 'NULL'; other types are only cast."""
    if is_text(typ):
        return f"NULLIF(NULLIF(trim({expr}), ''), 'NULL')"
    return f"CAST({expr} AS VARCHAR)"


def money_t(expr: str, typ: str | None) -> str:
    """Type-aware ``money``: text and decimals are exact; doubles are rounded to 12 decimals (a 1e-12 unit of
    currency) so that 0.1 stays 0.1 and no binary noise enters the sums."""
    t = (typ or "VARCHAR").upper()
    if t.startswith("DECIMAL"):
        return f"CAST({expr} AS {MONEY})"
    if t in NUMERIC:
        return f"CAST(CAST({expr} AS DECIMAL(38,12)) AS {MONEY})"
    return f"CAST({text_t(expr, typ)} AS {MONEY})"


def ts_t(expr: str, typ: str | None) -> str:
    t = (typ or "VARCHAR").upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({expr} AS TIMESTAMPTZ)"
    return f"CAST({text_t(expr, typ)} AS TIMESTAMPTZ)"


def ts(expr: str) -> str:
    """UTC timestamp from ISO text with or without T/Z/offset, or from a (naive = UTC) timestamp."""
    return f"CAST({nz(expr)} AS TIMESTAMPTZ)"


def try_ts(expr: str) -> str:
    return f"TRY_CAST({nz(expr)} AS TIMESTAMPTZ)"


def case_map(expr: str, mapping: dict[str, str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in mapping.items())
    return f"(CASE {expr} {whens} ELSE {default} END)"


def norm_key_sql(expr: str) -> str:
    """Normalised tag key: lower case, runs of non-alphanumerics become one underscore."""
    return f"trim(regexp_replace(lower({expr}), '[^a-z0-9]+', '_', 'g'), '_')"


def norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def tag_lookup(map_expr: str, aliases: tuple[str, ...] | list[str]) -> str:
    """First non-empty value of a tag whose normalised key is one of ``aliases`` (a MAP(VARCHAR, VARCHAR))."""
    keys = ", ".join(lit(norm_key(a)) for a in aliases)
    entries = f"map_entries({map_expr})"
    flt = (f"list_filter({entries}, lambda e: {norm_key_sql('e.key')} IN ({keys}) "
           f"AND NULLIF(trim(e.value), '') IS NOT NULL)")
    # order by the alias priority, then keep the first
    prio = f"list_position([{keys}], {norm_key_sql('e.key')})"
    return f"trim(struct_extract(list_sort(list_transform({flt}, lambda e: {{'p': {prio}, 'v': e.value}}))[1], 'v'))"


def dedup_entries(entries_expr: str) -> str:
    """Keep the first entry per key of a LIST(STRUCT(key, value)) (map_from_entries refuses duplicates)."""
    return (f"list_filter({entries_expr}, lambda e, i: "
            f"list_position(list_transform({entries_expr}, lambda x: x.key), e.key) = i)")


def entries_to_map(entries_expr: str) -> str:
    """MAP from LIST(STRUCT(key, value)) dropping empty keys/values and duplicate keys; NULL when empty."""
    cleaned = (f"list_filter({entries_expr}, lambda e: NULLIF(trim(e.key), '') IS NOT NULL "
               f"AND e.value IS NOT NULL)")
    return f"map_from_entries({dedup_entries(cleaned)})"


def tags_json(map_expr: str) -> str:
    return f"CASE WHEN cardinality({map_expr}) > 0 THEN CAST(to_json({map_expr}) AS JSON) END"
