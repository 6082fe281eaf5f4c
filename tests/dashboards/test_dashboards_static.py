"""The generated dashboards offline: fresh, schema-valid, linter-clean (Python port of dashboard-linter), sane uids,
ids, layout, links and provisioning; the docker-compose file pinned, loopback-only and consistent with them."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import shutil
import subprocess

import pytest
import yaml

from dashboards import build, lint, provisioning
from dashboards.common import API_UID, PROM_UID, TITLES, UIDS
from tests.support import OBSERVATORY, ROOT, SHARED

SCHEMAS = SHARED / "schemas" / "grafana"
GENERATED = ROOT / "dashboards" / "grafana"


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return {key: json.loads((GENERATED / f"{key}.json").read_text()) for key in build.BUILDERS}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    assert SCHEMAS.is_dir(), f"missing {SCHEMAS}"
    return lint.load_schemas(SCHEMAS)


def test_sdk_is_the_pinned_build():
    # an unpinned install brings the epoch-versioned Grafana 10.1 build (schemaVersion 36)
    assert importlib.metadata.version("grafana-foundation-sdk").lstrip("v") == "0.0.21"


def test_committed_files_are_what_the_generator_writes(tmp_path):
    assert build.stale() == [], "run `observatory dashboards build` and commit dashboards/grafana/"
    assert build.write(tmp_path) and build.write(tmp_path) == []  # deterministic: a second run changes nothing
    for rel, text in build.outputs().items():
        assert (tmp_path / rel).read_text() == text


def test_cli_check_fails_on_a_stale_file(tmp_path):
    obs = OBSERVATORY
    assert subprocess.run([obs, "dashboards", "build", "--out", str(tmp_path)], capture_output=True).returncode == 0
    ok = subprocess.run([obs, "dashboards", "build", "--check", "--out", str(tmp_path)], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "oncall.json").write_text((tmp_path / "oncall.json").read_text().replace("On-call", "Oncall", 1))
    bad = subprocess.run([obs, "dashboards", "build", "--check", "--out", str(tmp_path)], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "oncall.json" in bad.stderr


def test_json_schema_valid_with_the_two_relaxations(dashboards, schemas):
    for key, d in dashboards.items():
        assert d["schemaVersion"] == 42, key
        assert lint.schema_errors(d, schemas) == [], key


def test_schema_check_catches_typos(dashboards, schemas):
    d = copy.deepcopy(dashboards["oncall"])
    p = next(p for p in lint.data_panels(d) if p["type"] == "stat")
    p["fieldConfig"]["defaults"]["unitt"] = "s"
    p["options"]["colorMod"] = "value"
    p["gridPos"]["w"] = 25
    errors = "\n".join(lint.schema_errors(d, schemas))
    assert "'unitt' was unexpected" in errors and "'colorMod' was unexpected" in errors and "25" in errors


def test_linter_port_is_clean(dashboards):
    for key, d in dashboards.items():
        assert [str(p) for p in lint.lint_dashboard(d, key)] == []


@pytest.mark.parametrize("mutate, rule", [
    (lambda d, p: p.update(description=""), "panel-title-description-rule"),
    (lambda d, p: p["fieldConfig"]["defaults"].pop("unit"), "panel-units-rule"),
    (lambda d, p: p["fieldConfig"]["defaults"].update(unit="furlongs"), "panel-units-rule"),
    (lambda d, p: p.update(datasource={"type": "prometheus", "uid": "prom-hardcoded"}), "panel-datasource-rule"),
    (lambda d, p: p.update(targets=[]), "panel-no-targets-rule"),
    (lambda d, p: p["targets"][0].update(expr="sum(rate(notebook_run_attempts_total[5m]))"),
     "target-rate-interval-rule"),
    (lambda d, p: p["targets"][0].update(expr="sum(notebook_run_attempts_total)"), "target-counter-agg-rule"),
    (lambda d, p: p["targets"][0].update(expr='sum(max_over_time(notebook_kernel_crashes_total{team="a"}[1h]))'),
     "target-counter-agg-rule"),
    (lambda d, p: p["targets"][0].update(expr="sum(notebook_run_attempts_total[$__rate_interval])"),
     "target-promql-rule"),
    (lambda d, p: p["targets"][0].update(expr='sum(up{team="$nope"})'), "template-undefined-rule"),
    (lambda d, p: p.update(id=next(q for q in lint.panels(d) if q is not p)["id"]), "panel-id-rule"),
    (lambda d, p: p["gridPos"].update(x=20, w=8), "layout-rule"),
    (lambda d, p: p["gridPos"].update(x=0, y=0), "layout-rule"),
    (lambda d, p: d.update(uid="x" * 41), "uid-rule"),
    (lambda d, p: d["templating"]["list"].pop(0), "template-datasource-rule"),
    (lambda d, p: d["templating"]["list"][0].update(name="prom"), "template-datasource-rule"),
    (lambda d, p: next(v for v in d["templating"]["list"] if v["type"] == "query").update(refresh=1),
     "template-on-time-change-reload-rule"),
])
def test_linter_port_catches(dashboards, mutate, rule):
    d = copy.deepcopy(dashboards["oncall"])
    p = next(p for p in lint.data_panels(d) if p["id"] == 302)  # a Prometheus timeseries panel
    mutate(d, p)
    assert rule in {x.rule for x in lint.lint_dashboard(d)}


def test_every_panel_has_title_description_unit_and_explicit_id(dashboards):
    for key, d in dashboards.items():
        for p in lint.data_panels(d):
            assert p["title"].strip() and len(p["description"]) > 30, (key, p["id"])
            assert p["fieldConfig"]["defaults"]["unit"], (key, p["id"])
        ids = [p["id"] for p in lint.panels(d)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)


def test_rate_uses_rate_interval_everywhere(dashboards):
    for key, d in dashboards.items():
        for p, i, t in lint.prom_targets(d):
            for m in re.finditer(r"\b(?:rate|irate)\((.*?)\[([^\]]+)\]", t["expr"]):
                assert m.group(2) == "$__rate_interval", (key, p["title"], t["expr"])


def test_uids_titles_and_links_between_the_three(dashboards):
    uids = {d["uid"] for d in dashboards.values()}
    assert uids == set(UIDS.values()) and all(len(u) <= 40 for u in uids)
    assert len({d["title"] for d in dashboards.values()}) == 3
    for key, d in dashboards.items():
        assert d["title"] == TITLES[key]
        targets = {link["url"] for link in d["links"]}
        assert targets == {f"/d/{UIDS[k]}" for k in UIDS if k != key}, key
        assert all(link["keepTime"] and link["includeVars"] for link in d["links"])
        # data links into the debug dashboard point at a real uid
        for m in re.finditer(r'/d/([A-Za-z0-9_-]+)', json.dumps(d["panels"])):
            assert m.group(1) in uids


def test_time_ranges_and_variables(dashboards):
    assert dashboards["executive"]["time"]["from"] == "now-30d"
    assert dashboards["oncall"]["time"]["from"] == "now-6h"
    names = {k: {v["name"] for v in lint.variables(d)} for k, d in dashboards.items()}
    assert all({"datasource", "api_datasource"} <= n for n in names.values())
    assert {"team", "notebook"} <= names["debug"]
    for d in dashboards.values():
        ds = {v["name"]: v for v in lint.variables(d) if v["type"] == "datasource"}
        assert ds["datasource"]["query"] == "prometheus" and ds["datasource"]["current"]["value"] == PROM_UID
        assert ds["api_datasource"]["current"]["value"] == API_UID


def test_api_targets_use_the_read_api(dashboards):
    from collector.app import create_app

    routes = set(create_app().openapi()["paths"])
    seen = 0
    for key, d in dashboards.items():
        for p, i, t in lint.api_targets(d):
            seen += 1
            path = t["url"].split("?")[0]
            pattern = re.sub(r"\$\{[^}]+\}", "{x}", path)
            assert any(re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", r), pattern.replace("{x}", "x")) for r in routes), \
                (key, p["title"], path)
            assert t["parser"] == "backend" and t["type"] == "json" and t["source"] == "url"
            assert t["columns"] and t["root_selector"]
    assert seen >= 15


def test_provisioning_files(dashboards):
    ds = yaml.safe_load((GENERATED / "provisioning/datasources/observatory.yaml").read_text())
    by_uid = {x["uid"]: x for x in ds["datasources"]}
    assert by_uid[PROM_UID]["type"] == "prometheus" and by_uid[PROM_UID]["isDefault"]
    assert by_uid[API_UID]["type"] == "yesoreyeram-infinity-datasource"
    assert by_uid[API_UID]["url"] in by_uid[API_UID]["jsonData"]["allowedHosts"]
    assert by_uid[API_UID]["secureJsonData"]["bearerToken"] == "$OBSERVATORY_READ_TOKEN"  # env, never a literal
    prom_cfg = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    assert by_uid[PROM_UID]["jsonData"]["timeInterval"] == prom_cfg["global"]["scrape_interval"]
    prov = yaml.safe_load((GENERATED / "provisioning/dashboards/observatory.yaml").read_text())
    (p,) = prov["providers"]
    assert p["options"]["foldersFromFilesStructure"] and "folder" not in p and "folderUid" not in p
    for d in dashboards.values():
        assert "__inputs" not in d and "${DS_" not in json.dumps(d)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_images_pinned_ports_loopback(compose):
    services = compose["services"]
    assert {"collector", "prometheus", "alertmanager", "grafana", "demo-seed", "demo-live"} <= set(services)
    for name, s in services.items():
        image = s["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: image {image!r} is not an exact tag"
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is not loopback-only"
    assert services["collector"]["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / "Dockerfile").read_text().count("FROM python:3.11.7-slim-bookworm") == 1
    assert services["demo-seed"]["profiles"] == ["demo"] and services["demo-live"]["profiles"] == ["demo"]
    assert "collector" not in services["collector"].get("profiles", [])


def test_compose_wires_rules_alertmanager_and_grafana(compose):
    s = compose["services"]
    assert "./alerts:/etc/prometheus/rules:ro" in s["prometheus"]["volumes"]
    prom_cfg = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    assert prom_cfg["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    assert prom_cfg["scrape_configs"][0]["job_name"] == "observatory"  # the generated rules select it
    assert list((ROOT / "alerts").glob("*.rules.yml")), "generated rules are missing"
    assert "/app/alerts/alertmanager.yml" in " ".join(s["alertmanager-config"]["command"])
    assert s["grafana"]["volumes"][:4] == provisioning.compose_mounts()
    env = s["grafana"]["environment"]
    assert env["GF_PLUGINS_PREINSTALL_SYNC"] == "yesoreyeram-infinity-datasource@3.3.0"
    assert "OBSERVATORY_READ_TOKEN" in env
    for key, folder in provisioning.FOLDERS.items():
        assert f"{folder}/{key}.json" in " ".join(s["grafana"]["volumes"])


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("this docker client has no `compose` plugin")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path),
           "OBSERVATORY_READ_TOKEN": "r" * 24, "OBSERVATORY_INGEST_TOKEN": "i" * 24, "GRAFANA_ADMIN_PASSWORD": "pw",
           "ALERTMANAGER_ONCALL_URL": "http://x/oncall", "ALERTMANAGER_TICKETS_URL": "http://x/tickets",
           "ALERTMANAGER_SECURITY_URL": "http://x/security"}
    for profile in ([], ["--profile", "demo"]):
        r = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), *profile, "config", "--quiet"],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
    missing = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                             capture_output=True, text=True, env={"PATH": env["PATH"], "HOME": str(tmp_path)},
                             cwd=ROOT)
    assert missing.returncode != 0 and "OBSERVATORY_READ_TOKEN" in missing.stderr
