"""The display's HTTP server, hardened for a box on a shop's network.

The stdlib server is fine for a few screens, but alone it lets one client hold a thread for
ever (one header byte every 20 s resets its idle timeout), reads whatever ``Content-Length``
says (``-1`` means "until the client closes"), prints a traceback whenever a screen goes away
mid-write, and answers a favicon request with a 404 in the page console. This module bounds
each of those:

* a deadline on the *whole* request (line, headers, body), not only on idle time: a timer
  shuts the socket down when it passes; it is lifted once the response starts, so an event
  stream may last;
* a cap on concurrent connections: the one over the cap gets ``503`` and is closed;
* :meth:`HardenedRequestHandler.read_body`: ``Content-Length`` must be plain digits within the
  route's limit, or the answer is 400/413 without reading anything;
* clients that disconnect early are logged at DEBUG, never as a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("storesense.http")

REQUEST_DEADLINE_S = 20.0
MAX_CONNECTIONS = 128  # above the display's 64 event streams, so screens never starve the setup page
_QUIET = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class BodyError(Exception):
    """A request body that must not be read; ``status`` is 400 or 413 (or 411 for chunked)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HardenedHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active = 0
        self._active_lock = threading.Lock()
        self.connections_refused = 0

    @property
    def active_connections(self) -> int:
        return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
            else:
                self.connections_refused += 1
        if full:
            if self.connections_refused == 1 or self.connections_refused % 100 == 0:
                log.warning("http: %d connections open (the limit); refused one from %s (%d refused so far)",
                            self.max_connections, client_address[0], self.connections_refused)
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._active_lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # broken pipe, reset, timeout: the client went away
            log.debug("http: client %s went away: %s", client_address[0], exc)
            return
        log.exception("http: request from %s failed", client_address[0])


class HardenedRequestHandler(BaseHTTPRequestHandler):
    # idle time per socket operation; REQUEST_DEADLINE_S bounds the request as a whole
    timeout = 30
    request_deadline_s = REQUEST_DEADLINE_S
    _deadline: threading.Timer | None = None

    def handle_one_request(self) -> None:
        timer = threading.Timer(self.request_deadline_s, self._deadline_passed)
        timer.daemon = True
        self._deadline = timer
        timer.start()
        try:
            super().handle_one_request()
        except _QUIET as exc:
            log.debug("http: client %s went away: %s", self.client_address[0], exc)
            self.close_connection = True
        finally:
            timer.cancel()

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._deadline is not None:  # answering now: a long response (event stream) may last
            self._deadline.cancel()
        super().send_response(code, message)

    def _deadline_passed(self) -> None:
        log.info("http: closed the connection from %s: no complete request within %.0f s",
                 self.client_address[0], self.request_deadline_s)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def read_body(self, limit: int) -> bytes:
        """The request body, at most ``limit`` bytes; :class:`BodyError` before reading anything odd."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BodyError(411, "chunked bodies are not accepted; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None or raw.strip() == "":
            return b""
        value = raw.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 12:
            raise BodyError(400, "Content-Length must be a non-negative whole number")
        length = int(value)
        if length > limit:
            raise BodyError(413, f"request body too large (limit {limit} bytes)")
        return self.rfile.read(length)

    def refuse_body(self, exc: BodyError) -> None:
        """Answer 400/411/413 and close: the unread body must not be parsed as the next request."""
        self.close_connection = True
        data = f"{exc}\n".encode()
        self.send_response(exc.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("http %s %s %s", self.client_address[0], self.requestline[:200], code)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s " + format, self.client_address[0], *args)
