"""The SLIs (M1-M15) on any engine: the SLI engine's direct mode (slo/sli/compute.py), whose statements read the
collector's relations, run against an engine whose relations come from the lake (collector/lake/views.py).

The one relation the lake cannot carry is the collector's missed-slot state (M8), which the collector builds
incrementally from wall-clock passes; over the lake it is decided once per computation at `as_of`: every cron slot
of every registered schedule version since `as_of - lookback` whose grace period ended by `as_of`, missed when no
attempt served it (slo/sli/missed.py's own enumeration and `_SERVED` statement).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from collector.engines.base import Engine
from slo.sli import missed
from slo.sli.compute import compute as compute_direct
from slo.sli.config import SliConfig, SliQuery, utc
from slo.sli import sql as Q

_REGS = f"""
SELECT r.notebook_id, r.t, r.cron, r.timezone, r.grace_seconds, coalesce(r.team, nb.team, 'unknown') AS team
FROM ({Q.SCHEDULE_EXTRACT.format(src='events', where='true')}) r LEFT JOIN notebooks nb USING (notebook_id)
ORDER BY r.notebook_id, r.t, r.source, r.id
"""
_MISSED_SCHEMA = pa.schema([
    ("notebook_id", pa.string()), ("slot", pa.timestamp("us", tz="UTC")), ("team", pa.string()),
    ("cron", pa.string()), ("timezone", pa.string()), ("grace_seconds", pa.float64()),
    ("detected_at", pa.timestamp("us", tz="UTC")), ("retracted_at", pa.timestamp("us", tz="UTC")),
])


def decide_missed(engine: Engine, as_of: datetime, cfg: SliConfig) -> int:
    """Build `sli_missed_slots` in the engine for a computation at `as_of`; returns the number of misses."""
    cur = engine.cursor()
    versions: dict[str, list[missed.Version]] = {}
    for nb, t, cron, tz, grace, team in cur.execute(_REGS).fetchall():
        v = missed.Version(t, cron, tz, cfg.missed_grace_seconds if grace is None else float(grace), team)
        if missed.usable(v):  # a registration stored before the contract's bounds is skipped, as the collector does
            versions.setdefault(nb, []).append(v)
    floor = as_of - timedelta(days=cfg.missed_lookback_days)
    rows: dict[str, list[Any]] = {k: [] for k in missed._SLOT_SCHEMA.names}
    for nb, vs in versions.items():
        start = max(vs[0].t, floor)
        for i, v in enumerate(vs):
            before = vs[i + 1].t if i + 1 < len(vs) else None
            if before is not None and before <= start:
                continue
            got, due_at = missed.due_slots(v, max(start, v.t), before, as_of, missed.MAX_SLOTS_PER_PASS)
            for s in got:
                for k, val in zip(missed._SLOT_SCHEMA.names, (nb, s, v.team, v.cron, v.tz, v.grace)):
                    rows[k].append(val)
            if due_at is not None:
                break
    slots = pa.table(rows, schema=missed._SLOT_SCHEMA)
    engine.register_arrow("sli_slots", slots)
    out: list[tuple] = []
    if slots.num_rows:
        lo = min(rows["slot"]) - timedelta(days=1)
        hi = max(s + timedelta(seconds=g) for s, g in zip(rows["slot"], rows["grace_seconds"]))
        out = cur.execute(missed._SERVED, {"lo": lo, "hi": hi}).fetchall()
    cols = list(zip(*out)) if out else [[] for _ in range(6)]
    table = pa.table([pa.array(list(c), f.type) for c, f in zip(cols, missed._SLOT_SCHEMA)]
                     + [pa.nulls(len(out), pa.timestamp("us", tz="UTC"))] * 2, schema=_MISSED_SCHEMA)
    engine.register_arrow("sli_missed_slots", table)
    return table.num_rows


def compute(engine: Engine, q: SliQuery, cfg: SliConfig | None = None) -> list[dict[str, Any]]:
    """Every requested SLI at q.as_of on `engine`, as GET /v1/sli serves them (provenance mode `direct`)."""
    cfg = cfg or SliConfig()
    if engine.name == "bigquery":
        # M4 and M10 rest on the cost allocation, whose day spreading has no BigQuery translation here
        # (dialect.UnsupportedConstruct; docs/scale.md): computed on DuckDB or Spark only
        from dataclasses import replace

        q = replace(q, slis=[s for s in (q.slis or list(Q.SLIS)) if s.upper() not in ("M4", "M10")])
    decide_missed(engine, utc(q.as_of), cfg)
    return compute_direct(engine.cursor(), q, cfg, mode="direct", fold_first=False, underived=False)
