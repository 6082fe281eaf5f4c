"""A bounded in-memory buffer drained by one background thread that POSTs batches with retry and backoff.

The Jupyter server must never wait for, or fail because of, the collector: `put` is O(1), never blocks and never
raises; when the buffer is full the *oldest* record is dropped (and counted) so that the newest state survives.
Network I/O happens only in the sender thread (stdlib urllib, no extra dependency inside the server).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

# Answers after which re-sending the same batch cannot succeed: drop it (and log) instead of retrying forever.
NON_RETRIABLE = frozenset({400, 401, 403, 404, 405, 413, 415, 422})


@dataclass
class SenderStats:
    enqueued: int = 0
    sent: int = 0          # records the collector answered 2xx for
    dropped_overflow: int = 0
    dropped_rejected: int = 0  # records in a batch answered with a non-retriable status
    failures: int = 0      # failed attempts (connection errors, 5xx, 429, timeouts)
    last_error: str | None = None


class BufferedSender:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        max_buffer: int = 10_000,
        batch_size: int = 200,
        linger: float = 0.2,
        timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        gzip_min_bytes: int = 4096,
        log: logging.Logger | None = None,
        post: Callable[[list[dict[str, Any]]], int] | None = None,
    ) -> None:
        if max_buffer < 1 or batch_size < 1:
            raise ValueError("max_buffer and batch_size must be positive")
        self.url = url
        self.token = token
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.linger = linger
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.gzip_min_bytes = gzip_min_bytes
        self.log = log or logging.getLogger("observatory.jupyter")
        self._post = post or self._http_post
        self._buf: deque[dict[str, Any]] = deque()
        self._inflight = 0
        self._cond = threading.Condition()
        self._stop = False
        self._stopping = threading.Event()
        self._wake = threading.Event()  # cuts a backoff short (flush, close)
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self.stats = SenderStats()

    # ---- producer side (called on the server's event loop) ---------------------------------------------------

    def put(self, record: dict[str, Any]) -> None:
        try:
            with self._cond:
                while len(self._buf) + self._inflight >= self.max_buffer and self._buf:
                    self._buf.popleft()
                    self.stats.dropped_overflow += 1
                if len(self._buf) + self._inflight >= self.max_buffer:
                    self.stats.dropped_overflow += 1  # everything held is in flight: drop the new one
                    return
                self._buf.append(record)
                self.stats.enqueued += 1
                self._cond.notify()
        except Exception:  # noqa: BLE001 - never propagate into the server
            self.log.debug("observatory: could not buffer an event", exc_info=True)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._buf) + self._inflight

    # ---- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="observatory-sender", daemon=True)
            self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until everything buffered was answered (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
            while self._buf or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._stopping.set()
            self._wake.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    # ---- the sender thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_initial
        while True:
            with self._cond:
                while not self._buf and not self._stop:
                    self._cond.wait()
                if self._stop and not self._buf:
                    return
            if self.linger > 0 and not self._stop:
                time.sleep(self.linger)  # let a burst (e.g. start + restart) share one request
            with self._cond:
                batch = [self._buf.popleft() for _ in range(min(self.batch_size, len(self._buf)))]
                self._inflight = len(batch)
            if not batch:
                continue
            outcome = self._attempt(batch)
            with self._cond:
                self._inflight = 0
                if outcome == "retry":
                    # Put the batch back in front, oldest first, within the bound.
                    room = self.max_buffer - len(self._buf)
                    keep = batch[len(batch) - room:] if room < len(batch) else batch
                    self.stats.dropped_overflow += len(batch) - len(keep)
                    self._buf.extendleft(reversed(keep))
                self._cond.notify_all()
            if outcome == "retry":
                if self._stopping.is_set():
                    return  # shutting down: what cannot be delivered now is given up (counted as pending)
                self._wake.wait(min(delay, self.backoff_max) * random.uniform(0.8, 1.2))
                self._wake.clear()
                delay = min(delay * 2, self.backoff_max)
            else:
                delay = self.backoff_initial

    def _attempt(self, batch: list[dict[str, Any]]) -> str:
        try:
            status = self._post(batch)
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, DNS …
            return self._failed(f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            self.stats.sent += len(batch)
            if self._down_since is not None:
                self.log.info("observatory: collector reachable again after %.1fs; %d events pending",
                              time.monotonic() - self._down_since, self.pending)
                self._down_since = None
            return "ok"
        if status in NON_RETRIABLE:
            self.stats.dropped_rejected += len(batch)
            self.stats.last_error = f"HTTP {status}"
            self.log.error("observatory: collector answered %s to %d events; dropping them (check the URL, "
                           "token and the collector's dead letters)", status, len(batch))
            return "dropped"
        return self._failed(f"HTTP {status}")

    def _failed(self, error: str) -> str:
        self.stats.failures += 1
        self.stats.last_error = error
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.log.warning("observatory: cannot deliver events to %s (%s); buffering up to %d and retrying "
                             "with backoff", self.url, error, self.max_buffer)
        return "retry"

    def _http_post(self, batch: list[dict[str, Any]]) -> int:
        body = json.dumps(batch, separators=(",", ":"), default=str).encode()
        # the answer is read only for its status: the minimal one lists just the events not accepted (RFC 7240)
        headers = {"Content-Type": "application/json", "User-Agent": "notebook-observatory-jupyter",
                   "Prefer": "return=minimal"}
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - configured URL
                resp.read()
                return resp.status
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code
