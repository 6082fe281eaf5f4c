"""SLO spec validation: every mistake gets one precise, located message."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from slo.spec import (
    SpecError,
    format_duration,
    load_spec,
    parse_duration,
    parse_spec,
    with_default_period,
)

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "version": "observatory/v1",
    "service": "notebooks",
    "runbook_base_url": "https://runbooks.example.org/alerts/runbooks",
    "slos": [
        {
            "name": "run-success",
            "objective": 99,
            "sli": {
                "group_by": ["team"],
                "events": {
                    "error_query": 'sum by (team) (rate(runs_total{outcome="failed"}[{{.window}}]))',
                    "total_query": "sum by (team) (rate(runs_total[{{.window}}]))",
                },
            },
            "alerting": {"name": "RunSuccessBurn"},
        }
    ],
}


def spec_with(mutate) -> dict:
    data = copy.deepcopy(BASE)
    mutate(data)
    return data


def errors_of(data) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse_spec(data)
    return exc.value.errors


def test_base_spec_is_valid():
    spec = parse_spec(BASE)
    assert spec.slos[0].objective == 99
    assert spec.period == "30d"


def test_committed_spec_has_the_platform_slos():
    spec = load_spec(ROOT / "slo" / "slos.yaml")
    objectives = {s.name: (s.objective, s.alerting.cause) for s in spec.slos}
    assert objectives == {
        "scheduler-reliability": (99, "infra"),
        "platform-availability": (99.9, "infra"),
        "kernel-infra-stability": (99.5, "infra"),
        "scheduled-run-success": (99, "user"),
        "kernel-stability": (99, "user"),
        "reproducibility": (95, "user"),
        "data-quality": (99, "user"),
        "artifact-freshness": (99, "user"),
    }
    for s in spec.slos:
        assert s.description and s.alerting.name and s.alerting.runbook
        assert spec.slo_period(s) == "30d"
        # user causes never page: they ticket the owning team
        assert (s.alerting.cause == "user") == (not s.alerting.page_alert.enabled_tiers())
    alerts = {a.alert: a.severity for a in spec.alerts}
    assert alerts["NotebookConsecutiveFailures"] == "page"
    assert alerts["NotebookSecretExposed"] == "page"
    assert alerts["Watchdog"] == "none"
    assert {"NotebookScheduledRunsMissed", "NotebookArtifactsStale", "CriticalArtifactStale", "BillingDataStale",
            "BillingNeverSynced", "CostBudgetForecastExceeded", "CostSpike", "ObservatoryCollectorDown",
            "ObservatoryIngestStalled", "ObservatorySourceStale", "ObservatoryDeadLettersGrowing"} <= set(alerts)
    assert spec.paging.min_bad_events == 3 and spec.production_environments == ("prod",)


def test_unknown_key_is_named_with_a_suggestion():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["sli"]["events"].update(eror_query="x")))
    assert errs == ["slos[0] (run-success).sli.events: unknown key 'eror_query' (did you mean 'error_query'?)"]


def test_unknown_top_level_key():
    errs = errors_of(spec_with(lambda d: d.update(slo=[])))
    assert errs == ["(spec): unknown key 'slo' (did you mean 'slos'?)"]


@pytest.mark.parametrize("objective, message", [
    (100, "Input should be less than 100"),
    (0, "Input should be greater than 0"),
    (-5, "Input should be greater than 0"),
    (101, "Input should be less than 100"),
    ("high", "Input should be a valid number"),
])
def test_objective_out_of_range(objective, message):
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(objective=objective)))
    assert len(errs) == 1
    assert errs[0].startswith("slos[0] (run-success).objective: ")
    assert message in errs[0]


def test_missing_window_placeholder():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["sli"]["events"].update(
        total_query="sum by (team) (rate(runs_total[5m]))")))
    assert len(errs) == 1
    assert errs[0].startswith("slos[0] (run-success).sli.events: ")
    assert "total_query has no {{.window}} placeholder" in errs[0]


def test_window_placeholder_with_spaces_is_accepted():
    data = spec_with(lambda d: d["slos"][0]["sli"]["events"].update(
        total_query="sum by (team) (rate(runs_total[{{ .window }}]))"))
    assert parse_spec(data).slos[0].sli.events.total_query.endswith("[{{ .window }}]))")


def test_error_and_good_query_are_exclusive():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["sli"]["events"].update(
        good_query="sum by (team) (rate(runs_total{outcome='ok'}[{{.window}}]))")))
    assert any("exactly one of error_query or good_query" in e for e in errs)


def test_sli_needs_events_or_raw():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["sli"].pop("events")))
    assert errs == ["slos[0] (run-success).sli: give exactly one of sli.events or sli.raw"]


def test_duplicate_slo_names():
    errs = errors_of(spec_with(lambda d: d["slos"].append(copy.deepcopy(d["slos"][0]))))
    assert errs == ["(spec): slos[1]: duplicate SLO name 'run-success' (also slos[0])"]


@pytest.mark.parametrize("period", ["5 minutes", "30", "0d", "1x"])
def test_bad_period(period):
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(period=period)))
    assert len(errs) == 1 and errs[0].startswith("slos[0] (run-success).period: ")
    assert "duration" in errs[0]


def test_window_pairs_are_checked():
    windows = {
        "page": {"quick": {"error_budget_percent": 2, "short_window": "1h", "long_window": "5m"},
                 "slow": {"error_budget_percent": 5, "short_window": "30m", "long_window": "6h"}},
        "ticket": {"quick": {"error_budget_percent": 10, "short_window": "2h", "long_window": "1d"},
                   "slow": {"error_budget_percent": 10, "short_window": "6h", "long_window": "3d"}},
    }
    errs = errors_of(spec_with(lambda d: d.update(alert_windows=windows)))
    assert errs == ["alert_windows.page.quick: short_window 1h must be shorter than long_window 5m"]


def test_long_window_cannot_exceed_the_period():
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(period="2d")))
    assert errs == ["(spec): slos[0] (run-success): ticket slow long window 3d is longer than the SLO period 2d"]


def test_reserved_and_invalid_labels():
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(labels={"sloth_id": "x"})))
    assert errs == ["slos[0] (run-success).labels: labels: label 'sloth_id' is set by the generator and cannot be given"]
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(labels={"bad-name": "x"})))
    assert "invalid label name 'bad-name'" in errs[0]
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(labels={"tier": 1})))
    assert errs == ["slos[0] (run-success).labels.tier: Input should be a valid string"]


def test_severity_label_is_generated_in_observatory_specs():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["alerting"].update(page_alert={"labels": {"severity": "x"}})))
    assert len(errs) == 1 and "['severity'] are set by the generator" in errs[0]


def test_group_by_must_match_the_queries():
    errs = errors_of(spec_with(lambda d: d["slos"][0]["sli"].update(group_by=["team", "notebook"])))
    assert len(errs) == 1 and "group_by names 'notebook' but a query does not aggregate by it" in errs[0]


def test_static_label_cannot_shadow_a_group_label():
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(labels={"team": "platform"})))
    assert errs == ["slos[0] (run-success): labels ['team'] are also in sli.group_by; a label comes from one place"]


def test_alerting_name_required_when_alerts_enabled():
    errs = errors_of(spec_with(lambda d: d["slos"][0].update(alerting={})))
    assert errs == ["slos[0] (run-success): alerting.name is required when the page or ticket alert is enabled"]
    data = spec_with(lambda d: d["slos"][0].update(
        alerting={"page_alert": {"disable": True}, "ticket_alert": {"disable": True}}))
    assert parse_spec(data).slos[0].alerting.any_enabled is False


def test_runbook_base_url_required_for_observatory_alerts():
    errs = errors_of(spec_with(lambda d: d.pop("runbook_base_url")))
    assert errs == ["(spec): runbook_base_url is required: every alert links its runbook (<runbook_base_url>/<runbook>)"]


def test_sloth_spec_rejects_observatory_extensions():
    data = spec_with(lambda d: d.update(version="prometheus/v1"))
    data.pop("runbook_base_url")
    errs = errors_of(data)
    assert errs == ["(spec): slos[0].sli.group_by: observatory/v1 extensions; set `version: observatory/v1`"]


def test_unknown_version():
    errs = errors_of(spec_with(lambda d: d.update(version="sloth/v2")))
    assert len(errs) == 1 and errs[0].startswith("version: Input should be 'prometheus/v1' or 'observatory/v1'")


def test_several_errors_are_all_reported():
    def mutate(d):
        d["slos"][0]["objective"] = 120
        d["slos"][0]["sli"]["events"]["total_qery"] = "x"
    errs = errors_of(spec_with(mutate))
    assert errs == ["slos[0] (run-success).objective: Input should be less than 100",
                    "slos[0] (run-success).sli.events: unknown key 'total_qery' (did you mean 'total_query'?)"]


def test_rule_alert_validation():
    alert = {"alert": "X", "group": "g", "expr": "up == 0", "severity": "urgent", "category": "platform",
             "summary": "s", "description": "d", "runbook": "x.md"}
    errs = errors_of(spec_with(lambda d: d.update(alerts=[alert])))
    assert len(errs) == 1 and errs[0].startswith("alerts[0] (X).severity: Input should be 'page', 'ticket' or 'none'")
    alert2 = {**alert, "severity": "page", "labels": {"team": "platform"}, "runbook": "../../etc/passwd"}
    errs = errors_of(spec_with(lambda d: d.update(alerts=[alert2])))
    assert len(errs) == 1 and "must be a file name" in errs[0]


def test_invalid_yaml_reports_the_line(tmp_path):
    p = tmp_path / "slos.yaml"
    p.write_text("version: observatory/v1\nslos:\n  - name: [unclosed\n")
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    assert exc.value.errors[0].startswith("line ")
    assert str(p) in str(exc.value)


def test_spec_must_be_a_mapping():
    with pytest.raises(SpecError) as exc:
        parse_spec(["a"])
    assert "must be a mapping" in exc.value.errors[0]


@pytest.mark.parametrize("text, ms, canonical", [
    ("5m", 300_000, "5m"), ("1h30m", 5_400_000, "1h30m"), ("72h", 259_200_000, "3d"), ("28d", 2_419_200_000, "4w"),
    ("7d", 604_800_000, "1w"), ("30d", 2_592_000_000, "30d"), ("90d", 7_776_000_000, "90d"), ("14d", 1_209_600_000, "2w"),
    ("365d", 31_536_000_000, "1y"), ("10s", 10_000, "10s"),
])
def test_durations_format_like_prometheus(text, ms, canonical):
    assert parse_duration(text) == ms
    assert format_duration(ms) == canonical


def test_default_period_applies_only_when_unset():
    spec = parse_spec(BASE)
    assert with_default_period(spec, "28d").period == "28d"
    explicit = parse_spec({**BASE, "period": "7d"})
    assert with_default_period(explicit, "28d").period == "7d"


def test_every_page_names_a_team():
    alert = {"alert": "X", "group": "g", "expr": "up == 0", "severity": "page", "category": "platform",
             "summary": "s", "description": "d", "runbook": "x.md"}
    errs = errors_of(spec_with(lambda d: d.update(alerts=[alert])))
    assert errs == ["(spec): alerts[0] (X): a page needs a `team` label: set labels.team or aggregate the "
                    "expression by (team)"]
    parse_spec(spec_with(lambda d: d.update(alerts=[{**alert, "expr": "max by (team, x) (up) == 0"}])))
    parse_spec(spec_with(lambda d: d.update(alerts=[{**alert, "severity": "ticket"}])))  # tickets need none
    no_team = spec_with(lambda d: d["slos"][0]["sli"].update(
        group_by=[], events={"error_query": "sum(rate(e[{{.window}}]))", "total_query": "sum(rate(t[{{.window}}]))"}))
    assert errors_of(no_team) == ["(spec): slos[0] (run-success): it pages, so its alerts need a `team` label: "
                                  "group the SLI by team (sli.group_by) or set labels.team"]
    parse_spec(spec_with(lambda d: (d["slos"][0]["sli"].update(no_team["slos"][0]["sli"]),
                                    d["slos"][0].update(labels={"team": "platform"}))))


def test_paging_policy_keys():
    spec = parse_spec(spec_with(lambda d: (d.update(paging={"min_bad_events": 5, "keep_firing_for": "30m"},
                                                    production_environments=["prod", "production"]),
                                           d["slos"][0]["alerting"].update(cause="user", min_bad_events=0,
                                                                           absent={"after": "6h"}))))
    assert spec.paging.min_bad_events == 5 and spec.production_regex() == "prod|production"
    assert spec.slos[0].alerting.cause == "user" and spec.slos[0].alerting.min_bad_events == 0
    errs = errors_of(spec_with(lambda d: d["slos"][0]["alerting"].update(absent={"after": "2d"})))
    assert errs == ["slos[0] (run-success).alerting.absent.after: after 2d must be shorter than 1d (the window that "
                    "says there was traffic)"]
    errs = errors_of(spec_with(lambda d: d["slos"][0]["alerting"].update(cause="users")))
    assert errs == ["slos[0] (run-success).alerting.cause: Input should be 'infra' or 'user'"]
    sloth = spec_with(lambda d: (d.update(version="prometheus/v1"), d.pop("runbook_base_url"),
                                 d["slos"][0]["sli"].update(group_by=[]),
                                 d["slos"][0]["alerting"].update(cause="infra")))
    assert errors_of(sloth) == ["(spec): slos[0].alerting.cause: observatory/v1 extensions; set `version: "
                                "observatory/v1`"]
