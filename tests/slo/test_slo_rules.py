"""Rule generation: a pure function spec -> rules, checked against golden files and by its invariants.

Golden files live in tests/test_slo_data/; after an intended change regenerate them with
`UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_slo_rules.py` and review the diff.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml

from slo.alertmanager import RenderError, render_env_template, template_variables
from slo.model import GenerationError, burn_factor, check_fireable, gofloat, resolve
from slo.rules import generate, group_names
from slo.spec import load_spec, parse_duration, parse_spec, with_default_period

DATA = Path(__file__).parent / "test_slo_data"
ROOT = Path(__file__).resolve().parents[2]


def _golden(name: str, text: str) -> None:
    path = DATA / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("spec_file, period, golden", [
    ("sloth-base.yaml", None, "sloth-base-30d.rules.yml"),
    ("sloth-base.yaml", "28d", "sloth-base-28d.rules.yml"),
    ("observatory-sample.yaml", None, "observatory-sample.rules.yml"),
])
def test_golden(spec_file, period, golden):
    spec = load_spec(DATA / spec_file)
    if period:
        spec = with_default_period(spec, period)
    files = generate(spec)
    text = "".join(f"# --- {name}\n{content}" for name, content in sorted(files.items()))
    _golden(golden, text)


def test_generation_is_deterministic_and_independent_of_key_order():
    raw = yaml.safe_load((DATA / "observatory-sample.yaml").read_text())
    shuffled = {k: raw[k] for k in reversed(list(raw))}
    shuffled["slos"] = [{k: s[k] for k in reversed(list(s))} for s in raw["slos"]]
    assert generate(parse_spec(raw)) == generate(parse_spec(shuffled)) == generate(parse_spec(raw))


def _factors(period: str) -> list[str]:
    spec = with_default_period(load_spec(DATA / "sloth-base.yaml"), period)
    return [gofloat(t.factor) for t in resolve(spec).slos[0].tiers]


def test_burn_factors_for_any_period():
    # Sloth: factor = budget percent x period hours / 100 / long window hours (2%, 5%, 10%, 10% over 1h, 6h, 1d, 3d)
    assert _factors("30d") == ["14.4", "6", "3", "1"]
    assert _factors("28d") == ["13.44", "5.6000000000000005", "2.8000000000000003", "0.9333333333333333"]
    assert _factors("7d") == ["3.36", "1.4000000000000001", "0.7000000000000001", "0.23333333333333334"]
    assert _factors("90d") == ["43.2", "18", "9", "3"]
    # budget consumed by each tier is independent of the period: factor x long window / period
    for period in ("7d", "28d", "30d", "90d"):
        p = parse_duration(period)
        spec = with_default_period(load_spec(DATA / "sloth-base.yaml"), period)
        consumed = [round(t.factor * parse_duration(t.long) / p * 100, 9) for t in resolve(spec).slos[0].tiers]
        assert consumed == [2, 5, 10, 10]


def test_burn_factor_formula():
    assert burn_factor(parse_duration("30d"), 2, parse_duration("1h")) == 14.4
    assert burn_factor(parse_duration("1h"), 2, parse_duration("1m")) == pytest.approx(1.2)


def _spec(objective: float, period: str = "30d", **alerting) -> dict:
    return {
        "version": "observatory/v1", "service": "svc", "period": period,
        "runbook_base_url": "https://runbooks.example.org/r",
        "slos": [{"name": "x1", "objective": objective, "labels": {"team": "t"},
                  "sli": {"events": {"error_query": "sum(rate(e[{{.window}}]))", "total_query": "sum(rate(t[{{.window}}]))"}},
                  "alerting": {"name": "XBurn", **alerting}}],
    }


def test_unfireable_tier_is_a_generation_error():
    # 95% over 90d: the page quick threshold is 43.2 x 0.05 = 2.16 > 1, and page slow 18 x 0.05 = 0.9 is fine
    spec = parse_spec(_spec(95, "90d"))
    with pytest.raises(GenerationError) as exc:
        generate(spec)
    assert exc.value.errors == [
        "slos[0] (x1): the page quick tier (5m/1h, burn factor 43.2 x error budget 0.05 = 2.16) can never fire: an "
        "error ratio cannot exceed 1. Disable it (alerting.page_alert.quick.disable: true), use a shorter period or "
        "a smaller errorBudgetPercent for that window pair, or relax the objective."
    ]
    fixed = parse_spec(_spec(95, "90d", page_alert={"quick": {"disable": True}}))
    text = generate(fixed)["slos.rules.yml"]
    assert "(18 * 0.05)" in text and "(43.2 * 0.05)" not in text


def test_threshold_exactly_one_is_unfireable():
    # 90% over 30d: ticket quick 3 x 0.1 = 0.3, page slow 6 x 0.1 = 0.6, page quick 14.4 x 0.1 = 1.44
    errs = check_fireable(resolve(parse_spec(_spec(90))))
    assert [e.split(":")[1].strip() for e in errs] == ["the page quick tier (5m/1h, burn factor 14.4 x error budget 0.1 = 1.44) can never fire"]
    # factor x budget == 1 exactly (4% of a 100h period in 1h = 4, objective 75% = budget 0.25): an error ratio of
    # 100% is not *above* 1, so the tier can never fire either
    exact = {**_spec(75, "100h"), "alert_windows": {
        "page": {"quick": {"error_budget_percent": 4, "short_window": "5m", "long_window": "1h"},
                 "slow": {"error_budget_percent": 5, "short_window": "30m", "long_window": "6h"}},
        "ticket": {"quick": {"error_budget_percent": 10, "short_window": "2h", "long_window": "1d"},
                   "slow": {"error_budget_percent": 10, "short_window": "6h", "long_window": "3d"}}}}
    errs = check_fireable(resolve(parse_spec(exact)))
    assert len(errs) == 1 and "page quick tier (5m/1h, burn factor 4 x error budget 0.25 = 1)" in errs[0]
    assert check_fireable(resolve(parse_spec(_spec(99)))) == []


def test_disabled_tiers_keep_their_recordings():
    spec = parse_spec(_spec(99, page_alert={"slow": {"disable": True}}, ticket_alert={"disable": True}))
    rules = yaml.safe_load(generate(spec)["slos.rules.yml"])
    records = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
        assert f"slo:sli_error:ratio_rate{w}" in records
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r and r["alert"] != "SLOTrafficAbsent"]
    assert len(alerts) == 1 and alerts[0]["labels"]["severity"] == "page"
    assert "ratio_rate5m" in alerts[0]["expr"] and "ratio_rate30m" not in alerts[0]["expr"]


def _rules(spec_file: Path) -> list[dict]:
    files = generate(load_spec(spec_file))
    return [r for text in files.values() for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_every_ratio_is_guarded_against_zero_traffic():
    for r in _rules(ROOT / "slo" / "slos.yaml"):
        if r.get("record", "").startswith("slo:sli_error:ratio_rate"):
            assert re.search(r"\) > 0\)\n$", r["expr"]), r["expr"]


def test_period_ratio_is_a_ratio_of_sums():
    rules = {(r["record"], r["labels"]["sloth_slo"]): r for r in _rules(ROOT / "slo" / "slos.yaml") if "record" in r}
    period = rules[("slo:sli_error:ratio_rate30d", "scheduled-run-success")]["expr"]
    assert period.startswith("sum_over_time(slo:sli_error_events:rate5m{")
    assert "(sum_over_time(slo:sli_total_events:rate5m{" in period and "count_over_time" not in period


def test_raw_sli_period_evaluates_the_query_over_the_period():
    rules = _rules(DATA / "observatory-sample.yaml")
    raw = next(r for r in rules if r.get("record") == "slo:sli_error:ratio_rate1w" and r["labels"]["sloth_slo"] == "latency")
    assert '[1w]' in raw["expr"] and "sum_over_time" not in raw["expr"]


def test_every_alert_has_severity_summary_description_and_runbook():
    spec = load_spec(ROOT / "slo" / "slos.yaml")
    alerts = [r for r in _rules(ROOT / "slo" / "slos.yaml") if "alert" in r]
    # 3 infra SLOs page and ticket and say when their traffic stops; 5 user SLOs only ticket
    assert len(alerts) == 3 * 3 + 5 + len(spec.alerts)
    for a in alerts:
        assert a["labels"]["severity"] in ("page", "ticket", "none")
        assert a["labels"]["category"] in ("slo", "notebook", "security", "cost", "platform", "meta")
        if a["labels"]["severity"] == "page":
            # a page names its team (a label, its SLO's labels or grouping, or the expression's aggregation) and
            # never flaps
            slo = next((x for x in spec.slos if x.name == a["labels"].get("sloth_slo")), None)
            slo = slo or next((x for x in spec.slos if f'sloth_slo="{x.name}"' in a["expr"]), None)
            assert ("team" in a["labels"] or re.search(r"by \([^)]*team", a["expr"])
                    or (slo is not None and ("team" in slo.labels or "team" in slo.sli.group_by))), a["alert"]
            assert a["keep_firing_for"] == "15m", a["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert a["annotations"][key].strip(), (a["alert"], key)
        m = re.fullmatch(re.escape(spec.runbook_base_url) + r"/([a-z0-9.-]+\.md)", a["annotations"]["runbook_url"])
        assert m, a["annotations"]["runbook_url"]
        runbook = ROOT / "alerts" / "runbooks" / m.group(1)
        assert runbook.is_file(), runbook
        text = runbook.read_text()
        assert a["alert"] in text.splitlines()[0], f"{runbook} does not start with the alert name"
        assert "## Look at" in text and "## Act" in text, runbook


def test_group_eval_order_puts_recordings_first():
    names = group_names(generate(load_spec(DATA / "observatory-sample.yaml")))
    assert names == [
        "sloth-slo-sli-recordings-sample-runs", "sloth-slo-sli-recordings-sample-probes",
        "sloth-slo-sli-recordings-sample-latency", "sloth-slo-meta-recordings-sample-runs",
        "sloth-slo-meta-recordings-sample-probes", "sloth-slo-meta-recordings-sample-latency",
        "sloth-slo-alerts-sample-runs", "sloth-slo-alerts-sample-probes", "sample",
    ]


def test_short_windows_for_fast_tests():
    spec = parse_spec({**_spec(99, "1h"), "alert_windows": {
        "page": {"quick": {"error_budget_percent": 2, "short_window": "10s", "long_window": "1m"},
                 "slow": {"error_budget_percent": 5, "short_window": "30s", "long_window": "5m"}},
        "ticket": {"quick": {"error_budget_percent": 10, "short_window": "1m", "long_window": "10m"},
                   "slow": {"error_budget_percent": 10, "short_window": "5m", "long_window": "30m"}}}})
    text = generate(spec)["slos.rules.yml"]
    assert "slo:sli_error_events:rate10s" in text and "slo:sli_error:ratio_rate1h" in text
    assert "(1.2 * 0.01)" in text and "vector(0.041666666666666664)" in text  # 2% x 60m / 1m; 1h in days


def test_render_alertmanager_template():
    text = "# ${NOT_A_VAR} in a comment\nurl: ${A_URL}\nother: ${B_TOKEN}\n"
    assert template_variables(text) == ["A_URL", "B_TOKEN"]
    assert render_env_template(text, {"A_URL": "http://x", "B_TOKEN": "t"}) == \
        "# ${NOT_A_VAR} in a comment\nurl: http://x\nother: t\n"
    with pytest.raises(RenderError, match="unset environment variables: A_URL, B_TOKEN"):
        render_env_template(text, {"A_URL": ""})


def test_sloth_spec_output_has_no_observatory_labels():
    rules = _rules(DATA / "sloth-base.yaml")
    for r in rules:
        if "alert" in r:
            assert "severity" not in r["labels"] and "runbook_url" not in r["annotations"]


def test_generate_does_not_mutate_the_spec():
    spec = load_spec(DATA / "observatory-sample.yaml")
    before = copy.deepcopy(spec.model_dump())
    generate(spec)
    assert spec.model_dump() == before
