"""The read API's query building: a WHERE clause whose values are always bound parameters, opaque keyset cursors
and the generic `Page[T]` every list endpoint answers with.

Column names and SQL fragments come from the route's code, never from a request; request values only ever
reach DuckDB as `?` parameters (tests/api/test_where.py holds the input -> SQL and parameters table).
"""

from __future__ import annotations

import base64
from typing import Any, Generic, Sequence, TypeVar

import orjson
from pydantic import BaseModel, Field

from collector.api.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint; pass `next_after` back as `after` for the next one."""

    items: list[T]
    next_after: str | None = Field(None, description="Cursor for the next page (`after`); null on the last page")


class Where:
    """AND-ed conditions with their bound parameters, in order."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, *params: Any) -> "Where":
        """`clause` is code (with one `?` per parameter), never request text."""
        if clause.count("?") != len(params):
            raise ValueError(f"{clause!r} has {clause.count('?')} placeholders for {len(params)} parameters")
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def eq(self, col: str, value: Any) -> "Where":
        """`col = ?` when a value is given (None adds nothing)."""
        return self if value is None else self.add(f"{col} = ?", value)

    def any_of(self, col: str, values: Sequence[Any]) -> "Where":
        """`col IN (?, ...)` when values are given (an empty list adds nothing)."""
        if values:
            self.add(f"{col} IN ({', '.join('?' * len(values))})", *values)
        return self

    def after(self, cols: Sequence[str], values: Sequence[Any], *, descending: bool = True) -> "Where":
        """Keyset paging: the rows strictly after the cursor's position in `ORDER BY cols` (DESC by default)."""
        op = "<" if descending else ">"
        marks = ", ".join("?" * len(values))
        return self.add(f"({', '.join(cols)}) {op} ({marks})", *values)

    def sql(self) -> str:
        """` WHERE a AND b`, or the empty string."""
        return (" WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


def encode_cursor(*parts: Any) -> str:
    """An opaque cursor for a row's sort key."""
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def decode_cursor(after: str | None, types: Sequence[type]) -> list[Any] | None:
    """The sort key a cursor holds; a cursor of another shape (or tampered with) is a 400 naming `after`."""
    if not after:
        return None
    if len(after) > 16_384 or not after.isascii():
        raise BadRequest("`after`: not a cursor returned by this endpoint", 422)
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        parts = None
    if (not isinstance(parts, list) or len(parts) != len(types)
            or not all(_fits(p, t) for p, t in zip(parts, types))):
        raise BadRequest("`after`: not a cursor returned by this endpoint", 422)
    return parts


def _fits(value: Any, t: type) -> bool:
    """A cursor part of the right type and within what the bound parameter's column holds."""
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
    if t is str:
        return isinstance(value, str) and len(value) <= 4096 and "\x00" not in value
    return isinstance(value, t)


def page(rows: list[dict], limit: int, cursor_of) -> tuple[list[dict], str | None]:
    """Rows were fetched with LIMIT limit + 1: keep `limit`, and a cursor when there is more."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (cursor_of(rows[-1]) if more and rows else None)
