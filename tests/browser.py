"""Drive the system's headless Chromium for tests, with nothing but the standard library.

Chromium speaks the DevTools protocol over two pipes when started with
``--remote-debugging-pipe`` (it reads commands on fd 3 and writes replies on fd 4, messages
separated by NUL). That avoids a WebSocket client, Selenium/chromedriver version matching and
any browser download: the Debian ``chromium`` package is all it needs. A page stays open
across the test, so "recovers without a reload" can be checked on one live page.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("STORESENSE_CHROMIUM", "/usr/bin/chromium")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a test page is never "in the background": keep its timers and SSE running at full speed
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process with a fresh profile; close() removes both."""

    def __init__(self, *, chromium: str = CHROMIUM, width_px: int = 1920, height_px: int = 1080) -> None:
        if not Path(chromium).exists():
            raise FileNotFoundError(f"{chromium} not found: apt-get install -y chromium")
        self.width_px = width_px
        self.height_px = height_px
        self.profile_dir = tempfile.mkdtemp(prefix="storesense-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # move the child's ends above fd 9 so that bash can put them on 3 and 4 without clashes
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        script = f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.proc = subprocess.Popen(
            [
                "/bin/bash", "-c", script, chromium, *FLAGS,
                f"--user-data-dir={self.profile_dir}",
                f"--window-size={width_px},{height_px}",
                "about:blank",
            ],
            pass_fds=(child_r, child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self.events: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="cdp-reader", daemon=True)
        self._reader.start()
        self.call("Browser.getVersion", timeout_s=30)

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        waiter = self._pending.pop(msg["id"], None)
                    if waiter is not None:
                        waiter[1].append(msg)
                        waiter[0].set()
                else:
                    self.events.append(msg)
        with self._lock:
            for ev, _ in self._pending.values():
                ev.set()
            self._pending.clear()

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None,
        timeout_s: float = 15.0,
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        done = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._pending[msg_id] = (done, box)
        try:
            self._out.write(json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise CdpError(f"chromium is gone ({exc}); stderr: {self.stderr_tail()}") from None
        if not done.wait(timeout_s):
            raise CdpError(f"{method}: no answer from chromium within {timeout_s} s")
        if not box:
            raise CdpError(f"{method}: chromium closed the pipe; stderr: {self.stderr_tail()}")
        reply = box[0]
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read().decode("utf-8", "replace")[-2000:]

    def new_page(self, url: str = "about:blank") -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        page.setup()
        if url != "about:blank":
            page.navigate(url)
        return page

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout_s=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self._out, self._in):
            with contextlib.suppress(OSError):
                f.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab. ``evaluate`` runs JavaScript in it; ``wait_for`` polls until a condition holds."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 15.0) -> dict[str, Any]:
        return self.browser.call(method, params, session_id=self.session_id, timeout_s=timeout_s)

    def setup(self) -> None:
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.browser.width_px, "height": self.browser.height_px, "deviceScaleFactor": 1, "mobile": False},
        )

    def navigate(self, url: str, timeout_s: float = 15.0) -> None:
        reply = self.call("Page.navigate", {"url": url}, timeout_s)
        if reply.get("errorText"):
            raise CdpError(f"navigating to {url}: {reply['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout_s=timeout_s)

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise CdpError(f"JavaScript error in {expression!r}: {reply['exceptionDetails']}")
        return reply.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 10.0, interval_s: float = 0.1) -> Any:
        """Poll a JavaScript expression until it is truthy; on timeout say what the page shows."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval_s)
        text = self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out after {timeout_s} s waiting for {expression!r} (last: {value!r}); page:\n{text}")

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: str | Path | None = None) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, 30)["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def js_exceptions(self) -> list[str]:
        """Uncaught exceptions this page threw so far (Runtime.exceptionThrown events)."""
        out = []
        for ev in self.browser.events:
            if ev.get("method") == "Runtime.exceptionThrown" and ev.get("sessionId") == self.session_id:
                details = ev["params"]["exceptionDetails"]
                out.append(str(details.get("exception", {}).get("description") or details.get("text")))
        return out

    def close(self) -> None:
        with contextlib.suppress(CdpError):
            self.browser.call("Target.closeTarget", {"targetId": self.target_id})
