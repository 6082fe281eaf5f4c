"""The CLI's way to ask a running collector (`--url`): one request with the bearer token, and errors a newcomer can act
on in one line (no token: say `--token` / `OBSERVATORY_TOKEN`; nothing listening: say so) instead of a traceback.

Used by `observatory sli --url`, `observatory report cost --url` and `observatory derive ... --url`; the collector's
answer is the same document the local path computes, because both call the same functions.
"""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(RuntimeError):
    """One line, for the CLIs to print as `error: ...`."""


def get(url: str, path: str, params: list[tuple[str, Any]] | dict[str, Any], token: str | None,
        timeout: float = 120.0) -> httpx.Response:
    return _request("GET", url, path, token, timeout, params=params)


def post(url: str, path: str, body: Any, token: str | None, timeout: float = 600.0) -> httpx.Response:
    """POST `body` as JSON (`observatory derive retry --url`)."""
    return _request("POST", url, path, token, timeout, json=body)


def _request(method: str, url: str, path: str, token: str | None, timeout: float, **kwargs: Any) -> httpx.Response:
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, base + path, headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as err:
        raise ClientError(f"cannot reach the collector at {base} ({type(err).__name__}: {err}); is it running? "
                          "(`make run` starts one)") from None
    if r.status_code == 401:
        hint = ("this collector needs a token: pass --token TOKEN or set OBSERVATORY_TOKEN (`make run` prints one; "
                "`observatory tokens create --name me --scopes read` makes one)") if not token else \
            "the token was refused: check --token / OBSERVATORY_TOKEN"
        raise ClientError(f"HTTP 401 from {base}: {hint}")
    if r.status_code >= 400:
        raise ClientError(f"HTTP {r.status_code} from {base}{path}: {_detail(r)}")
    return r


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors: say which parameter and why
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)
