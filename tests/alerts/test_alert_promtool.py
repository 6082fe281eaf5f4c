"""The generated rules pass the real `promtool check rules`, and the promtool unit tests in alerts/tests/ pass.

promtool comes from the Debian package `prometheus` (make test installs it): a missing binary fails these tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from slo.rules import generate
from slo.spec import load_spec, with_default_period

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
TESTS = sorted((ALERTS / "tests").glob("*.yml"))
DATA = Path(__file__).resolve().parents[1] / "slo" / "test_slo_data"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install prometheus (make test installs it)"
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


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
    assert {p.name for p in TESTS} >= {"slo-alerts.yml", "slo-pipeline.yml", "platform-alerts.yml"}


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


def _fired_and_silent() -> tuple[set[tuple[str, str]], set[str]]:
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for test_file in TESTS:
        for t in yaml.safe_load(test_file.read_text())["tests"]:
            for a in t.get("alert_rule_test", []):
                if not a.get("exp_alerts"):
                    silent.add(a["alertname"])
                for e in a.get("exp_alerts") or []:
                    fired.add((a["alertname"], e["exp_labels"]["severity"]))
    return fired, silent


def test_every_alert_is_tested_firing_and_silent():
    fired, silent = _fired_and_silent()
    for name in ("slos.rules.yml", "platform.rules.yml"):
        for g in yaml.safe_load((ALERTS / name).read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    assert (r["alert"], r["labels"]["severity"]) in fired, f"{r['alert']} ({r['labels']['severity']}) never tested firing"
                    assert r["alert"] in silent, f"{r['alert']} never tested silent"


@pytest.mark.parametrize("name, old, new, test_file", [
    ("slos.rules.yml", "(14.4 * 0.01)", "(16 * 0.01)", "slo-alerts.yml"),  # a page threshold
    ("slos.rules.yml", ") > 0)\n", "))\n", "slo-pipeline.yml"),  # the zero-traffic guard
    ("platform.rules.yml", ">= 3\n", ">= 1\n", "platform-alerts.yml"),  # consecutive failures
])
def test_promtool_tests_catch_a_broken_rule(tmp_path, name, old, new, test_file):
    """The unit tests can fail: the same tests against a deliberately broken copy of the rules must fail."""
    shutil.copytree(ALERTS, tmp_path / "alerts")
    path = tmp_path / "alerts" / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    r = run("test", "rules", test_file, cwd=tmp_path / "alerts" / "tests")
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
