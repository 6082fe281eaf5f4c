"""Group `sloth-slo-meta-recordings-<id>`: objective, budget, period, burn rates, budget remaining, info.

Burn rates fall back to 0 (full budget) for a group whose counters exist but had no traffic, instead of having no
sample: an idle team's budget panel shows 100%, not "No data".
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import GENERATOR_VERSION, ResolvedSLO, gofloat
from slo.rules.expr import sorted_labels

_IDS = f"{C.SLOTH_ID}, {C.SLOTH_SLO}, {C.SLOTH_SERVICE}"


def _idle_fallback(s: ResolvedSLO, window: str) -> str:
    """0 burn for a group whose counters exist but had no traffic (instead of no sample)."""
    if s.slo.sli.events is None:
        return ""
    return (
        f"or on({s.group_on})\n"
        f"label_replace(max without ({C.SLOTH_WINDOW}) ({C.sli_total_events(s.base_window)}{s.selector}) * 0, "
        f'"{C.SLOTH_WINDOW}", "{window}", "", "")\n'
    )


def _burn_rate(s: ResolvedSLO, window: str) -> str:
    return (f"{C.sli_error_ratio(window)}{s.selector}\n"
            f"/ on({_IDS}) group_left\n"
            f"{C.ERROR_BUDGET_RATIO}{s.selector}\n" + _idle_fallback(s, window))


def group(s: ResolvedSLO, dialect: str) -> dict[str, Any]:
    meta = sorted_labels(s.labels)
    objective = gofloat(s.objective_ratio)
    rules = [
        {"record": C.OBJECTIVE_RATIO, "expr": f"vector({objective})", "labels": meta},
        {"record": C.ERROR_BUDGET_RATIO, "expr": f"vector(1-{objective})", "labels": meta},
        {"record": C.TIME_PERIOD_DAYS, "expr": f"vector({gofloat(s.period_ms / 86_400_000)})", "labels": meta},
        {"record": C.CURRENT_BURN_RATE, "expr": _burn_rate(s, s.page_quick_short), "labels": meta},
        {"record": C.PERIOD_BURN_RATE, "expr": _burn_rate(s, s.period), "labels": meta},
        {"record": C.PERIOD_ERROR_BUDGET_REMAINING, "expr": f"1 - {C.PERIOD_BURN_RATE}{s.selector}",
         "labels": meta},
        {"record": C.SLO_INFO, "expr": "vector(1)", "labels": sorted_labels({
            **s.labels,
            C.SLOTH_MODE: "cli-gen-prom",
            C.SLOTH_OBJECTIVE: gofloat(s.slo.objective),
            C.SLOTH_SPEC: dialect,
            C.SLOTH_VERSION: GENERATOR_VERSION,
        })},
    ]
    return {"name": C.META_RECORDINGS_GROUP + s.sloth_id, "rules": rules}
