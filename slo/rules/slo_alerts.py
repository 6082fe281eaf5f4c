"""Group `sloth-slo-alerts-<id>`: one multi-window multi-burn-rate alert per severity (page, ticket).

A tier fires when the error ratio exceeds `factor x budget` over both its short and long window. In the Sloth
dialect the alert carries exactly Sloth's labels and annotations; the observatory dialect adds `severity` and
`category`, a summary, a description with the arithmetic, and the runbook URL.
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import ResolvedSLO, Tier, gofloat
from slo.rules.expr import sorted_labels
from slo.spec import SEVERITIES, format_duration


def _expr(s: ResolvedSLO, tiers: list[Tier]) -> str:
    blocks = []
    for t in tiers:
        thr = f"({gofloat(t.factor)} * {gofloat(s.budget)})"
        blocks.append(
            "(\n"
            f"    max({C.sli_error_ratio(t.short)}{s.selector} > {thr}) without ({C.SLOTH_WINDOW})\n"
            "    and\n"
            f"    max({C.sli_error_ratio(t.long)}{s.selector} > {thr}) without ({C.SLOTH_WINDOW})\n"
            ")"
        )
    return "\nor\n".join(blocks) + "\n"


def _human_duration(hours: float) -> str:
    return format_duration(max(1, round(hours * 60)) * 60_000)


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _observatory(s: ResolvedSLO, sev: str, tiers: list[Tier], labels: dict, annotations: dict) -> None:
    """Labels and annotations the observatory dialect adds (Alertmanager routes on severity and category)."""
    labels.update({C.SEVERITY: sev, C.CATEGORY: "slo"})
    annotations.setdefault(
        "summary",
        f"SLO {{{{$labels.{C.SLOTH_SLO}}}}}{{{{ with $labels.{C.TEAM} }}}} (team {{{{ . }}}}){{{{ end }}}} is "
        f"burning its error budget too fast ({sev}).",
    )
    conds = [f"above {gofloat(t.factor)}x the budget ({_pct(t.factor * s.budget)} errors) over both "
             f"{t.short} and {t.long}" for t in tiers]
    fastest = max(t.factor for t in tiers)
    description = s.slo.description.strip()
    annotations.setdefault(
        "description",
        (description + " " if description else "")
        + f"Objective {gofloat(s.slo.objective)}% over {s.period} (error budget {_pct(s.budget)}). "
        f"This {sev} fires when the error ratio is " + ", or ".join(conds) + ". "
        f"At {gofloat(fastest)}x the whole budget is spent in {_human_duration(s.period_ms / 3_600_000 / fastest)}.",
    )
    annotations["runbook_url"] = s.runbook_url


def group(s: ResolvedSLO) -> dict[str, Any] | None:
    """The alert group of one SLO, or None when every tier is disabled."""
    alerting = s.slo.alerting
    rules = []
    for sev in SEVERITIES:
        tiers = s.enabled_tiers(sev)
        if not tiers:
            continue
        sev_alerting = alerting.severity(sev)
        labels = {**alerting.labels, **sev_alerting.labels, C.SLOTH_SEVERITY: sev}
        annotations = {
            **alerting.annotations,
            **sev_alerting.annotations,
            "title": f"({sev}) {{{{$labels.{C.SLOTH_SERVICE}}}}} {{{{$labels.{C.SLOTH_SLO}}}}} SLO error budget burn "
                     "rate is too fast.",
        }
        if s.observatory:
            _observatory(s, sev, tiers, labels, annotations)
        else:
            annotations.setdefault(
                "summary",
                f"{{{{$labels.{C.SLOTH_SERVICE}}}}} {{{{$labels.{C.SLOTH_SLO}}}}} SLO error budget burn rate is over "
                "expected.",
            )
        rules.append({"alert": alerting.name, "expr": _expr(s, tiers), "labels": sorted_labels(labels),
                      "annotations": sorted_labels(annotations)})
    return {"name": C.SLO_ALERTS_GROUP + s.sloth_id, "rules": rules} if rules else None
