"""Reading a request body under a byte cap: the one way every POST route reads its body.

Routes never declare a body parameter (FastAPI would read and parse the whole body before the token dependency
runs); they depend on `require_scope` first and then call `read_capped_body`, which streams the body and stops
with 413 as soon as the declared or received size passes the limit, so an unauthenticated or oversized request
costs at most `limit` bytes of memory. A JSON body is then parsed (`parse_json`: 400) and validated against its
model (`validated`: 422 per failing field, never echoing the input).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from collector.api.errors import ValidationFailed
from collector.contract.body import BodyError

M = TypeVar("M", bound=BaseModel)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The body as sent, refused with 413 as soon as it (or its declared length) passes `limit`."""
    declared = (request.headers.get("content-length") or "").strip()
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            raise BodyError("Content-Length is not a decimal number")
        if int(declared) > limit:
            raise BodyError(f"body of {declared} bytes exceeds the limit of {limit}", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(f"body exceeds the limit of {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON, or 400 saying where it stops being JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None


def validated(model: type[M], doc: Any) -> M:
    """`doc` as `model`, or 422 with one entry per failing field (the input never echoed)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ValidationFailed(exc.errors(include_url=False, include_input=False), prefix=("body",)) from None
