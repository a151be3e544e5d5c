"""/setup: auth, local-network only, snapshots, validated saves, and real clicks in Chromium."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import load_config
from mqtt_bridge.broker import MosquittoProcess
from mqtt_bridge.display import DisplayServer
from mqtt_bridge.setup_page import SetupPage, client_allowed, setup_routes
from tests.browser import Browser

PASSWORD = "correct horse battery"
PW_ENV = "STORESENSE_TEST_SETUP_PASSWORD"
ARTIFACTS = Path(os.environ.get("STORESENSE_TEST_ARTIFACTS", "/tmp/storesense-test-artifacts"))


def write_store(tmp_path: Path, video: Path, *, password_env: str | None = PW_ENV) -> Path:
    display = f"display: {{setup_password_env: {password_env}}}\n" if password_env else ""
    text = f"""# store used by the /setup tests
version: 1
store: {{id: setup-store, name: "Setup Store 安装店", timezone: Asia/Shanghai}}
cameras:
  - id: cam-1
    source: {video}   # the table clip
    zones:
      # lane 1 is the one by the door
      - {{id: lane-1-queue, kind: queue, lane: lane-1, label: "Lane 1", service_zone: lane-1-till,
         polygon: [[0.6, 0.5], [0.8, 0.5], [0.8, 1.0], [0.6, 1.0]]}}  # queue comment
      - {{id: lane-1-till, kind: service, lane: lane-1, polygon: [[0.8, 0.5], [1.0, 0.5], [1.0, 1.0], [0.8, 1.0]]}}  # till comment
{display}data_dir: {tmp_path / "data"}
"""
    path = tmp_path / "store.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def setup_server(tmp_path: Path, table_video: Path, mosquitto: MosquittoProcess,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DisplayServer, Path]]:
    monkeypatch.setenv(PW_ENV, PASSWORD)
    path = write_store(tmp_path, table_video)
    cfg = load_config(path)
    server = DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_host="127.0.0.1", mqtt_port=mosquitto.port,
                           extra_routes=setup_routes(cfg))
    server.start()
    try:
        yield server, path
    finally:
        server.stop()


def request(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"installer:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.9", True),
        ("192.168.1.20", True),
        ("169.254.10.10", True),
        ("fe80::1", True),
        ("fd12:3456::1", True),
        ("::ffff:192.168.1.5", True),
        ("8.8.8.8", False),
        ("1.1.1.1", False),
        ("172.32.0.1", False),
        ("2001:4860:4860::8888", False),
        ("::ffff:8.8.8.8", False),
        ("0.0.0.0", False),
        ("not-an-ip", False),
    ],
)
def test_only_local_network_clients_are_allowed(address: str, allowed: bool) -> None:
    assert client_allowed(address) is allowed


class FakeRequest:
    """Stands in for the HTTP handler in the one test that needs a public client address."""

    def __init__(self, client: str, path: str, headers: dict[str, str]) -> None:
        self.client_address = (client, 50000)
        self.path = path
        self.command = "GET"
        self.headers = headers
        self.sent: list[tuple[int, bytes]] = []

    def send_body(self, status: int, body: bytes | str, content_type: str, *, cache: bool = False) -> None:
        self.sent.append((status, body.encode() if isinstance(body, str) else body))


def test_public_address_is_refused_even_with_the_password(tmp_path: Path, table_video: Path) -> None:
    cfg = load_config(write_store(tmp_path, table_video))
    grabbed: list[str] = []

    def reader(cam: Any, source: Any) -> np.ndarray:
        grabbed.append(cam.id)
        return np.zeros((10, 10, 3), np.uint8)

    page = SetupPage(cfg, password=PASSWORD, frame_reader=reader)
    for path in ("/setup", "/setup/api/snapshot/cam-1.jpg"):
        req = FakeRequest("8.8.8.8", path, basic(PASSWORD))
        page(req)
        assert req.sent[0][0] == 403
    assert grabbed == []  # no frame was even read for a refused client
    ok = FakeRequest("192.168.1.7", "/setup/api/snapshot/cam-1.jpg", basic(PASSWORD))
    page(ok)
    assert grabbed == ["cam-1"]


def test_unauthenticated_requests_are_refused(setup_server: tuple[DisplayServer, Path], table_video: Path) -> None:
    server, path = setup_server
    base = server.url.rstrip("/")
    status, _, body = request(f"{base}/setup")
    assert status == 401
    assert b'name="password"' in body and b"setup.js" not in body
    for sub in ("/setup/api/snapshot/cam-1.jpg", "/setup/api/config", "/setup/static/setup.js"):
        status, headers, body = request(base + sub)
        assert status == 401, sub
        assert not body.startswith(b"\xff\xd8")
    status, _, _ = request(f"{base}/setup/api/snapshot/cam-1.jpg", headers=basic("wrong"))
    assert status == 401
    status, _, _ = request(f"{base}/setup/api/save", method="POST", body=b"{}",
                           headers={"Content-Type": "application/json", "Cookie": "storesense_setup=forged"})
    assert status == 401
    status, _, body = request(f"{base}/setup/login", method="POST", body=b"password=nope",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and b"Wrong password" in body
    # the right password gives a real frame of the camera, never cached
    status, headers, body = request(f"{base}/setup/api/snapshot/cam-1.jpg", headers=basic(PASSWORD))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and headers["Cache-Control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(str(table_video))
    ok, frame = cap.read()
    cap.release()
    assert ok and image.shape == frame.shape
    status, _, _ = request(f"{base}/setup/api/snapshot/cam-1.jpg", headers={"Authorization": f"Bearer {PASSWORD}"})
    assert status == 200
    status, _, _ = request(f"{base}/setup/api/snapshot/nope.jpg", headers=basic(PASSWORD))
    assert status == 404
    # the checkout screen itself stays public
    status, _, _ = request(f"{base}/")
    assert status == 200


def test_setup_is_disabled_without_a_password(tmp_path: Path, table_video: Path, mosquitto: MosquittoProcess) -> None:
    cfg = load_config(write_store(tmp_path, table_video, password_env=None))
    with DisplayServer(cfg, host="127.0.0.1", port=0, mqtt_port=mosquitto.port, extra_routes=setup_routes(cfg)) as server:
        status, _, body = request(server.url + "setup", headers=basic(""))
        assert status == 404 and b"setup_password_env" in body


def test_save_validates_before_replacing_the_file(setup_server: tuple[DisplayServer, Path]) -> None:
    server, path = setup_server
    url = server.url + "setup/api/save"
    before = path.read_bytes()
    headers = {**basic(PASSWORD), "Content-Type": "application/json"}
    bad = {  # a queue zone whose service zone does not exist
        "camera_id": "cam-1", "frame_size_px": [100, 100],
        "zones": [{"id": "q", "kind": "queue", "service_zone": "missing", "polygon_px": [[0, 0], [50, 0], [50, 50]]}],
    }
    status, _, body = request(url, method="POST", body=json.dumps(bad).encode(), headers=headers)
    result = json.loads(body)
    assert status == 422 and not result["ok"]
    assert any("service_zone 'missing' is not a zone of camera" in p for p in result["problems"])
    assert str(path) in result["problems"][0]  # file:line: problem, as validate-config prints it
    degenerate = {
        "camera_id": "cam-1", "frame_size_px": [100, 100], "zones": [],
        "calibration": {"image_points_px": [[0, 0], [10, 0], [20, 0], [30, 0]],
                        "floor_points_m": [[0, 0], [1, 0], [2, 0], [3, 0]]},
    }
    status, _, body = request(url, method="POST", body=json.dumps(degenerate).encode(), headers=headers)
    assert status == 422 and "one line" in json.loads(body)["problems"][0]
    status, _, _ = request(url, method="POST", body=b"zones=1", headers={**basic(PASSWORD),
                           "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400  # only JSON: a cross-site form cannot post here
    assert path.read_bytes() == before


def test_save_keeps_the_installers_comments(setup_server: tuple[DisplayServer, Path]) -> None:
    """Round-trip edit: comments, quoting and the other camera keys survive two saves."""
    server, path = setup_server
    url = server.url + "setup/api/save"
    headers = {**basic(PASSWORD), "Content-Type": "application/json"}
    body = {
        "camera_id": "cam-1", "frame_size_px": [200, 100],
        "zones": [
            {"id": "lane-1-queue", "kind": "queue", "lane": "lane-1", "label": "Lane 1", "service_zone": "lane-1-till",
             "polygon_px": [[120, 50], [160, 50], [160, 100], [120, 100]]},
            {"id": "lane-1-till", "kind": "service", "lane": "lane-1",
             "polygon_px": [[160, 50], [200, 50], [200, 100], [160, 100]]},
            {"id": "shelf", "kind": "dwell", "polygon_px": [[10, 10], [60, 10], [60, 40], [10, 40]]},
        ],
        "calibration": {"image_points_px": [[20, 90], [180, 90], [150, 30], [50, 30]],
                        "floor_points_m": [[0, 0], [4, 0], [4, 6], [0, 6]]},
    }
    for _ in range(2):
        status, _, answer = request(url, method="POST", body=json.dumps(body).encode(), headers=headers)
        assert status == 200, answer
    text = path.read_text(encoding="utf-8")
    for kept in ("# store used by the /setup tests", "# the table clip", "# lane 1 is the one by the door",
                 'name: "Setup Store 安装店"'):
        assert kept in text, (kept, text)
    assert text.count("# Saved by the StoreSense /setup page") == 1  # one header, not one per save
    assert "polygon: [[0.05, 0.1], [0.3, 0.1], [0.3, 0.4], [0.05, 0.4]]" in text  # points on one line
    assert "polygon: [[0.6, 0.5], [0.8, 0.5], [0.8, 1.0], [0.6, 1.0]]" in text  # never broken inside a point
    cam = load_config(path).camera("cam-1")
    assert [z.id for z in cam.zones] == ["lane-1-queue", "lane-1-till", "shelf"]
    assert cam.calibration is not None and cam.calibration.floor_points_m[2] == (4.0, 6.0)


def test_a_zones_comment_follows_the_zone(setup_server: tuple[DisplayServer, Path]) -> None:
    """ruamel keeps end-of-line comments by list index; a reordered save must not swap them."""
    server, path = setup_server
    headers = {**basic(PASSWORD), "Content-Type": "application/json"}
    body = {
        "camera_id": "cam-1", "frame_size_px": [200, 100],
        "zones": [  # the till first now, the queue second, and a new zone
            {"id": "lane-1-till", "kind": "service", "lane": "lane-1",
             "polygon_px": [[160, 50], [200, 50], [200, 100], [160, 100]]},
            {"id": "lane-1-queue", "kind": "queue", "lane": "lane-1", "service_zone": "lane-1-till",
             "polygon_px": [[120, 50], [160, 50], [160, 100], [120, 100]]},
            {"id": "shelf", "kind": "dwell", "polygon_px": [[10, 10], [60, 10], [60, 40], [10, 40]]},
        ],
    }
    status, _, answer = request(server.url + "setup/api/save", method="POST", body=json.dumps(body).encode(),
                                headers=headers)
    assert status == 200, answer
    lines = path.read_text(encoding="utf-8").splitlines()
    till = next(ln for ln in lines if "id: lane-1-till" in ln)
    queue_end = next(i for i, ln in enumerate(lines) if "id: lane-1-queue" in ln)
    queue_text = " ".join(lines[queue_end:queue_end + 2])  # a long flow mapping may wrap once
    shelf = next(ln for ln in lines if "id: shelf" in ln)
    assert till.rstrip().endswith("# till comment"), lines
    assert "# queue comment" in queue_text and "# till comment" not in queue_text, lines
    assert "#" not in shelf, lines
    assert [z.id for z in load_config(path).camera("cam-1").zones] == ["lane-1-till", "lane-1-queue", "shelf"]


def _watch_mqtt(port: int) -> tuple[mqtt.Client, list[mqtt.MQTTMessage]]:
    seen: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="setup-test-watcher")
    client.on_connect = lambda c, *_: (c.subscribe("#", qos=1), ready.set())
    client.on_message = lambda _c, _u, msg: seen.append(msg)
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client, seen


def open_setup_logged_in(b: Browser, base_url: str) -> Any:
    """/setup in Chromium, logged in through the real form, once the page says it is ready."""
    page = b.new_page(base_url + "setup")
    page.wait_for("!!document.getElementById('password')")
    page.type_text("#password", PASSWORD)
    mark = page.event_mark()
    page.click_element("#login")
    page.wait_for_load(since=mark)  # the form posts, the server answers 303 → /setup with a cookie
    page.wait_for("document.body.dataset.ready === '1'", 20)
    return page


def test_installer_draws_a_zone_and_calibrates_with_real_clicks(
    setup_server: tuple[DisplayServer, Path], mosquitto: MosquittoProcess
) -> None:
    server, path = setup_server
    watcher, seen = _watch_mqtt(mosquitto.port)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with Browser(width_px=1500, height_px=1000) as b:
            page = open_setup_logged_in(b, server.url)
            page.wait_for("!!document.querySelector('#zone-list li')")
            page.clear_console()  # drop the login page's expected 401 entry; from here on the log must stay clean
            size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
            assert size[0] > 100 and size[1] > 100  # the snapshot is drawn at its own size
            rect = page.evaluate("(() => { const r = document.getElementById('canvas').getBoundingClientRect();"
                                 " return [r.width, r.height]; })()")
            scale = size[0] / rect[0]

            # draw a dwell zone: four real clicks and Finish
            page.click_element("#mode-zone")
            corners_css = [(0.10, 0.15), (0.40, 0.15), (0.40, 0.45), (0.10, 0.45)]
            for fx, fy in corners_css:
                page.click_at("#canvas", fx * rect[0], fy * rect[1])
            assert "4" in page.evaluate("document.getElementById('drawing-count').innerText")
            page.click_element("#finish-zone")
            page.clear("#zone-list li:last-child input.zone-id")
            page.type_text("#zone-list li:last-child input.zone-id", "display-table")
            page.type_text("#zone-list li:last-child input.zone-label", "Display table 展台")
            page.select_option("#zone-list li:last-child select.zone-kind", "dwell")

            # calibrate: four floor marks and their coordinates
            page.click_element("#mode-calib")
            marks_css = [(0.20, 0.60), (0.80, 0.60), (0.90, 0.95), (0.10, 0.95)]
            floor_m = [(0.0, 4.0), (4.0, 4.0), (4.0, 0.0), (0.0, 0.0)]
            for (fx, fy), (mx, my) in zip(marks_css, floor_m, strict=True):
                page.click_at("#canvas", fx * rect[0], fy * rect[1])
                n_rows = page.evaluate("document.querySelectorAll('#calib-table tbody tr').length")
                page.type_text(f"#calib-table tbody tr:nth-child({n_rows}) input.floor-x", f"{mx}")
                page.type_text(f"#calib-table tbody tr:nth-child({n_rows}) input.floor-y", f"{my}")
            status_text = page.wait_for(
                "(() => { const s = document.getElementById('calib-status').textContent;"
                " return s.includes('RMS') && s; })()", 10
            )
            assert "RMS" in status_text
            n_grid = page.wait_for("window.setupState.grid.length", 5)
            assert n_grid >= 4  # the projected 1 m floor grid is drawn
            page.click_element("#mode-select")
            page.screenshot(ARTIFACTS / "setup_page.png", full_page=True)
            page.click_element("#save")
            saved = page.wait_for(
                "(() => { const m = document.querySelector('#messages .ok, #messages .problem');"
                " return m && m.textContent; })()", 15
            )
            assert saved.startswith("已保存 Saved"), saved
            assert page.console_errors() == []
    finally:
        watcher.loop_stop()
        watcher.disconnect()

    # the saved file passes validate-config and holds what was clicked
    run = subprocess.run([sys.executable, "-m", "edge.cli", "validate-config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "3 zone(s)" in run.stdout
    cfg = load_config(path)
    cam = cfg.camera("cam-1")
    zone = next(z for z in cam.zones if z.id == "display-table")
    assert zone.kind == "dwell" and zone.label == "Display table 展台" and zone.units == "norm"
    np.testing.assert_allclose(zone.polygon, corners_css, atol=0.01)
    assert cam.calibration is not None and cam.calibration.reference_size_px == tuple(size)
    clicked_px = np.array(marks_css) * np.array(size)
    np.testing.assert_allclose(cam.calibration.image_points_px, clicked_px, atol=2.0 * scale)
    assert cam.calibration.floor_points_m == floor_m
    assert {z.id for z in cam.zones} == {"lane-1-queue", "lane-1-till", "display-table"}
    lane = next(z for z in cam.zones if z.id == "lane-1-queue")
    assert lane.service_zone == "lane-1-till" and lane.lane == "lane-1"  # untouched keys survive
    assert path.with_name("store.yaml.bak").read_text().startswith("# store used by the /setup tests")
    raw = yaml.safe_load(path.read_text())
    assert raw["display"] == {"setup_password_env": PW_ENV}
    # nothing image-like went over MQTT while the installer worked
    for msg in seen:
        assert not msg.payload.startswith(b"\xff\xd8"), msg.topic
        assert len(msg.payload) < 16_000, msg.topic
        assert "snapshot" not in msg.topic and "setup" not in msg.topic


def test_setup_shows_the_static_objects_the_pipeline_found(tmp_path: Path, table_video: Path) -> None:
    """edge/scenery.py writes the static places it finds into the data dir; /setup lists them per
    camera so the installer can draw an ignore polygon over them (a corrupt file shows nothing)."""
    import json

    from edge.scenery import SceneryFilter

    cfg = load_config(write_store(tmp_path, table_video))
    page = SetupPage(cfg, password=PASSWORD)
    assert page.describe()["cameras"][0]["static_objects"] == []
    report = tmp_path / "data" / "static" / "cam-1.json"
    f = SceneryFilter(static_after_s=1.0, report_path=report)
    rng = np.random.default_rng(0)
    poster = rng.integers(0, 255, (120, 40, 3), dtype=np.uint8)
    from edge.contract import Tracks

    for k in range(12):
        img = np.full((240, 320, 3), 120, np.uint8)
        img[60:180, 40:80] = poster
        f.update(Tracks("cam-1", k, k * 0.2, (320, 240), np.array([[40, 60, 80, 180]], np.float32),
                        np.array([0.9], np.float32), np.array([1])), img)
    found = page.describe()["cameras"][0]["static_objects"]
    assert [o["xyxy_px"] for o in found] == [[40.0, 60.0, 80.0, 180.0]]
    report.write_text("{not json", encoding="utf-8")
    assert page.describe()["cameras"][0]["static_objects"] == []
    json.loads(json.dumps(page.describe()))
