"""Drive the system's headless Chromium for tests, with nothing but the standard library.

Chromium speaks the DevTools protocol over two pipes when started with
``--remote-debugging-pipe`` (it reads commands on fd 3 and writes replies on fd 4, messages
separated by NUL). That avoids a WebSocket client, Selenium/chromedriver version matching and
any browser download: the Debian ``chromium`` package is all it needs. A page stays open
across the test, so "recovers without a reload" can be checked on one live page.

Pages also take real input: ``click(x, y)`` / ``click_element`` / ``click_at`` dispatch trusted
mouse events (pointerdown/mousedown/click, as a person's pointer would), ``type_text`` and
``clear`` go through the keyboard/IME path (trusted ``input`` events), and ``console_errors``
reports what the browser console shows as errors (console.error, uncaught exceptions, failed
loads) since the last ``clear_console``.
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
        self._console_mark = 0

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 15.0) -> dict[str, Any]:
        return self.browser.call(method, params, session_id=self.session_id, timeout_s=timeout_s)

    def setup(self) -> None:
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")
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

    def screenshot(self, path: str | Path | None = None, *, full_page: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.call("Page.captureScreenshot", params, 30)["data"])
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

    # -- events ----------------------------------------------------------------------------------
    def _events(self, since: int = 0) -> list[dict[str, Any]]:
        return [ev for ev in self.browser.events[since:] if ev.get("sessionId") == self.session_id]

    def event_mark(self) -> int:
        """A position in the event stream, for ``wait_for_event(..., since=mark)``."""
        return len(self.browser.events)

    def wait_for_event(self, method: str, *, since: int, timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for ev in self._events(since):
                if ev.get("method") == method:
                    return ev
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {method}")

    def wait_for_load(self, *, since: int, timeout_s: float = 15.0) -> None:
        """After an action that navigates (a form submit, a link): wait for the new document's load."""
        self.wait_for_event("Page.loadEventFired", since=since, timeout_s=timeout_s)
        self.wait_for("document.readyState === 'complete'", timeout_s=timeout_s)

    def clear_console(self) -> None:
        """Forget console errors so far: ``console_errors`` only reports later ones."""
        self._console_mark = self.event_mark()

    def console_errors(self) -> list[str]:
        """Errors the browser console shows since ``clear_console``: console.error/assert calls,
        uncaught exceptions and browser log errors (failed resource loads, CSP, ...)."""
        out = []
        for ev in self._events(self._console_mark):
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                out.append(f"console.{params['type']}: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in args))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip())
        return out

    # -- real input ----------------------------------------------------------------------------
    def click(self, x_px: float, y_px: float) -> None:
        """A real left click at viewport coordinates (CSS px): move, press, release."""
        base = {"x": x_px, "y": y_px, "modifiers": 0}
        self.call("Input.dispatchMouseEvent", {**base, "type": "mouseMoved", "button": "none"})
        self.call("Input.dispatchMouseEvent", {**base, "type": "mousePressed", "button": "left", "buttons": 1,
                                               "clickCount": 1})
        self.call("Input.dispatchMouseEvent", {**base, "type": "mouseReleased", "button": "left", "buttons": 0,
                                               "clickCount": 1})

    def rect(self, css: str) -> dict[str, float]:
        """The element's box in viewport coordinates, scrolled into view first."""
        value = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(css)}); if (!e) return null;"
            " e.scrollIntoView({block: 'nearest', inline: 'nearest'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left, y: r.top, width: r.width, height: r.height}; })()"
        )
        if not value:
            raise AssertionError(f"no element {css!r} on the page")
        return dict(value)

    def click_at(self, css: str, x_px: float, y_px: float) -> None:
        """A real click at (x, y) CSS px from the element's top-left corner; the point must hit it."""
        r = self.rect(css)
        if not (0 <= x_px < r["width"] and 0 <= y_px < r["height"]):
            raise AssertionError(f"({x_px}, {y_px}) is outside {css!r} ({r['width']} x {r['height']})")
        x, y = r["x"] + x_px, r["y"] + y_px
        hit = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(css)});"
            f" const h = document.elementFromPoint({x}, {y}); return !!h && (h === e || e.contains(h)); }})()"
        )
        if not hit:
            raise AssertionError(f"a click at ({x}, {y}) would not reach {css!r}: another element covers it")
        self.click(x, y)

    def click_element(self, css: str) -> None:
        """A real click in the middle of the element (as WebDriver's element click)."""
        r = self.rect(css)
        self.click_at(css, r["width"] / 2, r["height"] / 2)

    def _key(self, key: str, code: str, key_code: int) -> None:
        base = {"key": key, "code": code, "windowsVirtualKeyCode": key_code, "nativeVirtualKeyCode": key_code}
        self.call("Input.dispatchKeyEvent", {**base, "type": "rawKeyDown"})
        self.call("Input.dispatchKeyEvent", {**base, "type": "keyUp"})

    def _focus_end(self, css: str) -> None:
        """Focus the element with a real click and put the caret after its text."""
        self.click_element(css)
        self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(css)});"
            " try { e.setSelectionRange(e.value.length, e.value.length); } catch (err) {} })()"
        )

    def type_text(self, css: str, text: str) -> None:
        """Click into a field and type ``text`` at its end (trusted beforeinput/input events)."""
        self._focus_end(css)
        self.call("Input.insertText", {"text": text})

    def clear(self, css: str) -> None:
        """Click into a field, select its text and delete it with Backspace."""
        self.click_element(css)
        self.evaluate(f"document.querySelector({json.dumps(css)}).select()")
        self._key("Backspace", "Backspace", 8)
        value = self.evaluate(f"document.querySelector({json.dumps(css)}).value")
        if value != "":
            raise AssertionError(f"{css!r} still holds {value!r} after clearing it")

    def select_option(self, css: str, value: str) -> None:
        """Choose an option of a <select> from the keyboard (focus it, type the option's text),
        as a person does; fires a trusted change event. The option must end up selected."""
        text = self.evaluate(
            f"(() => {{ const s = document.querySelector({json.dumps(css)}); if (!s) return null;"
            f" const o = Array.from(s.options).find(o => o.value === {json.dumps(value)});"
            " if (!o) return null; s.focus(); return o.text; })()"
        )
        if text is None:
            raise AssertionError(f"no option {value!r} in {css!r}")
        for ch in str(text):
            self.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": ch, "key": ch, "unmodifiedText": ch})
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})
        chosen = self.evaluate(f"document.querySelector({json.dumps(css)}).value")
        if chosen != value:
            raise AssertionError(f"typing {text!r} into {css!r} selected {chosen!r}, not {value!r}")

    def close(self) -> None:
        with contextlib.suppress(CdpError):
            self.browser.call("Target.closeTarget", {"targetId": self.target_id})
