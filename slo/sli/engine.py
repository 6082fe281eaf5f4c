"""The SLI engine: windows, as_of, levels (platform, team, notebook, trigger), provenance, incremental folding.

Two ways to the same numbers (tests hold both to a plain-Python reference):

- **direct** (`mode="direct"`): everything from the core tables (`run_attempts`, `events`) and the missed-slot
  table, nothing cached. This is the "full computation" of bench/bench_sli.py.
- **incremental** (default): `fold()` brings the SLI tables of migration 0200 up to the last committed ingest
  batch, reading only the new batches (`events.batch_id` > cursor) plus the facts those batches change:
  `sli_run_facts` (one row per terminal attempt), `sli_repro_baselines`, the hourly rollup `sli_hourly`, and typed
  extracts of registry, artifact and schedule events. A window [as_of - W, as_of) is then the sum of the rollup's
  whole hours plus the two partial hours at its edges read from the facts and events (min/max pruned scans).

A late or duplicate event that changes a run attempt's outcome, time, team or reproducibility verdict is folded as
(new fact - old fact) into the hour each belongs to, so windows stay exact under out-of-order arrival.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import duckdb
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from collector.storage.alerts import pages_count
from slo.sli import missed
from slo.sli import sql as Q

log = logging.getLogger(__name__)

LEVELS = ("platform", "team", "notebook", "trigger")
DEFAULT_LEVELS = ("platform", "team", "trigger")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NAME_TO_ID = {name: sid for sid, (name, _, _) in Q.SLIS.items()}
PER_NOTEBOOK = {"M1", "M2", "M3", "M4", "M5", "M7", "M8", "M11", "M12"}


class SliConfig(BaseSettings):
    """SLI settings (environment `OBSERVATORY_SLI_*`; lists as JSON, e.g. `OBSERVATORY_SLI_WINDOWS='["1h","1d"]'`)."""

    model_config = SettingsConfigDict(env_prefix="OBSERVATORY_SLI_", extra="ignore")

    windows: list[str] = Field(["1h", "1d", "7d", "30d"], description="Windows computed and exported")
    required_tags: list[str] = Field(["description"], description="Tags a notebook needs to be searchable (M9)")
    missed_grace_seconds: float = Field(900.0, description="Default grace before a cron slot counts as missed")
    missed_lookback_days: float = Field(31.0, description="Oldest slots enumerated for missed-run detection")
    artifact_retention_seconds: float = Field(
        30 * 86400.0, description="An artifact stops being tracked this long after its SLA ran out (M7)")
    critical_notebooks_cap: int = Field(
        50, description="Most critical notebooks exported with a `notebook` label (consecutive failures)")


def parse_window(text: str) -> int:
    """`30m`, `1h`, `7d`, `2w` -> seconds."""
    t = text.strip()
    if len(t) < 2 or t[-1] not in _UNIT_SECONDS or not t[:-1].isdigit() or int(t[:-1]) <= 0:
        raise ValueError(f"not a window: {text!r} (use e.g. 1h, 1d, 7d, 30d)")
    return int(t[:-1]) * _UNIT_SECONDS[t[-1]]


def resolve_sli(text: str) -> str:
    """`M1`, `m1` or `run_success_rate` -> `M1`."""
    t = text.strip()
    if t.upper() in Q.SLIS:
        return t.upper()
    if t in NAME_TO_ID:
        return NAME_TO_ID[t]
    raise ValueError(f"unknown SLI {text!r}; use one of {', '.join(Q.SLIS)} or their names")


@dataclass
class SliQuery:
    as_of: datetime
    windows: list[str]
    slis: list[str] = field(default_factory=lambda: list(Q.SLIS))
    team: str | None = None
    notebook_id: str | None = None
    trigger: str | None = None
    levels: tuple[str, ...] = DEFAULT_LEVELS


@dataclass
class _Win:
    name: str
    seconds: int
    s: datetime
    e: datetime
    hs: datetime  # first whole hour inside the window
    he: datetime  # end of the last whole hour inside the window
    ds: datetime  # first whole day inside [hs, he)
    de: datetime  # end of the last whole day inside [hs, he)


# ---- per-database lock (folds are serialised; reads are not) -----------------------------------------------------

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(cur: duckdb.DuckDBPyConnection) -> threading.RLock:
    path = cur.execute(
        "SELECT coalesce(path, database_name) FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.RLock())


def _ts(dt: datetime) -> str:
    """A TIMESTAMPTZ literal (used where a constant lets DuckDB prune row groups by min/max)."""
    return f"TIMESTAMPTZ '{dt.astimezone(timezone.utc).isoformat()}'"


def _hour_floor(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(dt: datetime) -> datetime:
    f = _hour_floor(dt)
    return f if f == dt else f + timedelta(hours=1)


def _day_floor(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(dt: datetime) -> datetime:
    f = _day_floor(dt)
    return f if f == dt else f + timedelta(days=1)


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("as_of must carry a time zone (RFC 3339)")
    return dt.astimezone(timezone.utc)


# ---- folding -------------------------------------------------------------------------------------------------------

@dataclass
class FoldStats:
    from_batch: int = 0
    to_batch: int = 0
    attempts: int = 0
    new_missed: int = 0


def cursor_batch(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute("SELECT value FROM sli_state WHERE key = 'cursor'").fetchone()
    return int(row[0]) if row else 0


def fold(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None, now: datetime | None = None) -> FoldStats:
    """Bring the SLI tables up to the last committed ingest batch and decide newly due cron slots."""
    cfg = cfg or SliConfig()
    now = _utc(now or datetime.now(timezone.utc))
    with _lock_for(cur):
        cur.execute("BEGIN TRANSACTION")
        try:
            lo = cursor_batch(cur)
            hi = cur.execute(Q.NEW_BATCHES).fetchone()[0]
            st = FoldStats(lo, hi)
            if hi > lo:
                st.attempts = _fold_runs(cur, lo, hi, now)
                _fold_events(cur, lo, hi)
                cur.execute(missed.RESET_FOR_NEW_REGS, {"lo": lo, "hi": hi})
                cur.execute("INSERT OR REPLACE INTO sli_state VALUES ('cursor', ?)", [str(hi)])
            st.new_missed = missed.detect(cur, now, default_grace=cfg.missed_grace_seconds,
                                          lookback=timedelta(days=cfg.missed_lookback_days))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return st


def rebuild(cur: duckdb.DuckDBPyConnection, cfg: SliConfig | None = None) -> FoldStats:
    """Forget the SLI tables and fold the whole history again."""
    with _lock_for(cur):
        for t in ("sli_run_facts", "sli_repro_baselines", "sli_hourly", "sli_daily", "sli_event_facts", "sli_artifacts", "sli_registry",
                  "sli_schedule_regs", "sli_state", "sli_schedule_watermarks"):
            cur.execute(f"DELETE FROM {t}")
    return fold(cur, cfg)


_ELIG = Q.REPRO_ELIGIBLE
_GK = Q.GROUP_KEY
_GK_EQ = " AND ".join(f"a.{c} = b.{c}" for c in _GK.split(", "))


def _fold_runs(cur: duckdb.DuckDBPyConnection, lo: int, hi: int, now: datetime) -> int:
    cur.execute(Q.TOUCHED_ATTEMPTS, {"lo": lo, "hi": hi})
    n, min_t = cur.execute("SELECT count(*), min(min_t) FROM sli_touched").fetchone()
    if not n:
        return 0
    cur.execute(Q.TOUCHED_STATE.replace("$min_t", _ts(min_t)))
    min_fs = cur.execute("SELECT min(first_seen_at) FROM sli_touched_state").fetchone()[0] or min_t
    cur.execute(Q.TOUCHED_OLD_FACTS.replace("$min_first_seen", _ts(min_fs)))
    cur.execute("CREATE OR REPLACE TEMP TABLE sli_new_facts AS SELECT *, CAST(NULL AS VARCHAR) AS repro FROM ("
                + Q.RUN_FACTS.format(src="sli_touched_state") + ")")
    _fold_repro(cur)
    # rollup += contrib(new) - contrib(old)
    contrib = (f"SELECT *, 1 AS sign FROM ({Q.RUN_CONTRIB.format(f='sli_new_facts')}) "
               f"UNION ALL SELECT *, -1 AS sign FROM ({Q.RUN_CONTRIB.format(f='sli_old_facts')})")
    _upsert_rollups(cur, contrib)
    bound = cur.execute("SELECT min(last_event_at) FROM sli_old_facts").fetchone()[0]
    if bound is not None:
        cur.execute(Q.DELETE_OLD_FACTS.replace("$min_first_seen", _ts(bound)))
    cur.execute("INSERT INTO sli_run_facts BY NAME SELECT * FROM sli_new_facts")
    cur.execute(missed.RETRACT_LATE, {"now": now})
    for t in ("sli_touched", "sli_touched_state", "sli_old_facts", "sli_new_facts"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    return int(n)


def _fold_repro(cur: duckdb.DuckDBPyConnection) -> None:
    """M2 verdicts of the touched attempts; when a group's baseline changes, of every member of the group."""
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_groups AS
        SELECT DISTINCT {_GK} FROM sli_new_facts WHERE {_ELIG}
        UNION SELECT DISTINCT {_GK} FROM sli_old_facts WHERE {_ELIG}""")
    if not cur.execute("SELECT count(*) FROM sli_groups").fetchone()[0]:
        cur.execute("DROP TABLE sli_groups")
        return
    cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_gb_old AS SELECT b.* FROM sli_repro_baselines b "
                f"JOIN sli_groups a ON {_GK_EQ}")
    # Groups whose baseline attempt itself changed need their stored members to find the new baseline.
    cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_g_full AS SELECT {_GK} FROM sli_gb_old b "
                f"WHERE EXISTS (SELECT 1 FROM sli_touched k WHERE k.run_id = b.run_id AND k.attempt = b.attempt)")
    cur.execute("CREATE OR REPLACE TEMP TABLE sli_members AS SELECT * FROM sli_run_facts WHERE false")
    if cur.execute("SELECT count(*) FROM sli_g_full").fetchone()[0]:
        _add_members(cur, "sli_g_full")
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_gb_new AS
        SELECT {_GK},
               arg_min(run_id, (t, run_id, attempt)) AS run_id, arg_min(attempt, (t, run_id, attempt)) AS attempt,
               min(t) AS ended_at, arg_min(output_hash, (t, run_id, attempt)) AS output_hash
        FROM (
            SELECT {_GK}, run_id, attempt, t, output_hash FROM sli_new_facts WHERE {_ELIG}
            UNION ALL
            SELECT {_GK}, run_id, attempt, ended_at AS t, output_hash FROM sli_gb_old b
            WHERE NOT EXISTS (SELECT 1 FROM sli_g_full a WHERE {_GK_EQ})
            UNION ALL
            SELECT {_GK}, run_id, attempt, t, output_hash FROM sli_members
        ) c
        GROUP BY {_GK}""")
    # Groups whose baseline moved: every stored member's verdict is re-evaluated (rare: late earlier success).
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_g_moved AS
        SELECT {_GK} FROM sli_gb_old b
        WHERE NOT EXISTS (SELECT 1 FROM sli_g_full a WHERE {_GK_EQ})
          AND NOT EXISTS (SELECT 1 FROM sli_gb_new a WHERE {_GK_EQ} AND a.run_id = b.run_id
                          AND a.attempt = b.attempt AND a.output_hash = b.output_hash)""")
    if cur.execute("SELECT count(*) FROM sli_g_moved").fetchone()[0]:
        _add_members(cur, "sli_g_moved")
    join = " AND ".join(f"x.{c} = g.{c}" for c in _GK.split(", "))
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE sli_new_facts2 AS
        SELECT x.* EXCLUDE (repro),
               CASE WHEN g.run_id IS NULL THEN NULL
                    WHEN x.run_id = g.run_id AND x.attempt = g.attempt THEN NULL
                    WHEN x.output_hash = g.output_hash THEN 'match' ELSE 'mismatch' END AS repro
        FROM (SELECT * FROM sli_new_facts UNION ALL BY NAME SELECT * FROM sli_members) x
        LEFT JOIN sli_gb_new g ON {join} AND x.state = 'succeeded' AND x.output_hash IS NOT NULL""")
    cur.execute("INSERT INTO sli_old_facts BY NAME SELECT * FROM sli_members")
    cur.execute("DROP TABLE sli_new_facts")
    cur.execute("ALTER TABLE sli_new_facts2 RENAME TO sli_new_facts")
    cur.execute(f"DELETE FROM sli_repro_baselines b WHERE EXISTS (SELECT 1 FROM sli_groups a WHERE {_GK_EQ})")
    cur.execute("INSERT INTO sli_repro_baselines BY NAME SELECT * FROM sli_gb_new")
    for t in ("sli_groups", "sli_gb_old", "sli_g_full", "sli_members", "sli_gb_new", "sli_g_moved"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")


def _add_members(cur: duckdb.DuckDBPyConnection, groups: str) -> None:
    """Stored, untouched, eligible facts of `groups` (a full scan of sli_run_facts: only on the rare paths)."""
    cur.execute(f"""
        INSERT INTO sli_members
        SELECT f.* FROM sli_run_facts f JOIN {groups} g ON {" AND ".join(f"f.{c} = g.{c}" for c in _GK.split(", "))}
        WHERE f.state = 'succeeded' AND f.output_hash IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM sli_touched k WHERE k.run_id = f.run_id AND k.attempt = f.attempt)
          AND NOT EXISTS (SELECT 1 FROM sli_members m WHERE m.run_id = f.run_id AND m.attempt = f.attempt)""")


def _upsert_rollups(cur: duckdb.DuckDBPyConnection, contrib: str) -> None:
    cur.execute(f"CREATE OR REPLACE TEMP TABLE sli_contrib AS {contrib}")
    for table, unit in Q.ROLLUPS:
        delta = Q.ROLLUP_DELTA.format(unit=unit, contrib="SELECT * FROM sli_contrib")
        cur.execute(Q.UPSERT_ROLLUP.format(table=table, delta=delta))
        cur.execute(Q.PRUNE_ROLLUP.format(table=table))
    cur.execute("DROP TABLE sli_contrib")


def _fold_events(cur: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
    where = f"batch_id > {int(lo)} AND batch_id <= {int(hi)}"
    cur.execute(f"INSERT INTO sli_event_facts BY NAME {Q.EVENT_CONTRIB.format(src='events', where=where)}")
    _upsert_rollups(cur, f"SELECT *, 1 AS sign FROM ({Q.EVENT_CONTRIB.format(src='events', where=where)})")
    cur.execute(f"INSERT INTO sli_registry BY NAME {Q.REGISTRY_EXTRACT.format(src='events', where=where)}")
    cur.execute(f"INSERT INTO sli_artifacts BY NAME {Q.ARTIFACT_EXTRACT.format(src='events', where=where)}")
    cur.execute(f"INSERT INTO sli_schedule_regs BY NAME {Q.SCHEDULE_EXTRACT.format(src='events', where=where)}")


# ---- computing -----------------------------------------------------------------------------------------------------

def _windows(names: Iterable[str], as_of: datetime) -> list[_Win]:
    out = []
    for name in names:
        secs = parse_window(name)
        s = as_of - timedelta(seconds=secs)
        hs, he = _hour_ceil(s), _hour_floor(as_of)
        if hs >= he:
            hs = he = as_of  # no whole hour inside: the window is read from raw rows only
        ds, de = _day_ceil(hs), _day_floor(he)
        if ds >= de:
            ds = de = he  # no whole day inside: hours only
        out.append(_Win(name, secs, s, as_of, hs, he, ds, de))
    return out


def _merge_ranges(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[list[datetime]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


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


def _lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


class _Acc:
    """Accumulated rows keyed by (window, sli, team, notebook_id, trigger)."""

    def __init__(self) -> None:
        self.rows: dict[tuple, dict[str, Any]] = {}

    def put(self, key: tuple, **vals: Any) -> None:
        self.rows.setdefault(key, {}).update(vals)


def _scope(team_g: int, nb_g: int, trig_g: int, team: str, nb: str | None, trig: str | None) -> tuple:
    return (None if team_g else team, None if nb_g else nb, None if trig_g else (trig if trig != "" else None))


PRIMARY_STAT = {"M1": "ratio", "M2": "ratio", "M3": "mean", "M4": "per_run", "M5": "count", "M6": "ratio",
                "M7": "ratio", "M8": "ratio", "M9": "ratio", "M10": "mom_change", "M11": "per_1000_sessions",
                "M12": "ratio", "M13": "count", "M14": "median", "M15": "ratio"}
SNAPSHOT = {"M7", "M9", "M10", "M15"}


def _skey(x: tuple) -> tuple:
    return tuple("" if v is None else v for v in x)


class _Ctx:
    """What one compute() call is asked, plus the rows it has produced so far."""

    def __init__(self, q: SliQuery, wins: list[_Win], levels: tuple[str, ...], as_of: datetime, prov: dict) -> None:
        self.q, self.wins, self.levels, self.as_of, self.prov = q, wins, set(levels), as_of, prov
        self.out: list[dict[str, Any]] = []
        self.reasons: dict[str, str] = {}

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

    def emit(self, w: _Win, sli: str, team, nb, trig, stat: str, value, good=None, bad=None, total=None, *,
             absent_reason: str | None = None, details: Any = None) -> None:
        name, _, unit = Q.SLIS[sli]
        row = {
            "sli": sli, "name": name, "window": w.name, "team": team, "notebook_id": nb, "trigger": trig,
            "stat": stat, "value": value, "good": good, "bad": bad, "total": total, "unit": unit,
            "provenance": {
                "definition_version": f"{sli}/{Q.DEFINITION_VERSION}",
                "event_time_from": None if sli in SNAPSHOT else w.s.isoformat(),
                "event_time_to": self.as_of.isoformat(),
                **self.prov,
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
            mode: str = "incremental", fold_first: bool = True) -> list[dict[str, Any]]:
    """Every requested SLI for every requested window and level at q.as_of; rows as served by GET /v1/sli."""
    cfg = cfg or SliConfig()
    as_of = _utc(q.as_of)
    if mode not in ("incremental", "direct"):
        raise ValueError(f"mode must be incremental or direct, not {mode!r}")
    if mode == "incremental" and fold_first:
        fold(cur, cfg)
    wins = _windows(q.windows, as_of)
    slis = list(dict.fromkeys(resolve_sli(s) for s in q.slis))
    levels = tuple(lv for lv in q.levels if lv in LEVELS)
    if q.notebook_id is not None and "notebook" not in levels:
        levels += ("notebook",)
    if q.trigger is not None and "trigger" not in levels:
        levels += ("trigger",)
    prov = {"mode": mode, "folded_through_batch": cursor_batch(cur) if mode == "incremental" else None}
    ctx = _Ctx(q, wins, levels, as_of, prov)

    need_add = bool(set(slis) & (set(Q.ADDITIVE) | {"M13"}))
    add: dict[tuple, list[float]] = {}  # (window, sli, team, nb, trig) -> [good, bad, total]
    if need_add:
        if q.notebook_id is None and set(levels) - {"notebook"}:
            _additive(cur, ctx, mode, add, notebook=False)
        if "notebook" in levels:
            _additive(cur, ctx, mode, add, notebook=True)
        _missed(cur, ctx, add)
    observed = {(k[0], k[2], k[3]) for k, (g, b, t) in add.items() if k[4] is None and (t > 0 or b > 0)}
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
            _pages(cur, ctx, w, [sc for sc in scopes if sc[1] is None and sc[2] is None and ctx.want(*sc)],
                   observed)
    if "M11" in slis:
        ctx.reasons["M11"] = "no kernel session started in the window"
    if "M3" in slis:
        _exec_time(cur, ctx, mode)
    if "M4" in slis:
        _cost_per_run(cur, ctx)
    if "M10" in slis:
        _cost_variance(cur, ctx)
    if {"M7", "M9", "M14", "M15"} & set(slis):
        _snapshots(cur, ctx, cfg, mode, slis)
    ctx.fill_absent(slis)
    order = {s: i for i, s in enumerate(Q.SLIS)}
    wo = {w.name: i for i, w in enumerate(wins)}
    stats = {"ratio": 0, "mean": 1, "p50": 2, "p95": 3, "p99": 4}
    ctx.out.sort(key=lambda r: (wo[r["window"]], order[r["sli"]], r["team"] or "", r["notebook_id"] or "",
                                r["trigger"] or "", stats.get(r["stat"], 9), r["stat"]))
    return ctx.out


def _raw_sources(mode: str, ranges: list[tuple[datetime, datetime]], lo: datetime, hi: datetime) -> str:
    """Contribution rows (piece 'raw') from run facts and events in the given time ranges."""
    parts = []
    if mode == "direct":
        facts = Q.RUN_FACTS_WITH_REPRO.format(facts=Q.RUN_FACTS.format(src="run_attempts"))
        f = f"(SELECT * FROM ({facts}) x WHERE t >= {_ts(lo)} AND t < {_ts(hi)})"
        parts.append(Q.RUN_CONTRIB.format(f=f))
        parts.append(Q.EVENT_CONTRIB.format(src="events", where=f"time >= {_ts(lo)} AND time < {_ts(hi)}"))
    else:
        for a, b in ranges or [(hi, hi)]:  # no range: an empty relation of the right shape
            f = f"(SELECT * FROM sli_run_facts WHERE t >= {_ts(a)} AND t < {_ts(b)})"
            parts.append(Q.RUN_CONTRIB.format(f=f))
            parts.append(f"SELECT sli, t, team, notebook_id, trigger, good, bad, total FROM sli_event_facts "
                         f"WHERE t >= {_ts(a)} AND t < {_ts(b)}")
    return " UNION ALL ".join(f"SELECT *, 'raw' AS piece FROM ({p})" for p in parts)


def _additive(cur, ctx: _Ctx, mode: str, add: dict, *, notebook: bool) -> None:
    q, wins = ctx.q, ctx.wins
    grouping = _grouping(ctx.levels, notebook=notebook, trigger=True)
    if not grouping:
        return
    lo = min(w.s for w in wins)
    hi = max(w.e for w in wins)
    use_hours = mode == "incremental" and not notebook
    if use_hours:
        ranges = _merge_ranges([r for w in wins for r in ((w.s, w.hs), (w.he, w.e))])
        contrib = _raw_sources(mode, ranges, lo, hi)
        hours = _merge_ranges([r for w in wins for r in ((w.hs, w.ds), (w.de, w.he))])
        if hours:
            cond = " OR ".join(f"(h >= {_ts(a)} AND h < {_ts(b)})" for a, b in hours)
            contrib += " UNION ALL " + Q.ROLLUP_AS_CONTRIB.format(piece="hour", table="sli_hourly", where=cond)
        days = _merge_ranges([(w.ds, w.de) for w in wins])
        if days:
            cond = " OR ".join(f"(h >= {_ts(a)} AND h < {_ts(b)})" for a, b in days)
            contrib += " UNION ALL " + Q.ROLLUP_AS_CONTRIB.format(piece="day", table="sli_daily", where=cond)
    else:
        contrib = _raw_sources(mode, [(lo, hi)], lo, hi)
    measures = []
    for i, w in enumerate(wins):
        if use_hours:
            cond = (f"(piece = 'day' AND t >= {_ts(w.ds)} AND t < {_ts(w.de)}) OR (piece = 'hour' AND "
                    f"((t >= {_ts(w.hs)} AND t < {_ts(w.ds)}) OR (t >= {_ts(w.de)} AND t < {_ts(w.he)}))) OR "
                    f"(piece = 'raw' AND ((t >= {_ts(w.s)} AND t < {_ts(w.hs)}) OR (t >= {_ts(w.he)} AND t < {_ts(w.e)})))")
        else:
            cond = f"t >= {_ts(w.s)} AND t < {_ts(w.e)}"
        for m in ("good", "bad", "total"):
            measures.append(f"sum({m}) FILTER (WHERE {cond}) AS {m}_{i}")
    where = ["true"]
    if q.team is not None:
        where.append(f"team = {_lit(q.team)}")
    if notebook:
        where.append("notebook_id IS NOT NULL")
        if q.notebook_id is not None:
            where.append(f"notebook_id = {_lit(q.notebook_id)}")
    sql = Q.AGGREGATE.format(dims=Q.dims(grouping), measures=", ".join(measures), contrib=contrib, where=" AND ".join(where),
                             grouping=grouping)
    for row in cur.execute(sql).fetchall():
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


def _filters(ctx: _Ctx, team_col: str = "team") -> str:
    extra = ""
    if ctx.q.team is not None:
        extra += f" AND {team_col} = {_lit(ctx.q.team)}"
    if ctx.q.notebook_id is not None:
        extra += f" AND notebook_id = {_lit(ctx.q.notebook_id)}"
    return extra


def _missed(cur, ctx: _Ctx, add: dict) -> None:
    sets = _sets(ctx)
    if not sets:
        return
    wins = ctx.wins
    measures = ", ".join(f"count(*) FILTER (WHERE slot >= {_ts(w.s)} AND slot < {_ts(w.e)}) AS n_{i}"
                         for i, w in enumerate(wins))
    sql = Q.MISSED.format(dims=Q.dims(", ".join(sets)), measures=measures, extra=_filters(ctx), grouping=", ".join(sets))
    for row in cur.execute(sql, {"as_of": ctx.as_of, "lo": min(w.s for w in wins), "hi": ctx.as_of}).fetchall():
        team, nb, _trig, gt, gn, _gtr = row[:6]
        sc = _scope(gt, gn, 1, team, nb, None)
        for i, w in enumerate(wins):
            m = row[6 + i] or 0
            if m:
                acc = add.setdefault((w.name, "M8") + sc, [0.0, 0.0, 0.0])
                acc[1] += m
                acc[2] += m


def _pages(cur, ctx: _Ctx, w: _Win, scopes: list[tuple], observed: set) -> None:
    for team, _, _ in scopes:
        if (w.name, team, None) not in observed:
            continue
        n = pages_count(cur, w.s, w.e, team=team)
        ctx.emit(w, "M13", team, None, None, "count", float(n), None, None, int(n))


def _exec_time(cur, ctx: _Ctx, mode: str) -> None:
    sets = _sets(ctx)
    if not sets:
        return
    wins = ctx.wins
    lo, hi = min(w.s for w in wins), max(w.e for w in wins)
    f = "SELECT * FROM sli_run_facts" if mode == "incremental" else Q.RUN_FACTS.format(src="run_attempts")
    measures = []
    for i, w in enumerate(wins):
        c = f"t >= {_ts(w.s)} AND t < {_ts(w.e)}"
        measures += [f"count(*) FILTER (WHERE {c}) AS n_{i}", f"avg(duration_seconds) FILTER (WHERE {c}) AS m_{i}",
                     f"quantile_cont(duration_seconds, [0.5, 0.95, 0.99]) FILTER (WHERE {c}) AS q_{i}"]
    sql = Q.EXEC_TIME.format(dims=Q.dims(", ".join(sets)), f=f, measures=", ".join(measures), extra=_filters(ctx), grouping=", ".join(sets))
    sql = sql.replace("$lo", _ts(lo)).replace("$hi", _ts(hi))
    ctx.reasons["M3"] = "no succeeded attempt with a duration ended in the window"
    for row in sorted(cur.execute(sql).fetchall(), key=lambda r: _skey(r[:2])):
        team, nb, _trig, gt, gn, _gtr = row[:6]
        if not gn and nb is None:
            continue
        sc = _scope(gt, gn, 1, team, nb, None)
        if not ctx.want(*sc):
            continue
        for i, w in enumerate(wins):
            n, mean, qs = row[6 + 3 * i: 9 + 3 * i]
            if n:
                for stat, v in (("mean", mean), ("p50", qs[0]), ("p95", qs[1]), ("p99", qs[2])):
                    ctx.emit(w, "M3", sc[0], sc[1], None, stat, float(v), None, None, int(n))


def _table_exists(cur, name: str) -> bool:
    return bool(cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0])


def _cost_per_run(cur, ctx: _Ctx) -> None:
    if not _table_exists(cur, "cost_line_items"):
        ctx.reasons["M4"] = "no billing tables"
        return
    if not cur.execute(Q.COST_HAS_RUN_DATA).fetchone()[0]:
        ctx.reasons["M4"] = "no billing data allocated to runs"
        return
    ctx.reasons["M4"] = "no run with allocated cost ended in the window"
    sets = _sets(ctx)
    if not sets:
        return
    wins = ctx.wins
    measures = []
    for i, w in enumerate(wins):
        c = f"t >= {_ts(w.s)} AND t < {_ts(w.e)}"
        measures += [f"count(*) FILTER (WHERE {c}) AS n_{i}", f"sum(cost) FILTER (WHERE {c}) AS c_{i}"]
    sql = Q.COST_PER_RUN.format(dims=Q.dims(", ".join(sets)), measures=", ".join(measures), extra=_filters(ctx), grouping=", ".join(sets))
    sql = sql.replace("$lo", _ts(min(w.s for w in wins))).replace("$hi", _ts(max(w.e for w in wins)))
    for row in sorted(cur.execute(sql).fetchall(), key=lambda r: _skey(r[:2])):
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


def _month_back(dt: datetime) -> datetime:
    import calendar

    y, m = (dt.year, dt.month - 1) if dt.month > 1 else (dt.year - 1, 12)
    return dt.replace(year=y, month=m, day=min(dt.day, calendar.monthrange(y, m)[1]))


def _cost_variance(cur, ctx: _Ctx) -> None:
    if not _table_exists(cur, "cost_line_items"):
        ctx.reasons["M10"] = "no billing tables"
        return
    if not cur.execute(Q.COST_HAS_DATA).fetchone()[0]:
        ctx.reasons["M10"] = "no billing data"
        return
    ctx.reasons["M10"] = "no cost in the previous billing period up to the same point"
    if ctx.q.notebook_id is not None or ctx.q.trigger is not None:
        return
    as_of = ctx.as_of
    prev_cut = _month_back(as_of)
    extra = f" AND coalesce(x_team, '__unallocated__') = {_lit(ctx.q.team)}" if ctx.q.team is not None else ""
    params = {"cur_month": as_of.strftime("%Y-%m"), "prev_month": prev_cut.strftime("%Y-%m"),
              "as_of": as_of, "prev_cut": prev_cut}
    rows = cur.execute(Q.COST_VARIANCE.format(extra=extra), params).fetchall()
    for w in ctx.wins:
        for team, cur_c, prev_c in sorted(rows, key=lambda r: r[0] or ""):
            if not prev_c or not ctx.want(team, None, None):
                continue
            ctx.emit(w, "M10", team, None, None, "mom_change", (cur_c or 0.0) / prev_c - 1.0,
                     details={"current_period": params["cur_month"], "current_cost": cur_c or 0.0,
                              "previous_period": params["prev_month"], "previous_cost": prev_c,
                              "previous_cut": prev_cut.isoformat()})


def _snapshots(cur, ctx: _Ctx, cfg: SliConfig, mode: str, slis: list[str]) -> None:
    q, wins, as_of = ctx.q, ctx.wins, ctx.as_of
    if mode == "direct":
        reg = Q.REGISTRY_EXTRACT.format(src="events", where="true")
        art = Q.ARTIFACT_EXTRACT.format(src="events", where="true")
    else:
        reg, art = "SELECT * FROM sli_registry", "SELECT * FROM sli_artifacts"
    registry_at = Q.REGISTRY_AT.format(reg=reg)

    def scopes_of(team: str, nb: str | None, per_notebook: bool) -> list[tuple]:
        sc = [(None, None, None), (team, None, None)]
        if per_notebook and nb is not None:
            sc.append((team, nb, None))
        return [s for s in sc if ctx.want(*s)]

    def emit_ratio(sli: str, agg: dict[tuple, list], details=None) -> None:
        for w in wins:
            for sc in sorted(agg, key=_skey):
                g, t = agg[sc][:2]
                if t:
                    ctx.emit(w, sli, sc[0], sc[1], None, "ratio", g / t, int(g), int(t - g), int(t),
                             details=details(sc) if details else None)

    if "M9" in slis or "M15" in slis:
        checks = "".join(" AND " + Q.TAG_CHECK.format(path=_lit("$." + _json_key(t))) for t in cfg.required_tags)
        extra = f" AND coalesce(team, 'unknown') = {_lit(q.team)}" if q.team is not None else ""
        sql = Q.REGISTRY_SNAPSHOT.format(registry_at=registry_at, tag_checks=checks, extra=extra)
        m9: dict[tuple, list] = {}
        m15: dict[tuple, list] = {}
        for team, nb, searchable, crit, crit_tested in cur.execute(sql, {"as_of": as_of}).fetchall():
            for sc in scopes_of(team, nb, False):
                a = m9.setdefault(sc, [0, 0])
                a[0] += searchable
                a[1] += 1
                if crit:
                    b = m15.setdefault(sc, [0, 0])
                    b[0] += crit_tested
                    b[1] += 1
        ctx.reasons["M9"] = "no notebook registered before as_of"
        ctx.reasons["M15"] = "no critical notebook registered before as_of"
        if "M9" in slis:
            emit_ratio("M9", m9)
        if "M15" in slis:
            emit_ratio("M15", m15)
    if "M14" in slis:
        extra = f" AND coalesce(team, 'unknown') = {_lit(q.team)}" if q.team is not None else ""
        sql = Q.PRODUCTIONIZE.format(registry_at=registry_at, extra=extra)
        rows = cur.execute(sql, {"as_of": as_of, "lo": min(w.s for w in wins)}).fetchall()
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
        sql = Q.ARTIFACTS_AT.format(art=art, extra=_filters(ctx))
        agg7: dict[tuple, list] = {}
        arts: dict[tuple, list] = {}
        for team, nb, artifact, last_t, sla, age, fresh in cur.execute(
                sql, {"as_of": as_of, "retention": cfg.artifact_retention_seconds}).fetchall():
            for sc in scopes_of(team, nb, True):
                a = agg7.setdefault(sc, [0, 0, 0.0])
                a[0] += fresh
                a[1] += 1
                a[2] = max(a[2], float(age))
                if sc[1] is not None:
                    arts.setdefault(sc, []).append({
                        "artifact": artifact, "age_seconds": float(age), "sla_seconds": float(sla),
                        "fresh": bool(fresh), "last_published": last_t.isoformat()})
        ctx.reasons["M7"] = "no artifact with an SLA tracked at as_of"
        emit_ratio("M7", agg7, details=lambda sc: sorted(arts[sc], key=lambda d: d["artifact"]) if sc in arts else None)
        for w in wins:
            for sc in sorted(agg7, key=_skey):
                ctx.emit(w, "M7", sc[0], sc[1], None, "max_age_seconds", agg7[sc][2], None, None, agg7[sc][1])


def _json_key(k: str) -> str:
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _median(vals: list[float]) -> float:
    s = sorted(vals)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


# ---- consecutive failures of critical notebooks (Prometheus only) ----------------------------------------------------

CONSECUTIVE_FAILURES = f"""
WITH crit AS (
    SELECT notebook_id, coalesce(team, 'unknown') AS team, coalesce(owner, 'unknown') AS owner
    FROM notebooks WHERE critical
),
f AS (
    SELECT notebook_id, t, state FROM sli_run_facts
    WHERE state IN {Q.RUN_OUTCOMES} AND notebook_id IN (SELECT notebook_id FROM crit)
),
last_ok AS (SELECT notebook_id, max(t) FILTER (WHERE state = 'succeeded') AS ok_t FROM f GROUP BY notebook_id)
SELECT c.team, c.notebook_id, c.owner,
       count(f.t) FILTER (WHERE f.state <> 'succeeded' AND (l.ok_t IS NULL OR f.t > l.ok_t)) AS n
FROM crit c LEFT JOIN f USING (notebook_id) LEFT JOIN last_ok l USING (notebook_id)
GROUP BY ALL
ORDER BY n DESC, c.notebook_id
LIMIT $cap
"""


def consecutive_failures(cur: duckdb.DuckDBPyConnection, cap: int) -> list[tuple[str, str, str, int]]:
    """(team, notebook, owner, failed attempts since the last success) for at most `cap` critical notebooks."""
    return [tuple(r) for r in cur.execute(CONSECUTIVE_FAILURES, {"cap": cap}).fetchall()]
