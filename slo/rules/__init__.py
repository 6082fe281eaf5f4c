"""Prometheus rule generation: a pure function from a validated `Spec` to rule files.

SLO rules are Sloth-compatible (see slok/sloth `examples/_gen/*.yml` and `test/integration/prometheus/testdata`):
the same groups (`sloth-slo-{sli-recordings,meta-recordings,alerts}-<service>-<slo>`), record names, labels,
window pairs, burn factors and float formatting, so Sloth's Grafana dashboards (14348, 14643) work on them.
Where Sloth is wrong we differ, on purpose:

- zero traffic: every ratio divides by `(total > 0)`, so an idle window has no sample instead of NaN; a missing
  error series counts as 0 errors (`error or total * 0`), so "no errors yet" is 0, not "no data"; burn rates and
  the remaining budget fall back to 0 burn / full budget for a group whose counters exist but had no traffic in
  the period;
- the period ratio is traffic weighted (slo/rules/sli_recordings.py);
- a tier whose threshold `factor x (1 - objective)` is >= 1 can never fire: generation fails and says so;
- any period (burn factors derived from Sloth's formula), custom window pairs, per-pair disable.

The spec is resolved once (slo/model.py); one module per rule group: `sli_recordings`, `meta_recordings`,
`slo_alerts`, `platform_alerts`; `files` renders YAML, writes and diffs.
"""

from slo.rules.files import (
    PLATFORM_RULES_FILE,
    SLO_RULES_FILE,
    diff_outputs,
    generate,
    group_names,
    write_outputs,
)

__all__ = ["PLATFORM_RULES_FILE", "SLO_RULES_FILE", "diff_outputs", "generate", "group_names", "write_outputs"]
