"""The generated rules pass the real `promtool check rules`, and the promtool unit tests in alerts/tests/ pass.

promtool comes from the Debian package `prometheus` (make test installs it): a missing binary fails these tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from slo.rules import generate
from slo.spec import load_spec, with_default_period
from tests.alerts.policy import expected_receiver

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
TESTS = sorted((ALERTS / "tests").glob("*.yml"))
DATA = Path(__file__).resolve().parents[1] / "slo" / "test_slo_data"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus (make test installs it)"
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("name", ["slos.rules.yml", "platform.rules.yml"])
def test_promtool_check_rules_on_committed_files(name):
    r = run("check", "rules", str(ALERTS / name))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("spec_file, period", [("sloth-base.yaml", "30d"), ("sloth-base.yaml", "28d"),
                                               ("observatory-sample.yaml", None)])
def test_promtool_check_rules_on_sample_specs(tmp_path, spec_file, period):
    spec = load_spec(DATA / spec_file)
    if period:
        spec = with_default_period(spec, period)
    for name, text in generate(spec).items():
        (tmp_path / name).write_text(text)
        r = run("check", "rules", str(tmp_path / name))
        assert r.returncode == 0, r.stdout + r.stderr


def test_there_are_promtool_tests():
    assert {p.name for p in TESTS} >= {"slo-alerts.yml", "slo-pipeline.yml", "platform-alerts.yml",
                                       "paging-scenarios.yml"}


def test_paging_scenarios_are_fresh():
    from tests.alerts import paging_scenarios

    assert paging_scenarios.TARGET.read_text() == paging_scenarios.build(), \
        "alerts/tests/paging-scenarios.yml is stale: .venv/bin/python -m tests.alerts.paging_scenarios"


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file):
    r = run("test", "rules", test_file.name, cwd=test_file.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_group_eval_order_lists_every_group(test_file):
    doc = yaml.safe_load(test_file.read_text())
    groups = []
    for rf in doc["rule_files"]:
        groups += [g["name"] for g in yaml.safe_load((test_file.parent / rf).read_text())["groups"]]
    assert sorted(doc["group_eval_order"]) == sorted(groups)
    order = doc["group_eval_order"]
    # recordings before metadata before alerts
    kind = [0 if "sli-recordings" in n else 1 if "meta-recordings" in n else 2 for n in order]
    assert kind == sorted(kind)


ALERTS_RE = re.compile(r"ALERTS\{([^}]*)\}")


def _alerts_checks(t: dict) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    """The promql checks of one test on ALERTS: (selector matchers, expected label sets)."""
    out = []
    for check in t.get("promql_expr_test", []):
        m = ALERTS_RE.search(check["expr"])
        if m:
            matchers = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            samples = [dict(re.findall(r'(\w+)="([^"]*)"', s["labels"])) for s in check.get("exp_samples") or []]
            out.append((matchers, samples))
    return out


def _fired_and_silent() -> tuple[set[tuple[str, str]], set[str]]:
    """Alerts (name, severity) some test expects firing, and names some test expects silent. A check of ALERTS that
    expects nothing (no alertname matcher) is silence of every alert at that time."""
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for test_file in TESTS:
        for t in yaml.safe_load(test_file.read_text())["tests"]:
            for a in t.get("alert_rule_test", []):
                if not a.get("exp_alerts"):
                    silent.add(a["alertname"])
                for e in a.get("exp_alerts") or []:
                    fired.add((a["alertname"], e["exp_labels"]["severity"]))
            for matchers, samples in _alerts_checks(t):
                if not samples and "alertname" not in matchers and "severity" not in matchers:
                    silent.add("*")
                for lab in samples:
                    fired.add((lab["alertname"], lab["severity"]))
    return fired, silent


def test_every_alert_is_tested_firing_and_silent():
    fired, silent = _fired_and_silent()
    for name in ("slos.rules.yml", "platform.rules.yml"):
        for g in yaml.safe_load((ALERTS / name).read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    assert (r["alert"], r["labels"]["severity"]) in fired, f"{r['alert']} ({r['labels']['severity']}) never tested firing"
                    if r["alert"] != "Watchdog":  # fires always, by design
                        assert r["alert"] in silent or "*" in silent, f"{r['alert']} never tested silent"


def test_paging_scenarios_route_by_cause_and_team(tmp_path):
    """Every alert the scenarios expect reaches the receiver the policy names, through the real amtool and
    alerts/alertmanager.yml: infra pages -> platform on-call, user causes -> the owning team's tickets."""
    from slo.alertmanager import render_env_template, template_variables

    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: apt-get install prometheus-alertmanager (make test installs it)"
    template = (ALERTS / "alertmanager.yml").read_text()
    config = tmp_path / "am.yml"
    config.write_text(render_env_template(template, {v: f"http://127.0.0.1:9/{v}" for v in template_variables(template)}))
    doc = yaml.safe_load((ALERTS / "tests" / "paging-scenarios.yml").read_text())
    expected = {tuple(sorted(lab.items())) for t in doc["tests"] for _, samples in _alerts_checks(t) for lab in samples}
    assert len(expected) >= 6 and {dict(e)["severity"] for e in expected} == {"page", "ticket"}
    for labels in map(dict, sorted(expected)):
        r = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                            *[f"{k}={v}" for k, v in labels.items()]], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expected_receiver(labels), labels


@pytest.mark.parametrize("name, old, new, test_file, only", [
    ("slos.rules.yml", "(14.4 * 0.01)", "(16 * 0.01)", "slo-alerts.yml", None),  # a page threshold
    ("slos.rules.yml", ") > 0)\n", "))\n", "slo-pipeline.yml", None),  # the zero-traffic guard
    ("platform.rules.yml", ">= 3\n", ">= 1\n", "platform-alerts.yml", None),  # consecutive failures
    ("slos.rules.yml", ">= 2.5\n", ">= 0\n", "paging-scenarios.yml", "A:"),  # the evidence a page needs
    ("slos.rules.yml", "keep_firing_for: 15m\n", "keep_firing_for: 1m\n", "slo-alerts.yml", "a flapping"),  # flaps
])
def test_promtool_tests_catch_a_broken_rule(tmp_path, name, old, new, test_file, only):
    """The unit tests can fail: the same tests against a deliberately broken copy of the rules must fail (`only`:
    just the scenarios whose name starts so, to keep the slow day-long scenarios to one run)."""
    shutil.copytree(ALERTS, tmp_path / "alerts")
    path = tmp_path / "alerts" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    if only:
        tests = tmp_path / "alerts" / "tests" / test_file
        doc = yaml.safe_load(tests.read_text())
        doc["tests"] = [t for t in doc["tests"] if t["name"].startswith(only)]
        assert doc["tests"]
        tests.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run("test", "rules", test_file, cwd=tmp_path / "alerts" / "tests")
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
