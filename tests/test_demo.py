"""`storesense demo`, the README's main command, as a user runs it: started in a terminal's
process group, checked over HTTP and MQTT, stopped with Ctrl-C (SIGINT to the whole group)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_bridge.broker import free_port
from mqtt_bridge.topics import Topics
from tests.waiting import wait_until


def _read_lines(proc: subprocess.Popen[str], out: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)


def test_demo_serves_lanes_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STORESENSE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group, like a terminal's foreground job
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
    reader.start()
    watcher = None
    try:
        assert wait_until(lambda: any("StoreSense demo: open" in ln for ln in lines), 60), "".join(lines)
        assert f"http://127.0.0.1:{port}/" in "".join(lines)
        broker_port = int(re.search(r"private Mosquitto broker on 127\.0\.0\.1:(\d+)", "".join(lines)).group(1))  # type: ignore[union-attr]

        def lanes() -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5) as r:
                return {str(lane["lane_id"]): lane for lane in json.loads(r.read())["lanes"]}

        assert wait_until(lambda: {"lane-1", "lane-2"} <= set(lanes()), 30)
        assert wait_until(lambda: all(lane["status"] == "ok" for lane in lanes().values()), 30), lanes()

        seen: list[bytes] = []
        watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-watcher", protocol=mqtt.MQTTv5)
        watcher.on_connect = lambda c, *_: c.subscribe(Topics("demo-store").availability("demo-edge"), qos=1)
        watcher.on_message = lambda _c, _u, m: seen.append(bytes(m.payload))
        watcher.connect("127.0.0.1", broker_port)
        watcher.loop_start()
        assert wait_until(lambda: seen[-1:] == [b"online"], 10), seen

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the broker child gets it too unless it is apart
        rc = proc.wait(timeout=30)
        reader.join(5)
        text = "".join(lines)
        assert rc in (0, 130), text
        assert wait_until(lambda: seen[-1:] == [b"stopped"], 5), (seen, text)  # clean stop, broker still up
        assert "ERROR" not in text and "Traceback" not in text, text
        assert "still in the outbox" not in text  # drained before the broker went away
        with socket.socket() as s:  # the demo stopped its private broker
            assert s.connect_ex(("127.0.0.1", broker_port)) != 0
    finally:
        if watcher is not None:
            watcher.loop_stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()



def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


_OWNER = """
import sys, time
from pathlib import Path
from mqtt_bridge.broker import start_mosquitto
b = start_mosquitto(own_process_group=True, stop_with_owner=True, workdir=Path(sys.argv[1]))
print(b.port, flush=True)
if sys.argv[2] == "stop":
    b.stop()
    print("stopped", flush=True)
time.sleep(60)
"""


def test_private_broker_does_not_outlive_an_owner_killed_by_sigkill(tmp_path: Path) -> None:
    """The demo's private broker runs in its own process group (Ctrl-C does not reach it), so
    an owner killed outright must not leave it running: its guard stops it."""
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path / "b"), "run"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        port = int(owner.stdout.readline())
        assert _port_open(port)
        time.sleep(0.5)
        assert _port_open(port)  # the guard leaves it alone while the owner lives
        owner.kill()
        owner.wait()
        assert wait_until(lambda: not _port_open(port), 5), "broker still running after its owner was SIGKILLed"
        def left() -> str:
            conf = str(tmp_path / "b" / "mosquitto.conf")
            return subprocess.run(["pgrep", "-f", conf], capture_output=True, text=True).stdout.strip()

        # neither the broker nor its guard is left (the guard may still be exiting as the port closes)
        assert wait_until(lambda: left() == "", 5), left()
    finally:
        if owner.poll() is None:
            owner.kill()
        subprocess.run(["pkill", "-f", str(tmp_path / "b")], check=False)


def test_private_broker_stop_goes_through_its_guard(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path / "b"), "stop"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        port = int(owner.stdout.readline())
        assert owner.stdout.readline().strip() == "stopped"
        assert not _port_open(port)  # stop() returned only once the broker itself had exited
        conf = str(tmp_path / "b" / "mosquitto.conf")  # on the command lines of the broker and its guard
        assert subprocess.run(["pgrep", "-f", conf], capture_output=True).stdout == b""
    finally:
        owner.kill()
        subprocess.run(["pkill", "-f", str(tmp_path / "b")], check=False)


def test_a_private_broker_in_a_temporary_dir_leaves_nothing_behind() -> None:
    from mqtt_bridge.broker import start_mosquitto

    broker = start_mosquitto()
    wd = broker.workdir
    assert (wd / "mosquitto.conf").exists()
    broker.restart()  # outage tests stop and start the same broker: its dir must come back
    assert _port_open(broker.port) and (wd / "mosquitto.conf").exists()
    broker.stop()
    assert not wd.exists() and not _port_open(broker.port)
