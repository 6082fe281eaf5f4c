"""Render the three dashboards and the provisioning files into dashboards/grafana/, or check they are fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import debug, executive, oncall, provisioning

OUT_DIR = Path(__file__).resolve().parent / "grafana"
BUILDERS: dict[str, Callable] = {"executive": executive.build, "oncall": oncall.build, "debug": debug.build}


def render_dashboard(key: str) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(BUILDERS[key]().build()) + "\n"


def outputs() -> dict[str, str]:
    """Relative path under dashboards/grafana/ -> content of every generated file."""
    out = {f"{key}.json": render_dashboard(key) for key in BUILDERS}
    out.update(provisioning.files())
    return out


def write(out_dir: Path = OUT_DIR) -> list[str]:
    """Write every generated file; returns the relative paths that changed."""
    changed = []
    for rel, text in outputs().items():
        path = out_dir / rel
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed.append(rel)
    return changed


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Relative paths whose committed content differs from what the code generates (or that are missing)."""
    return [rel for rel, text in outputs().items()
            if not (out_dir / rel).exists() or (out_dir / rel).read_text() != text]
