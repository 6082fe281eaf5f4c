"""The `observatory` command line: serve's guard rails, tokens."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from collector.api.auth import digest
from collector.cli import app
from tests.support import OBSERVATORY, Collector, create_token, event


def test_no_auth_is_refused_on_a_non_loopback_address(tmp_path):
    r = subprocess.run([OBSERVATORY, "serve", "--host", "0.0.0.0", "--no-auth", "--db", str(tmp_path / "x.duckdb")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "only allowed when binding to a loopback address" in r.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_tokens_are_stored_as_digests_and_work(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tok = create_token(tokens, "ingester", "ingest")
    doc = yaml.safe_load(tokens.read_text())
    assert doc == {"tokens": [{"name": "ingester", "sha256": digest(tok), "scopes": ["ingest"]}]}
    assert tok not in tokens.read_text()
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"
    col = Collector(tmp_path / "o.duckdb", tokens_file=tokens, token=tok).start()
    try:
        ok = httpx.post(col.url + "/v1/events", json=event("1", "platform.probe", {"target": "ui", "ok": True}),
                        headers=col.headers)
        assert ok.status_code == 200
        assert httpx.get(col.url + "/metrics", headers=col.headers).status_code == 403  # ingest only
        assert httpx.post(col.url + "/v1/events", json={}).status_code == 401
    finally:
        col.stop()


def test_rotating_a_token_invalidates_the_old_one(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    old = create_token(tokens, "ci", "ingest")
    new = create_token(tokens, "ci", "ingest,read")
    doc = yaml.safe_load(tokens.read_text())
    assert [t["sha256"] for t in doc["tokens"]] == [digest(new)]
    assert old != new


def test_unknown_scope_is_an_error():
    r = CliRunner().invoke(app, ["tokens", "create", "--name", "x", "--scopes", "root", "--file", "/dev/null"])
    assert r.exit_code == 2 and "unknown scopes" in r.output


def test_token_store_rejects_bad_config():
    from collector.api.auth import TokenEntry

    with pytest.raises(ValueError, match="exactly one of"):
        TokenEntry(name="x", scopes=["read"])
    with pytest.raises(ValueError, match="unknown scopes"):
        TokenEntry(name="x", token="a" * 20, scopes=["write"])


def test_tokens_from_environment_are_hashed_and_scoped(tmp_path):
    import json

    env_tokens = json.dumps([{"name": "env-reader", "token": "env-read-token-abcdefgh", "scopes": ["read"]}])
    col = Collector(tmp_path / "o.duckdb", tokens_file=tmp_path / "none.yaml",
                    env={"OBSERVATORY_TOKENS": env_tokens}).start()
    try:
        h = {"Authorization": "Bearer env-read-token-abcdefgh"}
        assert httpx.get(col.url + "/metrics", headers=h).status_code == 200
        assert httpx.post(col.url + "/v1/events", json={}, headers=h).status_code == 403
    finally:
        col.stop()
    assert "env-read-token-abcdefgh" not in col.logs()
