"""Live: every panel of the generated dashboards against a real collector fed with demo data and a real Prometheus
(Debian's 2.42) scraping it every second with the generated rules (alerts/*.rules.yml).

- every Prometheus target runs through /api/v1/query without error and returns samples (panels that list problems
  may be empty only when there is no problem);
- every metric a panel names is exposed by the collector or recorded by the rules;
- every JSON-API (Infinity) target's URL, with the dashboard's variables and time range, returns rows carrying the
  columns the panel maps.
Fails (never skips) when `prometheus` is not installed: `make test` installs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
import yaml

from dashboards import build, lint
from cost import variance
from dashboards.common import PERIOD_PANELS, PROBLEM_PANELS
from tests.support import ROOT, Collector, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRAPE = "1s"
BUDGETS = {"finance": 40, "risk": 500, "ml-platform": 30, "data-eng": 500, "marketing": 500,
           "product-analytics": 500}


def _dashboards() -> dict[str, dict]:
    return {key: json.loads(build.render_dashboard(key)) for key in build.BUILDERS}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus = shutil.which("prometheus")
    assert prometheus, "the `prometheus` binary is missing (Debian package `prometheus`; `make test` installs it)"
    from collector.demo import platform as demo

    tmp = tmp_path_factory.mktemp("live")
    db = tmp / "o.duckdb"
    now = datetime.now(timezone.utc)
    demo.backfill(db, days=2, end=now)
    # and the previous billing month up to the same day and time, which month-over-month cost compares with (second:
    # its registry and promotion events are duplicates of the first history's, so the promotions stay recent)
    demo.backfill(db, days=2, end=variance.month_back(now) + timedelta(hours=1))
    col = Collector(db, env={"OBSERVATORY_COST_BUDGETS": json.dumps(BUDGETS),
                             "OBSERVATORY_GAUGE_REFRESH_SECONDS": "2"}).start(timeout=60)
    stop = threading.Event()
    live = threading.Thread(target=demo.stream_live, args=(col.url, None, 40.0), kwargs={"stop": stop}, daemon=True)
    live.start()
    # the generated rules, with every group at the scrape interval: the period and meta recordings run every 5
    # minutes in production (slo/rules/meta_recordings.py), longer than this test lives
    rules = []
    for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        for g in doc["groups"]:
            g.pop("interval", None)
        (tmp / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        rules.append(str(tmp / path.name))
    pport = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
        "rule_files": rules,
        "scrape_configs": [{"job_name": "observatory", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{col.port}"]}]}],
    }))
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{pport}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{pport}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(base + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("prometheus not ready: " + (tmp / "prometheus.log").read_text()[-3000:])
        # a few scrapes and rule evaluations: rates need two samples, recording rules need their inputs. Probes
        # come once a minute (the availability panel shows no point over a window without one, never NaN): send
        # one a second meanwhile, so that window has some
        deadline = time.monotonic() + 40
        n = 0
        while time.monotonic() < deadline:
            n += 1
            httpx.post(f"{col.url}/v1/events", timeout=10, json=[{
                "specversion": "1.0", "id": f"live-probe-{n}", "source": "test://live-prober", "type": "platform.probe",
                "time": datetime.now(timezone.utc).isoformat(), "data": {"target": "hub-a/ui", "ok": True}}])
            r = httpx.get(base + "/api/v1/query", params={"query": 'count(rate(notebook_run_attempts_total[1m]))'
                                                                   ' and count(slo:sli_error:ratio_rate5m)'
                                                                   ' and count(rate(notebook_platform_probes_total[1m]) > 0)'}).json()
            if r["data"]["result"]:
                break
            time.sleep(1)
        time.sleep(4)
        yield {"prom": base, "collector": col, "now": datetime.now(timezone.utc)}
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        col.stop()
        live.join(10)


# ---- variables ---------------------------------------------------------------------------------------------------


def _resolve(d: dict, prom: str) -> dict[str, dict]:
    """Each variable -> {"value": what a single-valued reference expands to, "csv": ..., "regex": ...}, as Grafana
    would resolve it on first load (query variables from Prometheus label values, All when includeAll)."""
    out = {}
    for v in lint.variables(d):
        name, kind = v["name"], v["type"]
        if kind == "datasource":
            out[name] = {"value": v["current"]["value"]}
            continue
        if kind == "textbox":
            out[name] = {"value": v["query"]}
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"])
        assert m, f"unsupported variable query {v['query']!r}"
        r = httpx.get(f"{prom}/api/v1/label/{m.group(2)}/values", params={"match[]": m.group(1)}).json()
        values = sorted(r["data"], reverse=v.get("sort") in (2, 4, 6, 8))
        assert values, f"variable {name}: {v['query']} has no values"
        cur = (v.get("current") or {}).get("value")
        if v.get("includeAll") and cur in ("$__all", None):
            out[name] = {"value": values[0], "csv": ",".join(values),
                         "regex": "(" + "|".join(_escape(x) for x in values) + ")"}
        else:
            chosen = cur if cur in values else values[0]
            out[name] = {"value": chosen, "csv": chosen, "regex": _escape(chosen) if v.get("multi") else chosen}
    return out


def _escape(value: str) -> str:
    """Grafana's regex escaping of a multi-value variable inside a PromQL string (backslash doubled)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def _range(d: dict) -> timedelta:
    m = re.fullmatch(r"now-(\d+)([mhd])", d["time"]["from"])
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


def _prom_expr(expr: str, vars_: dict[str, dict], range_: timedelta, min_interval: str | None = None) -> str:
    """The expression as Grafana sends it; a panel's minimum interval floors `$__rate_interval` (1m here)."""
    values = {k: v.get("regex", v["value"]) for k, v in vars_.items()}
    secs = int(range_.total_seconds())
    from slo.spec import parse_duration

    rate = min_interval if min_interval and parse_duration(min_interval) > 60_000 else "1m"
    return lint.expand(expr, values, rate_interval=rate, interval="1m", range_=f"{secs}s")


def _api_url(url: str, vars_: dict[str, dict], frm: datetime, to: datetime) -> str:
    iso = {"__from": frm.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "__to": to.strftime("%Y-%m-%dT%H:%M:%S.000Z")}

    def sub(m: re.Match) -> str:
        name, fmt = m.group(1), m.group(2)
        if name in iso:
            assert fmt == "date:iso", f"unsupported time format {m.group(0)}"
            return iso[name]
        v = vars_[name]
        return quote(v["csv"] if fmt == "csv" else v["value"], safe=",")

    return re.sub(r"\$\{([A-Za-z0-9_]+)(?::([^}]*))?\}", sub, url)


def _rows(body, root: str) -> list:
    node = body
    for part in root.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        return [node]
    return node or []


# ---- tests -------------------------------------------------------------------------------------------------------


# An SLI the target reads: notebook_sli_ratio or notebook_sli_value with its `sli` and `window` matchers
_SLI_SELECTOR = re.compile(r'notebook_sli_(?:ratio|value)\{[^}]*?sli="(M\d+)"[^}]*?window="(\w+)"')


def _sli_has_no_data(col: Collector, expr: str) -> bool:
    """Whether every SLI the expression reads has no value at all in the collector's own answer (its platform row's
    value is null): the demo's 2-day history can hold no event of an SLI in a window (M2's reproducibility checks
    come mostly from CI runs, and the demo's weekends are quiet), and then an empty panel is right. False when it
    reads no SLI."""
    found = set(_SLI_SELECTOR.findall(expr))
    if not found:
        return False
    for sli, window in found:
        rows = httpx.get(f"{col.url}/v1/sli", params={"sli": sli, "window": window}, headers=col.headers,
                         timeout=30).json()["slis"]
        if any(r["value"] is not None for r in rows if r["team"] is None and r["notebook_id"] is None):
            return False
    return True


def test_every_prometheus_target_returns_data(stack):
    prom, failures, checked, empty_slis = stack["prom"], [], 0, []
    for key, d in _dashboards().items():
        vars_ = _resolve(d, prom)
        for p, i, t in lint.prom_targets(d):
            expr = _prom_expr(t["expr"], vars_, _range(d), p.get("interval"))
            r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=30)
            checked += 1
            body = r.json()
            where = f"{key} panel {p['id']} {p['title']!r} target {t['refId']}"
            if r.status_code != 200 or body.get("status") != "success":
                failures.append(f"{where}: error {body.get('error')} in {expr}")
            elif not body["data"]["result"] and p["id"] not in PROBLEM_PANELS[key] | PERIOD_PANELS[key]:
                if _sli_has_no_data(stack["collector"], expr):
                    empty_slis.append(where)
                else:
                    failures.append(f"{where}: no data for {expr}")
    assert not failures, "\n".join(failures)
    assert checked >= 30
    # an SLI with no data in a window empties a panel or two (one SLI, its trend and its stat), not the dashboards
    assert len(empty_slis) <= 3, empty_slis


def test_every_metric_of_the_dashboards_exists(stack):
    text = httpx.get(stack["collector"].url + "/metrics").text
    exposed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            exposed.add(name)
            exposed.update({name + s for s in ("_total", "_bucket", "_sum", "_count", "_created")})
    recorded = set()
    for f in (ROOT / "alerts").glob("*.rules.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            recorded.update(r["record"] for r in g["rules"] if "record" in r)
    known = exposed | recorded | {"ALERTS", "up"}
    missing = {}
    for key, d in _dashboards().items():
        for p, i, t in lint.prom_targets(d):
            for m in lint.metric_names(t["expr"]) - known:
                missing.setdefault(m, []).append(f"{key}:{p['id']}")
    assert not missing, f"panels use metrics nobody exposes or records: {missing}"


def test_every_api_target_returns_rows(stack):
    col, failures, checked = stack["collector"], [], 0
    now = stack["now"] + timedelta(minutes=1)
    for key, d in _dashboards().items():
        vars_ = _resolve(d, stack["prom"])
        for p, i, t in lint.api_targets(d):
            assert t["url"].startswith("/v1/"), t["url"]
            url = _api_url(t["url"], vars_, now - _range(d), now)
            r = httpx.get(col.url + url, timeout=60)
            checked += 1
            where = f"{key} panel {p['id']} {p['title']!r}: GET {url}"
            if r.status_code != 200:
                failures.append(f"{where}: HTTP {r.status_code} {r.text[:300]}")
                continue
            rows = _rows(r.json(), t["root_selector"])
            if not rows and p["id"] in PROBLEM_PANELS[key]:
                # empty in the dashboard's window is fine when there is no problem; the demo history has some,
                # so over the whole history the same query must find rows (except for waiting retries, which
                # exist only while a retry is pending)
                wide = _api_url(t["url"], vars_, now - timedelta(days=60), now)
                rows = _rows(httpx.get(col.url + wide, timeout=60).json(), t["root_selector"])
                if not rows and "min_attempt=2" in t["url"]:
                    continue
            if not rows:
                failures.append(f"{where}: no rows")
                continue
            cols = {c["selector"] for c in t["columns"]}
            absent = cols - set(rows[0])
            if absent:
                failures.append(f"{where}: rows lack the mapped columns {sorted(absent)}")
    assert checked >= 15
    assert not failures, "\n".join(failures)
