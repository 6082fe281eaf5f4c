"""The API documentation works offline: /docs and /redoc load Swagger UI and ReDoc from the package (with their
licenses), GET / is an index, and a headless Chromium that cannot reach anything but loopback renders both."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import Collector

STATIC = Path(__file__).resolve().parents[2] / "collector" / "api" / "static"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian package chromium is required (apt-get install -y chromium)"  # fail, never skip
    return exe


def test_docs_pages_reference_only_the_package(client):
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200, page
        refs = re.findall(r"""(?:src|href)=["']([^"']+)""", r.text)
        assert refs and all(ref.startswith("/static/docs/") for ref in refs), refs
        assert "cdn." not in r.text and "fonts.googleapis" not in r.text
        for ref in refs:
            asset = client.get(ref)
            assert asset.status_code == 200 and asset.content == (STATIC / ref.removeprefix("/static/docs/")
                                                                  ).read_bytes()
    assert client.get("/openapi.json").json()["info"]["title"] == "Notebook Observatory collector"


@pytest.mark.parametrize("path", ["/static/docs/swagger-ui/nope.js", "/static/docs/../settings.py",
                                  "/static/docs/swagger-ui/..%2F..%2Fdocs.py", "/static/docs/x/LICENSE"])
def test_only_the_vendored_files_are_served(client, path):
    assert client.get(path).status_code == 404


def test_licenses_of_the_assets_are_served(client):
    text = client.get("/docs/licenses").text
    assert "Apache License" in text and "Version 2.0" in text  # Swagger UI
    assert "SmartBear" in text  # its NOTICE
    assert "The MIT License" in text and "Rebilly" in text  # ReDoc
    for directory in ("swagger-ui", "redoc"):
        assert (STATIC / directory / "LICENSE").read_text() in text


def test_root_is_an_index_that_leads_to_the_docs(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in r.text and 'href="/redoc"' in r.text and 'href="/docs/licenses"' in r.text
    assert "/docs" not in client.get("/openapi.json").json()["paths"]  # pages, not API operations


def _dump_dom(url: str, tmp: Path) -> str:
    # --proxy-server to a closed port: every host but loopback is unreachable, as on a machine offline
    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp}", "--virtual-time-budget=20000",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_chromium_renders_swagger_ui_and_redoc_offline(tmp_path):
    col = Collector(tmp_path / "o.duckdb").start()
    try:
        dom = _dump_dom(col.url + "/docs", tmp_path / "ud1")
        assert 'class="swagger-ui"' in dom
        # the operations were rendered from /openapi.json by the Swagger UI script
        paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
        assert {"/v1/events", "/v1/sli", "/v1/cost/variance", "/metrics"} <= paths
        redoc = _dump_dom(col.url + "/redoc", tmp_path / "ud2")
        assert "Notebook Observatory collector" in redoc and "/v1/cost/variance" in redoc
    finally:
        col.stop()
