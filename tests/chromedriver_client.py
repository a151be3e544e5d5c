"""A minimal W3C WebDriver client for Debian's chromedriver + headless Chromium.

No selenium: a few HTTP calls (stdlib urllib) are enough to load a page, click, type, run a
script, read the browser console and take screenshots. Flags follow docs/architecture.md.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mqtt_bridge.broker import free_port, wait_for_port

CHROMIUM = "/usr/bin/chromium"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(RuntimeError):
    pass


class Chrome:
    """One chromedriver process and one browser session; use as a context manager."""

    def __init__(self, *, width_px: int = 1280, height_px: int = 900) -> None:
        driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="storesense-chromium-"))
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port, 20.0)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [*CHROME_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width_px},{height_px}"],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        value = self._call("POST", "/session", caps)
        self.session = value["sessionId"]

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout_s: float = 60.0) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                payload = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise WebDriverError(f"{method} {path}: {exc.code} {exc.read().decode()[:500]}") from None
        return payload.get("value")

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    # -- API -----------------------------------------------------------------------------------
    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def execute_async(self, script: str, *args: Any) -> Any:
        return self._call("POST", self._s("/execute/async"), {"script": script, "args": list(args)})

    def find(self, css: str) -> dict[str, str]:
        return dict(self._call("POST", self._s("/element"), {"using": "css selector", "value": css}))

    def find_all(self, css: str) -> list[dict[str, str]]:
        return list(self._call("POST", self._s("/elements"), {"using": "css selector", "value": css}))

    def wait_for(self, css: str, timeout_s: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find_all(css)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise WebDriverError(f"no element {css!r} after {timeout_s} s")
            time.sleep(0.1)

    def wait_until(self, script: str, timeout_s: float = 10.0) -> Any:
        """Poll a JS expression (``return ...``) until it is truthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.execute(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise WebDriverError(f"condition not met after {timeout_s} s: {script}")
            time.sleep(0.1)

    def click(self, element: dict[str, str]) -> None:
        self._call("POST", self._s(f"/element/{element[ELEMENT]}/click"))

    def send_keys(self, element: dict[str, str], text: str) -> None:
        self._call("POST", self._s(f"/element/{element[ELEMENT]}/value"), {"text": text})

    def clear(self, element: dict[str, str]) -> None:
        self._call("POST", self._s(f"/element/{element[ELEMENT]}/clear"))

    def text(self, element: dict[str, str]) -> str:
        return str(self._call("GET", self._s(f"/element/{element[ELEMENT]}/text")))

    def click_at(self, element: dict[str, str], x_px: float, y_px: float) -> None:
        """A real pointer click at (x, y) relative to the element's top-left corner."""
        rect = self._call("GET", self._s(f"/element/{element[ELEMENT]}/rect"))
        # W3C origin=element is relative to the element's centre
        dx = int(round(x_px - rect["width"] / 2))
        dy = int(round(y_px - rect["height"] / 2))
        actions = {
            "actions": [
                {
                    "type": "pointer",
                    "id": "mouse",
                    "parameters": {"pointerType": "mouse"},
                    "actions": [
                        {"type": "pointerMove", "duration": 0, "origin": element, "x": dx, "y": dy},
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerUp", "button": 0},
                    ],
                }
            ]
        }
        self._call("POST", self._s("/actions"), actions)
        self._call("DELETE", self._s("/actions"))

    def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (level, message)."""
        return list(self._call("POST", self._s("/se/log"), {"type": "browser"}) or [])

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("POST", self._s("/goog/cdp/execute"), {"cmd": cmd, "params": params or {}})

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        if full_page:
            shot = self.cdp("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
            data = shot["data"]
        else:
            data = self._call("GET", self._s("/screenshot"))
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out

    def quit(self) -> None:
        try:
            self._call("DELETE", self._s(""), timeout_s=20.0)
        except (WebDriverError, OSError):
            pass
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chrome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
