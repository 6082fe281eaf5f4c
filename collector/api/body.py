"""Reading a request body under a byte cap: the one way every POST route reads its body.

Routes never declare a body parameter (FastAPI would read and parse the whole body before the token dependency
runs); they depend on `require_scope` first and then call `read_capped_body`, which streams the body and stops
with 413 as soon as the declared or received size passes the limit, so an unauthenticated or oversized request
costs at most `limit` bytes of memory.
"""

from __future__ import annotations

from fastapi import Request

from collector.contract.body import BodyError


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
