"""A real collector process with platform and team-scoped tokens, shared by the attack tests of this package, and
the checks every attack is held to: no 5xx, bounded memory, no planted secret anywhere it could land."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import Collector, create_token

# Credentials planted by the attacks. None may reach the DuckDB file, its WAL, the logs, /metrics, the dead
# letters or any response (the redactor replaces them, or the event carrying them in an identifier is refused).
PLANTED = {
    "aws": "AKIAQ3EGT5PLANTED7XZ",
    "github": "ghp_Pl4nt3dT0k3nXq8Lw3Rt6Yu1Io4Pa7Sd0Fg2",
    "url_password": "Pl4nt3d-Pa55word-Xy9",
    "slack": "xoxb-918273645012-1234567890123-PlAnTeDsLaCkToKeNxYz",
    "pem_body": "MIIEowIBAAKCAQEAplantedPEMbody0123456789abcdefABCDEF",
}


@dataclass
class Server:
    col: Collector
    tokens: dict[str, str] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.col.url

    def h(self, who: str | None, **extra: str) -> dict[str, str]:
        return {**({"Authorization": f"Bearer {self.tokens[who]}"} if who else {}), **extra}

    def request(self, method: str, path: str, who: str | None = "platform", *, timeout: float = 60,
                **kw) -> httpx.Response:
        """Every answer is kept (the secret scan reads them all) and must not be a 5xx."""
        headers = {**self.h(who), **kw.pop("headers", {})}
        r = httpx.request(method, self.url + path, headers=headers, timeout=timeout, **kw)
        self.responses.append(f"{r.status_code} {dict(r.headers)} {r.text}")  # what came back, not what was sent
        assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r

    def peak_rss(self) -> int:
        """The server process's peak resident set size (VmHWM), bytes."""
        status = Path(f"/proc/{self.col.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) * 1024

    def rss(self) -> int:
        status = Path(f"/proc/{self.col.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Server:
    tmp = tmp_path_factory.mktemp("security")
    tokens_file = tmp / "tokens.yaml"
    tokens = {
        "platform": create_token(tokens_file, "platform", "ingest,read,admin"),
        "ingest": create_token(tokens_file, "ingester", "ingest"),
        "read": create_token(tokens_file, "reader", "read"),
        "a_ingest": create_token(tokens_file, "team-a-ingest", "ingest", team="team-a"),
        "a_read": create_token(tokens_file, "team-a-read", "read", team="team-a"),
        "b_ingest": create_token(tokens_file, "team-b-ingest", "ingest", team="team-b"),
        "b_read": create_token(tokens_file, "team-b-read", "read", team="team-b"),
        "a_admin": create_token(tokens_file, "team-a-admin", "admin", team="team-a"),
    }
    # Small byte caps so the memory attacks are quick; the defaults are 16 MiB / 64 MiB (docs/security.md).
    col = Collector(tmp / "security.duckdb", tokens_file=tokens_file, env={
        "OBSERVATORY_MAX_BODY_BYTES": str(2 * 1024 * 1024), "OBSERVATORY_MAX_INFLATED_BYTES": str(8 * 1024 * 1024),
        "OBSERVATORY_GAUGE_REFRESH_SECONDS": "1", "OBSERVATORY_GAUGE_MIN_GAP_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1", **{k: v for k, v in os.environ.items() if k == "PATH"}})
    col.start()
    srv = Server(col, tokens)
    try:
        yield srv
    finally:
        col.stop()
