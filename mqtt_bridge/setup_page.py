"""``/setup`` in the display server: draw zones and click calibration points on a live snapshot.

An installer stands in the store with a laptop on the local network, sees what the camera
sees, draws zones, clicks floor marks and types their floor coordinates, checks the projected
1 m grid, and saves the store YAML. The file is validated with :func:`edge.config.parse_config`
(and the calibration fitted) *before* it replaces the old one, which is kept as ``.bak``.
The file is edited round-trip (ruamel.yaml): the installer's comments, key order, quoting and
``${VAR}`` references survive; only the saved camera's zones and calibration change.

Privacy and safety, because this page is the one place where camera images are served:

* disabled unless ``display.setup_password_env`` names an environment variable holding a
  password (never the password itself in the YAML);
* every request from an address that is not private/loopback/link-local is refused (403) before
  anything else happens; proxy headers are ignored on purpose;
* authentication: a session cookie from the login form (HttpOnly, SameSite=Strict, 8 h), or
  HTTP Basic / ``Authorization: Bearer <password>`` for scripts; without it every route answers
  401 and no snapshot is produced. Every password path (form, Basic, Bearer) shares one
  per-client budget of 10 failures a minute; past it the client gets 429 even with the right
  password, and the lockout is logged. Passwords are compared as SHA-256 digests in constant
  time (``compare_digest`` on unequal lengths would leak the length);
* the ``Host`` header must name this box (an IP literal, ``localhost`` or its host name): a
  foreign name is DNS rebinding. A state-changing request with an ``Origin`` (browsers always
  send one on POST) must come from the page's own origin: no cross-site login or save;
* snapshots are JPEGs with ``Cache-Control: no-store``, built on request from the camera (or the
  locally saved reference frame) and never handed to MQTT: this module has no MQTT client.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from edge.config import ConfigError, StoreConfig, parse_config
from edge.errors import UserFacingError
from edge.track_flow import read_track_flow
from mqtt_bridge.http_server import BodyError
from zones.overlaps import Overlap, ZoneShape, double_counting_overlaps

log = logging.getLogger("storesense.setup")

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"setup.js": "text/javascript; charset=utf-8", "setup.css": "text/css; charset=utf-8"}
COOKIE = "storesense_setup"
SESSION_S = 8 * 3600.0
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_LOGIN_BODY_BYTES = 4096
MAX_FAILURES_PER_WINDOW = 10
LOCKOUT_WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 1024
SNAPSHOT_TIMEOUT_S = 8.0
GRID_MAX_LINES = 80
SAVED_HEADER = "# Saved by the StoreSense /setup page; the previous version is in "
_CAMERA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def client_allowed(address: str) -> bool:
    """Loopback, RFC 1918/4193 private and link-local addresses only (the shop's own network)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    return bool(ip.is_loopback or ip.is_link_local or (ip.is_private and not ip.is_global))


def host_allowed(host_header: str, configured_host: str = "") -> bool:
    """The ``Host`` a browser sends for this box: an IP literal, localhost, or the box's own name.

    Any other name means the page was reached through someone else's DNS name (DNS rebinding),
    which would let a web page on the internet read snapshots from inside the shop.
    """
    value = host_header.strip().lower()
    if not value:  # HTTP/1.0 scripts; a browser (the rebinding vector) always sends Host
        return True
    if value.startswith("["):  # [v6]:port
        name = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # name:port or v4:port
        name = value.split(":", 1)[0]
    else:  # a bare name, v4 or v6 literal
        name = value
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    name = name.rstrip(".")
    own = {"localhost", configured_host.lower()}
    with contextlib.suppress(OSError):
        hostname = socket.gethostname().lower()
        own |= {hostname, f"{hostname}.local", socket.getfqdn().lower()}
    return name in own or name.endswith(".localhost")


def same_origin(headers: Any) -> bool:
    """A state-changing request is same-origin (or not from a browser at all)."""
    if headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return False
    origin = headers.get("Origin")
    if origin is None:
        return True  # scripts (curl, Basic auth) send none; browsers always do on POST
    parts = urlsplit(origin.strip())
    return bool(parts.netloc) and parts.netloc.lower() == headers.get("Host", "").strip().lower()


class SetupPage:
    """The ``/setup`` route handler; ``handler`` is a :class:`mqtt_bridge.display.DisplayRequestHandler`.

    ``config_path`` is the YAML file that is edited (defaults to the file the config came from).
    ``password`` overrides the environment variable (tests).
    """

    def __init__(
        self,
        cfg: StoreConfig,
        *,
        config_path: str | Path | None = None,
        password: str | None = None,
        frame_reader: Callable[[Any, Any], np.ndarray | None] | None = None,
    ) -> None:
        self.cfg = cfg
        path = config_path if config_path is not None else cfg.source_path
        self.config_path = Path(path) if path is not None else None
        env = cfg.display.setup_password_env
        self.password = password if password is not None else (os.environ.get(env) if env else None)
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()
        self._frame_reader = frame_reader or grab_frame
        self._failures: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.password) and self.config_path is not None

    # -- dispatch -------------------------------------------------------------------------------
    def __call__(self, handler: Any) -> None:
        client = str(handler.client_address[0])
        if not client_allowed(client):
            log.warning("setup: refused request from non-private address %s", client)
            handler.send_body(403, "setup is only available on the local network\n", "text/plain; charset=utf-8")
            return
        if not self.enabled:
            handler.send_body(
                404,
                "setup is disabled: set display.setup_password_env to the name of an environment variable "
                "holding the installer password, and start the display from a config file\n",
                "text/plain; charset=utf-8",
            )
            return
        url = urlsplit(handler.path)
        path = url.path.rstrip("/") or "/"
        method = handler.command
        refusal = self._refusal(handler, client, path, method)
        if refusal is not None:
            status, text = refusal
            handler.close_connection = True
            handler.send_body(status, text + "\n", "text/plain; charset=utf-8")
            return
        try:
            self._route(handler, client, path, method)
        except BodyError as exc:
            handler.refuse_body(exc)

    def _refusal(self, handler: Any, client: str, path: str, method: str) -> tuple[int, str] | None:
        """Why a request is refused before any route runs (foreign Host, cross-site, lockout)."""
        if not host_allowed(handler.headers.get("Host", ""), self.cfg.display.host):
            log.warning("setup: refused a request from %s for host %r (not this box)", client,
                        handler.headers.get("Host", "")[:80])
            return 421, "unexpected Host header: open the page by this box's address"
        if method not in ("GET", "HEAD") and not same_origin(handler.headers):
            log.warning("setup: refused a cross-site %s %s from %s (Origin %r)", method, path, client,
                        handler.headers.get("Origin", "")[:80])
            return 403, "cross-site request refused"
        uses_password = (path == "/setup/login" and method == "POST") or handler.headers.get(
            "Authorization", "").startswith(("Basic ", "Bearer "))
        if uses_password and self._locked_out(client):
            return 429, "too many failed logins; wait a minute"
        return None

    def _route(self, handler: Any, client: str, path: str, method: str) -> None:
        if path == "/setup/login" and method == "POST":
            self._login(handler, client)
            return
        if not self._authenticated(handler, client):
            if path == "/setup" and method in ("GET", "HEAD"):
                handler.send_body(401, LOGIN_HTML.replace("{error}", ""), "text/html; charset=utf-8")
            else:
                self._send(handler, 401, {"error": "authentication required"}, extra={"WWW-Authenticate": 'Basic realm="StoreSense setup"'})
            return
        try:
            if path == "/setup" and method in ("GET", "HEAD"):
                self._static(handler, "setup.html", "text/html; charset=utf-8")
            elif path.startswith("/setup/static/") and method in ("GET", "HEAD"):
                name = path.removeprefix("/setup/static/")
                if name in STATIC_FILES:
                    self._static(handler, name, STATIC_FILES[name])
                else:
                    handler.send_body(404, "not found\n", "text/plain; charset=utf-8")
            elif path == "/setup/logout" and method == "POST":
                self._logout(handler)
            elif path == "/setup/api/config" and method == "GET":
                self._send(handler, 200, self.describe())
            elif path.startswith("/setup/api/snapshot/") and method in ("GET", "HEAD"):
                self._snapshot(handler, path.removeprefix("/setup/api/snapshot/").removesuffix(".jpg"))
            elif path == "/setup/api/preview" and method == "POST":
                self._send(handler, 200, self.preview(self._json_body(handler)))
            elif path == "/setup/api/check" and method == "POST":
                self._send(handler, 200, self.check(self._json_body(handler)))
            elif path == "/setup/api/save" and method == "POST":
                status, body = self.save(self._json_body(handler))
                self._send(handler, status, body)
            else:
                handler.send_body(404, "not found\n", "text/plain; charset=utf-8")
        except _BadRequest as exc:
            self._send(handler, 400, {"error": str(exc)})

    # -- auth -----------------------------------------------------------------------------------
    def _check_password(self, given: str) -> bool:
        assert self.password is not None
        # digests have one length, so the comparison time says nothing about the password's length
        a = hashlib.sha256(given.encode("utf-8", "replace")).digest()
        b = hashlib.sha256(self.password.encode("utf-8")).digest()
        return hmac.compare_digest(a, b)

    def _locked_out(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < LOCKOUT_WINDOW_S]
            if recent:
                self._failures[client] = recent
            else:
                self._failures.pop(client, None)
            return len(recent) >= MAX_FAILURES_PER_WINDOW

    def _note_failure(self, client: str, how: str) -> None:
        with self._lock:
            failures = self._failures.setdefault(client, [])
            failures.append(time.monotonic())
            count = len(failures)
            if len(self._failures) > MAX_TRACKED_CLIENTS:  # bounded: drop the quietest client
                del self._failures[min(self._failures, key=lambda c: self._failures[c][-1])]
        if count == MAX_FAILURES_PER_WINDOW:
            log.warning("setup: %d failed logins from %s within %.0f s (last by %s); its password attempts "
                        "are refused for %.0f s", count, client, LOCKOUT_WINDOW_S, how, LOCKOUT_WINDOW_S)

    def _authenticated(self, handler: Any, client: str) -> bool:
        auth = handler.headers.get("Authorization", "")
        if auth.startswith(("Basic ", "Bearer ")):
            if auth.startswith("Basic "):
                try:
                    given = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")[2]
                except (ValueError, UnicodeDecodeError):
                    given = None
            else:
                given = auth[7:].strip()
            if given is not None and self._check_password(given):
                return True
            self._note_failure(client, auth.split(" ", 1)[0])
            return False
        token = _cookie(handler.headers.get("Cookie", ""), COOKIE)
        if not token:
            return False
        now = time.monotonic()
        with self._lock:
            expires = self._sessions.get(token)
            if expires is None or expires < now:
                self._sessions.pop(token, None)
                return False
            return True

    def _login(self, handler: Any, client: str) -> None:
        now = time.monotonic()
        form = parse_qs(handler.read_body(MAX_LOGIN_BODY_BYTES).decode("utf-8", "replace"))
        given = (form.get("password") or [""])[0]
        if not self._check_password(given):
            self._note_failure(client, "login form")
            time.sleep(0.3)
            page = LOGIN_HTML.replace("{error}", '<p class="err">密码错误 Wrong password</p>')
            handler.send_body(401, page, "text/html; charset=utf-8")
            return
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions = {t: e for t, e in self._sessions.items() if e > now}
            self._sessions[token] = now + SESSION_S
        handler.send_response(303)
        handler.send_header("Location", "/setup")
        handler.send_header(
            "Set-Cookie", f"{COOKIE}={token}; Path=/setup; HttpOnly; SameSite=Strict; Max-Age={int(SESSION_S)}"
        )
        handler.send_header("Content-Length", "0")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()

    def _logout(self, handler: Any) -> None:
        token = _cookie(handler.headers.get("Cookie", ""), COOKIE)
        with self._lock:
            self._sessions.pop(token or "", None)
        self._send(handler, 200, {"ok": True}, extra={"Set-Cookie": f"{COOKIE}=; Path=/setup; Max-Age=0"})

    # -- responses ------------------------------------------------------------------------------
    @staticmethod
    def _send(handler: Any, status: int, obj: Any, *, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    @staticmethod
    def _static(handler: Any, name: str, ctype: str) -> None:
        handler.send_body(200, (STATIC_DIR / name).read_bytes(), ctype)

    @staticmethod
    def _json_body(handler: Any) -> dict[str, Any]:
        if not handler.headers.get("Content-Type", "").startswith("application/json"):
            # also a CSRF guard: a cross-site form cannot send JSON without a CORS preflight
            raise _BadRequest("expected Content-Type: application/json")
        try:
            body = json.loads(handler.read_body(MAX_BODY_BYTES).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadRequest("expected a JSON object")
        return body

    # -- snapshot -------------------------------------------------------------------------------
    def snapshot_jpeg(self, camera_id: str) -> bytes:
        try:
            cam = self.cfg.camera(camera_id)
        except KeyError:
            raise _NotFound(f"no camera {camera_id!r}") from None
        source: Any = cam.source
        if isinstance(source, str) and "://" not in source:
            source = str(self.cfg.resolve_path(source))
        image = self._frame_reader(cam, source)
        if image is None:
            ref = self.cfg.data_path("reference", f"{cam.id}.jpg")
            image = cv2.imread(str(ref)) if ref.exists() else None
        if image is None:
            raise _NotFound(f"camera {camera_id}: no frame from the source and no reference frame yet")
        ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 85])
        if not ok:
            raise _NotFound("could not encode the snapshot")
        return bytes(buf.tobytes())

    def _snapshot(self, handler: Any, camera_id: str) -> None:
        if not _CAMERA_RE.match(camera_id):
            handler.send_body(404, "not found\n", "text/plain; charset=utf-8")
            return
        try:
            data = self.snapshot_jpeg(camera_id)
        except _NotFound as exc:
            handler.send_body(404, f"{exc}\n", "text/plain; charset=utf-8")
            return
        handler.send_body(200, data, "image/jpeg")

    # -- config view ----------------------------------------------------------------------------
    def _raw(self) -> CommentedMap:
        assert self.config_path is not None
        try:
            data = _round_trip_yaml().load(self.config_path.read_text(encoding="utf-8"))
        except Exception as exc:  # ruamel's errors have no common public base; the text says where
            raise UserFacingError(f"{self.config_path}: not readable YAML: {exc}") from None
        if not isinstance(data, CommentedMap):
            raise UserFacingError(f"{self.config_path}: not a store config mapping")
        return data

    def describe(self) -> dict[str, Any]:
        """What the page needs: cameras, their zones (with polygons in their own units) and
        calibration points, so it can draw them over the snapshot."""
        cfg = parse_config(self.config_path.read_text(encoding="utf-8"), str(self.config_path), self.config_path) if self.config_path else self.cfg
        cams = []
        for cam in cfg.cameras:
            cal = None
            if cam.calibration is not None:
                try:
                    from calibration.homography import Calibration

                    c = Calibration.from_config(cam.calibration, cfg.resolve_path)
                    cal = {
                        "image_points_px": c.image_points_px.tolist(),
                        "floor_points_m": c.floor_points_m.tolist(),
                        "reference_size_px": list(c.reference_size_px) if c.reference_size_px else None,
                        "file": cam.calibration.file,
                    }
                except (UserFacingError, ConfigError) as exc:
                    cal = {"error": str(exc)}
            cams.append({
                "id": cam.id,
                "zones": [
                    {
                        "id": z.id, "kind": z.kind, "label": z.label, "units": z.units, "lane": z.lane,
                        "service_zone": z.service_zone, "polygon": [list(p) for p in z.polygon],
                    }
                    for z in cam.zones
                ],
                "calibration": cal,
                "static_objects": _static_objects(cfg, cam.id),
                "track_flow": read_track_flow(cfg.resolve_path(cfg.data_dir) / "flow" / f"{cam.id}.json"),
            })
        return {
            "store_id": cfg.store.id,
            "store_name": cfg.store.name or cfg.store.id,
            "config_file": str(self.config_path),
            "zone_kinds": ["queue", "service", "dwell", "entrance", "staff_only"],
            "cameras": cams,
        }

    # -- calibration preview --------------------------------------------------------------------
    def preview(self, body: dict[str, Any]) -> dict[str, Any]:
        """Fit the clicked pairs and return the 1 m floor grid as image polylines (px), plus
        ``floor_polygons`` (zones in metres) projected into the image."""
        from calibration.homography import Calibration

        img, flo, size = _pairs_from(body)
        try:
            cal = Calibration.from_pairs(img, flo, reference_size_px=size, source="setup")
        except UserFacingError as exc:
            return {"ok": False, "error": str(exc)}
        polygons: dict[str, list[list[float]] | None] = {}
        floor_polygons = body.get("floor_polygons") or {}
        if isinstance(floor_polygons, dict):
            for zid, poly in floor_polygons.items():
                try:
                    px = cal.floor_to_image(np.asarray(poly, dtype=np.float64).reshape(-1, 2))
                except (TypeError, ValueError):
                    polygons[str(zid)] = None
                    continue
                polygons[str(zid)] = np.round(px, 1).tolist() if np.all(np.isfinite(px)) else None
        return {
            "polygons_px": polygons,
            "ok": True,
            "rms_error_m": round(cal.rms_error_m, 4),
            "max_error_m": round(cal.max_error_m, 4),
            "errors_m": [round(float(e), 4) for e in cal.errors_m],
            "worst_pair": cal.worst_pair + 1,
            "within_tolerance": cal.within_tolerance,
            "grid": floor_grid_px(cal, size),
        }

    # -- overlap check ----------------------------------------------------------------------------
    @staticmethod
    def check(body: dict[str, Any]) -> dict[str, Any]:
        """Zones (as drawn, snapshot pixels) that overlap in a way that double counts (zones/overlaps.py)."""
        zones_in = body.get("zones")
        if not isinstance(zones_in, list):
            raise _BadRequest("zones must be a list")
        return {"overlaps": [o.__dict__ | {"message": o.message} for o in _overlaps(zones_in)]}

    # -- save -----------------------------------------------------------------------------------
    def save(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Merge one camera's zones/calibration into the YAML, validate, then replace the file."""
        assert self.config_path is not None
        camera_id = body.get("camera_id")
        raw = self._raw()
        cam_raw = _camera_node(raw, camera_id)
        width, height = _frame_size(body)
        warnings: list[str] = []
        try:
            cal = _apply_calibration(body, cam_raw, camera_id, (width, height), warnings)
            zones_in = body.get("zones")
            if not isinstance(zones_in, list):
                raise _BadRequest("zones must be a list")
            if cal is None and cam_raw.get("calibration"):  # zones in metres need the current one
                cal = self._current_calibration(raw, camera_id)
            old_zones = {z.get("id"): z for z in cam_raw.get("zones") or [] if isinstance(z, dict)}
            new_zones = [_merge_zone(z, old_zones, cal, (width, height), warnings) for z in zones_in]
        except _Unprocessable as exc:
            return 422, {"ok": False, "problems": [str(exc)]}
        _replace_zones(cam_raw, new_zones)
        warnings += [o.message for o in _overlaps(zones_in)]
        return self._validate_and_write(_dump(raw), str(camera_id), len(new_zones), warnings)

    def _current_calibration(self, raw: CommentedMap, camera_id: Any) -> Any:
        """The camera's calibration as the file has it now (for zones drawn in floor metres)."""
        from calibration.homography import Calibration

        assert self.config_path is not None
        try:
            cur = parse_config(_dump(raw), str(self.config_path), self.config_path)
            cc = cur.camera(str(camera_id)).calibration
            return Calibration.from_config(cc, cur.resolve_path) if cc is not None else None
        except (ConfigError, UserFacingError):
            return None

    def _validate_and_write(self, text: str, camera_id: str, n_zones: int, warnings: list[str]
                            ) -> tuple[int, dict[str, Any]]:
        """Validate the new text exactly as validate-config would, then swap it in atomically."""
        assert self.config_path is not None
        try:
            parsed = parse_config(text, str(self.config_path), self.config_path)
            cam_cfg = parsed.camera(camera_id)
            if cam_cfg.calibration is not None:
                from calibration.homography import Calibration

                Calibration.from_config(cam_cfg.calibration, parsed.resolve_path)
        except ConfigError as exc:
            return 422, {"ok": False, "problems": exc.problems}
        except UserFacingError as exc:
            return 422, {"ok": False, "problems": [str(exc)]}
        header = f"{SAVED_HEADER}{self.config_path.name}.bak\n"
        if text.startswith(SAVED_HEADER):  # saved here before: one header, not one per save
            text = text.split("\n", 1)[1]
        backup = self.config_path.with_name(self.config_path.name + ".bak")
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(header + text, encoding="utf-8")
        backup.write_bytes(self.config_path.read_bytes())
        os.replace(tmp, self.config_path)
        self.cfg = parsed
        zones = sum(len(c.zones) for c in parsed.cameras)
        log.info("setup: saved %s (camera %s, %d zones)", self.config_path, camera_id, n_zones)
        return 200, {
            "ok": True,
            "path": str(self.config_path),
            "backup": str(backup),
            "summary": f"{self.config_path.name}: OK — store {parsed.store.id}, {len(parsed.cameras)} camera(s), {zones} zone(s)",
            "warnings": warnings,
        }


class _Unprocessable(Exception):
    """The request is well-formed but cannot be saved (422): a degenerate calibration, a corner
    beyond the horizon."""


def _camera_node(raw: CommentedMap, camera_id: Any) -> Any:
    cameras = raw.get("cameras")
    if not isinstance(cameras, list):
        raise _BadRequest("the config has no cameras list")
    cam_raw = next((c for c in cameras if isinstance(c, dict) and c.get("id") == camera_id), None)
    if cam_raw is None:
        raise _BadRequest(f"no camera {camera_id!r} in the config")
    return cam_raw


def _frame_size(body: dict[str, Any]) -> tuple[float, float]:
    size = body.get("frame_size_px")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int | float) and v > 0 for v in size)):
        raise _BadRequest("frame_size_px must be [width, height] of the snapshot")
    return float(size[0]), float(size[1])


def _apply_calibration(body: dict[str, Any], cam_raw: CommentedMap, camera_id: Any, size: tuple[float, float],
                       warnings: list[str]) -> Any:
    """Write clicked calibration pairs into the camera's mapping (in place, keeping its comments
    and keys such as max_reprojection_error_m); returns the fitted calibration or None."""
    if body.get("calibration") is None:
        if body.get("remove_calibration"):
            cam_raw.pop("calibration", None)
        return None
    from calibration.homography import Calibration

    width, height = size
    img, flo, ref = _pairs_from({**body["calibration"], "frame_size_px": [width, height]})
    try:
        cal = Calibration.from_pairs(img, flo, reference_size_px=ref, source=f"camera {camera_id} calibration")
    except UserFacingError as exc:
        raise _Unprocessable(str(exc)) from None
    old = cam_raw.get("calibration")
    new_cal = old if isinstance(old, CommentedMap) else CommentedMap()
    if new_cal.get("file"):
        warnings.append(f"calibration was in {new_cal['file']}; it is now inline in the store config")
        del new_cal["file"]
    new_cal["image_points_px"] = _flow([[round(float(x), 1), round(float(y), 1)] for x, y in img])
    new_cal["floor_points_m"] = _flow([[round(float(x), 3), round(float(y), 3)] for x, y in flo])
    new_cal["reference_size_px"] = _flow([int(width), int(height)])
    cam_raw["calibration"] = new_cal
    if not cal.within_tolerance:
        warnings.append(cal.summary())
    return cal


def _merge_zone(z: Any, old_zones: dict[Any, Any], cal: Any, size: tuple[float, float],
                warnings: list[str]) -> CommentedMap:
    """One zone from the page merged into its existing mapping (comments and unknown keys kept)."""
    if not isinstance(z, dict):
        raise _BadRequest("every zone must be an object")
    width, height = size
    merged = old_zones.get(z.get("original_id") or z.get("id"))
    if not isinstance(merged, CommentedMap):  # a new zone: one flow mapping, like the examples
        merged = CommentedMap()
        merged.fa.set_flow_style()
    units = z.get("units") or merged.get("units") or "norm"
    poly_px = np.asarray(z.get("polygon_px") or [], dtype=np.float64).reshape(-1, 2)
    if units == "m" and cal is None:
        units = "norm"
        warnings.append(f"zone {z.get('id')}: no calibration, saved in image units (norm)")
    if units == "m":
        floor = cal.for_frame_size((int(width), int(height))).image_to_floor(poly_px)
        if not np.all(np.isfinite(floor)):
            raise _Unprocessable(f"zone {z.get('id')}: a corner is beyond the floor horizon")
        polygon = [[round(float(x), 3), round(float(y), 3)] for x, y in floor]
    else:
        norm = np.clip(poly_px / np.array([width, height]), 0.0, 1.0)
        polygon = [[round(float(x), 4), round(float(y), 4)] for x, y in norm]
    merged.update({"id": z.get("id"), "kind": z.get("kind"), "polygon": _flow(polygon)})
    if units == "m" or "units" in merged:
        merged["units"] = units
    for key in ("label", "lane", "service_zone"):
        value = z.get(key)
        if value in (None, ""):
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _replace_zones(cam_raw: CommentedMap, new_zones: list[CommentedMap]) -> None:
    zones_seq = cam_raw.get("zones")
    if isinstance(zones_seq, CommentedSeq):  # keep the list node, and with it its comments
        # ruamel keeps a zone's end-of-line comment by its index in the list: make it follow
        # the zone when zones are reordered, added or deleted
        by_zone = {id(z): zones_seq.ca.items[i] for i, z in enumerate(zones_seq) if i in zones_seq.ca.items}
        zones_seq[:] = new_zones
        zones_seq.ca.items.clear()
        zones_seq.ca.items.update({i: by_zone[id(z)] for i, z in enumerate(zones_seq) if id(z) in by_zone})
    else:
        cam_raw["zones"] = CommentedSeq(new_zones)


class _BadRequest(Exception):
    pass


class _NotFound(Exception):
    pass


def _overlaps(zones_in: list[Any]) -> list[Overlap]:
    shapes = []
    for z in zones_in:
        if not isinstance(z, dict):
            raise _BadRequest("every zone must be an object")
        try:
            poly = np.asarray(z.get("polygon_px") or [], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise _BadRequest(f"zone {z.get('id')!r}: polygon_px must be a list of [x, y] numbers") from None
        if len(poly) >= 3 and np.all(np.isfinite(poly)):
            shapes.append(ZoneShape(str(z.get("id")), str(z.get("kind")), poly.tolist(), z.get("lane") or None))
    return double_counting_overlaps(shapes)


def _static_objects(cfg: StoreConfig, camera_id: str) -> list[dict[str, Any]]:
    """Static scenery the running pipeline found on this camera (written by edge/scenery.py into
    the data dir), drawn on the snapshot so the installer can mask it with an ``ignore`` polygon."""
    path = cfg.resolve_path(cfg.data_dir) / "static" / f"{camera_id}.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [o for o in found if isinstance(o, dict) and isinstance(o.get("xyxy_px"), list)] if isinstance(found, list) else []


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name and v:
            return v
    return None


def _pairs_from(body: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    try:
        img = np.asarray(body.get("image_points_px"), dtype=np.float64).reshape(-1, 2)
        flo = np.asarray(body.get("floor_points_m"), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise _BadRequest("image_points_px and floor_points_m must be lists of [x, y] numbers") from None
    if not (np.all(np.isfinite(img)) and np.all(np.isfinite(flo))):
        raise _BadRequest("every calibration point needs finite numbers (fill in the floor x and y)")
    size = body.get("frame_size_px")
    ref = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None
    return img, flo, ref


def floor_grid_px(cal: Any, size: tuple[int, int] | None, step_m: float = 1.0) -> list[dict[str, Any]]:
    """1 m floor grid lines as image polylines; the x=0 and y=0 axes are flagged for colour."""
    from calibration.cli import floor_extent_m

    w, h = size if size is not None else (1920, 1080)
    x0, y0, x1, y1 = floor_extent_m(cal, (w, h))
    lines: list[dict[str, Any]] = []
    xs = np.arange(x0, x1 + 1e-9, step_m)
    ys = np.arange(y0, y1 + 1e-9, step_m)
    for x in xs[:GRID_MAX_LINES]:
        for run in cal.floor_path_to_image([[x, y0], [x, y1]], max_depth_ratio=4.0):
            lines.append({"axis": "y" if abs(x) < 1e-9 else "", "points": np.round(run, 1).tolist()})
    for y in ys[:GRID_MAX_LINES]:
        for run in cal.floor_path_to_image([[x0, y], [x1, y]], max_depth_ratio=4.0):
            lines.append({"axis": "x" if abs(y) < 1e-9 else "", "points": np.round(run, 1).tolist()})
    return lines


def grab_frame(cam: Any, source: Any, timeout_s: float = SNAPSHOT_TIMEOUT_S) -> np.ndarray | None:
    """One current frame from the camera, or None (unreachable, or slower than ``timeout_s``).

    Runs in a worker thread because opening an RTSP stream can block for tens of seconds.
    """
    result: list[np.ndarray | None] = [None]

    def read() -> None:
        cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        try:
            if cap.isOpened():
                ok, frame = cap.read()
                if ok and frame is not None:
                    result[0] = np.ascontiguousarray(frame)
        finally:
            cap.release()

    t = threading.Thread(target=read, name=f"setup-snapshot-{cam.id}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        log.warning("setup: camera %s gave no frame within %.0f s; using the reference frame", cam.id, timeout_s)
        return None
    return result[0]


def setup_routes(cfg: StoreConfig, **kwargs: Any) -> dict[str, Callable[[Any], None]]:
    """``extra_routes`` for :class:`mqtt_bridge.display.DisplayServer`: ``{"/setup": SetupPage}``."""
    return {"/setup": SetupPage(cfg, **kwargs)}


LOGIN_HTML = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>StoreSense setup 安装设置</title><link rel="icon" href="data:,">
<style>
body{font-family:"DejaVu Sans","Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;background:#1f2933;color:#fff;
display:flex;align-items:center;justify-content:center;height:100vh;margin:0}
form{background:#fff;color:#1f2933;padding:28px 32px;border-radius:12px;min-width:320px}
h1{font-size:20px;margin:0 0 16px 0} label{display:block;font-size:13px;color:#52606d;margin-bottom:6px}
input{width:100%;font-size:16px;padding:8px;border:1px solid #cbd2d9;border-radius:6px;box-sizing:border-box}
button{margin-top:16px;width:100%;font-size:16px;padding:10px;background:#2f6fde;color:#fff;border:0;border-radius:6px}
.err{color:#d64545;font-size:14px}
</style></head><body>
<form method="post" action="/setup/login">
<h1>安装设置 StoreSense setup</h1>
{error}
<input type="text" name="username" value="installer" autocomplete="username" hidden>
<label for="password">安装密码 Installer password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus>
<button id="login" type="submit">登录 Log in</button>
</form></body></html>
"""


def _round_trip_yaml() -> YAML:
    """A round-trip YAML (comments, order, quotes kept) laid out like the shipped examples."""
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # a zone stays one flow mapping per line; never a break inside a point
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _dump(data: Any) -> str:
    buf = io.StringIO()
    _round_trip_yaml().dump(data, buf)
    return buf.getvalue()


def _flow(values: list[Any]) -> CommentedSeq:
    """Points as ``[[x, y], ...]`` on one line instead of one number per line."""
    seq = CommentedSeq(_flow(v) if isinstance(v, list) else v for v in values)
    seq.fa.set_flow_style()
    return seq
