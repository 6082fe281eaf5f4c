"""The hand-written (non-SLO) alerts of the spec, grouped by their `group` key in spec order."""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import Model, ResolvedAlert
from slo.rules.expr import sorted_labels
from slo.spec import format_duration


def rule(r: ResolvedAlert) -> dict[str, Any]:
    a = r.alert
    out: dict[str, Any] = {"alert": a.alert, "expr": r.expr.strip() + "\n"}
    if r.for_ms:
        out["for"] = format_duration(r.for_ms)
    if r.keep_firing_for_ms:
        out["keep_firing_for"] = format_duration(r.keep_firing_for_ms)
    cause = {C.CAUSE: a.cause} if a.cause else {}
    out["labels"] = sorted_labels({**a.labels, C.SEVERITY: a.severity, C.CATEGORY: a.category, **cause})
    out["annotations"] = {"description": a.description.strip(), "runbook_url": r.runbook_url,
                          "summary": a.summary.strip()}
    return out


def groups(model: Model) -> list[dict[str, Any]]:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for r in model.alerts:
        by_group.setdefault(r.alert.group, []).append(rule(r))
    return [{"name": name, "rules": rules} for name, rules in by_group.items()]
