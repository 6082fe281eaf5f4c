"""The paging policy of docs/alerts.md, written independently of slo/routing.py: where an alert must go."""

from __future__ import annotations

from slo.routing import team_receivers

TEAMS = ("data-eng", "finance", "marketing", "ml-platform", "product-analytics", "risk")  # alerts/teams.yaml


def is_page(labels: dict[str, str]) -> bool:
    sev = labels.get("severity", "")
    return sev in ("page", "critical") or (sev == "" and labels.get("sloth_severity") == "page")


def expected_receiver(labels: dict[str, str]) -> str:
    """Watchdog -> dead man's switch; security -> security; infra or the platform team -> the platform; a known team
    -> its on-call (pages) or tickets; an unknown team's page -> the platform on-call; anything else -> tickets."""
    if labels.get("alertname") == "Watchdog":
        return "deadmansswitch"
    if labels.get("category") == "security":
        return "security"
    page = is_page(labels)
    if labels.get("cause") == "infra" or labels.get("team") == "platform":
        return "platform-oncall" if page else "tickets"
    if labels.get("team") in TEAMS:
        return team_receivers(labels["team"])[0 if page else 1]
    return "platform-oncall" if page else "tickets"
