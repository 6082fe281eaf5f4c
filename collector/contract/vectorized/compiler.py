"""The compiled fast path: plans, statement and polars stages, built once per process from the models."""

from __future__ import annotations

import threading

from collector.contract.vectorized.checks import Checks
from collector.contract.vectorized.plan import compile_contract
from collector.contract.vectorized.sql import SqlPlan


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
        self.query: SqlPlan | None = None
        self.checks: Checks | None = None
        if self.supported:
            self.query = SqlPlan(self.supported)
            self.checks = Checks(self.supported, self.query)


_compiler: BulkCompiler | None = None
_compiler_lock = threading.Lock()


def compiler() -> BulkCompiler:
    """The process-wide compiled fast path (compiling it takes a moment; it never changes)."""
    global _compiler
    with _compiler_lock:
        if _compiler is None:
            _compiler = BulkCompiler()
        return _compiler
