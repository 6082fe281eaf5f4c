"""Shared pieces of the three dashboards: datasources, variables, queries, panel factories and the grid layout.

Everything is built with grafana-foundation-sdk 0.0.21 (pinned exactly; see docs/dashboards.md). Two kinds of
queries exist: PromQL through the `${datasource}` Prometheus variable, and JSON tables from the collector's read API
(collector/api/runs.py) through the Grafana Infinity plugin and the `${api_datasource}` variable. The SDK has no
Infinity builder, so `InfinityQuery` is a small builder of the plugin's documented query model.

Panel ids and grid positions are explicit (never left to Grafana), so links such as `viewPanel=<id>` stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common as common_b,
    dashboard as dash,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DynamicConfigValue,
    GridPos,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from collector import conventions as C

INFINITY = "yesoreyeram-infinity-datasource"
PROM = DataSourceRef(type_val="prometheus", uid="${datasource}")
API = DataSourceRef(type_val=INFINITY, uid="${api_datasource}")

# Provisioned datasource uids (dashboards/grafana/provisioning/datasources/observatory.yaml).
PROM_UID = "observatory-prometheus"
API_UID = "observatory-api"
ALERTMANAGER_UID = "observatory-alertmanager"

TAG = "notebook-observatory"
UIDS = {"executive": "observatory-executive", "oncall": "observatory-oncall", "debug": "observatory-debug"}
TITLES = {"executive": "Notebook Observatory / Executive", "oncall": "Notebook Observatory / On-call",
          "debug": "Notebook Observatory / Notebook debug"}

# Demo defaults for the debug dashboard (a notebook of the demo platform with runs, artifacts and checks).
DEFAULT_TEAM = "finance"
DEFAULT_NOTEBOOK = "fin-invoice-reconciliation"

# Burn-rate factors of the SRE Workbook windows the generated SLO alerts use (alerts/slos.rules.yml).
PAGE_FAST, PAGE_SLOW, TICKET_FAST, TICKET_SLOW = 14.4, 6.0, 3.0, 1.0


# ---- queries -----------------------------------------------------------------------------------------------------


def prom(expr: str, legend: str | None = None, ref: str = "A", *, instant: bool = False,
         table_format: bool = False, heatmap_format: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(" ".join(expr.split())).ref_id(ref).datasource(PROM)
    if legend is not None:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    if heatmap_format:
        q = q.format(PromQueryFormat.HEATMAP)
    return q


@dataclass
class Column:
    selector: str
    text: str
    type: str = "string"  # string | number | timestamp | boolean


class _InfinityTarget(cogvariants.Dataquery):
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_json(self) -> dict[str, Any]:
        return self.body


@dataclass
class InfinityQuery:
    """A query of the Infinity plugin (type json, source url, backend parser) against the collector's read API.

    `url` is relative: the Infinity datasource's URL (the collector) is prefixed to it.
    """

    url: str
    columns: Sequence[Column]
    root: str = "items"
    ref: str = "A"
    format: str = "table"

    def build(self) -> _InfinityTarget:
        return _InfinityTarget({
            "refId": self.ref,
            "datasource": {"type": INFINITY, "uid": "${api_datasource}"},
            "type": "json",
            "source": "url",
            "parser": "backend",
            "format": self.format,
            "url": self.url,
            "url_options": {"method": "GET", "data": ""},
            "root_selector": self.root,
            "columns": [{"selector": c.selector, "text": c.text, "type": c.type} for c in self.columns],
            "filters": [],
        })


# ---- variables ---------------------------------------------------------------------------------------------------


def datasource_variables() -> list[Any]:
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        .current(VariableOption(selected=True, text="Prometheus", value=PROM_UID)),
        dash.DatasourceVariable("api_datasource").label("Collector API").type(INFINITY)
        .current(VariableOption(selected=True, text="Observatory API", value=API_UID)),
    ]


def team_variable(*, multi: bool = True, metric: str = C.RUN_ATTEMPTS_TOTAL,
                  default: str | None = None) -> dash.QueryVariable:
    q = f"label_values({metric}, {C.TEAM})"
    v = (dash.QueryVariable("team").label("Team").datasource(PROM)
         .query(q).definition(q)
         .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC).multi(multi).include_all(multi))
    if multi:
        v = v.current(VariableOption(selected=True, text="All", value="$__all"))
    elif default:
        v = v.current(VariableOption(selected=True, text=default, value=default))
    return v


def textbox(name: str, label: str, default: str, description: str) -> dash.TextBoxVariable:
    return (dash.TextBoxVariable(name).label(label).default_value(default).description(description)
            .current(VariableOption(selected=True, text=default, value=default)))


def links(current: str) -> list[dash.DashboardLink]:
    """Links to the other two dashboards (keeping time range and variables)."""
    out = []
    for key in ("executive", "oncall", "debug"):
        if key == current:
            continue
        out.append(dash.DashboardLink(TITLES[key].split(" / ")[1]).type(DashboardLinkType.LINK)
                   .url(f"/d/{UIDS[key]}").include_vars(True).keep_time(True).tooltip(TITLES[key]).icon("dashboard"))
    return out


def debug_url(team: str, notebook: str, run: str | None = None) -> str:
    """URL of the debug dashboard for one notebook (and run), from Grafana field references."""
    url = f"/d/{UIDS['debug']}?var-team={team}&var-notebook={notebook}"
    if run:
        url += f"&var-run={run}"
    return url + "&${__url_time_range}"


# ---- thresholds and field config ---------------------------------------------------------------------------------


def steps(*pairs: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in pairs])


def unit_override(name: str, unit: str) -> tuple[str, list[DynamicConfigValue]]:
    return name, [DynamicConfigValue(id_val="unit", value=unit)]


def link_override(name: str, title: str, url: str) -> tuple[str, list[DynamicConfigValue]]:
    return name, [DynamicConfigValue(id_val="links", value=[{"title": title, "url": url}])]


def axis_right() -> list[DynamicConfigValue]:
    return [DynamicConfigValue(id_val="custom.axisPlacement", value="right")]


def unstacked() -> list[DynamicConfigValue]:
    """One series drawn over a stacked panel's stack instead of on it (a limit line)."""
    return [DynamicConfigValue(id_val="custom.stacking", value={"mode": "none", "group": "A"}),
            DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]


def width_override(name: str, width: int) -> tuple[str, list[DynamicConfigValue]]:
    return name, [DynamicConfigValue(id_val="custom.width", value=width)]


# ---- panels ------------------------------------------------------------------------------------------------------


def _common(p: Any, pid: int, title: str, description: str, unit: str, ds: DataSourceRef) -> Any:
    return p.id(pid).title(title).description(description).unit(unit).datasource(ds)


def stat_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any], *,
               thresholds: dash.ThresholdsConfig | None = None, ds: DataSourceRef = PROM,
               calcs: Sequence[str] = ("lastNotNull",), fields: str | None = None, decimals: int | None = None,
               graph: bool = False, links_: Sequence[dash.DashboardLink] = ()) -> stat.Panel:
    reduce = common_b.ReduceDataOptions().calcs(list(calcs)).values(False)
    if fields is not None:
        reduce = reduce.fields(fields)
    p = _common(stat.Panel(), pid, title, description, unit, ds).reduce_options(reduce).graph_mode(
        common.BigValueGraphMode.AREA if graph else common.BigValueGraphMode.NONE)
    p = p.color_mode(common.BigValueColorMode.VALUE).text_mode(common.BigValueTextMode.AUTO)
    if thresholds is not None:
        p = p.thresholds(thresholds)
    if decimals is not None:
        p = p.decimals(decimals)
    if links_:
        p = p.links(list(links_))
    for t in targets:
        p = p.with_target(t)
    return p


def timeseries_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any], *,
                     ds: DataSourceRef = PROM, thresholds: dash.ThresholdsConfig | None = None,
                     threshold_lines: bool = False, min_: float | None = None, max_: float | None = None,
                     stack: bool = False, bars: bool = False, points: bool = False,
                     overrides: Sequence[tuple[str, list[DynamicConfigValue]]] = (), decimals: int | None = None,
                     min_interval: str | None = None) -> timeseries.Panel:
    """`min_interval`: the panel's minimum query step, which also floors `$__rate_interval` (sparse series, such as
    once-a-minute probes, need a window holding several samples)."""
    p = _common(timeseries.Panel(), pid, title, description, unit, ds)
    if min_interval is not None:
        p = p.interval(min_interval)
    p = p.legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
    p = p.fill_opacity(10).line_width(1)
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if points:
        p = p.draw_style(common.GraphDrawStyle.POINTS).point_size(6)
    if stack:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if thresholds is not None:
        p = p.thresholds(thresholds)
    if threshold_lines:
        p = p.thresholds_style(common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    if decimals is not None:
        p = p.decimals(decimals)
    for name, props in overrides:
        p = p.override_by_name(name, props)
    for t in targets:
        p = p.with_target(t)
    return p


def table_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any], *,
                ds: DataSourceRef = API, overrides: Sequence[tuple[str, list[DynamicConfigValue]]] = (),
                sort_by: str | None = None, desc: bool = True, transformations: Sequence[Any] = (),
                thresholds: dash.ThresholdsConfig | None = None) -> table.Panel:
    p = _common(table.Panel(), pid, title, description, unit, ds).filterable(True).cell_height(
        common.TableCellHeight.SM)
    if sort_by:
        p = p.sort_by([common_b.TableSortByFieldState().display_name(sort_by).desc(desc)])
    if thresholds is not None:
        p = p.thresholds(thresholds)
    if transformations:
        p = p.transformations(list(transformations))
    for name, props in overrides:
        p = p.override_by_name(name, props)
    for t in targets:
        p = p.with_target(t)
    return p


def bargauge_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any], *,
                   thresholds: dash.ThresholdsConfig | None = None, min_: float | None = None,
                   max_: float | None = None, ds: DataSourceRef = PROM) -> bargauge.Panel:
    p = _common(bargauge.Panel(), pid, title, description, unit, ds).display_mode(
        common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL).reduce_options(
        common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)).show_unfilled(True)
    if thresholds is not None:
        p = p.thresholds(thresholds)
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    for t in targets:
        p = p.with_target(t)
    return p


def barchart_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any], *, x_field: str,
                   ds: DataSourceRef = API, overrides: Sequence[tuple[str, list[DynamicConfigValue]]] = (),
                   horizontal: bool = False, transformations: Sequence[Any] = ()) -> barchart.Panel:
    p = _common(barchart.Panel(), pid, title, description, unit, ds).x_field(x_field).show_value(
        common.VisibilityMode.AUTO).orientation(
        common.VizOrientation.HORIZONTAL if horizontal else common.VizOrientation.VERTICAL)
    if transformations:
        p = p.transformations(list(transformations))
    for name, props in overrides:
        p = p.override_by_name(name, props)
    for t in targets:
        p = p.with_target(t)
    return p


def heatmap_panel(pid: int, title: str, description: str, unit: str, targets: Sequence[Any]) -> heatmap.Panel:
    from grafana_foundation_sdk.builders import heatmap as hb
    from grafana_foundation_sdk.models import heatmap as hm

    p = _common(heatmap.Panel(), pid, title, description, unit, PROM).calculate(False).y_axis(
        hb.YAxisConfig().unit(unit).axis_placement(common.AxisPlacement.LEFT)).cell_values(
        hb.CellValues().unit("short")).color(
        hb.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges").fill("dark-orange")
        .scale(hm.HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64).reverse(False)).rows_frame(
        hb.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
    for t in targets:
        p = p.with_target(t)
    return p


# ---- layout ------------------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Places panels on Grafana's 24-column grid, left to right, wrapping to the next line; rows start a line."""

    y: int = 0
    x: int = 0
    line_h: int = 0
    items: list[tuple[str, Any]] = field(default_factory=list)

    def row(self, pid: int, title: str) -> None:
        self._newline()
        self.items.append(("row", dash.Row(title).id(pid).grid_pos(GridPos(h=1, w=24, x=0, y=self.y))))
        self.y += 1

    def add(self, panel: Any, w: int, h: int) -> None:
        if not 1 <= w <= 24:
            raise ValueError(f"panel width {w} is outside 1..24")
        if self.x + w > 24:
            self._newline()
        panel.grid_pos(GridPos(h=h, w=w, x=self.x, y=self.y))
        self.items.append(("panel", panel))
        self.x += w
        self.line_h = max(self.line_h, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.line_h
        self.x, self.line_h = 0, 0

    def apply(self, d: dash.Dashboard) -> dash.Dashboard:
        for kind, item in self.items:
            d = d.with_row(item) if kind == "row" else d.with_panel(item)
        return d


def base_dashboard(key: str, description: str, time_from: str, refresh: str, variables: Sequence[Any]
                   ) -> dash.Dashboard:
    d = (dash.Dashboard(TITLES[key]).uid(UIDS[key]).description(description).tags([TAG, key])
         .time(time_from, "now").refresh(refresh).timezone("utc").editable().tooltip(DashboardCursorSync.CROSSHAIR))
    for v in variables:
        d = d.with_variable(v)
    for link in links(key):
        d = d.link(link)
    return d


# Panels that list problems (firing alerts, failing notebooks, waiting retries): empty is the good state, so the
# live test accepts an empty result for them when there is no such problem (see tests/test_dashboards_live.py).
PROBLEM_PANELS: dict[str, set[int]] = {
    "oncall": {102, 301, 304, 305, 403, 502},
    "executive": set(),
    "debug": set(),
}
# Panels over an SLO's whole period from its recording rules: absent until Prometheus has seen traffic in that
# scope (a fresh Prometheus over a backfilled collector has not); their formula is checked by promtool in
# tests/dashboards/test_executive_queries.py instead.
PERIOD_PANELS: dict[str, set[int]] = {"oncall": set(), "executive": {205}, "debug": set()}
