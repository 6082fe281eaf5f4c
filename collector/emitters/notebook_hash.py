"""Hashes that make notebook runs comparable (reproducibility, M2).

* `input_hash`: what the notebook *is*: the source of its code cells (without papermill's injected-parameters
  cell) plus the kernelspec name and language. Markdown, outputs, execution counts, cell ids and metadata do
  not count (jupyter-cache's definition, reference/events.md §3.5).
* `parameters_hash`: the parameters the run was given (canonical JSON, keys sorted), without the run id.
* `env_hash`: the kernel's environment: its Python version, platform, and every installed distribution with its
  version, as seen by the kernel's own interpreter.
* `output_hash`: what the run *produced*, normalised so that two runs of a deterministic notebook match and a
  changed result does not. Kept: stdout text (coalesced), the data of results and displays (text, HTML, JSON,
  LaTeX, Markdown …), error names and messages. Dropped as volatile (nbval's list): execution counts, output and
  cell metadata, timings, tracebacks, stderr (warnings, progress bars, logs), images (`image/*`, PDF), widget
  model ids, cell ids; memory addresses such as `0x7f3a…` are masked. Cells tagged `nbval-ignore-output` or
  `observatory-ignore-output` are skipped.

All hashes are `sha256:<hex>` over canonical JSON, so they are stable across processes and machines.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any, Iterable, Mapping

INJECTED_TAG = "injected-parameters"
IGNORE_OUTPUT_TAGS = frozenset({"nbval-ignore-output", "observatory-ignore-output"})
VOLATILE_MIME_PREFIXES = ("image/",)
VOLATILE_MIME = frozenset({
    "application/pdf",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
})
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")


def _digest(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _text(value: Any) -> str:
    """nbformat's multiline strings are a str or a list of str; line endings normalised."""
    if isinstance(value, (list, tuple)):
        value = "".join(str(v) for v in value)
    return str(value).replace("\r\n", "\n")


def _tags(cell: Mapping[str, Any]) -> set[str]:
    return set((cell.get("metadata") or {}).get("tags") or [])


def _code_cells(nb: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") == "code" and INJECTED_TAG not in _tags(cell):
            yield cell


def input_hash(nb: Mapping[str, Any]) -> str:
    spec = (nb.get("metadata") or {}).get("kernelspec") or {}
    return _digest({
        "kernel": {"name": spec.get("name"), "language": spec.get("language")},
        "cells": [_text(c.get("source", "")) for c in _code_cells(nb)],
    })


def parameters_hash(parameters: Mapping[str, Any], exclude: Iterable[str] = ()) -> str:
    skip = set(exclude)
    return _digest({k: v for k, v in parameters.items() if k not in skip})


def _mask(text: str) -> str:
    return _ADDRESS.sub("0x…", text)


def normalized_outputs(nb: Mapping[str, Any]) -> list[list[Any]]:
    """The semantic part of each code cell's outputs (what output_hash hashes); useful to debug a mismatch."""
    cells: list[list[Any]] = []
    for cell in _code_cells(nb):
        if _tags(cell) & IGNORE_OUTPUT_TAGS:
            cells.append([])
            continue
        out: list[Any] = []
        for o in cell.get("outputs") or []:
            kind = o.get("output_type")
            if kind == "stream":
                if o.get("name") != "stdout":
                    continue
                text = _mask(_text(o.get("text", "")))
                if out and out[-1][0] == "stdout":
                    out[-1] = ("stdout", out[-1][1] + text)  # streams are split arbitrarily: coalesce
                else:
                    out.append(("stdout", text))
            elif kind in ("execute_result", "display_data"):
                data = {
                    mime: (_mask(_text(v)) if isinstance(v, (str, list)) else v)
                    for mime, v in (o.get("data") or {}).items()
                    if mime not in VOLATILE_MIME and not mime.startswith(VOLATILE_MIME_PREFIXES)
                }
                if data:
                    out.append(("data", data))
            elif kind == "error":
                out.append(("error", o.get("ename"), _mask(_text(o.get("evalue", "")))))
        cells.append([list(x) for x in out])
    return cells


def output_hash(nb: Mapping[str, Any]) -> str:
    return _digest(normalized_outputs(nb))


# ---- environment -------------------------------------------------------------------------------------------------

_ENV_SCRIPT = r"""
import importlib.metadata as m, json, platform, sys
pk = sorted({(d.metadata["Name"] or "").lower().replace("_", "-") + "==" + (d.version or "")
             for d in m.distributions() if d.metadata["Name"]})
print(json.dumps({"python": platform.python_version(), "implementation": platform.python_implementation(),
                  "machine": platform.machine(), "system": platform.system(), "packages": pk}))
"""


def kernel_python(kernel_name: str | None) -> str | None:
    """The interpreter a kernelspec launches (argv[0]), when it is a Python executable that exists."""
    if not kernel_name:
        return None
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except Exception:  # noqa: BLE001 - no such kernel: papermill will say so
        return None
    if not argv:
        return None
    exe = argv[0]
    if exe in ("python", "python3", "{python}"):
        return sys.executable
    exe = exe if os.path.isabs(exe) else (shutil.which(exe) or "")
    return exe if exe and os.access(exe, os.X_OK) and "python" in os.path.basename(exe).lower() else None


@functools.lru_cache(maxsize=8)
def environment(python: str | None = None) -> dict[str, Any]:
    """Python version, platform and installed distributions of `python` (default: this interpreter)."""
    if python and os.path.realpath(python) != os.path.realpath(sys.executable):
        try:
            out = subprocess.run([python, "-c", _ENV_SCRIPT], capture_output=True, text=True, timeout=60,
                                 check=True).stdout
            return json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass  # fall back to this interpreter's view, which is right when the kernel shares it
    import importlib.metadata as m

    packages = sorted({(d.metadata["Name"] or "").lower().replace("_", "-") + "==" + (d.version or "")
                       for d in m.distributions() if d.metadata["Name"]})
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "machine": platform.machine(), "system": platform.system(), "packages": packages}


def env_hash(kernel_name: str | None = None) -> str:
    return _digest(environment(kernel_python(kernel_name)))
