"""Bearer-token authentication with scopes.

Tokens are configured by file or environment and kept only as SHA-256 digests; a presented token is hashed and
compared with every configured digest in constant time, so neither the lookup nor the comparison leaks timing.
Scopes: `ingest` (post events), `read` (SLIs, costs, metrics), `admin` (dead letters; implies the other two).
A token may be limited to one team (`team:`), which read endpoints that are per team honour.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Iterable

import orjson
import yaml
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, model_validator

SCOPES = ("ingest", "read", "admin")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenEntry(BaseModel):
    name: str = Field(min_length=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    token: str | None = Field(None, min_length=16, description="plain token; hashed at load, never kept")
    scopes: list[str]
    team: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "TokenEntry":
        if (self.sha256 is None) == (self.token is None):
            raise ValueError(f"token {self.name!r}: give exactly one of `sha256` or `token`")
        bad = set(self.scopes) - set(SCOPES)
        if bad:
            raise ValueError(f"token {self.name!r}: unknown scopes {sorted(bad)}; use {list(SCOPES)}")
        if self.token is not None:
            self.sha256, self.token = digest(self.token), None
        return self


class Principal(BaseModel):
    name: str
    scopes: frozenset[str]
    team: str | None = None

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal(name="anonymous (auth disabled)", scopes=frozenset(SCOPES))


class TokenStore:
    def __init__(self, entries: Iterable[TokenEntry], enabled: bool = True) -> None:
        self.entries = list(entries)
        self.enabled = enabled

    @classmethod
    def load(cls, file: Path | None, env_json: str | None, enabled: bool = True) -> "TokenStore":
        entries: list[TokenEntry] = []
        if file is not None and file.exists():
            doc = yaml.safe_load(file.read_text()) or {}
            entries += [TokenEntry.model_validate(e) for e in doc.get("tokens", [])]
        if env_json:
            entries += [TokenEntry.model_validate(e) for e in orjson.loads(env_json)]
        return cls(entries, enabled)

    def verify(self, token: str) -> Principal | None:
        presented = digest(token).encode()
        found: TokenEntry | None = None
        for e in self.entries:  # no early exit: every digest is compared
            if hmac.compare_digest(presented, e.sha256.encode()) and found is None:
                found = e
        if found is None:
            return None
        return Principal(name=found.name, scopes=frozenset(found.scopes), team=found.team)


def new_token() -> str:
    return "obs_" + secrets.token_urlsafe(32)


def write_token(file: Path, name: str, scopes: list[str], team: str | None = None) -> str:
    """Create (or rotate) token `name` in `file`, storing only its digest; returns the plain token once."""
    token = new_token()
    doc = (yaml.safe_load(file.read_text()) if file.exists() else None) or {}
    tokens = [t for t in doc.get("tokens", []) if t.get("name") != name]
    tokens.append({"name": name, "sha256": digest(token), "scopes": scopes, **({"team": team} if team else {})})
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump({"tokens": tokens}, sort_keys=False))
    file.chmod(0o600)
    return token


_bearer = HTTPBearer(auto_error=False, description="Bearer token with the scope the endpoint names")


def require_scope(scope: str, unless_setting: str | None = None, *, platform: bool = False):
    """FastAPI dependency: the caller's Principal, or 401 (no/unknown token) / 403 (token lacks `scope`).

    `unless_setting` names a boolean setting that, when true, makes the endpoint public (e.g. /metrics).
    `platform`: the endpoint concerns every team (dead letters, the deriver's failures), so a token limited to one
    team is refused (403) whatever its scopes.
    """
    if scope not in SCOPES:
        raise ValueError(scope)

    async def dependency(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        store: TokenStore = request.app.state.tokens
        if not store.enabled or (unless_setting and getattr(request.app.state.settings, unless_setting)):
            return ANONYMOUS
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        principal = store.verify(creds.credentials)
        if principal is None:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not principal.has(scope):
            raise HTTPException(403, f"token {principal.name!r} lacks the {scope!r} scope",
                                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
        if platform and principal.team is not None:
            raise HTTPException(403, f"token {principal.name!r} is limited to team {principal.team!r}; this endpoint "
                                     "concerns every team and needs a platform token")
        request.state.principal = principal
        return principal

    return dependency
