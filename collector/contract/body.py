"""Request bodies -> items: undo Content-Encoding under a size cap, split JSON / NDJSON.

Pure functions shared by every channel. A body that cannot be read as a whole raises `BodyError` with a `kind`
(`invalid`, `too_large`, `unsupported`); the web layer maps kinds to HTTP statuses (collector/api/errors.py).
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, Iterable, Literal

import msgspec
import orjson

from collector.contract.redaction import redact_text
from collector.contract.validation import Rejection

BodyErrorKind = Literal["invalid", "too_large", "unsupported"]


class BodyError(ValueError):
    """The request body as a whole cannot be read (not JSON, bad gzip, too large once inflated)."""

    def __init__(self, message: str, kind: BodyErrorKind = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, max_inflated: int) -> bytes:
    """Undo Content-Encoding, refusing bodies that inflate past `max_inflated` (gzip bombs) with 413.

    gzip: every member is read (RFC 1952 allows concatenated members, as `cat a.gz b.gz` makes); a truncated
    stream or bytes after the last member that are not another member are a 400, never a silent partial ingest.
    """
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(f"unsupported Content-Encoding {content_encoding[:64]!r}; use gzip or identity",
                        "unsupported")
    wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
    out: list[bytes] = []
    size, rest, member = 0, body, 0
    while True:
        d = zlib.decompressobj(wbits)
        try:
            chunk = d.decompress(rest, max_inflated - size + 1)
        except zlib.error as exc:
            where = f" (member {member + 1})" if member else ""
            raise BodyError(f"body is not valid {enc}{where}: {exc}") from None
        size += len(chunk)
        if size > max_inflated or d.unconsumed_tail:
            raise BodyError(f"decompressed body exceeds {max_inflated} bytes", "too_large")
        out.append(chunk)
        if not d.eof:
            raise BodyError(f"{enc} body is truncated (the stream ends before its end marker)")
        rest = d.unused_data
        member += 1
        if not rest:
            return b"".join(out)
        if enc == "deflate" or not rest.startswith(b"\x1f\x8b"):
            raise BodyError(f"{len(rest)} bytes of trailing data after the {enc} stream")


NDJSON_TYPES = frozenset(("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq"))


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters (JSON when absent)."""
    return (content_type or "application/json").split(";")[0].strip().lower()


def is_ndjson(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is read line by line (NDJSON and its aliases)."""
    return media_type(content_type) in NDJSON_TYPES


_JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json")
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])  # one C call, no Python hooks: shared by every thread


def _check_json_type(content_type: str | None) -> None:
    if media_type(content_type) not in _JSON_TYPES:
        raise BodyError(f"unsupported Content-Type {content_type!r}; use application/json or application/x-ndjson",
                        "unsupported")


def json_elements(body: bytes, content_type: str | None, max_items: int | None = None) -> list[bytes] | None:
    """A JSON document's items as texts, without parsing them: an array's elements (msgspec checks the array's
    syntax and skips over each element), an object as itself. None when msgspec refuses the document, it is
    neither, or it holds more than `max_items` items (the caller parses it whole with `split_items`, which words
    the error, and counts the items for the 413).

    Why: the validator's line path decodes and checks each text in one call (vectorized/structs.py), where a
    parsed dict takes the generated checks. The texts are the items `split_items` gives, in order: whitespace
    between them is all the array adds. What msgspec skips without reading (the UTF-8 of strings; their escapes
    it checks) the element's own parse reads; should it refuse an element, the caller parses the document whole,
    so the body is refused as one, as before. Nesting: msgspec refuses a document past Python's recursion limit
    (~1,000 levels), before orjson's (1,024), so a deep element still gets the whole document's 400."""
    _check_json_type(content_type)
    head = body[:256].lstrip(b" \t\r\n")[:1]  # JSON's whitespace; past 256 bytes of it, split_items
    if head == b"{":
        return [body]
    if head != b"[":
        return None
    try:
        raws = _ELEMENTS.decode(body)
    except Exception:  # noqa: BLE001 - a DecodeError, or a RecursionError past ~1,000 levels: orjson decides
        return None
    if max_items is not None and len(raws) > max_items:
        return None
    return [bytes(e) for e in raws]


def split_items(body: bytes, content_type: str | None) -> list[Any | Rejection]:
    """Parse JSON (object or array) or NDJSON into items; an unreadable NDJSON line becomes a Rejection alone."""
    ctype = media_type(content_type)
    if ctype in NDJSON_TYPES:
        items: list[Any | Rejection] = []
        for i, line in enumerate(_lines(body)):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                text = line.decode("utf-8", "replace")
                items.append(
                    Rejection(i, [{"path": "", "type": "json_invalid", "message": f"line {i + 1}: {exc}"}],
                              redact_text(text[:65_536])[0])
                )
        return items
    _check_json_type(content_type)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    return list(doc) if isinstance(doc, list) else [doc]


def _lines(body: bytes) -> Iterable[bytes]:
    for line in body.split(b"\n"):
        line = line.strip()
        if line:
            yield line


def gzip_bytes(data: bytes) -> bytes:
    """Helper for clients and tests."""
    return gzip.compress(data)
