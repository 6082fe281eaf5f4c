"""Group `sloth-slo-sli-recordings-<id>`: the error ratio of one SLO over every alert window, evaluated at the
global interval (the alerts read these).

Event SLIs also record their error and total event rates over the shortest window (the period ratio sums them,
slo/rules/meta_recordings.py) and, when pages need evidence, the error event rate over each page tier's long window
(rate x window = bad events in it; slo/rules/slo_alerts.py).
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import ResolvedSLO
from slo.rules.expr import error_events, error_ratio, sorted_labels, total_events
from slo.spec import format_duration


def rule(s: ResolvedSLO, record: str, window: str, expr: str) -> dict[str, Any]:
    """A recording rule of the SLO over `window` (labels: the SLO's plus sloth_window)."""
    return {"record": record, "expr": expr, "labels": sorted_labels({**s.labels, C.SLOTH_WINDOW: window})}


def evidence_windows(s: ResolvedSLO) -> list[str]:
    """The long windows of the enabled page tiers, when the SLO's pages need evidence."""
    if not s.min_bad_events:
        return []
    return [format_duration(ms) for ms in sorted({t.long_ms for t in s.enabled_tiers("page")})]


def group(s: ResolvedSLO) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    if s.events:
        base = s.base_window
        rules.append(rule(s, C.sli_error_events(base), base, error_events(s, base) + "\n"))
        rules.append(rule(s, C.sli_total_events(base), base, f"({total_events(s, base)})\n"))
        for w in evidence_windows(s):
            if w != base:
                rules.append(rule(s, C.sli_error_events(w), w, error_events(s, w) + "\n"))
    for w in s.windows:
        rules.append(rule(s, C.sli_error_ratio(w), w, error_ratio(s, w)))
    return {"name": C.SLI_RECORDINGS_GROUP + s.sloth_id, "rules": rules}
