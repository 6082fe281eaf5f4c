"""The one place SQL text is made from values: literals, identifiers and timestamps.

Values that come from a request are never formatted into SQL: routes and engines bind them as parameters
(`?` or `$name`; `Params` collects the named ones while an engine builds its text). What is left for the literal
helpers is text the code itself owns: column and table names, constants of the product (event types, tag keys from
configuration), and timestamps a caller computed, inlined where a constant matters. DuckDB folds bound parameter
values into table filters before it scans, so a bound timestamp prunes row groups by their min/max as well as an
inlined one does; the SLI engine (slo/sli/) therefore binds everything.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


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


class Params(dict[str, Any]):
    """DuckDB named parameters collected while SQL text is built: `p(value)` binds a value and returns its `$name`.

    The same value gets the same name (a window bound used by ten FILTER clauses is one parameter); `p(value, "x")`
    names it. Pass the object itself as the parameters of `execute`.
    """

    def __init__(self, **named: Any) -> None:
        super().__init__()
        self._names: dict[tuple[type, Any], str] = {}
        for k, v in named.items():
            self(v, k)

    def __call__(self, value: Any, name: str | None = None) -> str:
        key = (type(value), value) if value is None or isinstance(value, (str, int, float, datetime)) else None
        if name is None:
            if key is not None and key in self._names:
                return "$" + self._names[key]
            name = f"p{len(self)}"
        elif name in self and self[name] != value:
            raise ValueError(f"parameter ${name} bound twice with different values")
        self[name] = value
        if key is not None:
            self._names.setdefault(key, name)
        return "$" + name
