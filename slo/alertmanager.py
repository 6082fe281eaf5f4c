"""alertmanager.yml rendering: the committed template names receiver URLs and tokens as `${VAR}`; this fills them
from the environment at deploy time, so no URL or secret is ever committed.
"""

from __future__ import annotations

import re

_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


class RenderError(Exception):
    pass


def render_env_template(text: str, env: dict[str, str]) -> str:
    """Substitute `${NAME}` from `env` (envsubst semantics, no defaults). Every referenced variable must be set and
    non-empty: a page must never go to an empty URL. Comment lines are left as they are."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        val = env.get(name)
        if not val:
            missing.append(name)
            return m.group(0)
        return val

    out_lines = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out_lines.append(line)
        else:
            out_lines.append(_VAR.sub(sub, line))
    if missing:
        raise RenderError("unset environment variables: " + ", ".join(sorted(set(missing))))
    return "".join(out_lines)


def template_variables(text: str) -> list[str]:
    """The `${VAR}` names a template needs (outside comment lines), sorted."""
    names = set()
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            names.update(_VAR.findall(line))
    return sorted(names)
