"""The rule generator and the dashboards spell no metric, recording-rule or Sloth label name themselves: every one
comes from collector/conventions.py, so a rename is one edit (checked on the code's string constants, docstrings
excluded)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from collector import conventions as C

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("slo/rules/*.py"), *ROOT.glob("dashboards/*.py"), ROOT / "slo/model.py"])
NAMES = sorted({v for k, v in vars(C).items() if k.isupper() and isinstance(v, str)
                and re.match(r"^(notebook_|observatory_|slo:|sloth_)", v)})


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_the_names_checked_are_many():
    assert len(NAMES) > 30 and "slo:sli_error:ratio_rate" in NAMES and "notebook_cost_usd" in NAMES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_name_spelled_out(path: Path):
    found = [(line, name) for line, text in _strings(path) for name in NAMES
             if re.search(rf"(?<![a-z_:]){re.escape(name)}(?![a-z_])", text)]
    assert not found, f"{path.name}: spell these with collector.conventions: {found}"


def test_the_check_sees_a_spelled_name(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text('"""docstring may say notebook_cost_usd."""\nQ = f"sum(notebook_cost_usd{{a}})"\n')
    assert [s for _, s in _strings(bad) if "notebook_cost_usd" in s]
    assert not [s for _, s in _strings(bad) if s.startswith("docstring")]
