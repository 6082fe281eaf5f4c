"""Errors raised on bad billing input: each names the file, the row and the column where possible."""
from __future__ import annotations


class CostInputError(ValueError):
    """Bad billing input (unreadable file, missing column, unparsable value...)."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 column: str | None = None, value: object = None):
        self.source, self.row, self.column, self.value = source, row, column, value
        where = []
        if source:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        prefix = (": ".join([", ".join(where)]) + ": ") if where else ""
        super().__init__(prefix + message)


class CostNotFound(CostInputError):
    """The question names something the store does not know (a team that appears nowhere): HTTP 404, not zeros."""
