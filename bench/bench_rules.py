"""SLO rule evaluation cost: our generated rules against Sloth-style rules for the same SLOs, one real Prometheus.

    .venv/bin/python bench/bench_rules.py                  # 30 days, 50 teams, 1-minute samples
    .venv/bin/python bench/bench_rules.py --days 3 --teams 10   # a quick run

1. A 30-day history in OpenMetrics (`promtool tsdb create-blocks-from openmetrics`): the collector's counters
   behind the 6 SLOs of slo/slos.yaml for `--teams` teams (run attempts by team x trigger x environment x
   outcome, kernel sessions and crashes, reproducibility and quality checks, platform probes, artifact gauges),
   with a daily cycle, per-team error rates, incidents and one idle team; plus the history of the 5m
   recordings each rule set reads back over its 30-day period (ours: error and total event rates; Sloth's: the
   5m error ratio), sampled at every evaluation as Prometheus would have recorded them. The history ends a few
   minutes in the future so the rules see live traffic while they are measured.
2. One Prometheus loads both rule files: alerts/slos.rules.yml as generated, and Sloth's shapes for the same
   SLOs (error/total per window, the period as `sum_over_time / count_over_time` of 5m ratios, Sloth's meta
   recordings and alerts), under the service name `sloth` so no series collide.
3. `prometheus_rule_group_last_duration_seconds` per group, sampled through the run; the cost of a rule set is
   the sum over its groups of the median duration. Ratio ours / Sloth: target 2 or less. The same run checks the
   period ratios against the exact traffic-weighted ratio computed from the generated counters.

Figures go to docs/performance.md between `<!-- bench:rules:start -->` and `<!-- bench:rules:end -->`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import machine, write_section  # noqa: E402
from collector import conventions as C  # noqa: E402
from slo.model import ResolvedSLO, gofloat, resolve  # noqa: E402
from slo.rules.expr import fill, sorted_labels  # noqa: E402
from slo.rules.files import dump_groups  # noqa: E402
from slo.rules.slo_alerts import burns  # noqa: E402
from slo.spec import load_spec  # noqa: E402

SPEC = ROOT / "slo" / "slos.yaml"
OURS = ROOT / "alerts" / "slos.rules.yml"
SLOTH_SERVICE = "sloth"
TRIGGERS, ENVS = ("scheduled", "manual"), ("prod", "staging")
OUTCOMES = {"succeeded": 0.0, "failed": 0.02, "timed_out": 0.005}  # base shares of the bad outcomes
TARGETS = ("hub/ui", "hub/api", "lab/ui", "kernel-gw", "scheduler")


# ---------------------------------------------------------------------------------------------------------
# Sloth's rules for the same SLOs (what `sloth generate` writes for an events SLI)
# ---------------------------------------------------------------------------------------------------------


def _sloth_error_query(s: ResolvedSLO, window: str) -> str:
    ev = s.slo.sli.events
    assert ev is not None
    if ev.error_query is not None:
        return fill(ev.error_query, window)
    return f"({fill(ev.total_query, window)}) - ({fill(ev.good_query or '', window)})"


def sloth_groups(s: ResolvedSLO) -> list[dict]:
    ids = {C.SLOTH_ID: f"{SLOTH_SERVICE}-{s.name}", C.SLOTH_SERVICE: SLOTH_SERVICE, C.SLOTH_SLO: s.name}
    s = dataclasses.replace(s, ids=ids, labels={**{k: v for k, v in s.labels.items() if not k.startswith("sloth_")},
                                                **ids})
    ev = s.slo.sli.events
    assert ev is not None
    sel, base = s.selector, s.base_window

    def rec(record: str, expr: str, window: str | None = None) -> dict:
        labels = {**s.labels, **({C.SLOTH_WINDOW: window} if window else {})}
        return {"record": record, "expr": expr, "labels": sorted_labels(labels)}

    sli = [rec(C.sli_error_ratio(w), f"({_sloth_error_query(s, w)})\n/\n({fill(ev.total_query, w)})\n", w)
           for w in s.windows]
    sli.append(rec(C.sli_error_ratio(s.period),
                   f"sum_over_time({C.sli_error_ratio(base)}{sel}[{s.period}])\n/ ignoring ({C.SLOTH_WINDOW})\n"
                   f"count_over_time({C.sli_error_ratio(base)}{sel}[{s.period}])\n", s.period))
    on = "on(sloth_id, sloth_slo, sloth_service) group_left"
    meta = [
        rec("slo:objective:ratio", f"vector({gofloat(s.objective_ratio)})"),
        rec("slo:error_budget:ratio", f"vector(1-{gofloat(s.objective_ratio)})"),
        rec("slo:time_period:days", f"vector({s.period_ms // 86_400_000})"),
        rec("slo:current_burn_rate:ratio",
            f"{C.sli_error_ratio(base)}{sel}\n/ {on}\nslo:error_budget:ratio{sel}\n"),
        rec("slo:period_burn_rate:ratio",
            f"{C.sli_error_ratio(s.period)}{sel}\n/ {on}\nslo:error_budget:ratio{sel}\n"),
        rec("slo:period_error_budget_remaining:ratio", f"1 - slo:period_burn_rate:ratio{sel}"),
        rec("sloth_slo_info", "vector(1)"),
    ]
    groups = [{"name": C.SLI_RECORDINGS_GROUP + s.sloth_id, "rules": sli},
              {"name": C.META_RECORDINGS_GROUP + s.sloth_id, "rules": meta}]
    alerts = []
    for sev in ("page", "ticket"):
        tiers = s.enabled_tiers(sev)
        if tiers:
            alerts.append({"alert": (s.slo.alerting.name or s.name) + "Sloth", "expr": burns(s, tiers) + "\n",
                           "labels": sorted_labels({"sloth_severity": sev}),
                           "annotations": {"summary": "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error "
                                                      "budget burn rate is over expected."}})
    if alerts:
        groups.append({"name": C.SLO_ALERTS_GROUP + s.sloth_id, "rules": alerts})
    return groups


# ---------------------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------------------


def _u(key: pl.Expr, seed: int) -> pl.Expr:
    """A pseudo-random number in [0, 1) from an integer column (seeded hash: the same history every run)."""
    return (key.hash(seed=seed) % 1_000_003).cast(pl.Float64) / 1_000_003


@dataclasses.dataclass
class Source:
    """One SLO's events for one team (or for the platform): a good and a bad counter per label set."""

    slo: str
    team: str | None
    metric: str
    good: list[dict[str, str]]  # label sets of the good counters (their sum is the good events)
    bad: list[dict[str, str]]  # label sets of the bad counters
    rate: float  # events per second at the daily peak
    bad_share: float
    incident: bool


def sources(teams: int) -> list[Source]:
    out = []
    for k in range(teams):
        team = f"team-{k:02d}"
        idle = k == teams - 1  # one team without any traffic: our rules give no sample, Sloth's give NaN
        f = 0.0 if idle else 1.0
        inc = k % 7 == 0
        w = 0.3 + (k * 37 % 17) / 17
        runs = [{"team": team, "trigger": t, "environment": e} for t in TRIGGERS for e in ENVS]
        out.append(Source("scheduled-run-success", team, "notebook_run_attempts_total",
                          [{**r, "outcome": "succeeded"} for r in runs],
                          [{**r, "outcome": o} for r in runs for o in ("failed", "timed_out")],
                          f * w * 0.02, 0.01 + 0.02 * (k % 3), inc))
        out.append(Source("kernel-stability", team, "notebook_kernel_sessions_total", [{"team": team}],
                          [{"team": team, "reason": r} for r in ("crash", "oom")], f * w * 0.01, 0.003, inc))
        out.append(Source("reproducibility", team, "notebook_reproducibility_checks_total",
                          [{"team": team, "result": "match"}], [{"team": team, "result": "mismatch"}],
                          f * w * 0.002, 0.02, inc))
        out.append(Source("data-quality", team, "notebook_quality_checks_total", [{"team": team, "result": "pass"}],
                          [{"team": team, "result": "fail"}], f * w * 0.005, 0.005, inc))
        out.append(Source("artifact-freshness", team, "notebook_artifacts", [{"team": team}], [{"team": team}],
                          f * (10 + k % 20), 0.01, inc))
    out.append(Source("platform-availability", None, "notebook_platform_probes_total",
                      [{"target": t, "result": "ok"} for t in TARGETS],
                      [{"target": t, "result": "failed"} for t in TARGETS], 0.1, 0.001, True))
    return out


def _series(src: Source, ts: pl.Series, cycle: pl.Series, step: int, seed: int) -> tuple[list, pl.Series, pl.Series]:
    """Counters (or gauges) of one source and its per-sample error and total events (for the recordings)."""
    n = len(ts)
    slot = ts // 7200
    incident = ((slot % 60) == (seed * 11) % 60) & src.incident  # a 2-hour incident every 5 days
    hi = min(0.5, src.bad_share * 20) if src.incident else src.bad_share
    share = incident.cast(pl.Float64) * (hi - src.bad_share) + src.bad_share
    out = []
    if src.metric == "notebook_artifacts":  # gauges: artifacts with an SLA, and the stale ones among them
        total = (pl.Series([src.rate] * n)).floor()
        stale = (total * share * 3).floor()
        out.append(("notebook_artifacts", src.good[0], total))
        out.append(("notebook_artifacts_stale", src.bad[0], stale))
        return out, stale, total
    good_sum = pl.Series([0.0] * n)
    bad_sum = pl.Series([0.0] * n)
    for j, labels in enumerate(src.good + src.bad):
        is_bad = j >= len(src.good)
        noise = pl.select(_u(pl.int_range(0, n, dtype=pl.Int64) + j * 1_000_000, seed + j)).to_series()
        per = src.rate * step * cycle * (0.5 + noise) / (len(src.bad) if is_bad else len(src.good))
        inc = per * (share if is_bad else (1 - share))
        counter = inc.cum_sum().floor()
        out.append((src.metric if src.metric.endswith("_total") else src.metric, labels, counter))
        delta = counter.diff().fill_null(0)
        if is_bad:
            bad_sum = bad_sum + delta
        else:
            good_sum = good_sum + delta
    if src.slo == "kernel-stability":  # sessions are the total; crashes are the errors
        return out, bad_sum, good_sum
    return out, bad_sum, good_sum + bad_sum


def _rate5m(per_sample: pl.Series, step: int) -> pl.Series:
    """What rate(...[5m]) gives at each sample: the events of the last 5 minutes per second."""
    k = max(1, 300 // step)
    return per_sample.rolling_sum(k, min_samples=1) / (k * step)


def build_history(path: Path, model_slos: dict[str, ResolvedSLO], teams: int, days: float, step: int,
                  end: int) -> dict:
    """Writes the OpenMetrics file; returns the exact 30-day error ratio per (SLO, team) and sample counts."""
    n = int(days * 86_400 // step)
    ts = pl.int_range(end - (n - 1) * step, end + 1, step, eager=True, dtype=pl.Int64)
    day = (ts % 86_400).cast(pl.Float64) / 86_400
    cycle = 0.15 + 0.85 * ((day * 6.2832 - 2.4).sin() + 1) / 2  # busy days, quiet nights
    families: dict[str, tuple[str, list]] = {}
    exact: dict[str, float | None] = {}
    for i, src in enumerate(sources(teams)):
        series, bad, total = _series(src, ts, cycle, step, i + 1)
        for name, labels, values in series:
            kind = "counter" if name.endswith("_total") else "gauge"
            families.setdefault(name, (kind, []))[1].append(({"job": "observatory", **labels}, values))
        s = model_slos[src.slo]
        team = {"team": src.team} if src.team else {}
        if src.metric == "notebook_artifacts":  # avg_over_time of gauges: the window's mean values
            err5, tot5 = bad.rolling_mean(max(1, 300 // step), min_samples=1), \
                total.rolling_mean(max(1, 300 // step), min_samples=1)
            sum_t = float(total.sum())
            exact[f"{src.slo}/{src.team}"] = float(bad.sum()) / sum_t if sum_t else None
        else:
            err5, tot5 = _rate5m(bad, step), _rate5m(total, step)
            sum_t = float(total.sum())
            exact[f"{src.slo}/{src.team or 'platform'}"] = float(bad.sum()) / sum_t if sum_t else None
        ours = {**s.labels, **team, C.SLOTH_WINDOW: s.base_window}
        families.setdefault(C.sli_error_events(s.base_window), ("gauge", []))[1].append((ours, err5))
        families.setdefault(C.sli_total_events(s.base_window), ("gauge", []))[1].append((ours, tot5))
        sid = {C.SLOTH_ID: f"{SLOTH_SERVICE}-{s.name}", C.SLOTH_SERVICE: SLOTH_SERVICE, C.SLOTH_SLO: s.name}
        theirs = {**{k: v for k, v in s.labels.items() if not k.startswith("sloth_")}, **sid, **team,
                  C.SLOTH_WINDOW: s.base_window}
        families.setdefault(C.sli_error_ratio(s.base_window), ("gauge", []))[1].append((theirs, err5 / tot5))
    # One file per 2-hour block: promtool re-reads its whole input for every block it cuts, so a 30-day file
    # would be read 360 times.
    lines = 0
    block = ts // 7200
    files = []
    for b in block.unique().sort().to_list():
        idx = (block == b).arg_true()
        out = path.with_name(f"{path.stem}-{b}.om")
        tcol = ts.gather(idx).cast(pl.String)
        with open(out, "w") as fh:
            for name, (kind, series) in families.items():
                fh.write(f"# TYPE {name.removesuffix('_total') if kind == 'counter' else name} {kind}\n")
                for labels, values in series:
                    lab = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                    text = values.gather(idx).cast(pl.Float64).fill_nan(None).cast(pl.String).fill_null("NaN")
                    rows = pl.select((pl.lit(name + lab + " ") + text + " " + tcol).alias("l"))["l"]
                    fh.write("\n".join(rows.to_list()))
                    fh.write("\n")
                    lines += len(rows)
            fh.write("# EOF\n")
        files.append(out)
    return {"samples": lines, "exact": exact, "series": sum(len(v[1]) for v in families.values()), "files": files}


# ---------------------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def measure(blocks: Path, rule_files: list[Path], work: Path, interval: int, rounds: int) -> tuple[dict, dict]:
    """Run Prometheus on the blocks with the rule files; sample each group's last evaluation duration once per
    interval for `rounds` intervals (after two warm-up evaluations); return them and the period ratios."""
    port = _free_port()
    cfg = work / "prometheus.yml"
    # the history runs into the next minutes (live traffic while measuring): the rules write samples older than
    # the newest block, which Prometheus takes into its out-of-order head
    cfg.write_text(yaml.safe_dump({"global": {"evaluation_interval": f"{interval}s", "scrape_interval": "60s"},
                                   "storage": {"tsdb": {"out_of_order_time_window": "2h"}},
                                   "rule_files": [str(p) for p in rule_files]}))
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={blocks}",
                             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=90d"],
                            stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError((work / "prometheus.log").read_text()[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready")
            time.sleep(1)
        # Prometheus compacts the imported 2-hour blocks in the background: measure once that has settled
        last, still = None, 0
        while still < 3:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60).text
            n = [ln for ln in text.splitlines() if ln.startswith(("prometheus_tsdb_compactions_total ",
                                                                  "prometheus_tsdb_blocks_loaded "))]
            still = still + 1 if n == last else 0
            last = n
            time.sleep(10)
        time.sleep(2.5 * interval)
        durations: dict[str, list[float]] = {}
        for _ in range(rounds):  # Prometheus' own /metrics (it does not scrape itself here)
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60).text
            for line in text.splitlines():
                if line.startswith("prometheus_rule_group_last_duration_seconds{"):
                    group = line.split('rule_group="', 1)[1].split('"', 1)[0]
                    durations.setdefault(group, []).append(float(line.rsplit(" ", 1)[1]))
            time.sleep(interval)
        ratios = {}
        for svc in ("notebooks", SLOTH_SERVICE):
            q = f'slo:sli_error:ratio_rate30d{{sloth_service="{svc}"}}'
            res = httpx.get(api, params={"query": q}, timeout=120).json()
            for r in res["data"]["result"]:
                m = r["metric"]
                ratios[f"{svc}:{m['sloth_slo']}/{m.get('team', 'platform')}"] = float(r["value"][1])
        return durations, ratios
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def render(m: dict, args: argparse.Namespace, hist: dict, build_s: float, durations: dict, ratios: dict,
           cmd: str) -> tuple[str, dict]:
    def cost(prefix_filter) -> tuple[float, int]:
        groups = {g: v for g, v in durations.items() if prefix_filter(g)}
        return sum(statistics.median(v) for v in groups.values()), len(groups)

    ours, n_ours = cost(lambda g: "slos.rules.yml;" in g)
    sloth, n_sloth = cost(lambda g: "sloth.rules.yml;" in g)
    per_kind = {}
    for kind in ("sli-recordings", "meta-recordings", "alerts"):
        per_kind[kind] = (cost(lambda g, k=kind: "slos.rules.yml;" in g and f"sloth-slo-{k}-" in g)[0],
                          cost(lambda g, k=kind: "sloth.rules.yml;" in g and f"sloth-slo-{k}-" in g)[0])
    # period ratios against the truth, over teams with traffic
    errs_ours, errs_sloth, idle = [], [], []
    for key, truth in hist["exact"].items():
        o, t = ratios.get(f"notebooks:{key}"), ratios.get(f"{SLOTH_SERVICE}:{key}")
        if truth is None:
            idle.append((key, o, t))
            continue
        if o is not None and truth > 0:
            errs_ours.append(abs(o - truth) / truth)
        if t is not None and truth > 0:
            errs_sloth.append(abs(t - truth) / truth if t == t else float("nan"))
    summary = {"ours_ms": 1000 * ours, "sloth_ms": 1000 * sloth, "ratio": ours / sloth if sloth else None,
               "groups": [n_ours, n_sloth], "per_kind_ms": {k: [1000 * a, 1000 * b] for k, (a, b) in per_kind.items()},
               "period_error_ours": statistics.median(errs_ours) if errs_ours else None,
               "period_error_sloth": statistics.median([e for e in errs_sloth if e == e] or [float("nan")]),
               "sloth_nan": sum(1 for e in errs_sloth if e != e), "pairs": len(errs_ours),
               "idle": [(k, o, t) for k, o, t in idle]}
    rounds = min(len(v) for v in durations.values()) if durations else 0
    out = [
        "Measured by `bench/bench_rules.py`.",
        "",
        f"Machine: {m['desc']}, shared (load average {m['load']:.1f} at start); Prometheus {m['prometheus']}. "
        f"Command: `{cmd}`.",
        f"History: {args.days:g} days at one sample per {args.step} s, {args.teams} teams, 6 SLOs: {hist['series']:,} "
        f"series, {hist['samples']:,} samples in OpenMetrics, {build_s:.0f} s to generate and "
        "`promtool tsdb create-blocks-from openmetrics`. Both rule sets evaluated by one Prometheus every "
        f"{args.interval} s; {rounds} samples of `prometheus_rule_group_last_duration_seconds` per group, "
        "cost = sum over the set's groups of the median.",
        "",
        "| rule set | groups | SLI recordings | meta recordings | alerts | total per evaluation |",
        "|---|---|---|---|---|---|",
        f"| ours (alerts/slos.rules.yml: traffic-weighted period, no NaN at zero traffic) | {n_ours} | "
        f"{per_kind['sli-recordings'][0] * 1000:.1f} ms | {per_kind['meta-recordings'][0] * 1000:.1f} ms | "
        f"{per_kind['alerts'][0] * 1000:.1f} ms | **{1000 * ours:.1f} ms** |",
        f"| Sloth's shapes for the same SLOs (period = mean of 5m ratios) | {n_sloth} | "
        f"{per_kind['sli-recordings'][1] * 1000:.1f} ms | {per_kind['meta-recordings'][1] * 1000:.1f} ms | "
        f"{per_kind['alerts'][1] * 1000:.1f} ms | **{1000 * sloth:.1f} ms** |",
        "",
        f"Ratio ours / Sloth: **{summary['ratio']:.2f}** (target 2 or less).",
        "",
        "Accuracy in the same run: the 30-day error ratio of each SLO and team with traffic against the exact "
        "traffic-weighted ratio of the generated counters (median relative error): ours "
        f"{100 * (summary['period_error_ours'] or 0):.2f}% over {summary['pairs']} pairs; Sloth's mean of 5m ratios "
        f"NaN for {summary['sloth_nan']} of them (a 5m window without events is 0/0 and poisons the 30-day mean), "
        f"{100 * summary['period_error_sloth']:.2f}% off for the others (quiet nights weigh as much as busy "
        "afternoons). "
        f"Idle team ({', '.join(k for k, _, _ in idle) or 'none'}): ours "
        f"{'no sample' if all(o is None for _, o, _ in idle) else [o for _, o, _ in idle]}, Sloth "
        f"{['NaN' if t is not None and t != t else t for _, _, t in idle]}.",
    ]
    return "\n".join(out) + "\n", summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--teams", type=int, default=50)
    ap.add_argument("--step", type=int, default=60, help="seconds between samples (scrape and evaluation)")
    ap.add_argument("--interval", type=int, default=20, help="Prometheus evaluation interval while measuring")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--live-minutes", type=int, default=90,
                    help="how far past the start the history runs (it must outlast building the TSDB)")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    m = {"desc": machine(), "load": os.getloadavg()[0],
         "prometheus": subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split()[2]}
    model = resolve(load_spec(SPEC))
    slos = {s.name: s for s in model.slos}
    args.data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-rules-", dir=args.data_dir))
    try:
        rules_ours = work / "slos.rules.yml"
        shutil.copy(OURS, rules_ours)
        rules_sloth = work / "sloth.rules.yml"
        rules_sloth.write_text(dump_groups([g for s in model.slos for g in sloth_groups(s)]))
        for f in (rules_ours, rules_sloth):
            subprocess.run(["promtool", "check", "rules", str(f)], check=True, capture_output=True)
        t0 = time.perf_counter()
        end = int(time.time()) // args.step * args.step + args.live_minutes * 60  # live traffic while measuring
        om = work / "history.om"
        hist = build_history(om, slos, args.teams, args.days, args.step, end)
        blocks = work / "tsdb"
        for f in hist.pop("files"):
            subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(f), str(blocks)],
                           check=True)
            f.unlink()
        build_s = time.perf_counter() - t0
        print(f"history: {hist['series']} series, {hist['samples']:,} samples, {build_s:.0f} s", flush=True)
        durations, ratios = measure(blocks, [rules_ours, rules_sloth], work, args.interval, args.rounds)
    finally:
        if (work / "prometheus.log").exists():
            shutil.copy(work / "prometheus.log", args.data_dir / "last_rules_prometheus.log")
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python bench/bench_rules.py" + "".join(
        f" --{k} {v}" for k, v in (("days", args.days), ("teams", args.teams), ("step", args.step))
        if v != ap.get_default(k))
    section, summary = render(m, args, hist, build_s, durations, ratios, cmd)
    (args.data_dir / "last_rules.json").write_text(json.dumps({"summary": summary, "durations": durations,
                                                               "ratios": ratios, "exact": hist["exact"]}, indent=1))
    print(section)
    if not args.no_write:
        write_section("rules", section)


if __name__ == "__main__":
    main()
