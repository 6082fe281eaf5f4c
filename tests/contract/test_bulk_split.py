"""Several requests' lines validated in one call and split (BulkResult.split, collector/api/coalesce.py) give each
request exactly what validating its lines alone gives: its accepted rows, their indexes, its rejections (indexes and
`line N` messages counted within the request), and its counts.

The lines are the bulk equivalence test's generated events, valid and mutated (broken JSON, contract errors,
planted secrets that are redacted, extra keys that take the exact path), cut into requests of random sizes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.contract import vectorized as bulk
from tests.contract.test_bulk_equivalence import SETTINGS, _dumps, events, mutated


def _line(item) -> bytes:
    return (item if isinstance(item, str) else _dumps(item)).encode()


def _together(parts: list[list[bytes]]) -> list[bulk.BulkResult]:
    sizes = [len(p) for p in parts]
    lines = pa.chunked_array([pa.array(p, pa.large_binary()) for p in parts], pa.large_binary())
    numbers = pa.chunked_array([pa.array(np.arange(1, n + 1, dtype=np.int64)) for n in sizes], pa.int64())
    return bulk.default_validator().validate_lines(lines, line_numbers=numbers).split(sizes)


def _assert_same(part: bulk.BulkResult, alone: bulk.BulkResult) -> None:
    assert part.table.equals(alone.table)
    assert part.row_index.to_pylist() == alone.row_index.to_pylist()
    assert part.rejections == alone.rejections  # index, errors (their `line N`), redacted payload, key
    assert (part.total, part.fast, part.exact, part.redacted) == (alone.total, alone.fast, alone.exact, alone.redacted)
    assert part.exact_rows.tolist() == alone.exact_rows.tolist()


@SETTINGS
@given(st.lists(st.one_of(events(), mutated()), min_size=1, max_size=30), st.data())
def test_a_split_is_what_each_request_alone_gives(items, data):
    lines = [_line(it) for it in items]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=4)))
    parts = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)])]
    for part, request in zip(_together(parts), parts):
        _assert_same(part, bulk.default_validator().validate_lines(pa.array(request, pa.large_binary())))


def test_requests_with_rejections_redactions_and_the_exact_path_split_apart():
    good = {"specversion": "1.0", "id": "e-{}", "source": "test://split", "type": "notebook.kernel.started",
            "time": "2026-11-20T10:00:00Z", "data": {"kernel_id": "k1", "team": "ml"}}

    def ev(i, envelope=None, **data):
        return _dumps({**good, "id": f"e-{i}", "data": {**good["data"], **data}, **(envelope or {})}).encode()

    parts = [
        [ev(1), b'{"broken', ev(2, extra_key="x")],  # a line orjson cannot read, an extra key (exact path)
        [ev(3, {"subject": "password=Sup3rS3cret9"}), ev(4, team=5)],  # a redacted secret, a contract error
        [ev(5)],
    ]
    together = _together(parts)
    assert [p.total for p in together] == [3, 2, 1]
    assert [r.index for r in together[0].rejections] == [1]
    assert "line 2:" in together[0].rejections[0].errors[0]["message"]  # counted within its request
    assert [r.index for r in together[1].rejections] == [1]
    assert together[1].redacted == 1 and together[1].row_index.to_pylist() == [0]
    assert together[2].row_index.to_pylist() == [0]
    for part, request in zip(together, parts):
        _assert_same(part, bulk.default_validator().validate_lines(pa.array(request, pa.large_binary())))


def test_sizes_must_cover_the_result():
    result = bulk.default_validator().validate_lines(pa.array([b"{}", b"{}"], pa.large_binary()))
    with pytest.raises(ValueError, match="3 rows"):
        result.split([1, 2])
