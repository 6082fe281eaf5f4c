"""Group `sloth-slo-sli-recordings-<id>`: the error ratio of one SLO over every alert window and over its period.

For event SLIs the period ratio is traffic weighted: the sum over the period of the recorded error-event rate over
the sum of the recorded total-event rate (a ratio of sums), not Sloth's unweighted mean of 5m ratios, so an idle
night neither dilutes nor freezes a bad afternoon.
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import ResolvedSLO
from slo.rules.expr import error_events, error_ratio, fill, sorted_labels


def _rule(s: ResolvedSLO, record: str, window: str, expr: str) -> dict[str, Any]:
    return {"record": record, "expr": expr, "labels": sorted_labels({**s.labels, C.SLOTH_WINDOW: window})}


def _period_ratio(s: ResolvedSLO) -> str:
    if s.slo.sli.events is None:  # a raw ratio cannot be weighted: evaluate the user's ratio over the whole period
        return error_ratio(s, s.period)
    base, sel, period = s.base_window, s.selector, s.period
    return (
        f"sum_over_time({C.sli_error_events(base)}{sel}[{period}])\n"
        f"/ ignoring ({C.SLOTH_WINDOW})\n"
        f"(sum_over_time({C.sli_total_events(base)}{sel}[{period}]) > 0)\n"
    )


def group(s: ResolvedSLO) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    events = s.slo.sli.events
    if events is not None:
        base = s.base_window
        rules.append(_rule(s, C.sli_error_events(base), base, error_events(s, base) + "\n"))
        rules.append(_rule(s, C.sli_total_events(base), base, f"({fill(events.total_query, base)})\n"))
    for w in s.windows:
        rules.append(_rule(s, C.sli_error_ratio(w), w, error_ratio(s, w)))
    rules.append(_rule(s, C.sli_error_ratio(s.period), s.period, _period_ratio(s)))
    return {"name": C.SLI_RECORDINGS_GROUP + s.sloth_id, "rules": rules}
