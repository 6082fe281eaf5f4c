"""The stored rows at the edges of the kept windows, read ahead (slo/sli/durations.py, slo/sli/sums.py).

Why: every gauge refresher pass computes at a later as_of than the last, so each kept window slides, and the rows that
left it (at its start) and entered it (before the new as_of) are read as stored now: one statement per kind of kept
state over one range per window edge. At 10M events those reads cost 12 ms (the additive sums) and 5-7 ms (M3's
durations) of a refresh 15 s after the last, however few rows they return: each range scans its row group
(docs/performance.md, SLIs, forty-second round). Instead, each edge's stored rows are read `READ_AHEAD_US` ahead, in
one statement for every edge that needs it, and kept with the state; the next passes' slides take their rows from
there.

What keeps them exact: a kept span must stay what a read of it would give now. Every change to the stored facts
reaches the kept state as a fold's signed change rows (`pending`, Q.CONTRIB_CHANGES and Q.DURATION_CHANGES: the new
facts +1, the ones they replaced -1), which is also what keeps the windows themselves exact. Each slide, including
the one that applies a fold's changes at the same as_of (durations.Registry.applied), adds the changes that fall in a
kept span to it, with their count as the row's weight `w` (a stored row read is 1). A span read now already holds
the changes being applied, so they are added to the spans kept before only.

Only a small move uses the spans: at most `READ_AHEAD_US`, and less than the gap between two edges, so that no row is
the left rows of one window and the entered rows of another (`durations.advance` merges such ranges); anything
larger reads as before and drops the spans.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

READ_AHEAD_US = 600 * 1_000_000  # 10 minutes: 40 refresher passes 15 s apart per read

# edge (µs before as_of: 0, or a window's length) -> (lo, hi, the stored rows with lo <= t < hi, weight `w`)
Spans = dict[int, tuple[int, int, pa.Table]]  # (each span's rows sorted by t)
Reader = Callable[[list[tuple[int, int]]], pa.Table]  # the rows stored now with t in any of the ranges


def _within(table: pa.Table, lo: int, hi: int) -> pa.Table:
    """The rows with lo <= t < hi of a span's rows, kept sorted by t: a slice found by bisection (a slide cuts each
    edge's span twice, for both kinds of state; a filter costs ~30-40 us, a slice ~6)."""
    t = table.column("t").to_numpy()
    i, j = np.searchsorted(t, [lo, hi]).tolist()
    return table.slice(i, j - i)


def _among(table: pa.Table, lo: int, hi: int) -> pa.Table:
    """The rows with lo <= t < hi of a table in any order (a fold's changes)."""
    t = table.column("t").to_numpy()
    keep = (t >= lo) & (t < hi)
    return table.filter(pa.array(keep)) if keep.any() else table.slice(0, 0)


def _by_time(table: pa.Table) -> pa.Table:
    return table.sort_by("t").combine_chunks() if table.num_rows > 1 else table.combine_chunks()


def _weighted(table: pa.Table, w: pa.Array | int) -> pa.Table:
    return table.append_column("w", w if isinstance(w, pa.Array) else pa.array(np.full(table.num_rows, w, np.int64)))


def _with_changes(lo: int, hi: int, rows: pa.Table, pending: list[pa.Table]) -> pa.Table:
    """A kept span with the changes of `pending` (signed counts `n`) that fall in it, weighted by their count."""
    cols = [c for c in rows.column_names if c != "w"]
    parts = [rows]
    for p in pending:
        inside = _among(p, lo, hi)
        if inside.num_rows:
            parts.append(_weighted(inside.select(cols).cast(rows.schema.remove(rows.schema.get_field_index("w"))),
                                   inside.column("n").cast(pa.int64()).combine_chunks()))
    return parts[0] if len(parts) == 1 else _by_time(pa.concat_tables(parts))


def edge_rows(spans: Spans, windows: list[int], was: int, a: int, pending: list[pa.Table],
              ranges: list[tuple[int, int]], read: Reader | None) -> tuple[pa.Table | None, Spans]:
    """The stored rows of `ranges` (those that left or entered the windows of `windows` seconds as their end moved
    from `was` to `a`: `durations.advance`), each with its weight `w`, and the spans to keep from now on. `read` is
    None when nothing is to be read (a slide at the same as_of: only `pending` is applied, and added to the spans)."""
    edges = sorted({0, *(s * 1_000_000 for s in windows)})
    kept = {e: (lo, hi, _with_changes(lo, hi, rows, pending)) for e, (lo, hi, rows) in spans.items() if e in edges}
    if not ranges or read is None:
        return None, kept
    move = a - was
    if move > READ_AHEAD_US or any(y - x < move for x, y in zip(edges, edges[1:])):
        return _weighted(read(ranges), 1), {}
    need = [e for e in edges if not (e in kept and kept[e][0] <= was - e and a - e <= kept[e][1])]
    if need:
        fresh = _by_time(_weighted(read([(was - e, was - e + READ_AHEAD_US) for e in need]), 1))  # stored now
        for e in need:
            kept[e] = (was - e, was - e + READ_AHEAD_US, _within(fresh, was - e, was - e + READ_AHEAD_US))
    out = pa.concat_tables([_within(rows, was - e, a - e) for e, (_, _, rows) in kept.items()])
    return out, {e: (a - e, hi, _within(rows, a - e, hi)) for e, (_, hi, rows) in kept.items()}
