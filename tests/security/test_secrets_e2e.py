"""Planted credentials never reach the DuckDB file, the logs or /metrics, and each event carrying one counts as
a secret exposure incident."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from tests.support import Collector, create_token, event, metric_sum, parse_metrics

pytestmark = pytest.mark.integration

SECRETS = {
    "aws": "AKIAZ7Q2XK4LMN3PQR5T",
    "url_password": "Pg-pa55word-Xy9",
    "github": "ghp_Zq8Lw3Rt6Yu1Io4Pa7Sd0Fg2Hj5Kl9Zx3Cv6",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IiLCJpYXQiOjE3MDAwMDAwMDB9.Qm9iIGlzIG5vdCBhIHJlYWwgc2lnbmF0dXJl",
    "assignment": "Tr0ub4dor&3horse",
    "slack": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
}


def planted() -> list[dict]:
    s = SECRETS
    return [
        event("s1", "notebook.run.failed", {
            "run_id": "r1", "notebook_id": "nb-etl", "team": "data",
            "error_type": "ClientError", "error_message": f"S3 denied for key {s['aws']}",
            "traceback": f"Traceback:\n  File x.py\n    conn = connect('postgresql://etl:{s['url_password']}@db:5432/wh')\n",
            "parameters": {"gh": s["github"], "note": f"password={s['assignment']}"}}),
        event("s2", "notebook.kernel.died", {"kernel_id": "k1", "team": "ml", "reason": "crash",
                                             "msg": f"Authorization: Bearer {s['jwt']}"}),
        event("s3", "notebook.quality.checked", {"notebook_id": "nb", "team": "ml", "check": "c", "result": "fail",
                                                 "message": f"slack said {s['slack']}"},
              subject=f"run with {s['aws']}"),
        # a secret in a field stored as a typed column of `events` too (storage.schema.STORED_FIELDS)
        event("s5", "notebook.artifact.published", {"notebook_id": "nb-etl", "team": "data",
                                                    "artifact": f"s3://wh/out.parquet?X-Amz-Credential={s['aws']}"}),
        # an invalid event carrying a secret: dead-lettered, redacted there too
        event("s4", "notebook.run.failed", {"notebook_id": "nb", "error_message": f"key {s['aws']}"}),
    ]


def scan_text_columns(db, needles: list[str]) -> list[tuple[str, str]]:
    """Every text-like column of every table, searched with SQL (the file itself compresses strings, so its raw
    bytes alone prove nothing)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    hits = []
    try:
        cols = con.execute("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE data_type IN ('VARCHAR', 'JSON') OR data_type LIKE '%[]'").fetchall()
        for table, column in cols:
            for needle in needles:
                n = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                                [f"%{needle}%"]).fetchall()[0][0]
                if n:
                    hits.append((table, column))
        assert len(cols) > 20  # the scan saw the schema
    finally:
        con.close()
    return hits


def test_planted_secrets_reach_no_storage_log_or_metrics(tmp_path):
    db = tmp_path / "secrets.duckdb"
    tokens = tmp_path / "tokens.yaml"
    col = Collector(db, tokens_file=tokens)
    col.token = create_token(tokens, "t", "ingest,read,admin")
    col.start()
    try:
        r = httpx.post(col.url + "/v1/events", json=planted(), headers=col.headers)
        assert r.status_code == 200
        body = r.json()
        assert (body["accepted"], body["rejected"]) == (4, 1)
        # and once more as gzip NDJSON from another source
        nd = b"\n".join(orjson.dumps({**e, "source": "test://nd"}) for e in planted())
        r = httpx.post(col.url + "/v1/events", content=gzip.compress(nd), headers={
            **col.headers, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status_code == 200
        metrics_text = httpx.get(col.url + "/metrics", headers=col.headers).text
        dead = httpx.get(col.url + "/v1/dead-letters", headers=col.headers).text
        stored = orjson.loads(dead)["items"]
    finally:
        col.stop()
    assert "[REDACTED:aws_access_key]" in stored[0]["payload"]

    text_hits = scan_text_columns(db, list(SECRETS.values()))
    assert not text_hits, f"secrets stored in {text_hits}"
    raw = db.read_bytes() + (db.with_suffix(".duckdb.wal").read_bytes() if db.with_suffix(".duckdb.wal").exists()
                             else b"")
    logs = col.logs()
    for name, secret in SECRETS.items():
        assert secret.encode() not in raw, f"{name} secret found in the DuckDB file"
        assert secret not in logs, f"{name} secret found in the logs"
        assert secret not in metrics_text and secret not in dead
    assert '"path": "/v1/events"' in logs or '"path":"/v1/events"' in logs  # requests are logged, payloads not
    samples = parse_metrics(metrics_text)
    # four stored events carried secrets, twice (two sources)
    assert metric_sum(samples, "notebook_secret_exposures_total") == 8
    assert metric_sum(samples, "notebook_secret_exposures_total", team="data") == 4


def test_redacted_values_are_what_is_stored(client):
    from tests.conftest import auth

    client.post("/v1/events", json=planted()[:1], headers=auth("ingest"))
    with client.app.state.store.read_cursor() as cur:
        data, n = cur.execute("SELECT data, redactions FROM events").fetchall()[0]
        msg = cur.execute("SELECT error_message FROM run_attempts").fetchall()[0][0]
    d = orjson.loads(data)
    assert d["error_message"] == "S3 denied for key [REDACTED:aws_access_key]" == msg
    assert "[REDACTED:password_in_url]" in d["traceback"] and "postgresql://etl:" in d["traceback"]
    assert d["parameters"]["gh"] == "[REDACTED:github_token]"
    assert n == 4
