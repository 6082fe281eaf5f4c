from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.api.auth import TokenEntry, TokenStore
from collector.settings import Settings

TOKENS = {
    "ingest": "ingest-token-0123456789abcdef",
    "read": "read-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
    "team_read": "team-read-token-0123456789ab",
    "team_admin": "team-admin-token-0123456789a",
}


def token_store() -> TokenStore:
    return TokenStore([
        TokenEntry(name="ingester", token=TOKENS["ingest"], scopes=["ingest"]),
        TokenEntry(name="reader", token=TOKENS["read"], scopes=["read"]),
        TokenEntry(name="admin", token=TOKENS["admin"], scopes=["admin"]),
        TokenEntry(name="finance-reader", token=TOKENS["team_read"], scopes=["read"], team="finance"),
        TokenEntry(name="finance-admin", token=TOKENS["team_admin"], scopes=["admin"], team="finance"),
    ])


def auth(kind: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[kind]}"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "observatory.duckdb"


@pytest.fixture
def make_client(db_path: Path):
    """Build an in-process app (real Store, writer thread, DuckDB file); auth on with the test tokens."""
    clients = []

    def _make(**settings_kw) -> TestClient:
        settings = Settings(db=db_path, gauge_refresh_seconds=3600, **settings_kw)
        tokens = token_store()
        tokens.enabled = settings.auth
        c = TestClient(create_app(settings, tokens=tokens))
        c.__enter__()
        clients.append(c)
        return c

    yield _make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


# Under pytest-xdist (`make test`, two workers) the unit of distribution is a test module, so that a module's
# fixtures start their servers once and its tests keep their order. These areas go to one worker whole: the
# engines (one Spark session, a JVM, for the whole suite) and the security package (its tests attack one shared
# collector, and the last one checks every answer the others received).
_WHOLE_AREAS = ("tests/engines/", "tests/security/")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((area for area in _WHOLE_AREAS if path.startswith(area)), path)

    return ByModule(config, log)


@pytest.fixture(scope="session")
def spark_session():
    """One Spark session (PySpark, local[2]) for the whole test session: the engines' tests share it."""
    pytest.importorskip("pyspark", reason="make install-test installs PySpark")
    from collector.engines.spark import session

    s = session(master="local[2]")
    yield s
    s.stop()
