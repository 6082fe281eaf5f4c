"""The package tree reads as the design (docs/architecture.md); these checks keep it that way.

They read the code as text and as Python ASTs: no router outside an `api` package, nothing below the web layer
imports it, no optional-import loops over the project's own packages, one SQL quoting helper, the database
and tokens file defaults written once, and a handful of top-level modules in collector/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collector", "cost", "slo", "dashboards")
WEB = ("collector/api/", "collector/app.py", "collector/cli.py", "collector/areas.py")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.AST]:
    return {_rel(p): ast.parse(p.read_text(), filename=str(p)) for p in _modules()}


def test_routers_live_in_api_packages(trees: dict[str, ast.AST]) -> None:
    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "APIRouter"
                    and "/api/" not in f"/{path}"):
                offenders.append(path)
    assert not offenders, f"APIRouter defined outside an api package: {offenders}"


def test_nothing_below_the_web_layer_imports_it(trees: dict[str, ast.AST]) -> None:
    offenders = {}
    for path, tree in trees.items():
        if path.startswith(WEB):
            continue
        bad = [m for m in _imports(tree)
               if m == "collector.api" or m.startswith(("collector.api.", "collector.app", "collector.cli",
                                                        "collector.areas", "fastapi", "starlette"))]
        if bad:
            offenders[path] = sorted(set(bad))
    assert not offenders, f"modules below the web layer import it: {offenders}"


def test_no_optional_imports_of_our_own_packages(trees: dict[str, ast.AST]) -> None:
    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Try):
                continue
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not caught & {"ImportError", "ModuleNotFoundError"}:
                continue
            own = [m for m in _imports(ast.Module(body=node.body, type_ignores=[]))
                   if m.split(".")[0] in PACKAGES]
            if own:
                offenders.append((path, own))
        if "import_module(" in ast.unparse(tree) and "importlib" in ast.unparse(tree):
            offenders.append((path, ["importlib.import_module"]))
    assert not offenders, f"optional imports of the project's own packages: {offenders}"


@pytest.mark.parametrize("literal", ["observatory.duckdb", "tokens.yaml"])
def test_defaults_written_once(literal: str) -> None:
    """The database and tokens file defaults live in collector/settings.py only; everything else asks it."""
    hits = [_rel(p) for p in _modules() if literal in p.read_text()]
    assert hits == ["collector/settings.py"], hits


def test_collector_top_level_is_small() -> None:
    top = sorted(p.name for p in (ROOT / "collector").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 7, top
    subpackages = sorted(p.name for p in (ROOT / "collector").iterdir() if (p / "__init__.py").exists())
    assert {"api", "contract", "ingest", "storage", "sources", "metrics", "emitters", "demo"} <= set(subpackages)


def test_one_sql_quoting_helper() -> None:
    """Quotes are doubled in one place only (collector/storage/sqltext.py)."""
    quoting = re.compile(r"""replace\(\s*(["'])(\\?'|")\1\s*,\s*(["'])(\\?'\\?'|"")\3\s*\)""")
    hits = [_rel(p) for p in _modules() if quoting.search(p.read_text())]
    assert hits == ["collector/storage/sqltext.py"], hits
