"""Raw HTTP/1.1 on a socket, for attacks httpx cannot express: a declared length that is never sent, a chunked
body streamed until the server answers, counting the bytes the server let through."""

from __future__ import annotations

import select
import socket


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def declared_only(port: int, path: str, length: int, headers: dict[str, str]) -> int:
    """Send only the headers of a POST declaring `length` bytes; the status the server answers without the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{head}\r\n".encode())
        return _status(s.recv(65536))


def stream_until_answer(port: int, path: str, headers: dict[str, str], limit: int,
                        chunk: int = 64 * 1024) -> tuple[int | None, int]:
    """POST a chunked body of up to `limit` bytes, stopping as soon as the server answers; (status, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
        piece = f"{chunk:x}\r\n".encode() + b"[" * chunk + b"\r\n"
        while sent < limit:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                return _status(s.recv(65536)), sent
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        try:
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        s.settimeout(30)
        try:
            data = s.recv(65536)
        except OSError:
            return None, sent
        return (_status(data) if data else None), sent
