"""A loopback Standard Webhooks receiver, for tests, benchmarks and drills: it verifies each
request's signature and timestamp, deduplicates by ``webhook-id`` the way a careful receiver
does, records what it accepted, and can be told to misbehave.

Per request, in this order:

1. an injected fault, if one is queued: :meth:`WebhookReceiver.fail_next` answers a status
   (429/503 with ``Retry-After`` when asked) and records nothing; :meth:`WebhookReceiver.drop_next`
   reads the request and closes the connection without an answer; :meth:`WebhookReceiver.hang_next`
   waits that long before going on (a client with a shorter timeout gives up, yet the delivery is
   then recorded: the case a resend must not duplicate);
2. the signature and timestamp (:func:`~leakwatch.notify.webhook_verify.verify`): ``401`` and an
   entry in :attr:`WebhookReceiver.rejected` when they do not verify;
3. deduplication: a ``webhook-id`` seen before is answered ``200`` with the first delivery's id
   and ``"duplicate": true``, and counted in :attr:`WebhookReceiver.duplicates`;
4. a new one is recorded in :attr:`WebhookReceiver.deliveries` *first*, then held
   ``hold_s`` seconds, then answered ``200 {"id": …}``: a client killed during the hold has
   delivered without knowing it.

Example::

    with WebhookReceiver(secret) as rx:
        rx.fail_next(429, retry_after=2)
        ...  # point a webhook target at rx.url
        rx.wait_for(10, timeout=5)
        assert len(rx.ids()) == 10 and not rx.duplicates

Run on its own: ``python -m leakwatch.notify.receiver --secret-env VAR [--port N]`` prints the
URL and one line per request (ids only, never bodies).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from leakwatch.notify.webhook_verify import TOLERANCE_S, WebhookVerifyError, decode_secret, verify
from leakwatch.serving import BackgroundHTTPServer


@dataclass
class Delivery:
    """One accepted (verified, first-seen) webhook."""

    webhook_id: str
    delivery_id: str
    timestamp: int
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _Fault:
    kind: str                  # "status" | "drop" | "hang"
    times: int
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    body: bytes | None = None


@dataclass
class _State:
    deliveries: list[Delivery] = field(default_factory=list)
    by_id: dict[str, Delivery] = field(default_factory=dict)
    duplicates: Counter = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0
    faults: list[_Fault] = field(default_factory=list)
    answered: Counter = field(default_factory=Counter)   # status → count (faults included)
    log: list[tuple[str, str]] = field(default_factory=list)  # (webhook-id, webhook-timestamp) of every request


class WebhookReceiver(BackgroundHTTPServer):
    """The receiver; a context manager serving on ``127.0.0.1`` in background threads.

    ``secret``: the ``whsec_`` secret to verify with (None: accept unsigned requests, for
    targets that do not sign). ``hold_s``: how long each new delivery is held before it is
    answered. ``clock``: the receiver's clock for the timestamp check (tests skew it).
    ``status``: the answer to a verified new delivery (default 200)."""

    def __init__(self, secret: str | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 tolerance: float = TOLERANCE_S, hold_s: float = 0.0, clock: Callable[[], float] = time.time,
                 status: int = 200) -> None:
        self.secret = secret
        self._key = decode_secret(secret) if secret else None
        self.tolerance = tolerance
        self.hold_s = hold_s
        self.clock = clock
        self.status = status
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle (BackgroundHTTPServer) ------------------------------------------------------------

    owner_attr = "receiver"
    thread_name = "webhook-receiver"

    @property
    def handler(self) -> type:
        return _Handler

    def _configure(self, server) -> None:
        server.request_queue_size = 128

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/hook``."""
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return f"http://{self._host}:{self._server.server_address[1]}/hook"

    # -- faults ------------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, *, retry_after: float | str | None = None,
                  body: bytes | str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``; ``body``
        instead of the default JSON error), recording nothing."""
        with self._lock:
            self._state.faults.append(_Fault("status", times, status=status,
                                             retry_after=None if retry_after is None else str(retry_after),
                                             body=body.encode() if isinstance(body, str) else body))

    def drop_next(self, times: int = 1) -> None:
        """Read the next ``times`` requests and close their connections without answering."""
        with self._lock:
            self._state.faults.append(_Fault("drop", times))

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before handling the next ``times`` requests (then handle them normally)."""
        with self._lock:
            self._state.faults.append(_Fault("hang", times, seconds=seconds))

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            for f in self._state.faults:
                if f.times > 0:
                    f.times -= 1
                    return f
        return None

    # -- what happened ---------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Accepted deliveries, first-seen order (a copy)."""
        with self._lock:
            return list(self._state.deliveries)

    @property
    def duplicates(self) -> Counter:
        """``webhook-id`` → resends of it that were absorbed (a copy)."""
        with self._lock:
            return Counter(self._state.duplicates)

    @property
    def rejected(self) -> list[tuple[str, str]]:
        """(``webhook-id`` or "", reason) of requests that did not verify (a copy)."""
        with self._lock:
            return list(self._state.rejected)

    @property
    def log(self) -> list[tuple[str, str]]:
        """(``webhook-id``, ``webhook-timestamp``) of every request, faults included (a copy)."""
        with self._lock:
            return list(self._state.log)

    @property
    def request_count(self) -> int:
        """Every request that reached the handler, faults included."""
        with self._lock:
            return self._state.requests

    @property
    def answered(self) -> Counter:
        """HTTP status → how many answers (dropped connections are not answers)."""
        with self._lock:
            return Counter(self._state.answered)

    def ids(self) -> list[str]:
        """``webhook-id`` of each accepted delivery, in order."""
        with self._lock:
            return [d.webhook_id for d in self._state.deliveries]

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` deliveries are recorded; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._state.deliveries) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` requests arrived (whatever became of them); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._state.requests < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- handling ----------------------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        """(status, headers, body) to answer, or None to drop the connection."""
        low = {k.lower(): v for k, v in headers.items()}
        msg_id = low.get("webhook-id", "")
        with self._cond:
            self._state.requests += 1
            self._state.log.append((msg_id, low.get("webhook-timestamp", "")))
            self._cond.notify_all()
        fault = self._take_fault()
        if fault is not None:
            if fault.kind == "drop":
                return None
            if fault.kind == "status":
                extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                payload = fault.body if fault.body is not None else json.dumps({"error": f"injected {fault.status}"}).encode()
                return fault.status, extra, payload
            time.sleep(fault.seconds)  # hang, then carry on as usual
        if self._key is not None:
            try:
                verify(self._key, low, body, now=self.clock(), tolerance=self.tolerance)
            except WebhookVerifyError as e:
                with self._lock:
                    self._state.rejected.append((msg_id, str(e)))
                return 401, {}, json.dumps({"error": str(e)}).encode()
        with self._cond:
            first = self._state.by_id.get(msg_id) if msg_id else None
            if first is not None:
                self._state.duplicates[msg_id] += 1
                return 200, {}, json.dumps({"id": first.delivery_id, "duplicate": True}).encode()
            try:
                ts = int(low.get("webhook-timestamp", "0"))
            except ValueError:
                ts = 0
            d = Delivery(webhook_id=msg_id, delivery_id=uuid.uuid4().hex, timestamp=ts, path=path, headers=dict(headers),
                         body=body, received_at=time.time())
            self._state.deliveries.append(d)
            if msg_id:
                self._state.by_id[msg_id] = d
            self._cond.notify_all()
        if self.hold_s:
            time.sleep(self.hold_s)
        return self.status, {}, json.dumps({"id": d.delivery_id}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a dispatcher reuses its connections
    server_version = "leakwatch-receiver/1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; with Nagle's algorithm and the client's
        # delayed ACK every answer would wait ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        rx: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        answer = rx._handle(self.path, dict(self.headers.items()), body)
        if answer is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, payload = answer
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
            with rx._lock:
                rx._state.answered[status] += 1
        except OSError:
            self.close_connection = True  # the client went away (timed out, was killed)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            super().handle()


def main(argv: list[str] | None = None) -> int:
    """``python -m leakwatch.notify.receiver``: serve until interrupted."""
    ap = argparse.ArgumentParser(prog="python -m leakwatch.notify.receiver",
                                 description="A loopback Standard Webhooks receiver that verifies and deduplicates.")
    ap.add_argument("--secret-env", metavar="VAR", help="environment variable holding the whsec_ secret (none: no check)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hold", type=float, default=0.0, metavar="S", help="hold each new delivery S seconds")
    args = ap.parse_args(argv)
    secret = os.environ.get(args.secret_env) if args.secret_env else None
    if args.secret_env and not secret:
        print(f"{args.secret_env} is not set", file=sys.stderr)
        return 2
    with WebhookReceiver(secret, port=args.port, hold_s=args.hold) as rx:
        print(rx.url, flush=True)
        seen = 0
        try:
            while True:
                time.sleep(0.2)
                ids = rx.ids()
                for i in ids[seen:]:
                    print(f"delivered {i}", flush=True)
                seen = len(ids)
        except KeyboardInterrupt:
            pass
        print(f"{len(rx.ids())} delivered, {sum(rx.duplicates.values())} duplicates absorbed, "
              f"{len(rx.rejected)} rejected", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
