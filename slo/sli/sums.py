"""The additive SLIs (M1, M2, M5, M6, M8, M11, M12) kept between refreshes: per window, the sums of good, bad and
total per (SLI, team, trigger), moved forward by what changed instead of aggregated again.

Why: the additive statement read each window as whole days and hours of the rollups plus its raw edges, and
aggregated them with one FILTERed sum per window and measure: 30-50 ms of every refresh at 10M events
(docs/performance.md). The sums are of counts, so they can be kept exactly and slid like M3's durations
(slo/sli/durations.py, whose registry, keys and time helpers this module shares): a fold applies its signed
contribution rows (the rows its rollup deltas were made of) inside each window, to a copy installed once it has
committed (or queues them for the next computation), and a computation moves each window from the state's as_of
to the new one: + the queued rows inside the old window, - the contribution rows of the facts that left, + those of
the facts that entered (read as stored now). Counts are integers held in float64: exact below
2^53. Only the platform, team and trigger levels come from here (the notebook level and the missed slots of M8
stay SQL); an as_of earlier than the state's is answered by SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector.storage.db import arrow
from collector.storage.sqltext import Params
from slo.sli import sql as Q
from slo.sli import edges
from slo.sli.durations import (MAX_WINDOWS, Key, Prepared, Registry, advance, at, multipliers, ranges_cond,
                               read_edges, us, with_read)

SumKey = tuple[str, str, str]  # (sli, team, trigger)


@dataclass
class _State:
    cursor: int
    as_of: int  # epoch microseconds
    windows: dict[int, dict[SumKey, list[float]]] = field(default_factory=dict)  # seconds -> key -> [g, b, t]
    pending: list[pa.Table] = field(default_factory=list)  # fold contributions not applied yet
    ahead: edges.Spans = field(default_factory=dict)  # the stored rows at the windows' edges, read ahead


_REGISTRY = Registry()
_STATES = _REGISTRY.states
# folded() takes Q.CONTRIB_CHANGES
tracking, forget, folded = _REGISTRY.tracking, _REGISTRY.forget, _REGISTRY.folded


def applied(key: Key | None, lo: int, changed: pa.Table | None) -> Prepared | None:
    """Registry.applied (slo/sli/durations.py) for the kept sums: a fold's contribution rows (Q.CONTRIB_CHANGES,
    both sides' together: sums add up in any order)."""
    return _REGISTRY.applied(key, lo, changed, _slide)


def totals(cur: duckdb.DuckDBPyConnection, key: Key | None, cursor: int, window_seconds: list[int],
           as_of: datetime) -> dict[int, dict[SumKey, list[float]]] | None:
    """Per window (seconds): [good, bad, total] per (sli, team, trigger) at `cursor` and `as_of`, from the kept
    state (brought forward, or built); None when SQL should answer. The caller holds the fold lock and read
    `cursor` under it."""
    if key is None:
        return None
    a = us(as_of)
    st = _REGISTRY.get(key)
    if st is not None and a < st.as_of:
        return None
    if st is None or st.cursor != cursor:
        st = _State(cursor, a)
    with _REGISTRY.dropped_on_failure(key):
        _slide(cur, st, a)
    missing = [s for s in window_seconds if s not in st.windows]
    if missing:
        st.windows.update(_build(cur, a, missing))
        while len(st.windows) > MAX_WINDOWS:
            st.windows.pop(next(s for s in st.windows if s not in window_seconds))
    _REGISTRY.put(key, st)
    return {s: st.windows[s] for s in window_seconds}


def _build(cur: duckdb.DuckDBPyConnection, a: int, seconds: list[int]) -> dict[int, dict[SumKey, list[float]]]:
    p = Params()
    contrib = Q.KEPT_CONTRIB.format(cond=ranges_cond([(a - max(seconds) * 1_000_000, a)], p))
    measures = []
    for i, s in enumerate(seconds):
        c = f"t >= {p(at(a - s * 1_000_000))}"
        measures += [f"sum({m}) FILTER (WHERE {c}) AS {m}_{i}" for m in ("good", "bad", "total")]
    out: dict[int, dict[SumKey, list[float]]] = {s: {} for s in seconds}
    for row in cur.execute(Q.KEPT_SUMS.format(measures=", ".join(measures), contrib=contrib), p).fetchall():
        for i, s in enumerate(seconds):
            g, b, t = (float(v or 0) for v in row[3 + 3 * i: 6 + 3 * i])
            if g or b or t:
                out[s][(row[0], row[1], row[2])] = [g, b, t]
    return out


def _slide(cur: duckdb.DuckDBPyConnection, st: _State, a: int) -> None:
    """Bring every window from the state's as_of to `a` (>= it) and apply the queued fold rows: + the queued rows
    inside the old window, - the stored contributions that left, + those that entered."""
    moved = advance(st, a)
    if moved is None:
        return
    was, pending, _ = moved
    parts = with_read(list(pending), read_edges(st, cur, moved, a, _read))
    if not parts:
        return
    rows = pa.concat_tables([t.select(["t", "sli", "team", "trigger", "good", "bad", "total", "n", "w"])
                             .cast(_ROWS) for t in parts])
    t = rows.column("t").to_numpy()
    n = rows.column("n").to_numpy()
    weight = rows.column("w").to_numpy()
    # every window's signed rows summed per (window, sli, team, trigger) in numpy, the key as one integer code: a
    # pyarrow group-by cost ~1 ms however few its rows, on the fold's last, serial step
    code, names = _key_codes(rows)
    measures = np.column_stack([rows.column(m).to_numpy() for m in ("good", "bad", "total")])
    keys, signed = [], []
    for w, secs in enumerate(st.windows):
        mult = multipliers(t, n, weight, was, a, secs)
        keep = np.flatnonzero(mult)
        if keep.size:
            keys.append(code[keep] * len(st.windows) + w)
            signed.append(measures[keep] * mult[keep, None])
    if not keys:
        return
    groups, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    vals = np.concatenate(signed)
    g, b, tt = (np.bincount(inverse, weights=vals[:, i], minlength=groups.size).tolist() for i in range(3))
    windows = list(st.windows.values())
    # new lists, never edited ones: a copy shares them (durations.Registry.applied)
    for key, dg, db, dt in zip(groups.tolist(), g, b, tt):
        key, w = divmod(key, len(windows))
        sums = windows[w]
        k = names(key)
        good, bad, total = sums.get(k, _ZERO)
        acc = [good + dg, bad + db, total + dt]
        if acc[0] or acc[1] or acc[2]:
            sums[k] = acc
        else:
            sums.pop(k, None)


def _key_codes(rows: pa.Table) -> tuple[np.ndarray, Callable[[int], SumKey]]:
    """Each row's (sli, team, trigger) as one integer (null a value of its own), and the key of a code."""
    dicts, code = [], np.zeros(rows.num_rows, np.int64)
    for c in ("sli", "team", "trigger"):
        enc = pc.dictionary_encode(rows.column(c), null_encoding="encode").combine_chunks()
        d = enc.dictionary.to_pylist()
        code = code * len(d) + enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dicts.append(d)
    (slis, teams, triggers), nt, ng = dicts, len(dicts[1]), len(dicts[2])

    def names(k: int) -> SumKey:
        k, tr = divmod(k, ng)
        s, te = divmod(k, nt)
        return slis[s], teams[te], triggers[tr]
    return code, names


_ZERO = (0.0, 0.0, 0.0)
_ROWS = pa.schema([("t", pa.int64()), ("sli", pa.string()), ("team", pa.string()), ("trigger", pa.string()),
                   ("good", pa.float64()), ("bad", pa.float64()), ("total", pa.float64()), ("n", pa.int64()),
                   ("w", pa.int64())])


def _read(cur: duckdb.DuckDBPyConnection, ranges: list[tuple[int, int]]) -> pa.Table:
    """The contribution rows stored now with t in the ranges (epoch µs)."""
    p = Params()
    return arrow(cur, Q.KEPT_CONTRIB_ROWS.format(contrib=Q.KEPT_CONTRIB.format(cond=ranges_cond(ranges, p))), p)
