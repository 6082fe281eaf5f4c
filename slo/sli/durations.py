"""M3's percentiles kept between refreshes: the sorted durations of each window and scope, moved forward by what
changed instead of sorted again.

Why: an exact percentile is a selection over every duration of its window. At 10M stored events the 30-day window
holds ~1M succeeded attempts, and DuckDB's quantile over them costs ~35 ms per level: 76 of the 301 ms of an
incremental refresh (docs/performance.md). The gauge refresher asks for the same windows every few seconds; between
two asks the windows slide by seconds and a fold changes a few thousand facts. Kept sorted (numpy), a window is
brought forward by deleting the durations that left it or changed and inserting the ones that entered or changed
(a large window records them beside its sorted base instead of copying it: `Sorted`), and a percentile is two
reads at its ranks. The result is exact, with quantile_cont's
definition: linear interpolation between the two nearest ranks of (n - 1) * q. It equals DuckDB's figure up to
floating-point rounding in the last place (DuckDB interpolates with more precision).

The state of one database (its file and the `instance` id in sli_state, so a copied or re-created file never shares
it) holds, for one fold cursor and one as_of, each window's sorted durations for the platform and for every team:

- fold() applies the net change of its run facts to a copy of the state (`applied`: every window, in the range the
  window covers at the state's as_of) and installs it at its cursor once committed (`folded`); a fold that hands
  over its changes without a copy (one of one transaction) queues them for the next computation's slide;
- a computation at the state's cursor and a later as_of slides each window: the facts of the ranges that left and
  entered it are read (a few seconds of facts), deleted and inserted;
- otherwise (a cursor the state did not see, a window never asked) the windows are built from the facts, once; an
  as_of earlier than the state's is answered by SQL (the state only moves forward).

Callers hold the database's fold lock (slo/sli/fold.py), so a fold never commits between reading a cursor and using
the state. A state costs 16 bytes per duration per window (platform and team copies); past `max_values`
durations in all (SliConfig.m3_state_max_values) none is kept and SQL answers.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Optional

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector.storage.db import arrow
from collector.storage.sqltext import Params
from slo.sli import edges
from slo.sli import sql as Q
from slo.sli.windows import merge_ranges

Key = tuple[str, str]  # (database file, sli_state instance id)
Scope = Optional[str]  # None: the platform; else a team
QUANTILES = (0.5, 0.95, 0.99)
MAX_STATES = 4  # databases with a state in one process (a collector has one; tests and tools open several)
MAX_WINDOWS = 8  # window lengths kept per database (the configured ones plus a few asked through the API)
MAX_CHANGED = 1_000_000  # more queued fold changes than this drop the state (rebuilt at the next ask)


class Drift(Exception):
    """The state and the facts disagree (a duration to delete is not there): the state is dropped and rebuilt."""


@dataclass
class _State:
    cursor: int
    as_of: int  # epoch microseconds
    windows: dict[int, dict[Scope, Sorted]] = field(default_factory=dict)  # seconds -> scope -> durations
    disabled: bool = False  # too many durations to keep: SQL answers until the cursor moves
    pending: list[pa.Table] = field(default_factory=list)  # fold changes not applied yet (Q.DURATION_CHANGES)
    ahead: edges.Spans = field(default_factory=dict)  # the stored rows at the windows' edges, read ahead


@dataclass
class Prepared:
    """A kept state (`base`) and the copy a fold's changes were applied to (None: they did not fit)."""

    base: Any
    copy: Any


class Registry:
    """Kept states of one kind, one per database, at most MAX_STATES (the least recently used goes first)."""

    def __init__(self) -> None:
        self.states: OrderedDict[Key, Any] = OrderedDict()
        self._guard = threading.Lock()

    def tracking(self, key: Key | None) -> bool:
        """Whether a fold of this database should hand over its changes (a state is kept for it)."""
        with self._guard:
            return key is not None and key in self.states and not getattr(self.states[key], "disabled", False)

    def forget(self, key: Key | None) -> None:
        with self._guard:
            if key is not None:
                self.states.pop(key, None)

    def get(self, key: Key) -> Any:
        with self._guard:
            st = self.states.get(key)
            if st is not None:
                self.states.move_to_end(key)
            return st

    def applied(self, key: Key | None, lo: int, changed: pa.Table | None,
                slide: Callable[[Any, Any, int], None]) -> Prepared | None:
        """A fold's changes applied to a copy of the kept state at cursor `lo`, at the state's as_of: what the next
        computation's slide would do first. fold() calls it before it returns (slo/sli/fold.py: _fold_sides, as
        soon as the sides that made the changes have staged them), and `folded` installs the copy once both sides
        have committed. The copy shares only arrays and lists that the slide replaces, never edits. None: no state
        at that cursor."""
        st = self.get(key) if key is not None else None
        if st is None or st.cursor != lo or getattr(st, "disabled", False) or not st.windows:
            return None
        # the copy keeps what earlier folds queued on the state and no computation has applied yet (one that asked
        # for an earlier as_of was answered by SQL and left them queued)
        prepared = Prepared(st, replace(st, windows={s: dict(w) for s, w in st.windows.items()},
                                        pending=list(st.pending)))
        if changed is not None and changed.num_rows:
            prepared.copy.pending = [*prepared.copy.pending, changed]
            try:
                slide(None, prepared.copy, prepared.copy.as_of)  # at the same as_of: the queued rows only
            except Drift:
                prepared.copy = None  # the state does not fit the facts: dropped (and built again when next asked)
        return prepared

    def folded(self, key: Key | None, lo: int, hi: int, changed: pa.Table | None,
               prepared: "Prepared | None" = None) -> None:
        """After a fold from cursor `lo` to `hi` committed: the state `applied` made with its changes is installed
        at cursor `hi`; without one, its changes are queued on the state (the next computation applies them with
        its slide, in the same pass) and the state moves to cursor `hi`. A state at another cursor, a disabled one,
        a fold without its changes, or one whose changes did not fit the state drops the state."""
        if key is None:
            return
        st = self.get(key)
        if st is None or hi == lo:
            return
        if prepared is not None and prepared.base is st and st.cursor == lo:
            if prepared.copy is None:
                self.forget(key)
            else:
                prepared.copy.cursor = hi
                self.put(key, prepared.copy)
            return
        if st.cursor != lo or getattr(st, "disabled", False) or changed is None or \
                changed.num_rows + sum(t.num_rows for t in st.pending) > MAX_CHANGED:
            self.forget(key)
            return
        if changed.num_rows:
            st.pending.append(changed)
        st.cursor = hi

    @contextmanager
    def dropped_on_failure(self, key: Key) -> Iterator[None]:
        """Around a slide of the state kept for `key`: a slide moves the state's as_of and takes its queued changes
        before it reads the rows at the window edges, so one that stops halfway (a read interrupted, out of memory, a
        bug) leaves a state that would answer every later computation wrongly, and silently. It is dropped instead;
        the next computation builds it again from the facts."""
        try:
            yield
        except BaseException:
            self.forget(key)
            raise

    def put(self, key: Key, st: Any) -> None:
        with self._guard:
            self.states[key] = st
            self.states.move_to_end(key)
            while len(self.states) > MAX_STATES:
                self.states.popitem(last=False)


_REGISTRY = Registry()
_STATES = _REGISTRY.states


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


# folded() takes Q.DURATION_CHANGES
tracking, forget, folded = _REGISTRY.tracking, _REGISTRY.forget, _REGISTRY.folded
_get, _put = _REGISTRY.get, _REGISTRY.put


# ---- sorted-array edits ---------------------------------------------------------------------------------------

def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _delete(arr: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """`arr` without one occurrence of each of `vals` (a multiset difference); Drift if one is missing."""
    if not vals.size:
        return arr
    vals = np.sort(vals)
    occurrence = np.arange(vals.size) - np.searchsorted(vals, vals, "left")  # 0, 1, ... within equal values
    idx = np.searchsorted(arr, vals, "left") + occurrence
    if idx.max() >= arr.size or not _same(arr[idx], vals):  # (not idx[-1]: a missing tie breaks the order)
        raise Drift("a duration to delete is not in the window")
    keep = np.ones(arr.size, dtype=bool)  # (np.delete and np.insert do the same after ~15 us of argument checks:
    keep[idx] = False                     # a fold edits ~80 scopes, twice each, on its last, serial step)
    return arr[keep]


def _insert(arr: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """The sorted `arr` with the values `vals` in their places."""
    if not vals.size:
        return arr
    vals = np.sort(vals)
    at = np.searchsorted(arr, vals) + np.arange(vals.size)  # each new value's index in the result
    out = np.empty(arr.size + vals.size, dtype=np.result_type(arr, vals))
    old = np.ones(out.size, dtype=bool)
    old[at] = False
    out[at] = vals
    out[old] = arr
    return out


def _occurrences(arr: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """How many times each of `vals` occurs in the sorted `arr`."""
    return np.searchsorted(arr, vals, "right") - np.searchsorted(arr, vals, "left")


_NONE = np.empty(0)
OVERLAY_MIN = 16_384  # multisets below this many values are edited as one array (a copy costs less than a look-up)
COMPACT_SHARE = 16  # an overlay past 1/16 of its base is merged into it (a copy every ~16 folds' worth of changes)


class Sorted:
    """A window's durations as a sorted multiset: a sorted `base`, plus the values inserted since (`add`) and the
    base values deleted since (`rem`), both sorted and small. Never edited: an edit returns a new one sharing the
    base, so a copy of a kept state shares it safely (Registry.applied).

    Why: editing one sorted array copies all of it (np.delete, np.insert). At 10M events the 30-day window holds
    ~1M durations per copy (platform and teams), and the fold's changes applied to a copy of every window cost
    ~15 ms of each refresh, on its critical path; a computation whose as_of moved paid as much again. An overlay
    costs the size of the changes; the base is rewritten once the overlay grows past a share of it (amortised),
    and an order statistic is found from the overlay's breakpoints (`at_ranks`) without merging. Below
    OVERLAY_MIN values the overlay is merged at once: one array, as cheap to copy as to look up."""

    __slots__ = ("base", "add", "rem", "size", "_base_sum", "stats")

    def __init__(self, base: np.ndarray, add: np.ndarray = _NONE, rem: np.ndarray = _NONE,
                 base_sum: float | None = None) -> None:
        if base_sum is None and base.size >= OVERLAY_MIN:  # summed once per base, where it is written (a build or a
            base_sum = float(np.add.reduce(base))           # merge), not at the first computation that reads it
        self.base, self.add, self.rem, self._base_sum = base, add, rem, base_sum
        self.size = base.size + add.size - rem.size
        self.stats: tuple[int, float, list[float]] | None = None  # _stats, once: a scope no fold changed keeps it

    def values(self) -> np.ndarray:
        """Every value, sorted (merged: O(size))."""
        if not (self.add.size or self.rem.size):
            return self.base
        return _insert(_delete(self.base, self.rem), self.add)

    def edited(self, dels: np.ndarray, ins: np.ndarray) -> "Sorted":
        """The multiset minus one occurrence of each of `dels` (Drift if one is missing) plus `ins`."""
        if self.base.size + self.add.size < OVERLAY_MIN:
            return Sorted(_insert(_delete(self.values(), dels), ins))
        add, rem = self.add, self.rem
        if dels.size:
            dels = np.sort(dels)
            nth = np.arange(dels.size) - np.searchsorted(dels, dels, "left")  # 0, 1, ... within equal values
            if add.size:  # a value inserted since the base was written leaves the overlay first
                own = nth < _occurrences(add, dels)
                add, dels = _delete(add, dels[own]), dels[~own]
                nth = np.arange(dels.size) - np.searchsorted(dels, dels, "left")
            if dels.size:
                if np.any(nth >= _occurrences(self.base, dels) - _occurrences(rem, dels)):
                    raise Drift("a duration to delete is not in the window")
                rem = _insert(rem, dels)
        edited = Sorted(self.base, _insert(add, ins), rem, self._base_sum)
        if edited.add.size + edited.rem.size > edited.base.size // COMPACT_SHARE:
            return Sorted(edited.values())
        return edited

    def total(self) -> float:
        if self._base_sum is None:
            self._base_sum = float(np.add.reduce(self.base))  # once per base (a copy shares the base)
        if not (self.add.size or self.rem.size):
            return self._base_sum
        total = self._base_sum + float(np.add.reduce(self.add)) - float(np.add.reduce(self.rem))
        # (durations are finite by the contract; an infinite one would make the difference undefined)
        return total if np.isfinite(total) else float(np.add.reduce(self.values()))

    def at_ranks(self, ranks: np.ndarray) -> np.ndarray:
        """The values at these 0-based ranks (< size) of the sorted multiset, without merging it.

        The overlay's values b_0 <= b_1 <= ... cut the line into pieces; between two of them only base
        values lie, none deleted. With C(b) the number of values <= b, rank k falls at the first b_i with
        C(b_i) > k: on the base value (k - C(b_{i-1})) places after b_{i-1}, or on b_i itself when the base has
        fewer values than that strictly between b_{i-1} and b_i (or past the last b, on the base). A breakpoint
        equal to the one before it never comes first: both have the same C."""
        base = self.base
        if not (self.add.size or self.rem.size):
            return base[ranks]
        n = base.size
        b = np.concatenate((self.add, self.rem))  # (equal breakpoints side by side change nothing below)
        b.sort()
        # C is computed only near each rank (a searchsorted of thousands of breakpoints into a 1M base was most of
        # the cost): a breakpoint below base[k - add - 1] has C <= k - 1, one above base[k + rem + 1] has C >= k + 2,
        # so rank k's breakpoint and the one before it are within that band, widened by one on each side
        a, r = ranks - self.add.size - 1, ranks + self.rem.size + 1
        i0 = np.where(a >= 0, np.searchsorted(b, base[np.clip(a, 0, n - 1)], "left") - 1, 0)
        i1 = np.where(r <= n - 1, np.searchsorted(b, base[np.clip(r, 0, n - 1)], "right") + 1, b.size)
        near = np.zeros(b.size, dtype=bool)
        for lo, hi in zip(np.maximum(i0, 0).tolist(), np.minimum(i1, b.size).tolist()):
            near[lo:hi] = True
        idx = np.flatnonzero(near)
        bb = b[idx]
        below = np.searchsorted(base, bb, "left")
        upto = np.searchsorted(base, bb, "right")
        c = upto + np.searchsorted(self.add, bb, "right") - np.searchsorted(self.rem, bb, "right")
        j = np.searchsorted(c, ranks, "right")  # rank k's breakpoint among the near ones (idx.size: none)
        first = (j < idx.size) & (idx[np.minimum(j, idx.size - 1)] == 0)  # the very first breakpoint: none before
        prev = np.maximum(j - 1, 0)  # (the one before it is near too, and next to it in idx)
        before = np.where(first, 0, c[prev])  # values <= the breakpoint before
        start = np.where(first, 0, upto[prev])  # first base index past it
        cur = np.minimum(j, idx.size - 1)
        between = np.where(j < idx.size, below[cur] - start, n - start)  # base values strictly between
        off = ranks - before
        return np.where(off < between, base[np.minimum(start + off, n - 1)], bb[cur])


class _Rows:
    """(t in epoch µs, team, duration, count) rows as numpy arrays; count is +n (add n times) or -n (delete).
    Teams are codes into `names` (string comparisons in numpy are Python calls: 0.85 s to split 1M rows)."""

    def __init__(self, t: np.ndarray, code: np.ndarray, names: list[str], d: np.ndarray, n: np.ndarray) -> None:
        self.t, self.code, self.names, self.d, self.n = t, code, names, d, n

    @classmethod
    def of(cls, tbl: pa.Table) -> "_Rows":
        team = pc.dictionary_encode(tbl.column("team")).combine_chunks()
        t = tbl.column("t").to_numpy(zero_copy_only=False).astype(np.int64)
        n = (tbl.column("n").to_numpy(zero_copy_only=False).astype(np.int64) if "n" in tbl.column_names
             else np.ones(t.size, dtype=np.int64))
        return cls(t, team.indices.to_numpy(zero_copy_only=False).astype(np.int64), team.dictionary.to_pylist(),
                   tbl.column("d").to_numpy(zero_copy_only=False).astype(np.float64), n)

    def _take(self, m: np.ndarray) -> "_Rows":
        return _Rows(self.t[m], self.code[m], self.names, self.d[m], self.n[m])

    def within(self, lo: int, hi: int) -> "_Rows":
        return self._take((self.t >= lo) & (self.t < hi))

    def negated(self) -> "_Rows":
        return _Rows(self.t, self.code, self.names, self.d, -self.n)

    def by_team(self) -> Iterator[tuple[str, "_Rows"]]:
        order = np.argsort(self.code, kind="stable")
        codes = self.code[order]
        present = np.unique(codes)
        bounds = np.searchsorted(codes, present, "left"), np.searchsorted(codes, present, "right")
        for c, a, b in zip(present, *bounds):
            yield self.names[c], self._take(order[a:b])

    def apply(self, scopes: dict[Scope, Sorted]) -> None:
        """Delete and insert these rows' durations in every scope they belong to (the platform and their team)."""
        if not self.t.size:
            return
        for scope, rows in itertools.chain([(None, self)], self.by_team()):
            neg, pos = rows.n < 0, rows.n > 0
            values = scopes.get(scope, _EMPTY).edited(np.repeat(rows.d[neg], -rows.n[neg]),
                                                      np.repeat(rows.d[pos], rows.n[pos]))
            if values.size:
                scopes[scope] = values
            else:
                scopes.pop(scope, None)


_EMPTY = Sorted(_NONE)


def _build(rows: _Rows, lo: int, hi: int) -> dict[Scope, Sorted]:
    """Durations per scope of the rows with lo <= t < hi (all counts 1), `rows` sorted by duration (a subset and a
    stable split by team keep that order)."""
    r = rows.within(lo, hi)
    out: dict[Scope, Sorted] = {}
    if r.t.size:
        out[None] = Sorted(r.d)
        out.update((team, Sorted(part.d)) for team, part in r.by_team())
    return out


def ranges_cond(ranges: Iterable[tuple[int, int]], p: Params) -> str:
    """`t` in any of the half-open ranges (epoch µs), bounds bound in `p`; `false` for none."""
    return " OR ".join(f"(t >= {p(at(a))} AND t < {p(at(b))})" for a, b in ranges) or "false"


def _ranges_sql(ranges: Iterable[tuple[int, int]]) -> tuple[str, Params]:
    p = Params()
    return Q.KEPT_DURATIONS.format(cond=ranges_cond(ranges, p)), p


def _read_table(cur: duckdb.DuckDBPyConnection, ranges: Iterable[tuple[int, int]]) -> pa.Table:
    """Durations of the succeeded facts in the time ranges (epoch µs), as they are stored now."""
    sql, p = _ranges_sql(ranges)
    return arrow(cur, sql, p)


def _read(cur: duckdb.DuckDBPyConnection, ranges: Iterable[tuple[int, int]]) -> _Rows:
    return _Rows.of(_read_table(cur, ranges))


def _count(cur: duckdb.DuckDBPyConnection, span: tuple[int, int]) -> int:
    sql, p = _ranges_sql([span])
    return int(cur.execute(f"SELECT count(*) FROM ({sql}) x", p).fetchone()[0])


# ---- what fold() and compute() call ------------------------------------------------------------------------------

def percentiles(cur: duckdb.DuckDBPyConnection, key: Key | None, cursor: int, window_seconds: list[int],
                as_of: datetime, max_values: int) -> dict[int, dict[Scope, tuple[int, float, list[float]]]] | None:
    """Per window (seconds) and scope: (n, mean, [p50, p95, p99]) of the durations at `cursor` and `as_of`, from
    the kept state (brought forward, or built); None when SQL should answer (no key, an as_of before the state's,
    too many durations). The caller holds the fold lock and read `cursor` under it."""
    if key is None:
        return None
    a = us(as_of)
    st = _get(key)
    if st is not None and (a < st.as_of or (st.disabled and st.cursor == cursor)):
        return None
    if st is None or st.cursor != cursor or st.disabled:
        st = _State(cursor, a)
    try:
        with _REGISTRY.dropped_on_failure(key):
            _slide(cur, st, a)
    except Drift:  # never expected: the state is rebuilt from the facts
        st = _State(cursor, a)
    missing = [s for s in window_seconds if s not in st.windows]
    if missing:
        span = (a - max(missing) * 1_000_000, a)
        kept = sum(x.size for w in st.windows.values() for x in w.values())
        if kept + 2 * len(missing) * _count(cur, span) > max_values:
            _put(key, _State(cursor, a, disabled=True))
            return None
        rows = _read(cur, [span])
        rows = rows._take(np.argsort(rows.d, kind="stable"))  # sorted once for every window and team
        for s in missing:
            st.windows[s] = _build(rows, a - s * 1_000_000, a)
        while len(st.windows) > MAX_WINDOWS:
            st.windows.pop(next(s for s in st.windows if s not in window_seconds))
    _put(key, st)
    return {s: {scope: _stats(arr) for scope, arr in st.windows[s].items()} for s in window_seconds}


def advance(st: Any, a: int) -> tuple[int, list[pa.Table], list[tuple[int, int]]] | None:
    """Move a kept state (durations' or sums.py's: `as_of`, `windows` by seconds, queued `pending` fold rows) to
    `a` (>= its as_of), dropping the windows nothing of which is left (built again). Returns (the previous as_of,
    the queued rows, the time ranges whose stored rows left or entered a window: to read), or None when nothing
    is to apply."""
    was, pending = st.as_of, st.pending
    st.as_of, st.pending = a, []
    for secs in [s for s in st.windows if a - was >= s * 1_000_000]:
        del st.windows[secs]
    if not st.windows:
        st.ahead = {}  # (the changes dropped with the windows never reach the spans read ahead)
        return None
    if a == was and not pending:
        return None
    ranges = merge_ranges([r for s in st.windows for r in ((was - s * 1_000_000, a - s * 1_000_000), (was, a))])
    return was, pending, ranges if a > was else []


def read_edges(st: Any, cur: duckdb.DuckDBPyConnection | None, moved: tuple[int, list[pa.Table], list],
               a: int, reader: Callable[[duckdb.DuckDBPyConnection, list[tuple[int, int]]], pa.Table]
               ) -> pa.Table | None:
    """The stored rows that left or entered a kept state's windows in the slide `moved` (`advance`'s) to `a`, each
    with its weight `w`, from the spans read ahead (slo/sli/edges.py), which the state keeps (durations' and
    sums.py's: `ahead`); `reader(cur, ranges)` reads the rows stored now in the ranges."""
    was, pending, ranges = moved
    read = None if cur is None else (lambda rs: reader(cur, rs))
    rows, st.ahead = edges.edge_rows(st.ahead, list(st.windows), was, a, pending, ranges, read)
    return rows


def with_read(parts: list[pa.Table], read: pa.Table | None) -> list[pa.Table]:
    """The queued rows (signed counts `n`, weight 1) and the rows read as stored now (`read_edges`: each with its
    weight `w`), marked n = 0."""
    parts = [p.append_column("w", pa.array(np.ones(p.num_rows, np.int64))) for p in parts]
    if read is None or not read.num_rows:
        return parts
    read = read.append_column("n", pa.array(np.zeros(read.num_rows, np.int64)))
    # in the queued rows' column order: the caller concatenates both (the read rows came with `w` before `n`)
    return [*parts, read.select(parts[0].column_names) if parts else read]


def multipliers(t: np.ndarray, n: np.ndarray, w: np.ndarray, was: int, a: int, secs: int) -> np.ndarray:
    """Per row, how many times it moves a window of `secs` seconds slid from `was` to `a`: a read row (n = 0)
    -w when it left the window, +w when it entered (w: its weight, 1 for a row as stored when read, a fold's
    signed count for a change added to a span read ahead); a queued row its own count when it falls in the old
    window (one that does not is read as stored now, if it is in the new one)."""
    span = secs * 1_000_000
    return np.where(n == 0,
                    w * np.where((t >= was - span) & (t < a - span), -1, np.where((t >= was) & (t < a), 1, 0)),
                    np.where((t >= was - span) & (t < was), n, 0))


def _slide(cur: duckdb.DuckDBPyConnection, st: _State, a: int) -> None:
    """Bring every window of the state from its as_of to `a` (>= it) and apply the queued fold changes, in one
    delete and one insert per array: new = old + changes within the old window - facts that left + facts that
    entered (the last two read as stored now)."""
    moved = advance(st, a)
    if moved is None:
        return
    was, pending, _ = moved
    parts = with_read(list(pending), read_edges(st, cur, moved, a, _read_table))
    if not parts:
        return
    table = pa.concat_tables(parts)
    rows, w = _Rows.of(table), table.column("w").to_numpy()
    for secs, scopes in st.windows.items():
        mult = multipliers(rows.t, rows.n, w, was, a, secs)
        keep = mult != 0
        part = rows._take(keep)
        part.n = mult[keep]
        part.apply(scopes)


def applied(key: Key | None, lo: int, changed: pa.Table | None) -> Prepared | None:
    """Registry.applied for M3's durations (Q.DURATION_CHANGES)."""
    return _REGISTRY.applied(key, lo, changed, _slide)


def _stats(values: Sorted) -> tuple[int, float, list[float]]:
    if values.stats is None:
        values.stats = _compute_stats(values)
    return values.stats


def _compute_stats(values: Sorted) -> tuple[int, float, list[float]]:
    n = values.size
    pos = [(n - 1) * q for q in QUANTILES]
    ranks = np.array([int(np.floor(rn)) for rn in pos] + [int(np.ceil(rn)) for rn in pos])
    at_ranks = values.at_ranks(ranks).tolist()
    qs = []
    for j, rn in enumerate(pos):
        lo, hi = int(ranks[j]), int(ranks[j + len(pos)])
        a, b = at_ranks[j], at_ranks[j + len(pos)]
        qs.append(a if lo == hi else a + (b - a) * (rn - lo))
    return n, values.total() / n, qs
