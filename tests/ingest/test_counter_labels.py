"""The persisted counters' label values: capped per label (`__other__` past the cap), redacted, and the same whether
each label set is capped afresh or remembered from an earlier fold (collector/metrics/counters.py: fold)."""

from __future__ import annotations

import random

import pytest

from collector.conventions import OTHER
from collector.metrics import counters as counters_mod
from collector.metrics.counters import CounterStore
from collector.storage.derive import CounterDelta

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def _delta(team: str, source: str = "s", n: float = 1.0) -> CounterDelta:
    return CounterDelta("observatory_events_ingested_total", (("team", team), ("source", source)), n)


def _each_alone(caps: dict[str, int], batches: list[list[CounterDelta]]) -> list[dict]:
    """The reference: every delta capped on its own, in order, by a capper that remembers nothing but its seen
    sets (what `fold` did before it remembered label sets)."""
    store = CounterStore(caps)
    out = []
    for batch in batches:
        folded: dict = {}
        for d in batch:
            labels = tuple(sorted((k, store.capper(k, v)) for k, v in d.labels))
            folded[(d.name, labels)] = folded.get((d.name, labels), 0.0) + d.value
        out.append(folded)
    return out


def test_values_past_a_cap_fold_into_other_and_stay_there():
    store = CounterStore({"team": 2})
    first = store.fold([_delta("a"), _delta("b"), _delta("c")])
    assert {dict(k[1])["team"] for k in first} == {"a", "b", OTHER}
    # "c" came after the cap was full: it stays folded, in a later call too, and "a" stays itself
    again = store.fold([_delta("c"), _delta("a"), _delta("d")])
    assert again == {("observatory_events_ingested_total", (("source", "s"), ("team", OTHER))): 2.0,
                     ("observatory_events_ingested_total", (("source", "s"), ("team", "a"))): 1.0}


def test_a_secret_in_a_label_value_is_redacted():
    store = CounterStore()
    folded = store.fold([_delta(f"team-{SECRET}")])
    (labels,) = [dict(k[1]) for k in folded]
    assert SECRET not in labels["team"] and labels["team"].startswith("team-")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_remembered_label_sets_give_what_capping_each_delta_gives(seed, monkeypatch):
    """Random batches over a small alphabet with tight caps (so values cross the caps between calls), and a memory
    small enough to start afresh several times: each fold equals the reference's."""
    monkeypatch.setattr(counters_mod, "CAPPED_MEMORY", 7)
    rng = random.Random(seed)
    caps = {"team": 4, "source": 3}
    batches = [[_delta(f"t{rng.randrange(9)}", f"s{rng.randrange(6)}", float(rng.randrange(1, 5)))
                for _ in range(rng.randrange(1, 12))] for _ in range(40)]
    store = CounterStore(caps)
    got = [store.fold(b) for b in batches]
    assert got == _each_alone(caps, batches)
    assert len(store._capped) <= 7


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(counters_mod, "CAPPED_MEMORY", 100)
    store = CounterStore({"team": 10})
    for i in range(1_000):  # distinct values past the cap: distinct inputs, all exported as one
        store.fold([_delta(f"team-{i}")])
    assert len(store._capped) <= 100
    assert {dict(k[1])["team"] for k in store.fold([_delta("team-999"), _delta("team-0")])} == {OTHER, "team-0"}


def test_loading_stored_counters_forgets_what_fold_remembered(tmp_path):
    """`load` adds the stored label values to the seen sets: a value folded into `__other__` before may now be let
    through, so the remembered label sets are dropped (here: "c" stored by an earlier process)."""
    from collector.storage import db as dbmod

    store = CounterStore({"team": 2})
    assert {dict(k[1])["team"] for k in store.fold([_delta("a"), _delta("b"), _delta("c")])} == {"a", "b", OTHER}
    con = dbmod.connect(tmp_path / "c.duckdb")
    try:
        CounterStore.persist(con, {("observatory_events_ingested_total", (("source", "s"), ("team", "c"))): 1.0})
        store.load(con)
    finally:
        con.close()
    assert {dict(k[1])["team"] for k in store.fold([_delta("c")])} == {"c"}
