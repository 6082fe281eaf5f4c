"""The collector's own functions timed from inside its process, for the benches that run it through themselves.

`bench/http_cycle.py` (HTTP) and `bench/bulk_timeline.py` (the bulk command) start the real CLI through their own
file with `--collector` before its arguments: in that process (`collector_process`) `StageLog` wraps the functions a
bench names, each call appending one line to a file when it ends (its kind, when it began and ended on
`time.perf_counter`, which is one clock for every process on the machine, and the CPU time of its thread), and then
the CLI runs. The bench
reads the file back with `read`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

MARKER = "--collector"  # in a bench's argv: what follows is the collector CLI's


class StageLog:
    """Appends one line per wrapped call to `path` (line-buffered, from any thread)."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._out = open(path, "a", buffering=1)  # noqa: SIM115 - for the life of the process

    def write(self, *fields: object) -> None:
        with self._lock:
            self._out.write(" ".join(str(f) for f in fields) + "\n")

    def timed(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, logging `kind start end cpu` when each call ends (returning or raising)."""
        def wrapper(*a: Any, **k: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                self.write(kind, f"{t0:.6f}", f"{time.perf_counter():.6f}", f"{time.thread_time() - c0:.6f}")
        return wrapper


def collector_process(log_env: str, install: Callable[[str], None]) -> bool:
    """In the process a bench started through its own file (MARKER in argv): `install` the bench's wrappers when the
    environment variable `log_env` names a log file, run the collector's CLI with the arguments after MARKER, and
    return True. Elsewhere (the bench itself) return False."""
    if MARKER not in sys.argv:
        return False
    if os.environ.get(log_env):
        install(os.environ[log_env])
    from collector.cli import app

    sys.argv = [sys.argv[0], *sys.argv[sys.argv.index(MARKER) + 1:]]
    app()
    return True


def read(path: Path) -> dict[str, list[tuple[float, ...]]]:
    """The log's lines by kind, each as its numbers, sorted (by start time)."""
    rows: dict[str, list[tuple[float, ...]]] = {}
    for line in path.read_text().splitlines():
        kind, *values = line.split()
        rows.setdefault(kind, []).append(tuple(float(v) for v in values))
    for v in rows.values():
        v.sort()
    return rows
