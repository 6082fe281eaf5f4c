"""The one place SQL text is made from values: literals, identifiers and timestamps.

Values that come from a request are never formatted into SQL: routes and engines bind them as parameters
(`?` or `$name`). What is left for this module is text the code itself owns: column and table names, constants
of the product (event types, tag keys from configuration), and timestamps the engine computed, inlined where a
constant lets DuckDB prune row groups by their min/max (slo/sli/engine.py says where).
"""

from __future__ import annotations

from datetime import datetime, timezone


def lit(value: str | None) -> str:
    """A SQL string literal (or NULL): single quotes doubled."""
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted identifier: double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def ts_lit(dt: datetime) -> str:
    """A TIMESTAMPTZ literal in UTC from an aware datetime the code computed (never from request text)."""
    if dt.tzinfo is None:
        raise ValueError("ts_lit needs an aware datetime")
    return f"TIMESTAMPTZ '{dt.astimezone(timezone.utc).isoformat()}'"
