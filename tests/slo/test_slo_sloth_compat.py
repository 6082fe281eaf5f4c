"""Our rules vs. what Sloth generates for the same spec.

The spec is Sloth's own generator test input (tests/test_slo_data/sloth-base.yaml = slok/sloth
test/integration/prometheus/testdata/in-base.yaml). The expected values below are transcribed from Sloth's golden
outputs for it, `out-base.yaml.tpl` (default 30d period) and `out-base-28d.yaml.tpl` (`--default-slo-period 28d`),
v0.16: group names, record names and their labels, the alert's labels and annotations, and for every alert window
pair the short window, long window, burn factor and error budget exactly as printed. Expressions differ on purpose
(zero-traffic guards, traffic-weighted period ratio): that is compared by meaning in alerts/tests/slo-pipeline.yml,
not here. Extra records of ours (`slo:sli_error_events:*`, `slo:sli_total_events:*`) are allowed and listed. The
period ratio is recorded first in the meta-recordings group, which is evaluated every 5 minutes (a 30-day range at
every 15 s evaluation is what made Sloth's rules expensive), instead of in the SLI group.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from slo.rules import generate
from slo.spec import load_spec, with_default_period

SPEC = Path(__file__).parent / "test_slo_data" / "sloth-base.yaml"

SLO1 = {"global01k1": "global01v1", "global02k1": "global02v1",
        "sloth_id": "svc01-slo1", "sloth_service": "svc01", "sloth_slo": "slo1"}
SLO2 = {"global01k1": "global01v1", "global03k1": "global03v1",
        "sloth_id": "svc01-slo02", "sloth_service": "svc01", "sloth_slo": "slo02"}
WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]

# period -> (period window label, days, [(severity, [(short, long, factor, budget)])])
SLOTH = {
    "30d": ("30d", "30", {
        "page": [("5m", "1h", "14.4", "0.0009999999999999432"), ("30m", "6h", "6", "0.0009999999999999432")],
        "ticket": [("2h", "1d", "3", "0.0009999999999999432"), ("6h", "3d", "1", "0.0009999999999999432")],
    }),
    "28d": ("4w", "28", {
        "page": [("5m", "1h", "13.44", "0.0009999999999999432"),
                 ("30m", "6h", "5.6000000000000005", "0.0009999999999999432")],
        "ticket": [("2h", "1d", "2.8000000000000003", "0.0009999999999999432"),
                   ("6h", "3d", "0.9333333333333333", "0.0009999999999999432")],
    }),
}
SLOTH_ALERT_LABELS = {
    "page": {"alert01k1": "alert01v1", "alert03k1": "alert03v1", "sloth_severity": "page"},
    "ticket": {"alert01k1": "alert01v1", "alert04k1": "alert04v1", "sloth_severity": "ticket"},
}
SLOTH_TITLE = "({sev}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn rate is too fast."
SLOTH_SUMMARY = "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected."
PAIR_RE = re.compile(
    r"max\(slo:sli_error:ratio_rate(\w+)\{[^}]*\} > \((\S+) \* (\S+)\)\) without \(sloth_window\)\s*\n\s*and\s*\n\s*"
    r"max\(slo:sli_error:ratio_rate(\w+)\{[^}]*\} > \((\S+) \* (\S+)\)\) without \(sloth_window\)"
)


def _groups(period: str) -> dict[str, list[dict]]:
    spec = load_spec(SPEC)
    if period != "30d":
        spec = with_default_period(spec, period)
    groups = yaml.safe_load(generate(spec)["slos.rules.yml"])["groups"]
    return {g["name"]: g["rules"] for g in groups}


@pytest.mark.parametrize("period", ["30d", "28d"])
def test_same_groups_records_and_labels_as_sloth(period):
    pw, days, _ = SLOTH[period]
    groups = _groups(period)
    assert list(groups) == [
        "sloth-slo-sli-recordings-svc01-slo1", "sloth-slo-meta-recordings-svc01-slo1", "sloth-slo-alerts-svc01-slo1",
        "sloth-slo-sli-recordings-svc01-slo02", "sloth-slo-meta-recordings-svc01-slo02",
    ]
    for ids, slo in ((SLO1, "slo1"), (SLO2, "slo02")):
        sli = groups[f"sloth-slo-sli-recordings-svc01-{slo}"]
        ratio_rules = [r for r in sli if r["record"].startswith("slo:sli_error:ratio_rate")]
        assert [(r["record"], r["labels"]) for r in ratio_rules] == [
            (f"slo:sli_error:ratio_rate{w}", {**ids, "sloth_window": w}) for w in WINDOWS
        ]
        extra = [r["record"] for r in sli if r not in ratio_rules]
        assert extra == (["slo:sli_error_events:rate5m", "slo:sli_total_events:rate5m"] if slo == "slo1" else [])

        meta = groups[f"sloth-slo-meta-recordings-svc01-{slo}"]
        period = meta.pop(0)
        assert (period["record"], period["labels"]) == (f"slo:sli_error:ratio_rate{pw}", {**ids, "sloth_window": pw})
        assert [r["record"] for r in meta] == [
            "slo:objective:ratio", "slo:error_budget:ratio", "slo:time_period:days", "slo:current_burn_rate:ratio",
            "slo:period_burn_rate:ratio", "slo:period_error_budget_remaining:ratio", "sloth_slo_info",
        ]
        for r in meta[:-1]:
            assert r["labels"] == ids, r["record"]
        objective = "0.9990000000000001" if slo == "slo1" else "0.95"
        assert meta[0]["expr"] == f"vector({objective})"
        assert meta[1]["expr"] == f"vector(1-{objective})"
        assert meta[2]["expr"] == f"vector({days})"
        sel = "{" + ", ".join(f'{k}="{ids[k]}"' for k in ("sloth_id", "sloth_service", "sloth_slo")) + "}"
        assert meta[3]["expr"].startswith(
            f"slo:sli_error:ratio_rate5m{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{sel}\n")
        assert meta[4]["expr"].startswith(
            f"slo:sli_error:ratio_rate{pw}{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{sel}\n")
        assert meta[5]["expr"] == f"1 - slo:period_burn_rate:ratio{sel}"
        info = dict(meta[6]["labels"])
        assert info.pop("sloth_version")  # ours names our generator, not a Sloth release
        assert info == {**ids, "sloth_mode": "cli-gen-prom", "sloth_objective": "99.9" if slo == "slo1" else "95",
                        "sloth_spec": "prometheus/v1"}


@pytest.mark.parametrize("period", ["30d", "28d"])
def test_same_alerts_windows_and_thresholds_as_sloth(period):
    _, _, tiers = SLOTH[period]
    alerts = _groups(period)["sloth-slo-alerts-svc01-slo1"]
    assert [a["alert"] for a in alerts] == ["myServiceAlert", "myServiceAlert"]
    for a, sev in zip(alerts, ("page", "ticket")):
        assert a["labels"] == SLOTH_ALERT_LABELS[sev]
        assert a["annotations"] == {"alert02k1": "alert02k2", "summary": SLOTH_SUMMARY,
                                    "title": SLOTH_TITLE.format(sev=sev)}
        assert "for" not in a
        pairs = []
        for m in PAIR_RE.finditer(a["expr"]):
            short, f1, b1, long, f2, b2 = m.groups()
            assert (f1, b1) == (f2, b2)
            pairs.append((short, long, f1, b1))
        assert pairs == tiers[sev]
        assert a["expr"].count(" or\n") + a["expr"].count("\nor\n") == len(pairs) - 1
