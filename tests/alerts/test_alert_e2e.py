"""End to end with the real programs on loopback: a failing workload posted to the collector -> a real Prometheus
scraping it with our generated rules -> a real Alertmanager with our generated alertmanager.yml. Routed by cause:
failing availability probes (infrastructure) page the platform on-call with the SLO, team and runbook URL, and the
collector's M13 counts that page once; failing data-quality checks of team finance (a user cause) reach finance's
ticket queue, never a pager; the Watchdog reaches the dead man's switch.

To stay fast the SLO spec is slo/slos.yaml with a 1h period and short alert windows (page: 10s/1m and 30s/5m), and
Prometheus scrapes and evaluates every second. Alertmanager runs our config with its group waits and intervals
shortened to seconds (routes, receivers and inhibition unchanged). Binaries come from the Debian packages
`prometheus` and `prometheus-alertmanager` (make test installs them); a missing binary fails this test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from slo.alertmanager import render_env_template
from slo.model import resolve
from slo.rules import generate
from slo.spec import parse_spec

from tests.support import Collector, WebhookSink, create_token, free_port

ROOT = Path(__file__).resolve().parents[2]
SLOS = ("platform-availability", "data-quality")

pytestmark = pytest.mark.integration

E2E_WINDOWS = {
    "page": {"quick": {"error_budget_percent": 2, "short_window": "10s", "long_window": "1m"},
             "slow": {"error_budget_percent": 5, "short_window": "30s", "long_window": "5m"}},
    "ticket": {"quick": {"error_budget_percent": 10, "short_window": "1m", "long_window": "10m"},
               "slow": {"error_budget_percent": 10, "short_window": "5m", "long_window": "30m"}},
}


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: apt-get install prometheus prometheus-alertmanager (make test installs them)"
    return path


def e2e_spec():
    """The production spec, two SLOs, over a 1h period with second-scale windows."""
    raw = yaml.safe_load((ROOT / "slo" / "slos.yaml").read_text())
    raw["period"] = "1h"
    raw["alert_windows"] = E2E_WINDOWS
    raw["slos"] = [s for s in raw["slos"] if s["name"] in SLOS]
    return parse_spec(raw)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url} exited: {log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready: {log.read_text()[-3000:]}")


def shorten_timings(route: dict) -> None:
    for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "2s")):
        if key in route:
            route[key] = value
    for child in route.get("routes", []):
        shorten_timings(child)


def event(type_: str, source: str, **data) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": source, "type": type_,
            "time": datetime.now(timezone.utc).isoformat(), "data": data}


def failed_probe() -> dict:
    return event("platform.probe", "test://e2e-prober", target="hub", ok=False)


def quality_check(team: str, result: str) -> dict:
    return event("notebook.quality.checked", "test://e2e-notebooks", notebook_id=f"nb-{team}", team=team,
                 check="rows_not_null", result=result)


def firing(sink: WebhookSink, path: str, alertname: str) -> dict | None:
    return next((a for a in sink.alerts(path) if a["labels"]["alertname"] == alertname and a["status"] == "firing"),
                None)


def test_pages_route_by_cause_and_the_page_is_counted_once(tmp_path):
    prometheus, alertmanager = binary("prometheus"), binary("prometheus-alertmanager")
    procs: list[subprocess.Popen] = []
    sink = WebhookSink()
    tokens = tmp_path / "tokens.yaml"
    ingest_token = create_token(tokens, "e2e-ingest", "ingest")
    read_token = create_token(tokens, "e2e-read", "read")
    collector = Collector(db=tmp_path / "observatory.duckdb", tokens_file=tokens).start()
    try:
        # --- Alertmanager with our config -------------------------------------------------------------------
        am_port = free_port()
        rendered = render_env_template((ROOT / "alerts" / "alertmanager.yml").read_text(), {
            "ALERTMANAGER_ONCALL_URL": f"{sink.url}/oncall",
            "ALERTMANAGER_TICKETS_URL": f"{sink.url}/tickets",
            "ALERTMANAGER_SECURITY_URL": f"{sink.url}/security",
            "ALERTMANAGER_TEAM_ONCALL_URL": f"{sink.url}/team-oncall",
            "ALERTMANAGER_TEAM_TICKETS_URL": f"{sink.url}/team-tickets",
            "ALERTMANAGER_DEADMANSSWITCH_URL": f"{sink.url}/dms",
            "OBSERVATORY_ALERTMANAGER_URL": f"{collector.url}/v1/alertmanager",
            "OBSERVATORY_INGEST_TOKEN": ingest_token,
        })
        am_cfg = yaml.safe_load(rendered)
        shorten_timings(am_cfg["route"])
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg, sort_keys=False))
        am_log = tmp_path / "alertmanager.log"
        procs.append(subprocess.Popen(
            [alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(am_log, "w")))
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", procs[-1], am_log)

        # --- Prometheus with the generated rules --------------------------------------------------------------
        spec = e2e_spec()
        for name in resolve(spec).runbooks():
            assert (ROOT / "alerts" / "runbooks" / name).is_file()
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir()
        for name, text in generate(spec).items():
            (rules_dir / name).write_text(text)
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_dir / "*.rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{
                "job_name": "observatory",
                "authorization": {"credentials": read_token},
                "static_configs": [{"targets": [f"127.0.0.1:{collector.port}"]}],
            }],
        }))
        prom_log = tmp_path / "prometheus.log"
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(prom_log, "w")))
        prom = f"http://127.0.0.1:{prom_port}"
        wait_ready(f"{prom}/-/ready", procs[-1], prom_log)

        # --- the workload: every probe fails (infra); team finance's checks all fail, team ml's pass (user) -----
        ingest = {"Authorization": f"Bearer {ingest_token}"}
        page = ticket = watchdog = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (page and ticket and watchdog):
            r = httpx.post(f"{collector.url}/v1/events", headers=ingest, timeout=10,
                           json=[failed_probe(), failed_probe(), quality_check("finance", "fail"),
                                 quality_check("ml-platform", "pass")])
            assert r.status_code in (200, 201, 207), r.text
            page = page or firing(sink, "/oncall", "PlatformAvailabilityBudgetBurn")
            ticket = ticket or firing(sink, "/team-tickets/finance", "DataQualityBudgetBurn")
            watchdog = watchdog or firing(sink, "/dms", "Watchdog")
            time.sleep(0.5)
        assert page and ticket and watchdog, (
            f"page={page} ticket={ticket} watchdog={watchdog} in 120s\n"
            + httpx.get(f"{prom}/api/v1/alerts", timeout=5).text + "\n" + prom_log.read_text()[-2000:]
            + "\n" + am_log.read_text()[-2000:])

        # the platform page names the SLO, the team, the cause and the runbook
        assert page["labels"]["severity"] == "page" and page["labels"]["team"] == "platform"
        assert page["labels"]["cause"] == "infra" and page["labels"]["sloth_slo"] == "platform-availability"
        assert page["annotations"]["runbook_url"] == f"{spec.runbook_base_url}/slo-platform-availability.md"
        assert page["annotations"]["summary"] == \
            "SLO platform-availability (team platform) is burning its error budget too fast (page)."
        # the user-caused burn is finance's ticket: no pager anywhere got it, and healthy ml got nothing
        assert ticket["labels"]["severity"] == "ticket" and ticket["labels"]["cause"] == "user"
        pagers = [a for path in ("/oncall", "/team-oncall/finance") for a in sink.alerts(path)]
        assert not [a for a in pagers if a["labels"]["alertname"] == "DataQualityBudgetBurn"]
        assert not [a for p, _ in sink.received for a in sink.alerts(p) if a["labels"].get("team") == "ml-platform"]

        # --- M13: Alertmanager also delivered the page to the collector; repeats do not count twice --------------
        read = {"Authorization": f"Bearer {read_token}"}
        window = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z", "team": "platform"}
        state = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = httpx.get(f"{collector.url}/v1/alertmanager/pages", params=window, headers=read, timeout=5).json()
            if state["count"] >= 1 and state["pages"][0]["notifications"] >= 2:
                break
            time.sleep(0.5)
        assert state is not None and state["count"] == 1, state
        assert state["pages"][0]["notifications"] >= 2, state  # Alertmanager repeated it (repeat_interval 2s)
        assert state["pages"][0]["fingerprint"] == page["fingerprint"]
        assert state["pages"][0]["runbook_url"] == page["annotations"]["runbook_url"]
        # the very payload the on-call receiver got, posted again: still one page
        again = httpx.post(f"{collector.url}/v1/alertmanager", json=sink.payloads("/oncall")[0], headers=ingest,
                           timeout=5)
        assert again.status_code == 200 and again.json()["new"] == 0
        final = httpx.get(f"{collector.url}/v1/alertmanager/pages", params=window, headers=read, timeout=5).json()
        assert final["count"] == 1
        # tickets are not pages: finance has none counted
        assert httpx.get(f"{collector.url}/v1/alertmanager/pages", params={**window, "team": "finance"},
                         headers=read, timeout=5).json()["count"] == 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        collector.stop()
        sink.server.shutdown()
