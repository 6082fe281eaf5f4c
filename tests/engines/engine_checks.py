"""SLI rows of two engines compared: same rows, integers equal, values to 1e-12."""

from __future__ import annotations

import math


def key(r: dict) -> tuple:
    return (r["window"], r["sli"], r["team"], r["notebook_id"], r["trigger"], r["stat"])


# The SLIs that rest on the cost allocation, whose proportional shares are DECIMAL products: Spark keeps 6 decimals
# where DuckDB keeps 18 (docs/scale.md), so a run's cost differs below a micro-unit per line. M4 (a cost per run) is
# held to the cent like every cost figure; M10 (a ratio of month sums) to 1e-5 relative.
TOLERANCE = {"M4": {"rel_tol": 0.0, "abs_tol": 0.005}, "M10": {"rel_tol": 1e-5, "abs_tol": 1e-9}}
EXACT = {"rel_tol": 1e-12, "abs_tol": 1e-12}


def _close(a, b, tol: dict = EXACT) -> bool:
    """Equal, floats to `tol` (a sum of DOUBLEs depends on the order the engine adds them in)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, **tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return a == b


def assert_same_slis(got: list[dict], want: list[dict], what: str) -> dict[str, int]:
    """Same rows; integers equal; values equal to 1e-12 (relative, or absolute near zero). Percentiles (M3) are
    the same definition on both engines (linear interpolation between order statistics: DuckDB quantile_cont,
    Spark percentile), so they are held to the same bound; M4 and M10 to TOLERANCE. Returns the number of non-null values per SLI."""
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
        tol = TOLERANCE.get(wr["sli"], EXACT)
        assert gr["value"] is not None and _close(float(gr["value"]), float(wr["value"]), tol), \
            (what, k, gr["value"], wr["value"])
        assert _close(gr.get("details"), wr.get("details"), tol), (what, k, gr.get("details"), wr.get("details"))
        seen[wr["sli"]] = seen.get(wr["sli"], 0) + 1
    return seen
