"""PromQL text shared by the SLO rule groups: the user's queries with their window filled in, the error events and
the error ratio, written so that zero traffic gives no sample (never NaN) and "no errors yet" gives 0.
"""

from __future__ import annotations

import re

from slo.model import ResolvedSLO

_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")


def fill(query: str, window: str) -> str:
    """The spec's query with `{{.window}}` replaced."""
    return _WINDOW.sub(window, query.strip())


def indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


def sorted_labels(d: dict[str, str]) -> dict[str, str]:
    """Labels in name order (Sloth's output order; the golden files depend on it)."""
    return {k: d[k] for k in sorted(d)}


def total_events(s: ResolvedSLO, window: str) -> str:
    """Events per second over `window` (the SLI's total query)."""
    assert s.queries.total is not None
    return fill(s.queries.total, window)


def error_events(s: ResolvedSLO, window: str) -> str:
    """Error events per second over `window`; a missing error series counts as 0 errors (`or total * 0`)."""
    q = s.queries
    total = total_events(s, window)
    if q.error is not None:
        return f"({fill(q.error, window)})\nor\n(({total}) * 0)"
    good = fill(q.good or "", window)
    return f"clamp_min(\n  ({total})\n  -\n  (({good}) or (({total}) * 0)),\n  0\n)"


def error_ratio(s: ResolvedSLO, window: str) -> str:
    """The SLI's error ratio over `window`, divided by `(total > 0)` so an idle window has no sample."""
    if s.queries.raw_error_ratio is not None:
        return f"({fill(s.queries.raw_error_ratio, window)})\n"
    total = total_events(s, window)
    return f"(\n{indent(error_events(s, window), 2)}\n)\n/\n(({total}) > 0)\n"
