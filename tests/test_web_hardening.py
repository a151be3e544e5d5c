"""Issue 12 items 9-13: the display/setup web server against brute force, odd bodies,
slow-loris, cross-site requests and noisy disconnects. Real server, real sockets."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import load_config
from mqtt_bridge.broker import MosquittoProcess
from mqtt_bridge.display import DisplayRequestHandler, DisplayServer
from mqtt_bridge.setup_page import host_allowed, setup_routes
from tests.test_setup_page import PASSWORD, PW_ENV, request, write_store


@pytest.fixture
def server(tmp_path: Path, table_video: Path, mosquitto: MosquittoProcess,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[DisplayServer]:
    monkeypatch.setenv(PW_ENV, PASSWORD)
    cfg = load_config(write_store(tmp_path, table_video))
    srv = DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_host="127.0.0.1", mqtt_port=mosquitto.port,
                        extra_routes=setup_routes(cfg))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _addr(srv: DisplayServer) -> tuple[str, int]:
    assert srv._httpd is not None
    return "127.0.0.1", srv._httpd.server_address[1]


def _raw(srv: DisplayServer, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes, keep the socket open (no EOF), return whatever the server answers."""
    with socket.create_connection(_addr(srv), timeout=timeout_s) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_every_password_path_is_rate_limited(server: DisplayServer, caplog: pytest.LogCaptureFixture) -> None:
    # item 9: 300 Bearer/Basic guesses were all answered 401, and the right password still worked
    url = server.url + "setup/api/config"
    caplog.set_level(logging.WARNING, logger="storesense.setup")
    codes = [request(url, headers={"Authorization": f"Bearer guess{i}"})[0] for i in range(6)]
    basic_bad = base64.b64encode(b"installer:nope").decode()
    codes += [request(url, headers={"Authorization": f"Basic {basic_bad}"})[0] for _ in range(6)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    good = {"Authorization": "Bearer " + PASSWORD}
    assert request(url, headers=good)[0] == 429  # locked out: the right password does not help
    assert request(server.url + "setup/login", method="POST", body=f"password={PASSWORD}".encode())[0] == 429
    assert any("10 failed logins from 127.0.0.1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("length", "status"), [("-1", 400), ("abc", 400), ("-5", 400), ("1e9", 400),
                                                ("99999999999", 413), ("5000", 413)])
def test_bad_content_length_is_refused_without_reading(
    server: DisplayServer, capfd: pytest.CaptureFixture[str], length: str, status: int
) -> None:
    # item 10: -1 made the server read until the client closed (100 MB), abc/-5 printed tracebacks
    t0 = time.monotonic()
    answer = _raw(server, f"POST /setup/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n\r\npassword=x".encode())
    assert answer.startswith(f"HTTP/1.0 {status}".encode()) or answer.startswith(f"HTTP/1.1 {status}".encode()), answer[:80]
    assert time.monotonic() - t0 < 3.0  # answered at once, not after the client gave up
    assert "Traceback" not in capfd.readouterr().err


def test_slow_loris_is_cut_and_connections_are_capped(
    server: DisplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # item 11: 20 connections sending a header byte every 20 s stayed open for ever
    monkeypatch.setattr(DisplayRequestHandler, "request_deadline_s", 1.5)
    drips = [socket.create_connection(_addr(server), timeout=5) for _ in range(5)]
    t0 = time.monotonic()
    closed: set[int] = set()
    while time.monotonic() - t0 < 6.0 and len(closed) < len(drips):
        for i, s in enumerate(drips):
            if i in closed:
                continue
            try:
                s.sendall(b"G" if time.monotonic() - t0 < 0.1 else b"x")  # one byte, well within the idle timeout
                s.settimeout(0.05)
                if s.recv(1) == b"":
                    closed.add(i)
            except TimeoutError:
                pass
            except OSError:
                closed.add(i)
        time.sleep(0.3)
    assert len(closed) == len(drips) and time.monotonic() - t0 < 5.0, (closed, time.monotonic() - t0)
    for s in drips:
        s.close()
    # the connection cap: the one over it gets 503 and is closed
    assert server._httpd is not None
    monkeypatch.setattr(server._httpd, "max_connections", 3)
    monkeypatch.setattr(DisplayRequestHandler, "request_deadline_s", 30.0)
    holders = [socket.create_connection(_addr(server), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)
        assert _raw(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 503")
    finally:
        for s in holders:
            s.close()


def test_cross_site_login_and_foreign_host_are_refused(server: DisplayServer) -> None:
    # item 12: a cross-origin form login succeeded and a foreign Host was accepted
    url = server.url + "setup/login"
    body = f"password={PASSWORD}".encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = request(url, method="POST", body=body, headers={**form, "Origin": "http://evil.example"})
    assert status == 403 and "Set-Cookie" not in headers
    status, _, _ = request(url, method="POST", body=body, headers={**form, "Sec-Fetch-Site": "cross-site"})
    assert status == 403
    answer = _raw(server, b"GET /setup HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 421") or answer.startswith(b"HTTP/1.1 421"), answer[:60]
    conn = http.client.HTTPConnection(*_addr(server), timeout=5)
    conn.request("POST", "/setup/login", body=body, headers={**form, "Origin": server.url.rstrip("/")})
    resp = conn.getresponse()
    cookie = resp.getheader("Set-Cookie") or ""
    conn.close()
    assert resp.status == 303 and "SameSite=Strict" in cookie and "HttpOnly" in cookie  # same origin: logged in
    assert host_allowed("127.0.0.1:8080") and host_allowed("[::1]:80") and host_allowed("localhost:8080")
    assert not host_allowed("evil.example:8080") and not host_allowed("10.0.0.1.evil.example")


def test_early_disconnect_is_quiet_and_favicon_is_not_a_404(
    server: DisplayServer, capfd: pytest.CaptureFixture[str]
) -> None:
    # item 13: a client that went away printed a BrokenPipeError traceback; /favicon.ico was a 404
    assert request(server.url + "favicon.ico")[0] == 204
    for _ in range(20):
        s = socket.create_connection(_addr(server))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(b"GET /static/display.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        s.close()
    time.sleep(0.5)
    try:  # the server's own error hook, with a broken pipe in flight
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        assert server._httpd is not None
        server._httpd.handle_error(None, ("127.0.0.1", 1))
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err
