"""Group `sloth-slo-alerts-<id>`: one multi-window multi-burn-rate alert per severity (page, ticket), plus the
alert that says the SLI's traffic stopped.

A tier burns when the error ratio exceeds `factor x budget` over both its short and long window. In the Sloth
dialect the alerts are exactly Sloth's (labels, annotations, expressions). The observatory dialect adds the paging
policy (docs/alerts.md): a page tier also needs evidence, at least `min_bad_events` bad events in its long window;
a burn without that evidence opens the ticket instead. Pages keep firing for `keep_firing_for` after they clear (no
flapping), and every alert carries `severity`, `category`, `cause`, a summary, a description with the arithmetic
and the runbook URL.
"""

from __future__ import annotations

from typing import Any

from collector import conventions as C
from slo.model import ABSENT_ALERT, ABSENT_RUNBOOK, ResolvedSLO, Tier, gofloat
from slo.rules.expr import fill, sorted_labels, total_events
from slo.rules.sli_recordings import evidence_windows
from slo.spec import SEVERITIES, format_duration, parse_duration


def _burn(s: ResolvedSLO, t: Tier) -> str:
    thr = f"({gofloat(t.factor)} * {gofloat(s.budget)})"
    return (
        "(\n"
        f"    max({C.sli_error_ratio(t.short)}{s.selector} > {thr}) without ({C.SLOTH_WINDOW})\n"
        "    and\n"
        f"    max({C.sli_error_ratio(t.long)}{s.selector} > {thr}) without ({C.SLOTH_WINDOW})\n"
        ")"
    )


def burns(s: ResolvedSLO, tiers: list[Tier]) -> str:
    """The tiers' multiwindow burn conditions, or-ed: Sloth's alert as it is, without the evidence our pages add
    (bench/bench_rules.py measures Sloth's shape beside ours with it)."""
    return "\nor\n".join(_burn(s, t) for t in tiers)


def _evidence(s: ResolvedSLO, t: Tier) -> str:
    """At least `min_bad_events` bad events in the tier's long window: rate x seconds, with half an event of slack
    for rate()'s extrapolation at the window's edges."""
    seconds = t.long_ms // 1000
    return (f"max({C.sli_error_events(t.long)}{s.selector}) without ({C.SLOTH_WINDOW}) * {seconds} "
            f">= {gofloat(s.min_bad_events - 0.5)}")


def _page_tier(s: ResolvedSLO, t: Tier) -> str:
    if not s.min_bad_events:
        return _burn(s, t)
    return f"(\n{_indent(_burn(s, t))}\n    and\n    {_evidence(s, t)}\n)"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def expr(s: ResolvedSLO, severity: str) -> str:
    """The alert expression of one severity."""
    if severity == "page":
        return "\nor\n".join(_page_tier(s, t) for t in s.enabled_tiers("page")) + "\n"
    tickets, pages = s.enabled_tiers("ticket"), s.enabled_tiers("page")
    if not s.min_bad_events or not pages:
        return burns(s, tickets) + "\n"
    # a page burn without its evidence is a ticket: (ticket burns or page burns) unless the page fires
    return f"(\n{_indent(burns(s, tickets + pages))}\n)\nunless\n(\n{_indent(expr(s, 'page').rstrip())}\n)\n"


def _human_duration(hours: float) -> str:
    return format_duration(max(1, round(hours * 60)) * 60_000)


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


def _observatory(s: ResolvedSLO, sev: str, tiers: list[Tier], labels: dict, annotations: dict) -> None:
    """Labels and annotations the observatory dialect adds (Alertmanager routes on severity, category, cause)."""
    labels.update({C.SEVERITY: sev, C.CATEGORY: "slo"})
    if s.cause:
        labels[C.CAUSE] = s.cause
    annotations.setdefault(
        "summary",
        f"SLO {{{{$labels.{C.SLOTH_SLO}}}}}{{{{ with $labels.{C.TEAM} }}}} (team {{{{ . }}}}){{{{ end }}}} is "
        f"burning its error budget too fast ({sev}).",
    )
    conds = [f"above {gofloat(t.factor)}x the budget ({_pct(t.factor * s.budget)} errors) over both "
             f"{t.short} and {t.long}" for t in tiers]
    fastest = max(t.factor for t in tiers)
    description = s.slo.description.strip()
    text = ((description + " " if description else "")
            + f"Objective {gofloat(s.slo.objective)}% over {s.period} (error budget {_pct(s.budget)}). "
            f"This {sev} fires when the error ratio is " + ", or ".join(conds) + ". "
            f"At {gofloat(fastest)}x the whole budget is spent in "
            f"{_human_duration(s.period_ms / 3_600_000 / fastest)}.")
    if evidence_windows(s):
        windows = " / ".join(evidence_windows(s))
        text += (f" A page also needs at least {s.min_bad_events} bad events in its long window ({windows}); "
                 "a faster burn on less evidence opens the ticket instead."
                 if sev == "page" else
                 f" It also fires for a page-speed burn on fewer than {s.min_bad_events} bad events.")
    annotations.setdefault("description", text)
    annotations["runbook_url"] = s.runbook_url


def _absent(s: ResolvedSLO, runbook_base_url: str | None) -> dict[str, Any]:
    """The SLI's traffic stopped: some over the last day, none over `absent.after` (per SLO series)."""
    assert s.absent is not None
    group = s.slo.sli.group_by
    after = format_duration(parse_duration(s.absent.after))
    on = f"on({', '.join(group)})"
    rule: dict[str, Any] = {
        "alert": ABSENT_ALERT,
        "expr": f"({total_events(s, '1d')}) > 0\nunless {on}\n({total_events(s, after)}) > 0\n",
    }
    if s.absent.severity == "page" and s.keep_firing_for_ms:
        rule["keep_firing_for"] = format_duration(s.keep_firing_for_ms)
    # $labels holds the query's labels only (not the rule's): the team is templated only when the query keeps it
    if C.TEAM in group:
        team = f" (team {{{{ $labels.{C.TEAM} }}}})"
    else:
        team = f" (team {s.labels[C.TEAM]})" if C.TEAM in s.labels else ""
    rule["labels"] = sorted_labels({**s.labels, C.SEVERITY: s.absent.severity, C.CATEGORY: "slo",
                                    C.CAUSE: "infra"})
    rule["annotations"] = {
        "description": (f"The SLI of SLO {s.name} had traffic during the last day and none for {after}: its error "
                        "ratio has no sample, so no burn-rate alert can fire. The source that sends these events "
                        "(scheduler, prober, Jupyter server, exporter) has stopped, or the collector lost it."),
        "runbook_url": f"{runbook_base_url}/{ABSENT_RUNBOOK}",
        "summary": f"SLO {s.name}{team} has had no traffic for {after}: it is blind.",
    }
    return rule


def group(s: ResolvedSLO, runbook_base_url: str | None = None) -> dict[str, Any] | None:
    """The alert group of one SLO, or None when it has no alert."""
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
        rule: dict[str, Any] = {"alert": alerting.name, "expr": expr(s, sev)}
        if sev == "page" and s.keep_firing_for_ms:
            rule["keep_firing_for"] = format_duration(s.keep_firing_for_ms)
        rule.update({"labels": sorted_labels(labels), "annotations": sorted_labels(annotations)})
        rules.append(rule)
    if s.absent is not None:
        rules.append(_absent(s, runbook_base_url))
    return {"name": C.SLO_ALERTS_GROUP + s.sloth_id, "rules": rules} if rules else None
