"""SLI rows of two engines compared: same rows, integers equal, values to 1e-12."""

from __future__ import annotations

import math


def key(r: dict) -> tuple:
    return (r["window"], r["sli"], r["team"], r["notebook_id"], r["trigger"], r["stat"])


def _close(a, b) -> bool:
    """Equal, floats to 1e-12 (a sum of DOUBLEs depends on the order the engine adds them in)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_slis(got: list[dict], want: list[dict], what: str) -> dict[str, int]:
    """Same rows; integers equal; values equal to 1e-12 (relative, or absolute near zero). Percentiles (M3) are
    the same definition on both engines (linear interpolation between order statistics: DuckDB quantile_cont,
    Spark percentile), so they are held to the same bound. Returns the number of non-null values per SLI."""
    g, w = {key(r): r for r in got}, {key(r): r for r in want}
    assert set(g) == set(w), (what, sorted(set(g) ^ set(w), key=str)[:10])
    seen: dict[str, int] = {}
    for k, wr in w.items():
        gr = g[k]
        for f in ("good", "bad", "total"):
            assert gr[f] == wr[f], (what, k, f, gr[f], wr[f])
        if wr["value"] is None:
            assert gr["value"] is None and gr.get("absent_reason") == wr.get("absent_reason"), (what, k, gr, wr)
            continue
        assert gr["value"] is not None and math.isclose(gr["value"], wr["value"], rel_tol=1e-12, abs_tol=1e-12), \
            (what, k, gr["value"], wr["value"])
        assert _close(gr.get("details"), wr.get("details")), (what, k, gr.get("details"), wr.get("details"))
        seen[wr["sli"]] = seen.get(wr["sli"], 0) + 1
    return seen
