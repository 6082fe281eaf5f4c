"""`split_lines` against what `body.split_items` counts as NDJSON lines (`body._lines`: split at each newline, blank
when empty after bytes.strip()), each with its 1-based physical line number (what the file ingest's rejections
quote), whatever the line endings and blank lines around them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from collector.contract.vectorized.lines import split_block, split_lines

CASES = [
    # body -> [(physical line number, line without surrounding whitespace)]
    (b"", []),
    (b"\n\n\n", []),
    (b"{}", [(1, b"{}")]),
    (b"{}\n", [(1, b"{}")]),
    (b"{}\n[]", [(1, b"{}"), (2, b"[]")]),
    (b"\n\n{}\n\n[]\n\n", [(3, b"{}"), (5, b"[]")]),
    (b"{}\r\n[]\r\n", [(1, b"{}"), (2, b"[]")]),
    (b" \t\x0b\x0c\r\n  {} \n", [(2, b"{}")]),
    (b'{"a":"x\\ny"}\n', [(1, b'{"a":"x\\ny"}')]),   # an escaped newline inside a string is no line break
    (b"{\r}\nnot json\n", [(1, b"{\r}"), (2, b"not json")]),
    (b"\xff\xfe\n\x00\n", [(1, b"\xff\xfe"), (2, b"\x00")]),  # bytes, not text: the validator refuses them
]


@pytest.mark.parametrize(("body", "want"), CASES)
def test_lines_and_their_physical_numbers(body: bytes, want: list[tuple[int, bytes]]):
    lines, numbers = split_lines(body)
    assert [(n, line.strip()) for n, line in zip(numbers.to_pylist(), lines.to_pylist())] == want
    spec = [(k, raw.strip()) for k, raw in enumerate(body.split(b"\n"), 1) if raw.strip()]  # body._lines, numbered
    assert spec == want


def test_numbers_start_where_the_block_starts():
    lines, numbers = split_lines(b"{}\n\n[]\n", first_line=1001)
    assert numbers.to_pylist() == [1001, 1003] and len(lines) == 2


def test_lines_are_views_of_the_body_each_with_the_newline_that_ends_it():
    """No copy of the text (the bulk command splits 8 MiB blocks: a copy was memory faulted in for each); the newline
    is JSON whitespace to every parser that reads a line."""
    body = b"{}\n[]\r\n{}"
    lines, _ = split_lines(body)
    assert lines.to_pylist() == [b"{}\n", b"[]\r\n", b"{}"]
    assert lines.buffers()[2].address == pa.py_buffer(body).address


@pytest.mark.parametrize(("body", "physical"), [
    (b"", 0), (b"\n", 1), (b"\n\n\n", 3), (b"{}", 1), (b"{}\n", 1), (b"{}\n\n[]", 3), (b"{}\n\n[]\n", 3),
])
def test_a_block_counts_its_physical_lines(body: bytes, physical: int):
    """What the file reader adds to the next block's first line number (blank lines count, as in a file)."""
    assert split_block(body)[2] == physical == len(body.splitlines())
