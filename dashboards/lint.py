"""Offline checks of generated dashboards: a Python port of grafana/dashboard-linter's rules, the foundation-sdk JSON
Schema, and uid/layout checks. Used by the tests and by `observatory dashboards lint`.

Rules ported from dashboard-linter (lint/rule_*.go), with these deliberate differences (documented in
docs/dashboards.md, like entries of a `.lint` file):
- template-datasource: the Prometheus variable must be named `datasource` (label "Data source") as our dashboards
  promise; a second datasource variable (the collector API through Infinity) must be named `<something>_datasource`.
  Upstream wants `<type>_datasource` for every variable once there are two.
- panel-datasource, panel-title-description, panel-units and panel-no-targets apply to every non-row panel (upstream
  only checks stat/singlestat/graph/table/timeseries/gauge), and every target must use a datasource variable too.
- panel-units: `fieldConfig.defaults.unit` must be set on every panel and every unit (defaults and overrides) must be
  one of the foundation-sdk's unit ids (upstream skips panels with value mappings or stat field selections).
- counter-agg: a `*_total` series must sit directly in rate/irate/increase over a range, compared on the metric name
  (upstream compares the printed selector, so `x_total{a="b"}` slipped through); or be the two sides of a difference
  with an `offset` of the same counter (`x - x offset $__range`), the form that sees a counter's first increment,
  which increase() cannot.
- template-job / template-instance / target-job / target-instance are not ported (opencost-mixin excludes them too):
  our single collector is the only job.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

RATE_SENTINEL = "4321s"  # what $__rate_interval becomes while parsing, to recognise it afterwards
RATE_SENTINEL_TD = timedelta(seconds=4321)
MAX_UID = 40
VAR_RE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z0-9_]+)\]\]")
BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__from",
                "__to", "__dashboard", "__org", "__user", "__name", "__data", "__value", "__field", "__series",
                "__url_time_range", "__all_variables", "__timeFilter", "__timezone", "timeFilter"}


@dataclass(frozen=True)
class Problem:
    dashboard: str
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.rule}: {self.where}: {self.message}"


def panels(d: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, nested row panels too."""
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", []) or []


def data_panels(d: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in panels(d) if p.get("type") != "row")


def variables(d: dict[str, Any]) -> list[dict[str, Any]]:
    return list(d.get("templating", {}).get("list", []))


def is_prometheus(d: dict[str, Any], ds: dict[str, Any] | None) -> bool:
    return bool(ds) and ds.get("type") == "prometheus"


def prom_targets(d: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int, dict[str, Any]]]:
    for p in data_panels(d):
        for i, t in enumerate(p.get("targets", []) or []):
            ds = t.get("datasource") or p.get("datasource")
            if is_prometheus(d, ds) and "expr" in t:
                yield p, i, t


def api_targets(d: dict[str, Any]) -> Iterator[tuple[dict[str, Any], int, dict[str, Any]]]:
    for p in data_panels(d):
        for i, t in enumerate(p.get("targets", []) or []):
            ds = t.get("datasource") or p.get("datasource") or {}
            if ds.get("type") == "yesoreyeram-infinity-datasource":
                yield p, i, t


def expand(expr: str, values: dict[str, str] | None = None, *, rate_interval: str = RATE_SENTINEL,
           interval: str = "1m", range_: str = "1h", default: str = "x") -> str:
    """Replace Grafana variables in a PromQL expression (dashboard-linter lint/variables.go does the same)."""
    values = values or {}
    builtin = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_,
               "__range_s": "3600", "__range_ms": "3600000", "__interval_ms": "60000"}

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtin:
            return builtin[name]
        return values.get(name, default)

    return VAR_RE.sub(sub, expr)


# ---- PromQL walking ----------------------------------------------------------------------------------------------


def _children(node: Any) -> list[Any]:
    kind = type(node).__name__
    if kind == "BinaryExpr":
        return [node.lhs, node.rhs]
    if kind == "AggregateExpr":
        return [c for c in (node.param, node.expr) if c is not None]
    if kind == "Call":
        return list(node.args)
    if kind == "MatrixSelector":
        return [node.vector_selector]
    if kind in ("ParenExpr", "SubqueryExpr", "UnaryExpr"):
        return [node.expr]
    return []


def walk(node: Any, parents: tuple = ()) -> Iterator[tuple[Any, tuple]]:
    yield node, parents
    for c in _children(node):
        yield from walk(c, parents + (node,))


def metric_names(expr: str) -> set[str]:
    import promql_parser

    names = set()
    for node, _ in walk(promql_parser.parse(expand(expr))):
        if type(node).__name__ == "VectorSelector" and node.name:
            names.add(node.name)
    return names


def check_promql(expr: str) -> list[tuple[str, str]]:
    """(rule, message) for one expression: parse, rate interval, counters under rate/increase."""
    import promql_parser

    try:
        ast = promql_parser.parse(expand(expr))
    except Exception as exc:  # noqa: BLE001 - the parser raises ValueError (and may raise others)
        return [("target-promql-rule", f"invalid PromQL: {exc}")]
    out = []
    offset = {n.name for n, _ in walk(ast) if type(n).__name__ == "VectorSelector" and n.offset is not None}
    for node, parents in walk(ast):
        kind = type(node).__name__
        if kind == "Call" and node.func.name in ("rate", "irate"):
            for a in node.args:
                if type(a).__name__ == "MatrixSelector" and a.range != RATE_SENTINEL_TD:
                    out.append(("target-rate-interval-rule",
                                f"{node.func.name}() over [{a.range}] instead of [$__rate_interval]"))
        if kind == "VectorSelector" and (node.name or "").endswith("_total"):
            ok = (len(parents) >= 2 and type(parents[-1]).__name__ == "MatrixSelector"
                  and type(parents[-2]).__name__ == "Call"
                  and parents[-2].func.name in ("rate", "irate", "increase")) or node.name in offset
            if not ok:
                out.append(("target-counter-agg-rule",
                            f"counter {node.name} is not directly inside rate/irate/increase over a range"))
    return out


# ---- rules -------------------------------------------------------------------------------------------------------


def _units() -> set[str]:
    from grafana_foundation_sdk.models import units

    return {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}


def lint_dashboard(d: dict[str, Any], name: str | None = None) -> list[Problem]:
    name = name or d.get("uid") or d.get("title") or "?"
    out: list[Problem] = []

    def add(rule: str, where: str, message: str) -> None:
        out.append(Problem(name, rule, where, message))

    vars_ = variables(d)
    ds_vars = [v for v in vars_ if v.get("type") == "datasource"]
    ds_names = {v["name"] for v in ds_vars}
    defined = {v["name"] for v in vars_}

    # template-datasource-rule (see module docstring for our naming variant)
    prom_vars = [v for v in ds_vars if v.get("query") == "prometheus"]
    if not prom_vars:
        add("template-datasource-rule", "templating", "no Prometheus datasource variable")
    for v in ds_vars:
        if v.get("query") == "prometheus":
            if v["name"] != "datasource":
                add("template-datasource-rule", v["name"], "the Prometheus datasource variable must be `datasource`")
            if v.get("label") != "Data source":
                add("template-datasource-rule", v["name"], "label it 'Data source'")
        elif not v["name"].endswith("_datasource"):
            add("template-datasource-rule", v["name"], "a second datasource variable must be named *_datasource")

    # template-on-time-change-reload-rule and template-label-promql-rule
    for v in vars_:
        if v.get("type") != "query":
            continue
        if v.get("refresh") != 2:
            add("template-on-time-change-reload-rule", v["name"], "query variables must refresh on time change (2)")
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*(label_values|label_names|metrics|query_result)\((.*)\)\s*", q or "", re.S)
        if not m:
            add("template-label-promql-rule", v["name"], f"unsupported variable query {q!r}")
        elif m.group(1) in ("label_values", "query_result"):
            inner = m.group(2)
            if m.group(1) == "label_values":
                inner = inner.rsplit(",", 1)[0] if "," in inner else inner
            for rule, msg in check_promql(inner):
                if rule == "target-promql-rule":
                    add("template-label-promql-rule", v["name"], msg)

    # uneditable-dashboard is a recommendation for imported dashboards; provisioned ones are reset on change anyway.
    uid = d.get("uid") or ""
    if not uid:
        add("uid-rule", "dashboard", "no uid")
    elif len(uid) > MAX_UID:
        add("uid-rule", "dashboard", f"uid {uid!r} is longer than {MAX_UID} characters (Grafana drops it)")
    text = json.dumps(d)
    if "__inputs" in d or "${DS_" in text:
        add("provisioning-rule", "dashboard", "export placeholders (__inputs/${DS_...}) cannot be provisioned")

    units = _units()
    ids: dict[int, str] = {}
    rects: list[tuple[str, int, int, int, int]] = []
    for p in panels(d):
        title = p.get("title") or f"panel {p.get('id')}"
        pid = p.get("id")
        if not isinstance(pid, int):
            add("panel-id-rule", title, "panel without an explicit integer id")
        elif pid in ids:
            add("panel-id-rule", title, f"id {pid} also used by {ids[pid]!r}")
        else:
            ids[pid] = title
        g = p.get("gridPos") or {}
        x, y, w, h = g.get("x"), g.get("y"), g.get("w"), g.get("h")
        if None in (x, y, w, h):
            add("layout-rule", title, "no gridPos")
        else:
            if not (1 <= w <= 24 and 0 <= x and x + w <= 24 and h >= 1 and y >= 0):
                add("layout-rule", title, f"gridPos {g} outside the 24-column grid")
            rects.append((title, x, y, w, h))
        if p.get("type") == "row":
            continue
        # panel-title-description-rule
        if not (p.get("title") or "").strip():
            add("panel-title-description-rule", title, "no title")
        if not (p.get("description") or "").strip():
            add("panel-title-description-rule", title, "no description")
        # panel-datasource-rule
        ds = p.get("datasource") or {}
        if ds.get("uid") not in {f"${n}" for n in ds_names} | {f"${{{n}}}" for n in ds_names}:
            add("panel-datasource-rule", title, f"does not use a templated datasource, uses {ds.get('uid')!r}")
        # panel-no-targets-rule
        targets = p.get("targets") or []
        if not targets:
            add("panel-no-targets-rule", title, "no targets")
        for i, t in enumerate(targets):
            tds = (t.get("datasource") or ds).get("uid")
            if tds != ds.get("uid"):
                add("panel-datasource-rule", f"{title}[{i}]", f"target datasource {tds!r} differs from the panel's")
        # panel-units-rule
        fc = p.get("fieldConfig") or {}
        unit = (fc.get("defaults") or {}).get("unit")
        if not unit:
            add("panel-units-rule", title, "no unit in fieldConfig.defaults")
        elif unit not in units:
            add("panel-units-rule", title, f"unknown unit {unit!r}")
        for o in fc.get("overrides", []) or []:
            for prop in o.get("properties", []) or []:
                if prop.get("id") == "unit" and prop.get("value") not in units:
                    add("panel-units-rule", title, f"unknown unit {prop.get('value')!r} in an override")
        # variables used are defined
        for m in VAR_RE.finditer(json.dumps({k: p.get(k) for k in ("targets", "title", "fieldConfig", "links")})):
            vname = m.group(1) or m.group(2) or m.group(3)
            if vname not in defined and vname not in BUILTIN_VARS and not vname.startswith("__"):
                add("template-undefined-rule", title, f"uses undefined variable ${vname}")

    # layout: no overlaps
    for i, (ta, xa, ya, wa, ha) in enumerate(rects):
        for tb, xb, yb, wb, hb in rects[i + 1:]:
            if xa < xb + wb and xb < xa + wa and ya < yb + hb and yb < ya + ha:
                add("layout-rule", ta, f"overlaps {tb!r}")

    # target rules (PromQL)
    for p, i, t in prom_targets(d):
        if not (t.get("expr") or "").strip():
            add("target-promql-rule", f"{p.get('title')}[{i}]", "empty expr")
            continue
        for rule, msg in check_promql(t["expr"]):
            add(rule, f"{p.get('title')}[{i}]", msg)
    return out


# ---- JSON Schema -------------------------------------------------------------------------------------------------


def load_schemas(schema_dir: Path) -> dict[str, dict[str, Any]]:
    """The foundation-sdk JSON Schemas with the two documented relaxations (DynamicConfigValue.value and
    MatcherConfig.options are typed `object` upstream, which rejects every field override)."""
    out = {}
    for f in sorted(schema_dir.glob("*.jsonschema.json")):
        doc = json.loads(f.read_text())
        defs = doc.get("definitions", {})
        if "DynamicConfigValue" in defs:
            defs["DynamicConfigValue"]["properties"]["value"] = {}
        if "MatcherConfig" in defs:
            defs["MatcherConfig"]["properties"]["options"] = {}
        out[f.name.removesuffix(".jsonschema.json")] = doc
    return out


def schema_errors(d: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    """Validate the dashboard, each panel (readable errors instead of the oneOf), each panel's options and
    fieldConfig.defaults.custom against its plugin schema, and each Prometheus target."""
    from jsonschema import Draft7Validator

    def validator(doc: dict[str, Any], definition: str) -> Draft7Validator:
        sub = copy.deepcopy(doc)
        sub["$ref"] = f"#/definitions/{definition}"
        return Draft7Validator(sub)

    def errs(v: Draft7Validator, inst: Any, where: str) -> Iterable[str]:
        for e in sorted(v.iter_errors(inst), key=lambda e: list(e.absolute_path)):
            yield f"{where}/{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"

    base = schemas["dashboard"]
    out = list(errs(validator(base, "Dashboard"), d, "dashboard"))
    panel_v, row_v = validator(base, "Panel"), validator(base, "RowPanel")
    for p in panels(d):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("type") == "row":
            out += errs(row_v, p, where)
            continue
        out += errs(panel_v, p, where)
        plugin = schemas.get(p.get("type", ""))
        if plugin is None:
            out.append(f"{where}: no JSON Schema for panel type {p.get('type')!r}")
            continue
        if "Options" in plugin.get("definitions", {}):
            out += errs(validator(plugin, "Options"), p.get("options", {}), where + " options")
        custom = (p.get("fieldConfig") or {}).get("defaults", {}).get("custom")
        if custom is not None and "FieldConfig" in plugin.get("definitions", {}):
            out += errs(validator(plugin, "FieldConfig"), custom, where + " fieldConfig.defaults.custom")
        for i, t in enumerate(p.get("targets") or []):
            if (t.get("datasource") or {}).get("type") == "prometheus":
                out += errs(validator(schemas["prometheus"], "Dataquery"), t, f"{where} target {i}")
    return out


def lint_files(paths: Iterable[Path], schema_dir: Path | None = None,
               known_metric: Callable[[str], bool] | None = None) -> list[str]:
    """Every problem of the given dashboard files, as text (empty = clean)."""
    schemas = load_schemas(schema_dir) if schema_dir else None
    out: list[str] = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        out += [str(p) for p in lint_dashboard(d, Path(path).name)]
        if schemas:
            out += [f"{Path(path).name}: schema: {e}" for e in schema_errors(d, schemas)]
        if known_metric:
            for p, i, t in prom_targets(d):
                for m in sorted(metric_names(t["expr"])):
                    if not known_metric(m):
                        out.append(f"{Path(path).name}: metric-exists-rule: {p.get('title')}[{i}]: unknown {m}")
    return out
