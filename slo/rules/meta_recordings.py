"""Group `sloth-slo-meta-recordings-<id>`, evaluated every 5 minutes: the period error ratio, objective, budget,
period, burn rates, budget remaining and the info series.

The period ratio reads a whole period of 5m-rate samples (172,800 per series over 30 days at a 15 s interval), so
it and everything derived from it is evaluated at `META_INTERVAL`, not at the global interval: budgets move slowly
and no alert reads them. For event SLIs the period ratio is traffic weighted: the sum over the period of the recorded
error-event rate over the sum of the recorded total-event rate (a ratio of sums), not Sloth's unweighted mean of 5m
ratios, so an idle night neither dilutes nor freezes a bad afternoon.

Burn rates fall back to 0 (full budget) for a group whose counters exist but had no traffic, instead of having no
sample: an idle team's budget panel shows 100%, not "No data".
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import GENERATOR_VERSION, META_INTERVAL, ResolvedSLO, gofloat
from slo.rules.expr import error_ratio, sorted_labels
from slo.rules.sli_recordings import rule

_IDS = f"{C.SLOTH_ID}, {C.SLOTH_SLO}, {C.SLOTH_SERVICE}"


def _period_ratio(s: ResolvedSLO) -> str:
    if not s.events:  # a raw ratio cannot be weighted: evaluate the user's ratio over the whole period
        return error_ratio(s, s.period)
    base, sel, period = s.base_window, s.selector, s.period
    return (
        f"sum_over_time({C.sli_error_events(base)}{sel}[{period}])\n"
        f"/ ignoring ({C.SLOTH_WINDOW})\n"
        f"(sum_over_time({C.sli_total_events(base)}{sel}[{period}]) > 0)\n"
    )


def _idle_fallback(s: ResolvedSLO, window: str) -> str:
    """0 burn for a group whose counters exist but had no traffic (instead of no sample)."""
    if not s.events:
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
        rule(s, C.sli_error_ratio(s.period), s.period, _period_ratio(s)),
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
    return {"name": C.META_RECORDINGS_GROUP + s.sloth_id, "interval": META_INTERVAL, "rules": rules}
