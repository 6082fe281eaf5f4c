"""The `Prefer` header (RFC 7240) as the ingest routes read it: a table of header values -> preferences."""

from __future__ import annotations

import pytest

from collector.api.deps import PREFER_MAX_CHARS, preferences, return_minimal


@pytest.mark.parametrize("values, expected", [
    ([], {}),
    ([""], {}),
    (["return=minimal"], {"return": "minimal"}),
    (["RETURN=Minimal"], {"return": "Minimal"}),  # names fold to lower case; the value is compared folded
    (["respond-async, return=minimal"], {"respond-async": "", "return": "minimal"}),
    (["return=minimal; foo=bar"], {"return": "minimal"}),  # parameters are ignored
    (["return = minimal"], {"return": "minimal"}),  # bad whitespace around `=` is allowed
    (['return="minimal"'], {"return": "minimal"}),  # a quoted word
    (['a="x\\"y", return=minimal'], {"a": 'x"y', "return": "minimal"}),  # an escaped quote inside a word
    (['foo="x, return=minimal"'], {"foo": "x, return=minimal"}),  # a comma inside quotes cuts nothing
    (["return=representation, return=minimal"], {"return": "representation"}),  # the first of a name counts
    (["wait=10", "return=minimal"], {"wait": "10", "return": "minimal"}),  # several headers
    (['"unterminated, return=minimal'], {}),  # malformed: ignored whole
    (["=minimal, return=minimal"], {"return": "minimal"}),  # a malformed element does not hide the next one
    (["ret urn=minimal"], {}),
])
def test_preferences(values, expected):
    assert preferences(values) == expected


@pytest.mark.parametrize("values, minimal", [
    (None, False), (["return=minimal"], True), (["Return=MINIMAL"], True), (["return=representation"], False),
    (["return=minimal2"], False), (["return"], False),
])
def test_return_minimal(values, minimal):
    assert return_minimal(values) is minimal


def test_a_huge_header_is_read_only_to_its_cap():
    # what lies past the cap is not read, so a header of megabytes costs what its first 8 KiB cost
    assert "return" not in preferences(["x" * PREFER_MAX_CHARS + ", return=minimal"])
    assert preferences(["x" * (PREFER_MAX_CHARS - 17) + ", return=minimal"])["return"] == "minimal"
    for value in ['a="' + "x" * 10_000_000, '\\"' * 5_000_000, "," * 10_000_000]:
        assert "return" not in preferences([value + ", return=minimal"])
