"""Bad input on the command line gets a clear error and exit 2, never a traceback or a hang.

Each case here was found by a fuzzing pass over every subcommand (2026-11-28) and gave a
traceback (RecursionError, OverflowError, ZeroDivisionError, KeyError, IsADirectoryError, ...),
ran away with memory, or leaked a password into the log. The commands run in this process
through ``edge.cli.main``: an exception escaping it fails the test, argparse's own refusals
arrive as SystemExit(2)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.cli import main as cli_main
from edge.contract import Message
from edge.history import HistorySink
from edge.resources import shared_dir
from mqtt_bridge.topics import Topics

DEVSET = "caviar-corridor"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """(exit code, everything printed) of one command; argparse errors count as exit codes."""
    try:
        rc = cli_main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.fixture
def devset() -> Path:
    path = shared_dir() / "devset" / DEVSET
    assert (path / "gt.txt").is_file(), f"{path}: the shared dev clip is missing"
    return path


# ---------------------------------------------------------------- config files


def test_a_yaml_alias_that_contains_itself_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "recur.yaml"
    cfg.write_text("a: &a [*a]\n")
    rc, text = run(capsys, "validate-config", str(cfg))  # was: RecursionError
    assert rc == 2 and f"{cfg}:1" in text and "nested more than" in text


def test_aliases_of_aliases_are_refused_before_they_fill_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    rc, text = run(capsys, "validate-config", str(cfg))  # was: 2.3 GB in 30 s and counting
    assert rc == 2 and "expands to more than" in text
    assert time.monotonic() - t0 < 20


def test_a_floor_zone_point_beyond_any_floor_is_refused_at_its_line(
    tmp_path: Path, devset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "store.yaml"
    cfg.write_text(
        f"version: 1\nstore: {{id: s1}}\ndata_dir: {tmp_path / 'data'}\nmqtt: {{enabled: false}}\ncameras:\n"
        f"  - id: c1\n    source: {devset / 'video.avi'}\n    fps: 2\n"
        "    calibration:\n      image_points_px: [[10, 200], [370, 200], [370, 280], [10, 280]]\n"
        "      floor_points_m:  [[0, 0], [4, 0], [4, 3], [0, 3]]\n"
        "    zones:\n      - {id: z1, kind: dwell, units: m, polygon: [[1e300, 0], [2e300, 0], [2e300, 1e300]]}\n"
    )
    rc, text = run(capsys, "validate-config", str(cfg))  # was: OK, then calibrate's OverflowError
    assert rc == 2 and f"{cfg}:13" in text and "not a floor position" in text


# ---------------------------------------------------------------- evaluate


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("inf,1,10,10,5,5", "with numbers"),  # was: OverflowError
        ("1,1e30,10,10,5,5", "an id within"),  # was: OverflowError (numpy)
        ("2000000000,1,10,10,5,5", "expected frame 1..10000000"),  # was: memory running away
    ],
)
def test_evaluate_names_the_bad_ground_truth_line(
    row: str, expected: str, tmp_path: Path, devset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,5,5\n" + row + "\n")
    rc, text = run(capsys, "evaluate", str(devset / "video.avi"), "--gt", str(gt), "--pred", str(devset / "gt.txt"))
    assert rc == 2 and f"{gt}:2" in text and expected in text


def test_evaluate_refuses_a_binary_ground_truth_file(tmp_path: Path, devset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_bytes(b"1,1,10,10,5,5\n\xff\xfe\n")
    rc, text = run(capsys, "evaluate", str(devset / "video.avi"), "--gt", str(gt), "--pred", str(devset / "gt.txt"))
    assert rc == 2 and "not a UTF-8 text file" in text  # was: UnicodeDecodeError


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--frame-step", "0"], "--frame-step: expected 1 or more"),  # was: ZeroDivisionError
        (["--ignore-region", "nan,nan 1,1 2,3"], "finite number"),  # was: GEOSException
        (["--json", "{tmp}"], "cannot write"),  # a folder; was: IsADirectoryError
    ],
)
def test_evaluate_refuses_bad_options(
    extra: list[str], expected: str, tmp_path: Path, devset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    rc, text = run(capsys, "evaluate", str(devset / "video.avi"), "--gt", str(devset / "gt.txt"),
                   "--pred", str(devset / "gt.txt"), *args)
    assert rc == 2 and expected in text


def test_evaluate_with_an_unknown_camera_lists_the_known_ones(devset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, text = run(capsys, "evaluate", "--devset", DEVSET, "--camera", "nosuch",
                   "--pred", str(devset / "gt.txt"))  # was: KeyError
    assert rc == 2 and "nosuch" in text and "Traceback" not in text


# ---------------------------------------------------------------- analyze


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--camera", "nosuch"], "nosuch"),  # was: KeyError
        (["--analysis-fps", "0"], "--analysis-fps: expected frames per second"),  # was: ZeroDivisionError
        (["--fps", "nan"], "--fps: expected frames per second"),  # was: ValueError
        (["--start", "9999-12-31T23:59:59"], "expected a year from 1970 to 9000"),  # was: a traceback per frame
        (["--events", "{tmp}"], "--events"),  # a folder; was: IsADirectoryError
        (["--mot", "{tmp}"], "--mot"),
    ],
)
def test_analyze_refuses_bad_options_before_the_first_frame(
    extra: list[str], expected: str, tmp_path: Path, devset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    rc, text = run(capsys, "analyze", str(devset / "video.avi"), "--no-progress", *args)
    assert rc == 2 and expected in text and "frames analysed" not in text


# ---------------------------------------------------------------- report, heatmap, calibrate


def _store_with_history(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "store.yaml"
    cfg.write_text(
        "version: 1\nstore: {id: s1, timezone: UTC}\n"
        f"data_dir: {tmp_path / 'data'}\nmqtt: {{enabled: false}}\ncameras:\n"
        "  - id: cam-1\n    source: cam-1.mp4\n    zones:\n"
        "      - {id: q1, kind: queue, lane: lane-1, polygon: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.9], [0.1, 0.9]]}\n"
    )
    db = tmp_path / "data" / "history.db"
    db.parent.mkdir(parents=True)
    day_s = 1_714_521_600.0  # 2024-05-01T00:00Z
    msgs = [Message("event", "queue_wait", {
        "schema": "storesense.event.queue_wait/1", "store_id": "s1", "timestamp_s": day_s + 36000 + 60 * k,
        "event_id": f"w{k}", "type": "queue_wait", "lane_id": "lane-1", "camera_id": "cam-1",
        "joined_s": day_s + 36000 + 60 * k - 40, "served_s": day_s + 36000 + 60 * k, "wait_s": 40.0,
        "outcome": "served"}, "event") for k in range(5)]
    with HistorySink(db, topics=Topics("s1", "storesense")) as sink:
        sink.emit(msgs)
    return cfg, db


def test_a_damaged_history_row_is_skipped_not_the_whole_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = _store_with_history(tmp_path)
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(messages)")]
        payload_col = next(c for c in columns if c in ("payload", "payload_json", "json"))
        rid = conn.execute("SELECT MIN(rowid) FROM messages").fetchone()[0]
        conn.execute(f"UPDATE messages SET {payload_col} = 'not json' WHERE rowid = ?", (rid,))
    out = tmp_path / "r.html"
    rc, text = run(capsys, "report", "--config", str(cfg), "--from", "2024-05-01", "--to", "2024-05-01", "--out", str(out))
    assert rc == 0 and out.exists()  # was: JSONDecodeError
    assert "is not a JSON object; skipping it" in text


def test_a_corrupt_history_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = _store_with_history(tmp_path)
    raw = bytearray(db.read_bytes())
    for i in range(4096, len(raw), 97):  # every page after the header, not the header itself
        raw[i] ^= 0xA5
    db.write_bytes(bytes(raw))
    rc, text = run(capsys, "report", "--config", str(cfg), "--from", "2024-05-01", "--to", "2024-05-01",
                   "--out", str(tmp_path / "r.html"))
    assert rc == 2 and str(db) in text and "Traceback" not in text  # was: sqlite3.DatabaseError


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--to", "9999-12-31"], "too far in the past or future"),  # was: OverflowError
        (["--from=-99999999999w"], "too far in the past or future"),  # was: ValueError
        (["--greet-level", "7"], "--greet-level: expected a share"),  # was: ValueError in zones/staffing
        (["--target-wait-s", "-1"], "--target-wait-s: expected 0 or more"),
        (["--out", "{tmp}"], "is a folder"),  # was: IsADirectoryError, and a stray '<dir>.tmp'
    ],
)
def test_report_refuses_bad_options(
    extra: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = _store_with_history(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "r.html")]
    rc, text = run(capsys, "report", "--config", str(cfg), *args)
    assert rc == 2 and expected in text
    assert not Path(str(tmp_path) + ".tmp").exists()


def test_calibrate_refuses_a_grid_that_would_fill_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = _store_with_history(tmp_path)
    rc, text = run(capsys, "calibrate", "--config", str(cfg), "--camera", "cam-1", "--grid-m", "1e-9")
    assert rc == 2 and "--grid-m: expected a spacing" in text  # was: MemoryError (44.7 GiB)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["display", "--config", "x.yaml", "--port", "99999"], "expected a port number 0..65535"),  # OverflowError
        (["display", "--config", "x.yaml", "--mqtt-port", "0"], "expected a port number 1..65535"),
        (["demo", "--port", "-1"], "expected a port number 0..65535"),
        (["bench", "--cameras", "0"], "expected a whole number, 1 or more"),  # was: ZeroDivisionError in the table
        (["bench", "--parallel-frames", "-1"], "expected a whole number, 1 or more"),
        (["models", "quantize", "yolov8n", "--frames", "-1"], "expected a whole number, 1 or more"),
        (["demo", "--duration-s", "-5"], "expected a number above 0"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, text = run(capsys, *argv)
    assert rc == 2 and expected in text


# ---------------------------------------------------------------- hq


def test_hq_with_an_unreachable_database_says_so_without_the_password(tmp_path: Path) -> None:
    cfg = tmp_path / "hq.yaml"
    cfg.write_text('version: 1\npostgres: {dsn: "postgresql://hq:s3cret-pw@127.0.0.1:1/chain?connect_timeout=2"}\n'
                   "stores: [{id: s1}]\n")
    for command in (["migrate"], ["report", "--out", str(tmp_path / "chain.html")]):
        proc = subprocess.run([sys.executable, "-m", "hq", *command, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr  # was: psycopg.OperationalError traceback
        assert "cannot use PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr
        assert "s3cret-pw" not in proc.stderr and "127.0.0.1" in proc.stderr


def test_a_file_where_a_folder_must_be_is_named_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x")
    rc, text = run(capsys, "models", "quantize", "yolov8n-320", "--data-dir", str(not_a_folder), "--frames", "4")
    assert rc == 2 and f"cannot use {not_a_folder}" in text and "Not a directory" in text  # was: NotADirectoryError
