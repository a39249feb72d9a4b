"""An HTTP server on a background thread: the lifecycle shared by the loopback servers that
tests and drills talk to (``notify.sim``, ``notify.receiver``, ``salesforce.sim``).

A subclass names its request handler and where handlers find it (``server.<owner_attr>``),
sets ``_host`` / ``_port`` in its ``__init__`` and may adjust the server before it serves
(``_configure``: TLS, queue size) and clean up after it stopped (``_stopped``)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundHTTPServer:
    handler: type[BaseHTTPRequestHandler]
    owner_attr = "sim"
    thread_name = "loopback-http"
    _host = "127.0.0.1"
    _port = 0
    _server: ThreadingHTTPServer | None = None

    def _configure(self, server: ThreadingHTTPServer) -> None:
        """Adjust the bound server before it serves (default: nothing)."""

    def _stopping(self) -> None:
        """Called first by :meth:`close` (default: nothing)."""

    def _stopped(self) -> None:
        """Called last by :meth:`close` (default: nothing)."""

    def start(self) -> Self:
        """Bind and serve in a background thread (the context manager calls this)."""
        server = ThreadingHTTPServer((self._host, self._port), self.handler)
        server.daemon_threads = True
        setattr(server, self.owner_attr, self)
        self._configure(server)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=self.thread_name, daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving (idempotent)."""
        self._stopping()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._stopped()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The TCP port served on."""
        if self._server is None:
            raise RuntimeError(f"the {type(self).__name__} is not running")
        return self._server.server_address[1]
