"""Writes alerts/tests/paging-scenarios.yml: promtool scenarios at realistic low traffic (issue 15).

The series are a day and more of per-minute counter values, so they are built here (cron slots as steps of 1, never
fractional rates whose rounding would look like counter resets) and committed; tests/alerts/test_alert_promtool.py
checks the committed file is what this builds, runs it with promtool and routes every expected alert through amtool.

    .venv/bin/python -m tests.alerts.paging_scenarios   # rewrite the file after changing a scenario
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
TARGET = ALERTS / "tests" / "paging-scenarios.yml"
H = 60  # samples per hour at 1m
CLEAN = 26 * H  # a day and two hours of clean history before each scenario's event


def seg(values):
    """Per-minute values -> promtool's expanding notation ('a+bxn' segments, '_xn' for missing samples)."""
    out=[]; i=0; n=len(values)
    while i<n:
        if values[i] is None:
            j=i
            while j<n and values[j] is None: j+=1
            out.append(f"_x{j-i}"); i=j; continue
        if i+1<n and values[i+1] is not None:
            d=round(values[i+1]-values[i],9); j=i+1
            while j+1<n and values[j+1] is not None and abs((values[j+1]-values[j])-d)<1e-9: j+=1
            a=round(values[i],6); dd=round(d,9)
            out.append(f"{a:g}+{dd:g}x{j-i}" if dd>=0 else f"{a:g}{dd:g}x{j-i}"); i=j+1
        else:
            out.append(f"{round(values[i],6):g}"); i+=1
    return " ".join(out)



def counter(rates, start=0.0):
    """Per-minute increments -> the counter's values (one more than the increments)."""
    v=[start]
    for r in rates: v.append(v[-1]+r)
    return v



def build() -> str:
    """The text of alerts/tests/paging-scenarios.yml."""
    rules=[yaml.safe_load((ALERTS / n).read_text()) for n in ('slos.rules.yml','platform.rules.yml')]
    names=[g['name'] for r in rules for g in r['groups']]
    order=sorted(names, key=lambda n: 0 if 'sli-recordings' in n else 1 if 'meta-recordings' in n else 2)
    L='job="observatory",instance="collector:8080"'
    END=CLEAN+75  # 27h15m
    def ser(name, labels, values):
        return f"      - series: '{name}{{{L}{','+labels if labels else ''}}}'\n        values: '{values}'\n"
    def per_min(f):  # f(minute) -> increment at that minute (minute 1..END)
        return seg(counter([f(m) for m in range(1, END+1)]))
    def const(v, upto=END): return seg([v]*(upto+1))
    UP=ser("up","",const(1))
    def alerts(t, rows, sev=None):
        sel='alertstate="firing",alertname!="Watchdog"' + (f',severity="{sev}"' if sev else '')
        out=f"      - expr: count by (alertname, severity, team, cause) (ALERTS{{{sel}}})\n        eval_time: {t}\n"
        if not rows: return out+"        exp_samples: []\n"
        out+="        exp_samples:\n"
        for a, s, team, cause in rows:
            out+=f"          - labels: '{{alertname=\"{a}\",severity=\"{s}\",team=\"{team}\",cause=\"{cause}\"}}'\n            value: 1\n"
        return out
    def hm(minutes): return f"{minutes//60}h{minutes%60}m" if minutes%60 else f"{minutes//60}h"
    T0=CLEAN
    def every(n, m, start=0, stop=None):
        """1 at minutes start < m <= stop that are multiples of n (a cron slot every n minutes)"""
        return 1 if m % n == 0 and m > start and (stop is None or m <= stop) else 0
    head='''# Paging scenarios at realistic low traffic (issue 15): a small platform, a day and two hours of clean history, then
# one event. Each scenario is judged by what would wake someone: ALERTS{severity="page"} (and the tickets that come
# instead); tests/alerts/test_alert_promtool.py also routes every expected alert through the real amtool against
# alerts/alertmanager.yml (infra pages -> platform on-call, user causes -> the owning team's tickets).
#
# Traffic: 4 cron slots an hour (one every 15 minutes: a counter step of 1), 2 kernel sessions, one probe a minute,
# 10 data-quality checks an hour. Series have a sample a minute; rules are evaluated every 5 minutes (a day of history
# at 1m evaluations takes promtool minutes). The minimum evidence for a page is 3 bad events in the tier's long
# window (`paging.min_bad_events` in slo/slos.yaml; docs/alerts.md has the arithmetic).
# Run: promtool test rules alerts/tests/*.yml
rule_files:
  - ../slos.rules.yml
  - ../platform.rules.yml
evaluation_interval: 5m
group_eval_order:
'''+''.join(f'  - {n}\n' for n in order)+'\ntests:\n'
    tests=[]
    # A: single failures
    t=f'''
  # A. One of everything: at 26h2m a missed slot (the 26h slot, decided after its grace; scheduler) and a kernel killed by a signal (1 of 2 sessions; 3 older
  # deaths long ago), at 26h15m a failed scheduled run (team data-eng), at 26h30m 2 of a run's 10 quality checks. The infrastructure SLOs burn at page speed
  # (scheduler 1h ratio 1/5 > 14.4%, kernels 0.5 per kernel-hour > 7.2%) but on one bad event each, below the
  # evidence of 3: tickets for the platform while the 5m window holds the event, never a page. The user-caused
  # failures are far too little for a ticket and never page anyway. An hour later the kernel kill is still a ticket:
  # one kill in 48 kernel-hours a day is 4x the 0.5% budget (the ticket's 2h/1d pair), which is worth a look, not a
  # 3 a.m. call.
  - name: 'A: a single failure or crash at low traffic pages nobody'
    interval: 1m
    input_series:
{UP}{ser("notebook_scheduled_slots_total",'team="data-eng",environment="prod",outcome="ok"',per_min(lambda m: every(15, m) - (1 if m in (T0, T0 + 15) else 0) + (1 if m == T0 + 2 else 0)))}{ser("notebook_scheduled_slots_total",'team="data-eng",environment="prod",outcome="missed"',per_min(lambda m: 1 if m == T0 + 2 else 0))}{ser("notebook_scheduled_slots_total",'team="data-eng",environment="prod",outcome="failed"',per_min(lambda m: 1 if m == T0 + 15 else 0))}{ser("notebook_kernel_sessions_active",'team="data-eng"',const(2))}{ser("notebook_kernel_crashes_total",'team="data-eng",reason="signal"',seg([3]*(T0+3)+[4]*(END-T0-2)))}{ser("notebook_quality_checks_total",'team="data-eng",result="pass"',per_min(lambda m: (10 if m % 60 == 30 else 0) - (2 if m == T0 + 30 else 0)))}{ser("notebook_quality_checks_total",'team="data-eng",result="fail"',per_min(lambda m: 2 if m == T0 + 30 else 0))}    promql_expr_test:
{alerts(hm(T0-1), [])}{alerts("26h6m", [("KernelInfraStabilityBudgetBurn","ticket","platform","infra"),("SchedulerReliabilityBudgetBurn","ticket","platform","infra")])}{alerts("26h6m", [], "page")}{alerts("26h15m", [], "page")}{alerts("26h30m", [], "page")}{alerts("27h", [("KernelInfraStabilityBudgetBurn","ticket","platform","infra")])}'''
    tests.append(t)
    # B: sustained failure: probes fail from 26h
    ok=[1 if m<=T0 else 0 for m in range(1,END+1)]; bad=[0 if m<=T0 else 1 for m in range(1,END+1)]
    t=f'''
  # B. Sustained failure: every probe fails from 26h (one a minute). The third failed probe is the evidence: the
  # platform on-call is paged within minutes, well inside 30.
  - name: 'B: a sustained failure pages within 30 minutes'
    interval: 1m
    input_series:
{UP}{ser("notebook_platform_probes_total",'target="hub",result="ok"',seg(counter(ok)))}{ser("notebook_platform_probes_total",'target="hub",result="failed"',seg(counter(bad)))}    promql_expr_test:
{alerts("25h59m", [])}{alerts("26h1m", [], "page")}{alerts("26h10m", [("PlatformAvailabilityBudgetBurn","page","platform","infra")], "page")}{alerts("26h30m", [("PlatformAvailabilityBudgetBurn","page","platform","infra")], "page")}'''
    tests.append(t)
    # C: scheduler down from 26h: every due slot missed
    ok=[every(15, m, stop=T0) for m in range(1,END+1)]; miss=[every(15, m, start=T0) for m in range(1,END+1)]
    t=f'''
  # C. The scheduler dies just after the 26h slot: no run starts, so no run fails, but every due slot (one every 15
  # minutes, team finance) is missed: 26h15m, 26h30m, 26h45m. The burn is at page speed from the first miss; two
  # misses are a ticket; the third is the evidence that pages the platform on-call, 45 minutes after the outage.
  - name: 'C: the scheduler down pages within 60 minutes'
    interval: 1m
    input_series:
{UP}{ser("notebook_scheduled_slots_total",'team="finance",environment="prod",outcome="ok"',seg(counter(ok)))}{ser("notebook_scheduled_slots_total",'team="finance",environment="prod",outcome="missed"',seg(counter(miss)))}    promql_expr_test:
{alerts("26h14m", [])}{alerts("26h40m", [("SchedulerReliabilityBudgetBurn","ticket","platform","infra")])}{alerts("26h46m", [("SchedulerReliabilityBudgetBurn","page","platform","infra")])}{alerts("27h", [("SchedulerReliabilityBudgetBurn","page","platform","infra")])}'''
    tests.append(t)
    # D: prober dies at 26h
    ok=[1 if m<=T0 else 0 for m in range(1,END+1)]
    t=f'''
  # D. The prober dies at 26h: no probe, so no failed probe and no error ratio at all. SLOTrafficAbsent pages the
  # platform 15 minutes later.
  - name: 'D: the prober down pages'
    interval: 1m
    input_series:
{UP}{ser("notebook_platform_probes_total",'target="hub",result="ok"',seg(counter(ok)))}    promql_expr_test:
{alerts("26h10m", [])}{alerts("26h20m", [("SLOTrafficAbsent","page","platform","infra")])}{alerts("27h", [("SLOTrafficAbsent","page","platform","infra")])}'''
    tests.append(t)
    # E: flapping probes from 26h: 5 failing minutes, 10 good, for an hour
    def flap_bad(m):
        if m<=T0 or m>T0+60: return 0
        return 1 if (m-T0-1)%15<5 else 0
    ok=[1-flap_bad(m) for m in range(1,END+1)]; bad=[flap_bad(m) for m in range(1,END+1)]
    checks=[("26h10m"),("26h20m"),("26h25m"),("26h35m"),("26h40m"),("26h50m"),("26h55m"),("27h5m")]
    t=f'''
  # E. Flapping: from 26h to 27h every probe fails for 5 minutes, then succeeds for 10, four times. The page fires on
  # the first wave and keeps firing through each 10-minute lull (the 30m/6h pair stays over its threshold, and
  # keep_firing_for 15m bridges the 5m window; slo-alerts.yml tests keep_firing_for alone): one page, not four. It is
  # still firing 5 minutes after the last wave, and nothing else pages.
  - name: 'E: a flapping SLI is one page'
    interval: 1m
    input_series:
{UP}{ser("notebook_platform_probes_total",'target="hub",result="ok"',seg(counter(ok)))}{ser("notebook_platform_probes_total",'target="hub",result="failed"',seg(counter(bad)))}    promql_expr_test:
'''+''.join(alerts(c, [("PlatformAvailabilityBudgetBurn","page","platform","infra")], "page") for c in checks)
    tests.append(t)
    # F: abandoned critical artifact, retired after 20 minutes
    stale=[0 if m<T0 or m>=T0+20 else 1 for m in range(0,END+1)]
    tracked=[1 if m<T0+20 else 0 for m in range(0,END+1)]
    t=f'''
  # F. A critical artifact of team finance goes stale at 26h because nobody produces it any more. The ticket comes
  # first (10 minutes, plus the team's artifact-freshness SLO ticket); its owner retires it
  # (`notebook.artifact.retired`) at 26h20m, so it is no longer tracked and the page (30 minutes) never comes.
  - name: 'F: an abandoned artifact is retired, no page'
    interval: 1m
    input_series:
{UP}{ser("notebook_artifacts_stale",'team="finance",critical="true"',seg(stale))}{ser("notebook_artifacts",'team="finance",critical="true"',seg(tracked))}    promql_expr_test:
{alerts("26h15m", [("ArtifactFreshnessBudgetBurn","ticket","finance","user"),("NotebookArtifactsStale","ticket","finance","user")])}{alerts("26h35m", [], "page")}{alerts("27h", [], "page")}'''
    tests.append(t)
    # G: cost spike on day 2
    t=f'''
  # G. Day 2 of the month: the month-over-month forecast says 8.2x (one day extrapolated), but the collector exports
  # no spike gauges before 7 whole days (and never for __unallocated__): no cost alert at all.
  - name: 'G: a cost spike on day 2 raises nothing'
    interval: 1m
    input_series:
{UP}{ser("notebook_cost_month_over_month_ratio",'team="finance"',const(8.2))}{ser("notebook_cost_month_over_month_ratio",'team="__unallocated__"',const(6.5))}{ser("notebook_cost_forecast_usd",'team="finance"',const(9000))}    promql_expr_test:
{alerts("26h", [])}{alerts("27h", [])}'''
    tests.append(t)
    return head+"".join(tests)


if __name__ == "__main__":
    TARGET.write_text(build())
    print(f"wrote {TARGET}")
