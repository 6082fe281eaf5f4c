"""SLI computation: every requested SLI over every requested window and level (platform, team, notebook, trigger).

Two ways to the same numbers (tests hold both to a plain-Python reference):

- **direct** (`mode="direct"`): everything from the core tables (`run_attempts`, `events`) and the missed-slot
  table, nothing cached. This is the "full computation" of bench/bench_sli.py.
- **incremental** (default): slo/sli/fold.py first brings the SLI tables up to date; a window is then the sum of
  the rollups' whole days and hours plus its partial edges read from the facts and events (slo/sli/windows.py).

Additive SLIs (M1, M2, M5, M6, M8, M11, M12) are sums of contribution rows; the others (M3, M4, M7, M9, M10, M14,
M15) have their own queries. Every value reaches DuckDB as a bound `$name` parameter (`Params`), request filters
(team, notebook) and computed time bounds alike; SQL text is in slo/sli/sql.py.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from contextlib import nullcontext
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable

import duckdb
import polars as pl
import pyarrow as pa

from collector.engines.base import table_exists
from collector.storage.alerts import pages_and_flaps_by_team
from collector.storage.db import arrow
from collector.storage.sqltext import Params
from cost import allocation, variance
from slo.sli import durations, sums
from slo.sli import sql as Q
from slo.sli.beside import beside
from slo.sli.config import LEVELS, PER_NOTEBOOK, SliConfig, SliQuery, resolve_sli, utc
from slo.sli.fold import fold, kept_state
from slo.sli.underived import FROM_RUN_ATTEMPTS, Scope, missing_attempts
from slo.sli.windows import Win, merge_ranges, windows


def _grouping(levels: Iterable[str], *, notebook: bool, trigger: bool) -> str:
    sets: list[str] = []
    lv = set(levels)
    if notebook:
        sets.append("(team, notebook_id)")
        if trigger and "trigger" in lv:
            sets.append("(team, notebook_id, trigger)")
    else:
        if "platform" in lv:
            sets.append("()")
        if "team" in lv:
            sets.append("(team)")
        if trigger and "trigger" in lv:
            sets += ["(trigger)", "(team, trigger)"]
    return ", ".join(sets)


def _scope(team_g: int, nb_g: int, trig_g: int, team: str, nb: str | None, trig: str | None) -> tuple:
    return (None if team_g else team, None if nb_g else nb, None if trig_g else (trig if trig != "" else None))


PRIMARY_STAT = {"M1": "ratio", "M2": "ratio", "M3": "mean", "M4": "per_run", "M5": "count", "M6": "ratio",
                "M7": "ratio", "M8": "ratio", "M9": "ratio", "M10": "mom_change", "M11": "per_1000_sessions",
                "M12": "ratio", "M13": "count", "M14": "median", "M15": "ratio"}
SNAPSHOT = {"M7", "M9", "M10", "M15"}
STAT_UNIT = {"max_age_seconds": "seconds"}  # a stat whose unit is not its SLI's (M7's ratio)


def _skey(x: tuple) -> tuple:
    return tuple("" if v is None else v for v in x)


class _Ctx:
    """What one compute() call is asked, plus the rows it has produced so far."""

    def __init__(self, q: SliQuery, wins: list[Win], levels: tuple[str, ...], as_of: datetime, prov: dict,
                 kept: tuple[durations.Key | None, int | None]) -> None:
        self.q, self.wins, self.levels, self.as_of, self.prov = q, wins, set(levels), as_of, prov
        self.kept = kept  # (key of the kept states, fold cursor), read under the fold lock (incremental mode)
        self.out: list[dict[str, Any]] = []
        self.reasons: dict[str, str] = {}
        # run attempts not derived per scope (slo/sli/underived.py); scopes missing none are left out
        self.missing: dict[Scope, int] = {}
        # the provenance times as text, once per window (a refresh emits ~1,600 rows: 3 ms of isoformat)
        self.as_of_text = as_of.isoformat()
        self.start_text = {w.name: w.s.isoformat() for w in wins}

    def want(self, team, nb, trig) -> bool:
        q, lv = self.q, self.levels
        if q.team is not None and team != q.team:
            return False
        if q.notebook_id is not None and nb != q.notebook_id:
            return False
        if q.trigger is not None and trig != q.trigger:
            return False
        if nb is not None:
            return "notebook" in lv and (trig is None or "trigger" in lv)
        if trig is not None:
            return "trigger" in lv and q.notebook_id is None
        if q.notebook_id is not None:
            return False
        return ("team" in lv) if team is not None else ("platform" in lv)

    def explicit(self) -> list[tuple]:
        """Scopes that get a row even without data (value null): the platform, or exactly what the filters name."""
        q, lv = self.q, self.levels
        if q.notebook_id is not None:
            return [(q.team, q.notebook_id, q.trigger)]
        if q.trigger is not None:
            return [(q.team, None, q.trigger)]
        if q.team is not None:
            return [(q.team, None, None)] if "team" in lv else []
        return [(None, None, None)] if "platform" in lv else []

    def emit(self, w: Win, sli: str, team, nb, trig, stat: str, value, good=None, bad=None, total=None, *,
             absent_reason: str | None = None, details: Any = None) -> None:
        name, _, unit = Q.SLIS[sli]
        unit = STAT_UNIT.get(stat, unit)
        row = {
            "sli": sli, "name": name, "window": w.name, "team": team, "notebook_id": nb, "trigger": trig,
            "stat": stat, "value": value, "good": good, "bad": bad, "total": total, "unit": unit,
            "provenance": {
                "definition_version": f"{sli}/{Q.DEFINITION_VERSION}",
                "event_time_from": None if sli in SNAPSHOT else self.start_text[w.name],
                "event_time_to": self.as_of_text,
                **self.prov,
                "underived_run_attempts": self.missing.get((w.name, team, nb, trig), 0)
                if sli in FROM_RUN_ATTEMPTS else None,
            },
        }
        if value is None:
            row["absent_reason"] = absent_reason or self.reasons.get(sli) or "no events in the window"
        if details is not None:
            row["details"] = details
        self.out.append(row)

    def fill_absent(self, slis: list[str]) -> None:
        have = {(r["window"], r["sli"], r["team"], r["notebook_id"], r["trigger"]) for r in self.out}
        have_nb = {(r["window"], r["sli"], r["notebook_id"], r["trigger"]) for r in self.out}
        for w in self.wins:
            for sli in slis:
                for team, nb, trig in self.explicit():
                    if trig is not None and sli != "M1":
                        continue
                    if nb is not None and sli not in PER_NOTEBOOK:
                        continue
                    if (w.name, sli, team, nb, trig) in have:
                        continue
                    if team is None and nb is not None and (w.name, sli, nb, trig) in have_nb:
                        continue
                    self.emit(w, sli, team, nb, trig, PRIMARY_STAT[sli], None)


def compute(cur: duckdb.DuckDBPyConnection, q: SliQuery, cfg: SliConfig | None = None, *,
            mode: str = "incremental", fold_first: bool = True, underived: bool = True) -> list[dict[str, Any]]:
    """Every requested SLI for every requested window and level at q.as_of; rows as served by GET /v1/sli.
    `underived`: count, on the rows of the SLIs over run attempts, the attempts of batches the deriver gave up on
    (slo/sli/underived.py); False on a lake engine, whose run attempts are rebuilt from every stored event
    (collector/lake/rebuild.py), so that its rows miss none."""
    cfg = cfg or SliConfig()
    as_of = utc(q.as_of)
    if mode not in ("incremental", "direct"):
        raise ValueError(f"mode must be incremental or direct, not {mode!r}")
    if mode == "incremental" and fold_first:
        fold(cur, cfg)
    wins = windows(q.windows, as_of)
    slis = list(dict.fromkeys(resolve_sli(s) for s in q.slis))
    levels = tuple(lv for lv in q.levels if lv in LEVELS)
    if q.notebook_id is not None and "notebook" not in levels:
        levels += ("notebook",)
    if q.trigger is not None and "trigger" not in levels:
        levels += ("trigger",)
    # Incremental: under the fold lock for the whole computation, so that the kept states (slo/sli/durations.py,
    # sums.py) and the provenance are of one fold cursor, read once (each read of sli_state costs ~0.6 ms).
    with kept_state(cur) if mode == "incremental" else nullcontext((None, None)) as kept:
        prov = {"mode": mode, "folded_through_batch": kept[1]}
        ctx = _Ctx(q, wins, levels, as_of, prov, kept)
        if underived and FROM_RUN_ATTEMPTS & set(slis):
            sets = [_grouping(levels, notebook=False, trigger=True)]
            if "notebook" in levels:
                sets.append(_grouping(levels, notebook=True, trigger=True))
            ctx.missing = missing_attempts(cur, wins, as_of, [s for s in sets if s])

        # The snapshot SLIs beside the others (slo/sli/beside.py): their statements (~12 ms at 10M events) overlap
        # the others' statements and Python (measured in the seventh round: 54 -> 41 ms per refresh). They read the
        # folded tables, which nothing here writes; the direct mode's statements scan the events and stay in line
        # (GET /v1/sli's timeout interrupts the caller's cursor only), and so do they when nothing else is asked (a
        # worker would only add its set-up).
        snap = _FROM_SNAPSHOTS & set(slis)
        with beside(cur, lambda c, _own: _snapshots(c, ctx, cfg, mode, slis) if snap else None,
                    alone=bool(snap) and bool(set(slis) - _FROM_SNAPSHOTS) and mode == "incremental"):
            _windowed(cur, ctx, cfg, mode, slis)
    ctx.fill_absent(slis)
    order = {s: i for i, s in enumerate(Q.SLIS)}
    wo = {w.name: i for i, w in enumerate(wins)}
    stats = {"ratio": 0, "mean": 1, "p50": 2, "p95": 3, "p99": 4}
    ctx.out.sort(key=lambda r: (wo[r["window"]], order[r["sli"]], r["team"] or "", r["notebook_id"] or "",
                                r["trigger"] or "", stats.get(r["stat"], 9), r["stat"]))
    return ctx.out


_FROM_SNAPSHOTS = frozenset({"M7", "M9", "M14", "M15"})  # the SLIs _snapshots computes; _windowed the others


def _windowed(cur, ctx: _Ctx, cfg: SliConfig, mode: str, slis: list[str]) -> None:
    """The SLIs over windows of events (all but _FROM_SNAPSHOTS)."""
    q, wins, levels = ctx.q, ctx.wins, tuple(ctx.levels)
    need_add = bool(set(slis) & (set(Q.ADDITIVE) | {"M13"}))
    add: dict[tuple, list[float]] = {}  # (window, sli, team, nb, trig) -> [good, bad, total]
    if need_add:
        if q.notebook_id is None and set(levels) - {"notebook"}:
            if mode != "incremental" or not _kept_additive(cur, ctx, add):
                _additive(cur, ctx, mode, add, notebook=False)
        if "notebook" in levels:
            _additive(cur, ctx, mode, add, notebook=True)
        _missed(cur, ctx, add)
    observed = {(k[0], k[2], k[3]) for k, (g, b, t) in add.items() if k[4] is None and (t > 0 or b > 0)}
    pages = dict(zip((w.name for w in wins), pages_and_flaps_by_team(cur, [(w.s, w.e) for w in wins]))) \
        if "M13" in slis else {}
    for w in wins:
        scopes = sorted({k[2:] for k in add if k[0] == w.name}, key=_skey)
        for sli in slis:
            if sli not in Q.ADDITIVE:
                continue
            for team, nb, trig in scopes:
                if not ctx.want(team, nb, trig) or (trig is not None and sli != "M1"):
                    continue
                if nb is not None and sli not in PER_NOTEBOOK:
                    continue
                g, b, t = add.get((w.name, sli, team, nb, trig), [0.0, 0.0, 0.0])
                if sli in ("M1", "M2", "M6") and t > 0:
                    ctx.emit(w, sli, team, nb, trig, "ratio", g / t, int(g), int(b), int(t))
                elif sli in ("M8", "M12") and t > 0:
                    ctx.emit(w, sli, team, nb, trig, "ratio", b / t, int(g), int(b), int(t))
                elif sli == "M11" and t > 0:
                    ctx.emit(w, sli, team, nb, trig, "per_1000_sessions", 1000.0 * b / t, None, int(b), int(t))
                elif sli == "M5" and trig is None and (w.name, team, nb) in observed:
                    ctx.emit(w, sli, team, nb, trig, "count", float(t), None, None, int(t))
        if "M13" in slis:
            _pages(ctx, w, [sc for sc in scopes if sc[1] is None and sc[2] is None and ctx.want(*sc)], observed,
                   pages[w.name])
    if "M11" in slis:
        ctx.reasons["M11"] = "no kernel session started in the window"
    if "M3" in slis:
        _exec_time(cur, ctx, mode, cfg)
    if {"M4", "M10"} & set(slis):
        alloc = _Allocation(cur, ctx)  # computed once for both: it is most of their cost
        if "M4" in slis:
            _cost_per_run(cur, ctx, alloc)
        if "M10" in slis:
            _cost_variance(cur, ctx, alloc)


def _raw_sources(p: Params, mode: str, ranges: list[tuple[datetime, datetime]], lo: datetime, hi: datetime) -> str:
    """Contribution rows (piece 'raw') from run facts and events in the given time ranges."""
    parts = []
    if mode == "direct":
        facts = Q.RUN_FACTS_WITH_REPRO.format(facts=Q.RUN_FACTS.format(src="run_attempts"))
        # one relation for the three branches of RUN_CONTRIB (a CTE read more than once is computed once)
        parts.append(f"WITH rf AS (SELECT * FROM ({facts}) x WHERE t >= {p(lo)} AND t < {p(hi)}) "
                     + Q.RUN_CONTRIB.format(f="rf"))
        parts.append(Q.EVENT_CONTRIB.format(src="events", where=f"time >= {p(lo)} AND time < {p(hi)}"))
    else:
        # every range in one predicate (no range: an empty relation of the right shape). DuckDB pushes an OR of
        # ranges on `t` into the scan; one branch per range instead planned 4 x ranges branches, and planning was
        # most of this statement (34 of 38 ms at 10M events, measured)
        cond = " OR ".join(f"(t >= {p(a)} AND t < {p(b)})" for a, b in ranges or [(hi, hi)])
        parts.append(Q.KEPT_CONTRIB.format(cond=cond))
    return " UNION ALL ".join(f"SELECT *, 'raw' AS piece FROM ({p})" for p in parts)


def _additive(cur, ctx: _Ctx, mode: str, add: dict, *, notebook: bool) -> None:
    q, wins = ctx.q, ctx.wins
    grouping = _grouping(ctx.levels, notebook=notebook, trigger=True)
    if not grouping:
        return
    lo = min(w.s for w in wins)
    hi = max(w.e for w in wins)
    p = Params()
    use_hours = mode == "incremental" and not notebook
    if use_hours:
        ranges = merge_ranges([r for w in wins for r in ((w.s, w.hs), (w.he, w.e))])
        contrib = _raw_sources(p, mode, ranges, lo, hi)
        hours = merge_ranges([r for w in wins for r in ((w.hs, w.ds), (w.de, w.he))])
        if hours:
            cond = " OR ".join(f"(h >= {p(a)} AND h < {p(b)})" for a, b in hours)
            contrib += " UNION ALL " + Q.ROLLUP_AS_CONTRIB.format(piece="hour", table="sli_hourly", unit="hour",
                                                                  where=cond)
        days = merge_ranges([(w.ds, w.de) for w in wins])
        if days:
            cond = " OR ".join(f"(h >= {p(a)} AND h < {p(b)})" for a, b in days)
            contrib += " UNION ALL " + Q.ROLLUP_AS_CONTRIB.format(piece="day", table="sli_daily", unit="day",
                                                                  where=cond)
    else:
        contrib = _raw_sources(p, mode, [(lo, hi)], lo, hi)
    measures, flag_exprs = [], []
    for i, w in enumerate(wins):
        if use_hours:
            cond = (f"(piece = 'day' AND t >= {p(w.ds)} AND t < {p(w.de)}) OR (piece = 'hour' AND "
                    f"((t >= {p(w.hs)} AND t < {p(w.ds)}) OR (t >= {p(w.de)} AND t < {p(w.he)}))) OR "
                    f"(piece = 'raw' AND ((t >= {p(w.s)} AND t < {p(w.hs)}) OR (t >= {p(w.he)} AND t < {p(w.e)})))")
        else:
            cond = f"t >= {p(w.s)} AND t < {p(w.e)}"
        flag_exprs.append(f"CASE WHEN {cond} THEN 1 ELSE 0 END AS in_{i}")
        for m in ("good", "bad", "total"):
            measures.append(f"sum({m}) FILTER (WHERE in_{i} = 1) AS {m}_{i}")
    flags = ", ".join(f"in_{i}" for i in range(len(wins)))
    keys = ", ".join(["sli"] + [c for c in ("team", "notebook_id", "trigger") if c in grouping])
    where = ["true"]
    if q.team is not None:
        where.append(f"team = {p(q.team, 'team')}")
    if notebook:
        where.append("notebook_id IS NOT NULL")
        if q.notebook_id is not None:
            where.append(f"notebook_id = {p(q.notebook_id, 'notebook_id')}")
    sql = Q.AGGREGATE.format(dims=Q.dims(grouping), measures=", ".join(measures), contrib=contrib, where=" AND ".join(where),
                             grouping=grouping, keys=keys, flags=flags, flag_exprs=", ".join(flag_exprs))
    for row in cur.execute(sql, p).fetchall():
        sli, team, nb, trig, gt, gn, gtr = row[:7]
        if not gtr and sli != "M1":
            continue
        sc = _scope(gt, gn, gtr, team, nb, trig)
        for i, w in enumerate(wins):
            g, b, t = row[7 + 3 * i: 10 + 3 * i]
            if (g or 0) or (b or 0) or (t or 0):
                acc = add.setdefault((w.name, sli) + sc, [0.0, 0.0, 0.0])
                acc[0] += g or 0
                acc[1] += b or 0
                acc[2] += t or 0


def _kept_additive(cur, ctx: _Ctx, add: dict) -> bool:
    """The platform, team and trigger rows of _additive from the sums kept between refreshes (slo/sli/sums.py);
    False when SQL must answer (an as_of before the kept one, an in-memory database)."""
    sets = _grouping(ctx.levels, notebook=False, trigger=True)  # "(), (team), (trigger), (team, trigger)"
    kept = sums.totals(cur, *ctx.kept, [w.seconds for w in ctx.wins], ctx.as_of)
    if kept is None:
        return False
    for w in ctx.wins:
        for (sli, team, trig), (g, b, t) in kept[w.seconds].items():
            if ctx.q.team is not None and team != ctx.q.team:
                continue
            trig = trig or None  # '' (every SLI but M1): no trigger
            scopes = [(None, None, None)] if "()" in sets else []
            if "(team)" in sets:
                scopes.append((team, None, None))
            if sli == "M1" and trig is not None:
                scopes += [sc for s, sc in (("(trigger)", (None, None, trig)), ("(team, trigger)", (team, None, trig)))
                           if s in sets]
            for sc in scopes:
                acc = add.setdefault((w.name, sli) + sc, [0.0, 0.0, 0.0])
                acc[0] += g
                acc[1] += b
                acc[2] += t
    return True


def _sets(ctx: _Ctx) -> list[str]:
    """Grouping sets of the non-additive SLIs (no trigger dimension)."""
    sets = []
    if ctx.q.notebook_id is None and ctx.q.trigger is None:
        if "platform" in ctx.levels:
            sets.append("()")
        if "team" in ctx.levels:
            sets.append("(team)")
    if "notebook" in ctx.levels and ctx.q.trigger is None:
        sets.append("(team, notebook_id)")
    return sets


def _filters(ctx: _Ctx, p: Params, team_col: str = "team") -> str:
    """` AND team = $team AND notebook_id = $notebook_id` for the filters the request names (values bound in p)."""
    extra = ""
    if ctx.q.team is not None:
        extra += f" AND {team_col} = {p(ctx.q.team, 'team')}"
    if ctx.q.notebook_id is not None:
        extra += f" AND notebook_id = {p(ctx.q.notebook_id, 'notebook_id')}"
    return extra


def _missed(cur, ctx: _Ctx, add: dict) -> None:
    sets = _sets(ctx)
    if not sets:
        return
    wins = ctx.wins
    p = Params(as_of=ctx.as_of, lo=min(w.s for w in wins), hi=ctx.as_of)
    measures = ", ".join(f"count(*) FILTER (WHERE slot >= {p(w.s)} AND slot < {p(w.e)}) AS n_{i}"
                         for i, w in enumerate(wins))
    sql = Q.MISSED.format(dims=Q.dims(", ".join(sets)), measures=measures, extra=_filters(ctx, p),
                          grouping=", ".join(sets))
    for row in cur.execute(sql, p).fetchall():
        team, nb, _trig, gt, gn, _gtr = row[:6]
        sc = _scope(gt, gn, 1, team, nb, None)
        for i, w in enumerate(wins):
            m = row[6 + i] or 0
            if m:
                acc = add.setdefault((w.name, "M8") + sc, [0.0, 0.0, 0.0])
                acc[1] += m
                acc[2] += m


def _pages(ctx: _Ctx, w: Win, scopes: list[tuple], observed: set,
           counts: dict[str | None, tuple[int, int]]) -> None:
    """M13 for the scopes with events in the window, from the window's (pages, flaps) (all teams: key None)."""
    for team, _, _ in scopes:
        if (w.name, team, None) not in observed:
            continue
        n, flaps = counts.get(team, (0, 0))
        ctx.emit(w, "M13", team, None, None, "count", float(n), None, None, int(n), details={"flaps": flaps})


def _exec_time(cur, ctx: _Ctx, mode: str, cfg: SliConfig) -> None:
    sets = _sets(ctx)
    if not sets:
        return
    ctx.reasons["M3"] = "no succeeded attempt with a duration ended in the window"
    wins = ctx.wins
    rows = _kept_exec_time(cur, ctx, sets, cfg) if mode == "incremental" else None
    if rows is None:
        p = Params(lo=min(w.s for w in wins), hi=max(w.e for w in wins))
        f = "SELECT * FROM sli_run_facts" if mode == "incremental" else Q.RUN_FACTS.format(src="run_attempts")
        rows_of_wins = " UNION ALL ".join(f"SELECT {i} AS w, {p(w.s)} AS ws, {p(w.e)} AS we"
                                          for i, w in enumerate(wins))
        grouping = ", ".join("(w)" if s == "()" else f"(w, {s[1:]}" for s in sets)
        sql = Q.EXEC_TIME.format(dims=Q.dims(", ".join(sets)), f=f, wins=rows_of_wins, extra=_filters(ctx, p),
                                 grouping=grouping)
        rows = cur.execute(sql, p).fetchall()
    for row in sorted(rows, key=lambda r: (r[0],) + _skey(r[1:3])):
        i, team, nb, _trig, gt, gn, _gtr, n, mean, qs = row
        if not gn and nb is None:
            continue
        sc = _scope(gt, gn, 1, team, nb, None)
        if not ctx.want(*sc) or not n:
            continue
        for stat, v in (("mean", mean), ("p50", qs[0]), ("p95", qs[1]), ("p99", qs[2])):
            ctx.emit(wins[i], "M3", sc[0], sc[1], None, stat, float(v), None, None, int(n))


def _kept_exec_time(cur, ctx: _Ctx, sets: list[str], cfg: SliConfig) -> list[tuple] | None:
    """M3 at the platform and team levels from the durations kept sorted between refreshes (slo/sli/durations.py),
    in the shape of Q.EXEC_TIME's rows; None when SQL must answer (a notebook level, an earlier as_of, ...)."""
    if not set(sets) <= {"()", "(team)"}:
        return None
    kept = durations.percentiles(cur, *ctx.kept, [w.seconds for w in ctx.wins], ctx.as_of, cfg.m3_state_max_values)
    if kept is None:
        return None
    rows = []
    for i, w in enumerate(ctx.wins):
        for scope, (n, mean, qs) in kept[w.seconds].items():
            if (scope is None and "()" in sets) or (scope is not None and "(team)" in sets):
                rows.append((i, scope, None, None, int(scope is None), 1, 1, n, mean, qs))
    return rows


# The databases (the key of their kept states: path and fold instance) whose billing tables were found: migrations
# create them and nothing drops them, so a refresher asks the catalogue once, not at every pass (~1.5 ms each).
_BILLING_TABLES: set[durations.Key] = set()


def _has_billing_tables(cur, key: durations.Key | None) -> bool:
    if key in _BILLING_TABLES:
        return True
    found = table_exists(cur, "cost_line_items")
    if found and key is not None:
        _BILLING_TABLES.add(key)
    return found


class _Allocation:
    """The billing allocation (cost.allocation.allocate) of the months M4 and M10 need, computed on first use: from
    the month before the longest window (a run that ended in it has its lines from then on) to as_of's month."""

    def __init__(self, cur, ctx: _Ctx) -> None:
        self._cur, self._ctx, self._frame = cur, ctx, None
        self._missing: str | None | bool = False  # not checked yet

    def missing(self) -> str | None:
        """Why there is nothing to allocate ("no billing tables", "no billing data"), or None; checked once for
        M4 and M10."""
        if self._missing is False:
            if not _has_billing_tables(self._cur, self._ctx.kept[0]):
                self._missing = "no billing tables"
            elif not self._cur.execute(Q.COST_HAS_DATA).fetchone()[0]:
                self._missing = "no billing data"
            else:
                self._missing = None
        return self._missing  # type: ignore[return-value]

    def frame(self) -> pl.DataFrame:
        if self._frame is None:
            lo = min(w.s for w in self._ctx.wins)
            months = _months(min(lo - timedelta(days=31), variance.month_back(self._ctx.as_of)), self._ctx.as_of)
            self._frame = allocation.allocate(self._cur, months, as_of=self._ctx.as_of)
        return self._frame


def _cost_per_run(cur, ctx: _Ctx, alloc: _Allocation) -> None:
    """M4: the mean whole allocated cost (cost.allocation.run_costs) of the runs that ended in the window."""
    missing = alloc.missing()
    if missing is not None:
        ctx.reasons["M4"] = missing
        return
    ctx.reasons["M4"] = "no run with allocated cost ended in the window"
    sets = _sets(ctx)
    if not sets:
        return
    wins = ctx.wins
    lo = min(w.s for w in wins)
    costs = allocation.run_costs(alloc.frame()).select("run_id", pl.col("cost").cast(pl.Float64))
    if not costs.height:
        ctx.reasons["M4"] = "no billing data allocated to runs"
        return
    p = Params(lo=lo, hi=max(w.e for w in wins))
    measures = []
    for i, w in enumerate(wins):
        c = f"t >= {p(w.s)} AND t < {p(w.e)}"
        measures += [f"count(*) FILTER (WHERE {c}) AS n_{i}", f"sum(cost) FILTER (WHERE {c}) AS c_{i}"]
    sql = Q.COST_PER_RUN.format(costs="sli_run_costs", dims=Q.dims(", ".join(sets)), measures=", ".join(measures),
                                extra=_filters(ctx, p), grouping=", ".join(sets))
    cur.register("sli_run_costs", costs.to_arrow())
    try:
        rows = cur.execute(sql, p).fetchall()
    finally:
        cur.unregister("sli_run_costs")
    for row in sorted(rows, key=lambda r: _skey(r[:2])):
        team, nb, _trig, gt, gn, _gtr = row[:6]
        if not gn and nb is None:
            continue
        sc = _scope(gt, gn, 1, team, nb, None)
        if not ctx.want(*sc):
            continue
        for i, w in enumerate(wins):
            n, c = row[6 + 2 * i: 8 + 2 * i]
            if n:
                ctx.emit(w, "M4", sc[0], sc[1], None, "per_run", float(c) / n, None, None, int(n))


def _months(lo: datetime, hi: datetime) -> list[str]:
    out, (y, m) = [], (lo.year, lo.month)
    while (y, m) <= (hi.year, hi.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + (m == 12), m % 12 + 1)
    return out


def _cost_variance(cur, ctx: _Ctx, alloc: _Allocation) -> None:
    """M10: cost.variance.compare at as_of (month to date against the previous month to the same day and time, per
    allocated team), the figure of GET /v1/cost/variance, the reports and the gauge."""
    missing = alloc.missing()
    if missing is not None:
        ctx.reasons["M10"] = missing
        return
    ctx.reasons["M10"] = "no cost in the previous billing period up to the same point"
    if ctx.q.notebook_id is not None or ctx.q.trigger is not None:
        return
    month = f"{ctx.as_of.year:04d}-{ctx.as_of.month:02d}"
    frame = alloc.frame()
    cmp = variance.compare_frame(frame if frame.height else variance.empty_allocation(), month, ctx.as_of)
    teams = cmp.by_team.to_dicts()
    rows = [(r["key"], r["cost"], r["previous_cost"]) for r in teams]
    rows.append((None, sum((r["cost"] for r in teams), Decimal(0)), sum((r["previous_cost"] for r in teams),
                                                                         Decimal(0))))
    for w in ctx.wins:
        for team, cur_c, prev_c in sorted(rows, key=lambda r: r[0] or ""):
            if not prev_c or not ctx.want(team, None, None):
                continue
            ctx.emit(w, "M10", team, None, None, "mom_change", float((cur_c - prev_c) / prev_c),
                     details={"current_period": cmp.current.to_json(), "current_cost": float(cur_c),
                              "previous_period": cmp.previous.to_json(), "previous_cost": float(prev_c)})


def _snapshots(cur, ctx: _Ctx, cfg: SliConfig, mode: str, slis: list[str]) -> None:
    if mode == "direct":
        reg = Q.REGISTRY_EXTRACT.format(src="events", where="true")
        art = Q.ARTIFACT_LATEST.format(x=f"SELECT * FROM ({Q.ARTIFACT_EXTRACT.format(src='events', where='true')}) "
                                         "e WHERE t < $as_of")
    else:
        reg, art = "SELECT * FROM sli_registry", Q.ARTIFACT_LATEST_KEPT
    # The registry at as_of is read by M9/M15, M14 and M7: computed once (a scan of the registry events in direct
    # mode) and registered as a relation for the three statements. It stays Arrow on the way (never Python values):
    # a stored time DuckDB holds but Python cannot (infinity, year 10000) goes back unchanged.
    registry = _registry_at(cur, ctx, reg, kept=mode == "incremental")
    cur.register(_REGISTRY_NOW, registry)
    try:
        _snapshot_slis(cur, ctx, cfg, art, slis)
    finally:
        cur.unregister(_REGISTRY_NOW)


_REGISTRY_NOW = "sli_registry_now"
# DuckDB warns that Arrow output of an execute() result costs a copy, and points to con.sql(), which refuses to run
# while an earlier execute() result is not fully fetched. The registry is one row per notebook: the copy is cheap.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

# The registry at as_of of the last incremental computations, per database (its kept-state key): (the registry's
# version, sli_state's `registry_cursor`, which the fold moves when it folds registry events; the as_of; whether
# every registry event is before it; the table).
_REGISTRY_KEPT: OrderedDict[tuple[str, str], tuple[str | None, datetime, bool, pa.Table]] = OrderedDict()
_REGISTRY_KEPT_GUARD = threading.Lock()


def _registry_at(cur, ctx: _Ctx, reg: str, *, kept: bool) -> pa.Table:
    """Q.REGISTRY_AT at ctx.as_of. Why kept: registry events are rare, and the statement is ~4 ms of the snapshot
    SLIs' chain, the computation's longer one (docs/performance.md, ninth round). The kept table answers while the
    registry's version is the same and either the as_of is, or every registry event is before both as_of (then
    both see all of them)."""
    p = Params(as_of=ctx.as_of)
    key = ctx.kept[0] if kept else None
    if key is None:
        return arrow(cur, Q.REGISTRY_AT.format(reg=reg), p)
    rows = cur.execute("SELECT value FROM sli_state WHERE key = 'registry_cursor'").fetchall()  # (all: the
    version = rows[0][0] if rows else None  # relation registered next needs the connection's results consumed)
    with _REGISTRY_KEPT_GUARD:
        hit = _REGISTRY_KEPT.get(key)
    if hit is not None and hit[0] == version and (hit[1] == ctx.as_of or (hit[2] and ctx.as_of > hit[1])):
        return hit[3]
    table = arrow(cur, Q.REGISTRY_AT.format(reg=reg), p)
    # compared in DuckDB: a stored time may be one Python cannot hold (infinity, year 10000)
    before = bool(cur.execute(f"SELECT coalesce(max(t) < $as_of, true) FROM ({reg}) r", p).fetchall()[0][0])
    with _REGISTRY_KEPT_GUARD:
        _REGISTRY_KEPT[key] = (version, ctx.as_of, before, table)
        _REGISTRY_KEPT.move_to_end(key)
        while len(_REGISTRY_KEPT) > durations.MAX_STATES:
            _REGISTRY_KEPT.popitem(last=False)
    return table


def _snapshot_slis(cur, ctx: _Ctx, cfg: SliConfig, art: str, slis: list[str]) -> None:
    q, wins, as_of = ctx.q, ctx.wins, ctx.as_of
    registry_at = f"SELECT * FROM {_REGISTRY_NOW}"

    wanted: dict[tuple, list[tuple]] = {}  # asked once per row of three statements: answered once per scope

    def scopes_of(team: str, nb: str | None, per_notebook: bool) -> list[tuple]:
        key = (team, nb if per_notebook else None)
        got = wanted.get(key)
        if got is None:
            sc = [(None, None, None), (team, None, None)]
            if key[1] is not None:
                sc.append((team, nb, None))
            got = wanted[key] = [s for s in sc if ctx.want(*s)]
        return got

    def emit_ratio(sli: str, agg: dict[tuple, list], details=None) -> None:
        for w in wins:
            for sc in sorted(agg, key=_skey):
                g, t = agg[sc][:2]
                if t:
                    ctx.emit(w, sli, sc[0], sc[1], None, "ratio", g / t, int(g), int(t - g), int(t),
                             details=details(sc) if details else None)

    if "M9" in slis or "M15" in slis:
        p = Params()
        checks = "".join(" AND " + Q.TAG_CHECK.format(path=p("$." + _json_key(t))) for t in cfg.required_tags)
        sql = Q.REGISTRY_SNAPSHOT.format(registry_at=registry_at, tag_any=Q.TAG_ANY, tag_checks=checks,
                                         extra=_team_filter(q, p))
        m9: dict[tuple, list] = {}
        m15: dict[tuple, list] = {}
        # counted per scope by DuckDB (one row per notebook through Python cost ~2 ms per refresh at 1,000)
        by_scope = (f"SELECT team, GROUPING(team), sum(searchable), count(*), sum(critical_tested) FILTER "
                    f"(WHERE is_critical = 1), count(*) FILTER (WHERE is_critical = 1) FROM ({sql}) r "
                    f"GROUP BY GROUPING SETS ((), (team))")
        for team, g_team, searchable, n, crit_tested, crit in cur.execute(by_scope, p).fetchall():
            sc = (None, None, None) if g_team else (team, None, None)
            if ctx.want(*sc):
                m9[sc] = [searchable, n]
                if crit:
                    m15[sc] = [crit_tested, crit]
        ctx.reasons["M9"] = "no notebook registered before as_of"
        ctx.reasons["M15"] = "no critical notebook registered before as_of"
        if "M9" in slis:
            emit_ratio("M9", m9)
        if "M15" in slis:
            emit_ratio("M15", m15)
    if "M14" in slis:
        p = Params(lo=min(w.s for w in wins))
        sql = Q.PRODUCTIONIZE.format(registry_at=registry_at, extra=_team_filter(q, p))
        rows = cur.execute(sql, p).fetchall()
        ctx.reasons["M14"] = "no notebook promoted in the window"
        for w in wins:
            agg: dict[tuple, list[float]] = {}
            for team, nb, promoted_at, days in rows:
                if promoted_at >= w.s:
                    for sc in scopes_of(team, nb, False):
                        agg.setdefault(sc, []).append(float(days))
            for sc in sorted(agg, key=_skey):
                ctx.emit(w, "M14", sc[0], None, None, "median", _median(agg[sc]), None, None, len(agg[sc]))
    if "M7" in slis:
        p = Params(as_of=as_of, retention=cfg.artifact_retention_seconds)
        sql = Q.ARTIFACTS_AT.format(latest=art, registry_at=registry_at, extra=_filters(ctx, p))
        agg7: dict[tuple, list] = {}  # scope -> [fresh, tracked, the highest age (at least 0)]
        arts: dict[tuple, list] = {}
        if "notebook" not in ctx.levels:
            # counted per scope by DuckDB: a row per artifact through Python (its time converted, three scopes
            # each) cost ~4 ms per refresh at 1,000 artifacts, holding the GIL the other thread's statements need
            by_scope = (f"SELECT team, GROUPING(team), sum(fresh), count(*), max(age_seconds) FROM ({sql}) a "
                        f"GROUP BY GROUPING SETS ((), (team))")
            for team, g_team, fresh, n, age in cur.execute(by_scope, p).fetchall():
                sc = (None, None, None) if g_team else (team, None, None)
                if n and ctx.want(*sc):
                    agg7[sc] = [fresh, n, max(0.0, float(age))]
        else:  # the notebook level lists each notebook's artifacts (details)
            for team, nb, artifact, last_t, sla, age, fresh, critical in cur.execute(sql, p).fetchall():
                for sc in scopes_of(team, nb, True):
                    a = agg7.setdefault(sc, [0, 0, 0.0])
                    a[0] += fresh
                    a[1] += 1
                    a[2] = max(a[2], float(age))
                    if sc[1] is not None:
                        arts.setdefault(sc, []).append({
                            "artifact": artifact, "age_seconds": float(age), "sla_seconds": float(sla),
                            "fresh": bool(fresh), "last_published": last_t.isoformat(),
                            "critical": bool(critical)})
        ctx.reasons["M7"] = "no artifact with an SLA tracked at as_of"
        emit_ratio("M7", agg7, details=lambda sc: sorted(arts[sc], key=lambda d: d["artifact"]) if sc in arts else None)
        for w in wins:
            for sc in sorted(agg7, key=_skey):
                ctx.emit(w, "M7", sc[0], sc[1], None, "max_age_seconds", agg7[sc][2], None, None, agg7[sc][1])


def _team_filter(q: SliQuery, p: Params) -> str:
    """The registry's team filter (a notebook without a team is 'unknown'), bound in p."""
    return f" AND coalesce(team, 'unknown') = {p(q.team, 'team')}" if q.team is not None else ""


def _json_key(k: str) -> str:
    """A JSON path member for a tag key (quoted: keys may hold dots or quotes)."""
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _median(vals: list[float]) -> float:
    s = sorted(vals)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def consecutive_failures(cur: duckdb.DuckDBPyConnection, cap: int,
                         production: list[str] | tuple[str, ...] = ("prod",)) -> list[tuple[str, str, str, int]]:
    """(team, notebook, owner, scheduled production runs failed in a row on their final attempt) for at most `cap`
    critical notebooks."""
    params = {"cap": cap, "production": list(production)}
    return [tuple(r) for r in cur.execute(Q.CONSECUTIVE_FAILURES, params).fetchall()]


def artifact_states(cur: duckdb.DuckDBPyConnection, as_of: datetime,
                    cfg: SliConfig) -> list[tuple[str, bool, int, int, float]]:
    """(team, critical, tracked, stale, oldest age in seconds) of the tracked artifacts at `as_of`, from the folded
    tables (the artifact gauges; M7 of GET /v1/sli counts the same artifacts)."""
    registry_at = Q.REGISTRY_AT.format(reg="SELECT * FROM sli_registry")
    at = Q.ARTIFACTS_AT.format(latest=Q.ARTIFACT_LATEST_KEPT, registry_at=registry_at, extra="")
    sql = (f"SELECT team, critical, count(*), count(*) - sum(fresh), max(age_seconds) FROM ({at}) x "
           "GROUP BY team, critical ORDER BY team, critical")
    p = Params(as_of=utc(as_of), retention=cfg.artifact_retention_seconds)
    return [(t, bool(c), int(n), int(st), float(age)) for t, c, n, st, age in cur.execute(sql, p).fetchall()]


def active_kernels(cur: duckdb.DuckDBPyConnection, now: datetime, cfg: SliConfig) -> list[tuple[str, int]]:
    """(team, kernel sessions alive at `now`): the kernel-stability SLOs' denominator, integrated by Prometheus."""
    p = Params(now=utc(now), max_age=cfg.kernel_session_max_hours * 3600.0)
    return [(t, int(n)) for t, n in cur.execute(Q.ACTIVE_KERNELS, p).fetchall()]
