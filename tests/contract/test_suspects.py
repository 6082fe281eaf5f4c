"""Which fast-path rows are sent to the exact path as suspects (validator._suspects): every row whose identifiers
the exact path may refuse (a control character or a credential) or whose text may hold a secret, and no clean one.

The search covers `data` whole, the envelope's `source` and `id`, and the data identifiers only of rows whose data
text holds a backslash (an identifier with a control character is written with an escape). Each case is checked
against the exact path (pydantic and the redactor) on the same line, and for where the row went.
"""

from __future__ import annotations

import re
from datetime import timedelta

import orjson
import pyarrow as pa
import pytest

from collector.contract.redaction import PREFILTER_PATTERN
from collector.contract.vectorized.validator import BulkValidator, _fast_table, _rows_with_backslash, _suspects
from tests.contract.test_bulk_equivalence import NOW, assert_equivalent

BASE = {"specversion": "1.0", "id": "e", "source": "s", "type": "notebook.kernel.started",
        "time": (NOW - timedelta(hours=1)).isoformat(), "data": {"kernel_id": "k", "team": "ml"}}
RUN = {**BASE, "type": "notebook.run.failed", "data": {"run_id": "r", "notebook_id": "n", "team": "ml"}}
GHP = "ghp_" + "a1" * 18


def _ev(base: dict, data: dict | None = None, **envelope: str) -> dict:
    return {**base, **envelope, "data": {**base["data"], **(data or {})}}


CASES = [  # (case, event, a suspect?)
    ("clean", _ev(BASE), False),
    ("clean, an escape outside the identifiers", _ev(RUN, {"error_message": "line 1\nline 2 \"q\" \\ \u0001"}), False),
    ("clean, non-ASCII identifiers", _ev(BASE, {"team": "données", "owner": "ø@x"}), False),
    ("control character in a declared data identifier", _ev(BASE, {"team": "m\u0001l"}), True),
    ("newline in a declared data identifier", _ev(RUN, {"run_id": "r\n"}), True),
    ("DEL in a declared data identifier (not escaped in JSON)", _ev(BASE, {"owner": "o\u007f"}), True),
    ("control character in an extra identifier key", _ev(BASE, {"session_id": "s\u0002"}), True),
    ("control character in source", _ev(BASE, source="s\u0003"), True),
    ("tab in id", _ev(BASE, id="e\tx"), True),
    ("credential in a data identifier", _ev(BASE, {"kernel_id": GHP}), True),
    ("credential between a quote and a backslash in a data identifier", _ev(BASE, {"team": f'"{GHP}\\'}), True),
    ("credential in an extra identifier key", _ev(BASE, {"trigger": GHP}), True),
    ("credential in source", _ev(BASE, source=GHP), True),
    ("credential in id", _ev(BASE, id=f"x-{GHP}"), True),
    ("password in a URL in a data identifier, with an escape", _ev(BASE, {"team": "postgres://u:pw\u0001@h"}), True),
    ("credential in a free text field", _ev(RUN, {"error_message": f"token {GHP}"}), True),
]


@pytest.mark.parametrize("case,event,suspect", CASES, ids=[c[0] for c in CASES])
def test_suspects_take_the_exact_path(case, event, suspect):
    body = orjson.dumps(_ev(BASE, id="first")) + b"\n" + orjson.dumps(event) + b"\n"
    got = assert_equivalent(body)  # the outcome is the exact path's, accepted or refused
    assert got.total == 2
    assert (got.exact, got.fast) == ((1, 1) if suspect else (0, 2)), case


def test_suspects_of_a_batch_are_its_suspect_rows_only():
    """A batch of every case at once, in order, clean rows between them: the flags are per row."""
    lines = []
    for i, (_, event, _) in enumerate(CASES):
        lines += [orjson.dumps(_ev(BASE, id=f"c{i}")), orjson.dumps({**event, "id": f"{event['id']}{i}"})]
    validator = BulkValidator()
    decided = validator.structs.decide(lines)
    fast = _fast_table(validator.comp, decided.types, decided.rows)
    flagged = dict(zip(decided.idx, _suspects(fast).tolist()))
    for i, (case, _, suspect) in enumerate(CASES):
        assert flagged.get(2 * i) is False, f"the clean row before {case!r}"
        if 2 * i + 1 in flagged:  # decided by the struct stage: flagged as the case says
            assert flagged[2 * i + 1] is suspect, case
        else:  # left to the generated check: a suspect by construction of the stage (tab, DEL, ...)
            assert suspect, case
    assert_equivalent(b"\n".join(lines) + b"\n")


def test_the_pattern_matches_a_value_inside_its_json_text():
    """What `_suspects` relies on to search data identifiers inside `data`: JSON escaping turns a quote, a backslash
    or a control character into a backslash followed by letters or hex digits, so a match of a value is a match of
    its text when no literal of the pattern holds a quote or a backslash and every negated class admits a backslash,
    letters and digits. A detector that breaks this fails here, not silently."""
    assert '"' not in PREFILTER_PATTERN and "\\\\" not in PREFILTER_PATTERN
    negated = re.findall(r"\[\^[^\]]*\]", PREFILTER_PATTERN)
    assert negated
    for cls in negated:
        assert all(re.fullmatch(cls, ch) for ch in "\\u0123456789abcdefnrtbx"), cls


_TEXTS = ["\\", "", "a\\", "\\b", "plain", "x\\y\\z", "", "{\"k\":\"\\n\"}", "no", "\\\\", "é\\"]


@pytest.mark.parametrize("chunks", [
    [_TEXTS],                                   # one chunk
    [_TEXTS[:4], _TEXTS[4:], []],               # several, one empty
    [["plain", "none"], ["", ""]],              # no backslash at all, empty texts only
], ids=["one", "several", "none"])
@pytest.mark.parametrize("sliced", [False, True], ids=["whole", "sliced"])
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()], ids=["string", "large_string"])
def test_rows_with_a_backslash_are_those_python_finds(chunks, sliced, kind):
    """The numpy search over the Arrow buffers against `"\\" in text`, on chunked and sliced arrays (a slice keeps
    its parent's buffers and starts at an offset), with 32- and 64-bit offsets."""
    arrays = [pa.array(c, kind) for c in chunks]
    if sliced:
        arrays = [pa.array(["pad\\", "pad"] + c + ["\\pad"], kind).slice(2, len(c)) for c in chunks]
    texts = pa.chunked_array(arrays, kind)
    want = [i for i, t in enumerate(texts.to_pylist()) if "\\" in t]
    assert _rows_with_backslash(texts).tolist() == want
