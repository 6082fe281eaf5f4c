"""The keys of the stored events, held beside DuckDB: which of a group's (source, id) are stored already.

Why not DuckDB's primary key. `events` had one on (source, id), and every commit paid for it in DuckDB's index (an
ART): the insert checks each key in the transaction's own index, COMMIT appends it to the table's. At the HTTP path's
4,000-row commits that was 4.11 of 7.76 CPU-µs per row, against 0.33-0.41 for this index (bench/bench_key_index.py),
and the collector over HTTP took 22.6 CPU-µs per event with this index against 24.9 with the key, alternated
(docs/performance.md, forty-eighth round). Migration 0217 dropped the key; dedup is this module's.

How it stays exact. Every stored key is held as a 64-bit hash (polars, seeded with a value drawn per process, so no
client can aim a key at another's hash) beside the batch that stored it. A group's key whose hash is not held is new:
a blocked Bloom filter says so for most keys without a search (one 64-bit word per key, 6 bits set). A key whose hash
is held is compared with the stored rows of the batches that hold that hash (`stored`: one read, of those batches'
row groups only, as batch ids follow the row order), and only an equal (source, id) is a duplicate: a hash is never
taken for the key.

How it stays complete. The index is built from `events` when the writer starts (`load`), and a group's keys are added
once its COMMIT has returned (`add`). Nothing but the writer inserts into `events`, and a database file has one
writer (DuckDB's lock). A process that dies between the COMMIT and the add loses nothing: the next start builds the
index from what was committed. So dedup across restarts and across the whole history are what the table holds, as
with the key.

Memory: 16 bytes per stored event (hash and batch id) and 1.25-3.4 for the filter (its size a power of two), in the
collector's own heap (the `observatory_writer_key_index_bytes` gauge); the primary key's index it replaces was
DuckDB's. The keys are kept in sorted levels: a 4,000-key group becomes a chunk, 32 chunks merge into a recent
level, a recent level of 1M keys merges into the base (np.insert: one pass over it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import duckdb
import numpy as np
import polars as pl

CHUNKS = 32  # chunks held before they merge into the recent level
RECENT = 1_000_000  # keys in the recent level before it merges into the base
_BLOOM_BITS = 6  # bits set per key in its filter word
_LOAD_ROWS = 1_000_000  # keys read and hashed at a time when the index is built
MIN_WORDS = 1 << 14  # the filter's least size, in 64-bit words (128 KiB: ~100,000 keys at 10 bits each)


def _seed() -> int:
    return int.from_bytes(os.urandom(8), "little")


class _Level:
    """Sorted hashes and the batch of each."""

    __slots__ = ("h", "b")

    def __init__(self, h: np.ndarray, b: np.ndarray, *, sort: bool = True) -> None:
        if sort and len(h) > 1:
            order = np.argsort(h, kind="stable")
            h, b = h[order], b[order]
        self.h, self.b = h, b

    def merged(self, other: _Level) -> _Level:
        """This level with `other`'s keys in place (one pass over this level)."""
        at = np.searchsorted(self.h, other.h, "right")
        return _Level(np.insert(self.h, at, other.h), np.insert(self.b, at, other.b), sort=False)

    def batches_of(self, h: np.ndarray) -> Iterator[tuple[int, int]]:
        """(position in `h`, batch) for each held hash of `h`."""
        left, right = np.searchsorted(self.h, h, "left"), np.searchsorted(self.h, h, "right")
        for k in np.nonzero(right > left)[0]:
            for b in self.b[left[k]:right[k]]:
                yield int(k), int(b)


_EMPTY = (np.empty(0, np.uint64), np.empty(0, np.int64))


class StoredKeys:
    """The stored events' keys as hashes: `stored` finds a group's stored keys, `add` records a committed group's."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = _seed() if seed is None else seed
        self._base = _Level(*_EMPTY)
        self._recent = _Level(*_EMPTY)
        self._chunks: list[_Level] = []
        self.count = 0
        self._words = np.zeros(MIN_WORDS, np.uint64)

    # ---- hashing and the filter --------------------------------------------------------------------------------

    def hashes(self, keys: pl.DataFrame) -> np.ndarray:
        """The hash of each (source, id) row of `keys`."""
        return keys.select(pl.struct("source", "id").hash(self._seed)).to_series().to_numpy()

    def _slots(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.zeros(len(h), np.uint64)
        top = h >> np.uint64(28)
        for j in range(_BLOOM_BITS):
            mask |= np.uint64(1) << ((top >> np.uint64(6 * j)) & np.uint64(63))
        return h & np.uint64(len(self._words) - 1), mask

    def _fill(self, h: np.ndarray) -> None:
        for a in range(0, len(h), _LOAD_ROWS):  # a slice at a time: a start's 10M keys would need ~0.5 GB at once
            idx, mask = self._slots(h[a:a + _LOAD_ROWS])
            np.bitwise_or.at(self._words, idx, mask)

    def _refill(self) -> None:
        """A filter of 20 bits per key held (10 or more until it is refilled again), filled from every level."""
        bits = max(0, int(np.ceil(np.log2(max(self.count, 1) * 20 / 64))))
        self._words = np.zeros(max(MIN_WORDS, 1 << bits), np.uint64)
        for level in self._levels():
            self._fill(level.h)

    def _levels(self) -> list[_Level]:
        return [self._base, self._recent, *self._chunks]

    # ---- building, looking up, adding --------------------------------------------------------------------------

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> StoredKeys:
        """Every key stored in `con`'s `events`, read and hashed a slice at a time into arrays made once (the keys'
        texts are never all in memory; at 10M stored events: 3.2-3.8 s, docs/performance.md, forty-eighth round)."""
        keys = cls()
        n = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        h, b, at = np.empty(n, np.uint64), np.empty(n, np.int64), 0
        for part in con.sql("SELECT source, id, batch_id FROM events").to_arrow_reader(_LOAD_ROWS):
            frame = pl.from_arrow(part)
            assert isinstance(frame, pl.DataFrame)
            h[at:at + frame.height] = keys.hashes(frame)
            b[at:at + frame.height] = frame["batch_id"].to_numpy()
            at += frame.height
        if at:
            keys.count = at
            keys._base = _Level(h[:at], b[:at])
            keys._refill()
        return keys

    def stored(self, con: duckdb.DuckDBPyConnection, keys: pl.DataFrame, h: np.ndarray) -> np.ndarray | None:
        """Which rows of `keys` (distinct (source, id), their hashes `h`) are stored in `con`'s `events` (None: none
        is). A key whose hash is held is read back from the batches that hold the hash, inside the caller's
        transaction, and compared in full."""
        if not len(h) or not self.count:
            return None
        idx, mask = self._slots(h)
        maybe = np.nonzero((self._words[idx] & mask) == mask)[0]
        if not len(maybe):
            return None
        candidates: dict[int, set[int]] = {}  # batch -> rows of `keys`
        for level in self._levels():
            for k, b in level.batches_of(h[maybe]):
                candidates.setdefault(b, set()).add(int(maybe[k]))
        if not candidates:
            return None
        rows = sorted({r for rs in candidates.values() for r in rs})
        found = _read_back(con, keys[rows], sorted(candidates))
        if not found:
            return None
        out = np.zeros(len(h), bool)
        out[[rows[i] for i in found]] = True
        return out

    def add(self, h: np.ndarray, batch_id: int) -> None:
        """Record the keys (hashes `h`) a committed batch stored."""
        if not len(h):
            return
        self._chunks.append(_Level(h.astype(np.uint64, copy=True), np.full(len(h), batch_id, np.int64)))
        self.count += len(h)
        if len(self._chunks) >= CHUNKS:
            merged = _Level(np.concatenate([c.h for c in self._chunks]), np.concatenate([c.b for c in self._chunks]))
            self._recent, self._chunks = self._recent.merged(merged), []
            if len(self._recent.h) >= RECENT:
                self._base, self._recent = self._base.merged(self._recent), _Level(*_EMPTY)
        if len(self._words) * 64 < self.count * 10:  # grown past ~10 bits per key
            self._refill()
        else:
            self._fill(h)

    @property
    def nbytes(self) -> int:
        """What the index holds in memory."""
        return self._words.nbytes + sum(level.h.nbytes + level.b.nbytes for level in self._levels())


# The rows of `dedup_keys` stored in the batches listed (integers this module writes; the keys are bound as a table).
_STORED_AMONG = """
SELECT k._i FROM dedup_keys k SEMI JOIN (SELECT source, id FROM events WHERE batch_id IN ({batches})) e
ON k.source = e.source AND k.id = e.id
"""


def _read_back(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame, batches: list[int]) -> list[int]:
    """The positions in `keys` of the keys stored in `batches` (batch ids, which follow the row order: the filter
    on them reads only those batches' row groups)."""
    con.register("dedup_keys", keys.select("source", "id").with_row_index("_i").to_arrow())
    got = con.execute(_STORED_AMONG.format(batches=", ".join(str(int(b)) for b in batches))).fetchall()
    con.unregister("dedup_keys")  # not after a failed statement: the aborted transaction would refuse it
    return [i for (i,) in got]

