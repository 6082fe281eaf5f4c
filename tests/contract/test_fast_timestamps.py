"""The fast path's time-stamp columns are cast by Arrow from RFC 3339 text (validator._timestamps): for every form
the fast path admits (codegen.DATETIME_RE), the cast gives the instant `datetime.fromisoformat` reads."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.contract.vectorized.codegen import DATETIME_RE, parse_datetime
from collector.contract.vectorized.validator import _timestamps, event_times

EDGES = ["1971-01-01T00:00:00Z", "2198-12-31T23:59:59.999999Z", "2024-02-29T12:00:00+13:59",
         "2024-03-01T00:00:00-13:59", "2026-11-20T09:00:00.5-00:00", "2026-11-20T09:00:00.000001+00:00",
         "2026-11-20T09:00:00.12+05:30", "2026-11-20T23:59:59.123-04:00"]


@pytest.mark.parametrize("text", EDGES)
def test_cast_equals_fromisoformat(text):
    assert DATETIME_RE.fullmatch(text)
    assert _timestamps([text, None]).to_pylist() == [datetime.fromisoformat(text), None]
    rendered, value = parse_datetime(text)
    assert event_times([text]).to_pylist() == [value]
    assert _timestamps([rendered]).to_pylist() == [value]  # the stored rendering casts to the same instant


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1971, 2198), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 59), st.sampled_from(["", ".5", ".05", ".123", ".123456", ".000001"]),
       st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-05:30", "+13:59", "-13:59"]))
def test_cast_equals_fromisoformat_generated(y, mo, d, h, mi, s, frac, zone):
    text = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
    assert DATETIME_RE.fullmatch(text)
    assert _timestamps([text]).to_pylist() == [datetime.fromisoformat(text)]
    assert event_times([text]).to_pylist() == [datetime.fromisoformat(text)]


# Texts outside the fast path's form (DATETIME_RE.fullmatch), several of which Arrow's cast would read, and a day
# that does not exist: event_times leaves each null, so its row takes the exact path.
NOT_FAST = ["2024-02-30T00:00:00Z", "2024-02-29 00:00:00Z", "2024-02-29T00:00:00", "2024-02-29T00:00:00Z\n",
            "\n2024-02-29T00:00:00Z", "2024-02-29T00:00:00.1234567Z", "2024-02-29t00:00:00z", "2024-02-29T00:00Z",
            "2024-02-29T00:00:00+14:00", "1970-12-31T23:59:59Z", "2199-01-01T00:00:00Z", "\u0662024-02-29T00:00:00Z",
            "2024-2-29T00:00:00Z", "2024-02-29T00:00:00+0100", ""]


def test_event_times_leave_other_forms_and_days_null():
    good = "2024-02-29T00:00:00Z"
    for text in NOT_FAST:
        assert not (DATETIME_RE.fullmatch(text) and parse_datetime(text))
        assert event_times([good, text, good]).to_pylist() == [datetime.fromisoformat(good), None,
                                                                 datetime.fromisoformat(good)], repr(text)
    assert event_times(NOT_FAST).null_count == len(NOT_FAST)
    assert event_times([]).to_pylist() == []


def test_invalid_day_is_not_fast():
    assert parse_datetime("2024-02-30T00:00:00Z") is None
    assert _timestamps(["2024-02-29T00:00:00Z"]).to_pylist() == [datetime.fromisoformat("2024-02-29T00:00:00Z")]
