"""The HTML report: one self-contained file (inline CSS and SVG charts, no script, no external resource), so it
opens offline, prints well (A4, no broken tables) and can be mailed as is."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from html import escape
from pathlib import Path

import polars as pl

from cost.reports import labels as L
from cost.reports.data import CostReport
from cost.schema import UNALLOCATED

CUR_COLOR, PREV_COLOR, UNALLOC_COLOR = "#2b6cb0", "#a0aec0", "#dd6b20"
MIX_COLORS = {"direct": "#2f855a", "proportional": "#2b6cb0", "unallocated": "#dd6b20", "shared": "#805ad5"}

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1a202c;
margin:24px auto;max-width:1100px;padding:0 16px}h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;
border-bottom:2px solid #e2e8f0;padding-bottom:4px}.muted{color:#718096}.kpis{display:grid;
grid-template-columns:repeat(4,1fr);gap:12px;margin:16px 0}.kpi{border:1px solid #e2e8f0;border-radius:8px;
padding:10px 12px}.kpi b{display:block;font-size:20px}.kpi span{color:#718096;font-size:12px}.up{color:#c53030}
.down{color:#2f855a}table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 8px;text-align:left}td.n,th.n{text-align:right;
font-variant-numeric:tabular-nums}th{background:#f7fafc}.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
figure{margin:0;border:1px solid #e2e8f0;border-radius:8px;padding:8px}figcaption{font-weight:600;margin-bottom:4px}
svg text{font:11px sans-serif;fill:#4a5568}.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
@media print{body{margin:0;max-width:none;font-size:11px}.kpis{grid-template-columns:repeat(4,1fr)}
figure,table,.kpi{break-inside:avoid;page-break-inside:avoid}h2{break-after:avoid}}
@page{size:A4;margin:14mm}
"""


def money(v, currency: str = "USD") -> str:
    if v is None:
        return "–"
    d = Decimal(v)
    sign = "-" if d < 0 else ""
    return f"{sign}{abs(d):,.2f} {currency}"


def pct(v) -> str:
    return "–" if v is None else f"{v * 100:+.1f}%" if isinstance(v, float) else str(v)


def share(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _f(v) -> float:
    return float(v) if v is not None else 0.0


def bar_chart(df: pl.DataFrame, top: int = 12, width: int = 520) -> str:
    """Grouped horizontal bars: this month vs the previous month, per key."""
    rows = df.head(top).to_dicts()
    if not rows:
        return '<p class="muted">No cost this month.</p>'
    hi = max(max(_f(r["cost"]), _f(r["previous_cost"])) for r in rows) or 1.0
    label_w, bar_h, gap = 150, 9, 8
    h = len(rows) * (2 * bar_h + gap) + 24
    out = [f'<svg role="img" aria-label="cost by key" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    scale = (width - label_w - 80) / hi
    for i, r in enumerate(rows):
        y = 4 + i * (2 * bar_h + gap)
        color = UNALLOC_COLOR if r["key"] == UNALLOCATED else CUR_COLOR
        w1, w2 = max(0.0, _f(r["cost"]) * scale), max(0.0, _f(r["previous_cost"]) * scale)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h + 3}" text-anchor="end">{escape(str(L.name_of(r["key"]))[:24])}</text>')
        out.append(f'<rect class="bar-cur" x="{label_w}" y="{y}" width="{w1:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<rect class="bar-prev" x="{label_w}" y="{y + bar_h}" width="{w2:.1f}" height="{bar_h}" '
                   f'fill="{PREV_COLOR}"/>')
        out.append(f'<text x="{label_w + w1 + 4:.1f}" y="{y + bar_h - 1}">{money(r["cost"], "")}</text>')
    out.append("</svg>")
    return "".join(out)


def daily_chart(df: pl.DataFrame, width: int = 520, height: int = 200) -> str:
    rows = df.to_dicts()
    if not rows:
        return '<p class="muted">No daily cost.</p>'
    vals = [_f(r["cost"]) for r in rows]
    hi, lo = max(vals + [0.0]), min(vals + [0.0])
    span = (hi - lo) or 1.0
    left, bottom, top = 50, 22, 10
    n = len(rows)
    bw = (width - left - 10) / max(n, 1)
    out = [f'<svg role="img" aria-label="daily cost" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    zero_y = top + (hi / span) * (height - top - bottom)
    out.append(f'<line x1="{left}" y1="{zero_y:.1f}" x2="{width - 10}" y2="{zero_y:.1f}" stroke="#cbd5e0"/>')
    out.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{hi:,.0f}</text>')
    out.append(f'<text x="{left - 4}" y="{zero_y + 4:.1f}" text-anchor="end">0</text>')
    for i, (r, v) in enumerate(zip(rows, vals)):
        x = left + i * bw
        y1 = top + ((hi - max(v, 0)) / span) * (height - top - bottom)
        hgt = abs(v) / span * (height - top - bottom)
        y = y1 if v >= 0 else zero_y
        out.append(f'<rect class="day" x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{hgt:.1f}" '
                   f'fill="{CUR_COLOR}"><title>{r["charge_date"]}: {v:,.2f}</title></rect>')
        if n <= 31 and (i % max(1, n // 8) == 0):
            d = r["charge_date"]
            out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                       f'{d.day if isinstance(d, date) else escape(str(d))}</text>')
    out.append("</svg>")
    return "".join(out)


def budget_chart(df: pl.DataFrame, width: int = 520) -> str:
    rows = [r for r in df.to_dicts() if r["budget"] is not None or r["team"] != UNALLOCATED]
    if not rows:
        return '<p class="muted">No budgets configured.</p>'
    hi = max(max(_f(r["forecast"]), _f(r["budget"]), _f(r["mtd"])) for r in rows) or 1.0
    label_w, bar_h, gap = 120, 14, 10
    h = len(rows) * (bar_h + gap) + 10
    scale = (width - label_w - 70) / hi
    out = [f'<svg role="img" aria-label="budget and forecast" width="{width}" height="{h}" '
           f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">']
    for i, r in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        over = r["budget"] is not None and _f(r["forecast"]) > _f(r["budget"])
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end">{escape(str(L.name_of(r["team"]))[:18])}</text>')
        out.append(f'<rect class="forecast" x="{label_w}" y="{y}" width="{max(0.0, _f(r["forecast"]) * scale):.1f}" '
                   f'height="{bar_h}" fill="{"#feb2b2" if over else "#bee3f8"}"/>')
        out.append(f'<rect class="mtd" x="{label_w}" y="{y + 3}" width="{max(0.0, _f(r["mtd"]) * scale):.1f}" '
                   f'height="{bar_h - 6}" fill="{CUR_COLOR}"/>')
        if r["budget"] is not None:
            bx = label_w + _f(r["budget"]) * scale
            out.append(f'<line class="budget" x1="{bx:.1f}" y1="{y - 2}" x2="{bx:.1f}" y2="{y + bar_h + 2}" '
                       f'stroke="#c53030" stroke-width="2"/>')
    out.append("</svg>")
    return "".join(out)


def mix_chart(df: pl.DataFrame, width: int = 520) -> str:
    rows = [r for r in df.to_dicts() if _f(r["cost"]) > 0]
    total = sum(_f(r["cost"]) for r in rows)
    if not total:
        return '<p class="muted">No positive cost.</p>'
    out = [f'<svg role="img" aria-label="allocation" width="{width}" height="46" viewBox="0 0 {width} 46" '
           f'xmlns="http://www.w3.org/2000/svg">']
    x = 0.0
    for r in rows:
        w = _f(r["cost"]) / total * width
        out.append(f'<rect class="mix" x="{x:.1f}" y="0" width="{w:.1f}" height="22" '
                   f'fill="{MIX_COLORS.get(r["allocation"], "#718096")}"><title>{escape(L.name_of(r["allocation"]).capitalize())}</title></rect>')
        if w > 60:
            out.append(f'<text x="{x + 4:.1f}" y="38">{escape(L.name_of(r["allocation"]).capitalize())} '
                       f'{_f(r["cost"]) / total:.0%}</text>')
        x += w
    out.append("</svg>")
    return "".join(out)


def table(t: L.Table, limit: int | None = None) -> str:
    if not t.rows:
        return '<p class="muted">Nothing to show.</p>'
    numeric = {c for i, c in enumerate(t.columns)
               if any(isinstance(r[i], (int, float, Decimal)) and not isinstance(r[i], bool) for r in t.rows)}
    head = "".join(f'<th class="{"n" if c in numeric else ""}">{escape(c)}</th>' for c in t.columns)
    body = []
    for r in (t.rows[:limit] if limit else t.rows):
        cells = []
        for c, v in zip(t.columns, r):
            if isinstance(v, Decimal):
                cells.append(f'<td class="n">{money(v, "")}</td>')
            elif isinstance(v, float):
                cells.append(f'<td class="n">{pct(v) if c == "Change %" else share(v)}</td>')
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f'<td class="n">{v}</td>')
            elif v == L.NO_BUDGET:
                cells.append(f'<td class="n muted">{L.NO_BUDGET}</td>')
            else:
                cells.append(f"<td>{escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="muted">{len(t.rows) - limit} more rows in the CSV/XLSX export.</p>' if limit and \
        len(t.rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def render(report: CostReport) -> str:
    s, cur = report.summary, report.currency
    ch = s["change_ratio"]
    trend = "" if ch is None else (f'<span class="{"up" if ch > 0 else "down"}">{pct(ch)}</span>')
    kpis = [
        ("Total cost", money(s["total_cost"], cur), f"vs {money(s['previous_total_cost'], cur)} {trend}"),
        (L.UNALLOCATED_NAME, money(s["unallocated_cost"], cur), f"{share(s['unallocated_share'])} of the month"),
        ("Cost per run", money(s["cost_per_run"], cur), f"{s['runs']} runs with cost"),
        ("Forecast", money(s["forecast_total"], cur),
         f"budget {money(s['budget_total'], cur)}" if s["budget_total"] is not None else L.NO_BUDGET),
    ]
    kpi_html = "".join(f'<div class="kpi"><span>{escape(a)}</span><b>{escape(b)}</b><span>{c}</span></div>'
                       for a, b, c in kpis)
    scope = f" · team {escape(report.team_scope)}" if report.team_scope else ""
    legend = (f'<div class="legend muted"><span style="background:{CUR_COLOR}"></span>{escape(report.month)}'
              f'<span style="background:{PREV_COLOR}"></span>{escape(report.previous_month)}'
              f'<span style="background:{UNALLOC_COLOR}"></span>{L.UNALLOCATED_NAME}</div>')
    notes = "".join(f'<p class="muted">{escape(n)}</p>' for n in report.notes)
    t = {x.name: x for x in L.tables(report)}
    main = t[f"by_{report.by}"]
    by_team = "" if report.by == "team" else table(t["by_team"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Cost report {escape(report.month)}</title><style>{CSS}</style></head><body>
<h1>Cost report {escape(report.month)}{scope}</h1>
<p class="muted">Amortised cost (FOCUS EffectiveCost) in {escape(cur)}, by billing period: {escape(s['period'])},
compared with {escape(s['previous_period'])}. Generated {escape(s['as_of'])}.</p>
<div class="kpis">{kpi_html}</div>
<div class="charts">
<figure id="chart-by"><figcaption>Cost by {escape(report.by)}</figcaption>{bar_chart(report.by_key)}{legend}</figure>
<figure id="chart-daily"><figcaption>Daily cost</figcaption>{daily_chart(report.daily)}</figure>
<figure id="chart-budget"><figcaption>Month to date, forecast and budget by team</figcaption>
{budget_chart(report.budgets)}<div class="legend muted"><span style="background:{CUR_COLOR}"></span>month to date
<span style="background:#bee3f8"></span>forecast<span style="background:#c53030"></span>budget</div></figure>
<figure id="chart-mix"><figcaption>Allocation</figcaption>{mix_chart(report.allocation_mix)}</figure>
</div>
{notes}
<h2>Totals by {escape(report.by)}</h2>{table(main)}
<h2>By team, budget and forecast</h2>{by_team}{table(t["budgets"])}
<h2>Top drivers of the change</h2>{table(t["drivers"])}
<h2>Cost per run</h2>{table(t["cost_per_run"], limit=25)}
<h2>Invoice reconciliation (BilledCost)</h2>{table(t["invoices"])}
</body></html>
"""


def write_html(report: CostReport, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path
