"""Subcommands of the edge runtime: validate-config, run, analyze, bench, demo."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any

from edge.config import ConfigError, StoreConfig, load_config, parse_config
from edge.config_checks import Where
from edge.contract import Frame, Tracks
from edge.errors import UserFacingError, fps_arg, open_output, positive_float_arg, tcp_port_arg
from edge.history import history_sink_from_config
from edge.resources import videos_dir
from edge.sd_notify import SystemdNotifier
from edge.sinks import FanoutSink, JsonlSink, MemorySink, Sink
from edge.sources import FileSource
from mqtt_bridge.topics import Topics

log = logging.getLogger("storesense")

DEMO_CONFIG = Path(__file__).parent / "demo" / "store.yaml"


# ---------------------------------------------------------------------------------------------
# validate-config


def check_model(data: dict[str, Any], where: Where) -> None:
    """``model.name`` must be in the registry and its file present: otherwise ``run`` fails at start."""
    from edge.config_checks import did_you_mean, short
    from edge.resources import models_dir
    from models.registry import FAMILIES, REGISTRY, Family

    model = data.get("model")
    if not isinstance(model, dict) or model.get("path") is not None:
        return
    name = model.get("name", "yolox-nano")
    if not isinstance(name, str):
        return
    known = {**REGISTRY, **FAMILIES}
    if name not in known:
        where.add(("model", "name"), f"unknown model name {short(name)}{did_you_mean(name, known)}; "
                  f"known: {', '.join(sorted(known))} (or set model.path to an .onnx file)")
        return
    spec = REGISTRY.get(name) or FAMILIES[name]
    if model.get("precision") == "int8" and spec.no_int8:
        where.add(("model", "precision"), f"precision int8 is not offered for {name}: {spec.no_int8}; use "
                  "precision: fp32, or name: yolov8n / yolo11n for int8")
    filename = spec.resizable_file if isinstance(spec, Family) else spec.filename
    if not (models_dir() / filename).is_file():
        where.add(("model", "name"), f"model file {filename} not found in {models_dir()} "
                  "(set STORESENSE_MODELS_DIR to the folder that holds it)")


def check_calibrations(data: dict[str, Any], where: Where) -> None:
    """Each calibration must fit (not degenerate) and, for a file source, match its frame shape:
    otherwise every frame of that camera fails at run time."""
    from pydantic import ValidationError

    from calibration.config import CalibrationConfig
    from calibration.homography import Calibration

    base = Path(where.filename).resolve().parent
    cams = data.get("cameras")
    for i, cam in enumerate(cams if isinstance(cams, list) else []):
        if not isinstance(cam, dict) or not isinstance(cam.get("calibration"), dict):
            continue
        try:
            cal_cfg = CalibrationConfig.model_validate(cam["calibration"])
        except ValidationError:
            continue  # already reported by the schema check
        path = ("cameras", i, "calibration")
        try:
            cal = Calibration.from_config(cal_cfg, lambda v: Path(v) if Path(v).is_absolute() else base / v)
            size = _file_frame_size(cam.get("source"), base)
            if size is not None:
                cal.for_frame_size(size)
        except (UserFacingError, ConfigError) as exc:
            where.add(path, str(exc).splitlines()[0][:300])


def _file_frame_size(source: Any, base: Path) -> tuple[int, int] | None:
    if not isinstance(source, str) or "://" in source:
        return None
    import cv2

    p = Path(source).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        return None
    cap = cv2.VideoCapture(str(p))
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    return (w, h) if w > 0 and h > 0 else None


def check_sources(data: dict[str, Any], where: Where) -> None:
    """A file source that is not a readable video. Only ``validate-config`` refuses it: ``run``
    starts the other cameras and retries this one (it may be mounted or copied later)."""
    import cv2

    base = Path(where.filename).resolve().parent
    cams = data.get("cameras")
    for i, cam in enumerate(cams if isinstance(cams, list) else []):
        source = cam.get("source") if isinstance(cam, dict) else None
        if not isinstance(source, str) or "://" in source or cam.get("enabled", True) is False:
            continue
        p = Path(source).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            what = "is a folder" if p.is_dir() else "not found"
            where.add(("cameras", i, "source"), f"video file {p} {what} (run would start the other cameras "
                      "and retry this one)")
            continue
        cap = cv2.VideoCapture(str(p))
        ok = cap.isOpened()
        cap.release()
        if not ok:
            where.add(("cameras", i, "source"), f"OpenCV cannot open {p} (empty, corrupt or unsupported)")


RUN_CHECKS = (check_model, check_calibrations)
VALIDATE_CHECKS = (*RUN_CHECKS, check_sources)


def load_run_config(path: str | Path) -> StoreConfig:
    """The config as ``run`` needs it: schema, cross-references and the environment, in one pass."""
    return load_config(path, extra_checks=RUN_CHECKS)


def cmd_validate_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, extra_checks=VALIDATE_CHECKS)
    zones = sum(len(c.zones) for c in cfg.cameras)
    print(f"{args.config}: OK — store {cfg.store.id}, {len(cfg.cameras)} camera(s), {zones} zone(s)")
    for cam in cfg.cameras:
        if cam.calibration is None and any(z.kind in ("entrance", "dwell") for z in cam.zones):
            print(
                f"  note: camera {cam.id} has no calibration: zones work in image coordinates, but greeting/"
                "approach distances (greet_radius_m) are approximate until you add one (storesense calibrate)"
            )
    return 0


# ---------------------------------------------------------------------------------------------
# analyze


class MotWriter:
    """MOTChallenge rows ``frame,id,x,y,w,h,conf,-1,-1,-1``: frames from 1, pixels of the input video.

    Rows are kept until ``close()`` (a recording's tracks fit in memory), which fills the gaps of
    re-associated tracks by linear interpolation (offline only; ``interpolate=False`` to keep only
    what was observed); filled rows have confidence -1. See docs/tracker.md, "Offline gap filling"."""

    def __init__(self, path: str | Path, *, interpolate: bool = True, max_unheld_gap_frames: int = 0) -> None:
        self.path = Path(path)
        self._fh: IO[str] = open_output(self.path, "--mot")
        self.rows = 0
        self.filled = 0
        self.ids: set[int] = set()
        self.interpolate = interpolate
        self.max_unheld_gap_frames = max_unheld_gap_frames
        self._boxes: dict[int, dict[int, tuple[float, float, float, float]]] = {}
        self._conf: dict[tuple[int, int], float] = {}
        self._frames: list[int] = []
        self._held: dict[int, tuple[int, ...]] = {}

    def write(self, tracks: Tracks) -> None:
        f = tracks.frame_index + 1
        self._frames.append(f)
        if tracks.held_ids:
            self._held[f] = tracks.held_ids
        for t in tracks:
            self._boxes.setdefault(t.track_id, {})[f] = t.xyxy
            self._conf[(f, t.track_id)] = t.confidence
            self.ids.add(t.track_id)

    def close(self) -> None:
        from edge.evaluate import fill_gaps

        filled = fill_gaps(self._boxes, self._frames, self._held, self.max_unheld_gap_frames) if self.interpolate else {}
        out: list[tuple[int, int, tuple[float, ...], float]] = []
        for tid, by_frame in self._boxes.items():
            out.extend((f, tid, box, self._conf[(f, tid)]) for f, box in by_frame.items())
        for tid, gaps in filled.items():
            out.extend((f, tid, box, -1.0) for f, box in gaps.items())
        for f, tid, (x1, y1, x2, y2), conf in sorted(out, key=lambda r: (r[0], r[1])):
            self._fh.write(f"{f},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{conf:.4f},-1,-1,-1\n")
        self.rows = len(out)
        self.filled = sum(len(v) for v in filled.values())
        self._fh.close()


def default_store_config(source: str) -> StoreConfig:
    """A one-camera store with no zones: enough to detect, track and accumulate a heatmap."""
    text = (
        "version: 1\nstore: {id: offline}\ncameras:\n"
        f"  - id: cam-1\n    source: {source!r}\n    fps: 10\nmqtt: {{enabled: false}}\n"
    )
    return parse_config(text, "<default config>")


def parse_start(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserFacingError(f"--start {value!r}: expected an ISO date/time such as 2026-11-23T09:00:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    if not 1970 <= when.year <= 9000:  # hour and day buckets must stay inside datetime's years
        raise UserFacingError(f"--start {value!r}: expected a year from 1970 to 9000")
    return when.timestamp()


class Progress:
    """A progress bar on stderr (tqdm) when attached to a terminal or asked for."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr, mininterval=0.5)
        self._last = -1

    def update_to(self, frame_index: int) -> None:
        if self.bar is not None and frame_index > self._last:
            self.bar.update(frame_index - max(self._last, -1))
            self._last = frame_index

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_analyze(args: argparse.Namespace) -> int:
    from edge.runtime import Runtime, build_analytics, build_detector, build_tracker, open_worker

    video = Path(args.video)
    if not video.exists():
        raise UserFacingError(f"video not found: {video}")
    cfg = load_run_config(args.config) if args.config else default_store_config(str(video.resolve()))
    try:
        camera = cfg.camera(args.camera) if args.camera else cfg.cameras[0]
    except KeyError as exc:
        raise UserFacingError(str(exc.args[0])) from None
    if args.analysis_fps is not None:
        camera = camera.model_copy(update={"fps": args.analysis_fps})
    topics = Topics(cfg.store.id, cfg.mqtt.prefix)
    detector = build_detector(cfg, throughput=True)  # a file, decoded as fast as the detector goes
    worker = open_worker(
        cfg,
        camera,
        detector,
        build_tracker(cfg),
        fps_override=args.fps,
        source_override=str(video),
        start_epoch_s=parse_start(args.start),
        # a recording analysed on a live box must not replace the live camera's /setup files
        # (track flow, static places) any more than its history: both only with --history
        setup_reports=bool(args.history),
    )
    sinks: list[Sink] = []
    events = JsonlSink(args.events, topics) if args.events else None
    if events is not None:
        sinks.append(events)
    if args.history:
        # opt-in: analysing a recording on a live box used to add it to the store's history
        # silently, doubling that period's figures in every report
        if not args.config:
            raise UserFacingError("--history needs --config (the store whose history the recording joins)")
        history = history_sink_from_config(cfg)
        if history is None:
            raise UserFacingError(f"--history: history is disabled in {args.config} (history.enabled: false)")
        sinks.append(history)
    # gaps up to max_lost_s are detector misses; longer ones are filled only where the track was held
    src_fps = worker.source.fps if isinstance(worker.source, FileSource) else camera.fps
    max_gap = int(round(cfg.tracker.max_lost_s * src_fps)) + 1
    mot = MotWriter(args.mot, interpolate=not args.no_interpolate, max_unheld_gap_frames=max_gap) if args.mot else None
    frame_count = worker.source.frame_count if isinstance(worker.source, FileSource) else 0
    progress = Progress(frame_count, video.name, enabled=not args.no_progress)

    def on_tracks(tracks: Tracks, frame: Frame) -> None:
        if mot is not None:
            mot.write(tracks)
        progress.update_to(frame.index)

    analytics = build_analytics(cfg) if not args.no_analytics else None
    runtime = Runtime(cfg, [worker], FanoutSink(sinks) if sinks else MemorySink(), analytics, on_tracks=on_tracks,
                      save_reference_frames=bool(args.history))
    _install_signal_handlers(runtime.stop)
    summary = runtime.run()
    progress.close()
    if mot is not None:
        mot.close()
    for sink in sinks:
        if sink is not events:
            sink.close()
    if events is not None:
        events.close()
    frames = summary.frames_processed.get(camera.id, 0)
    fps = frames / summary.wall_s if summary.wall_s else 0.0
    parts = [f"{video.name}: {frames} frames analysed at {camera.fps:g} fps in {summary.wall_s:.1f} s ({fps:.1f} frames/s)"]
    if mot is not None:
        parts.append(f"{len(mot.ids)} track ids, {mot.rows} rows ({mot.filled} interpolated) -> {mot.path}")
    if events is not None:
        parts.append(f"{events.count} messages -> {events.path}")
    corrupt = summary.frames_corrupt.get(camera.id, 0)
    if corrupt:
        parts.append(f"frames_corrupt {corrupt} ({worker.stats.reason or 'undecodable frames'})")
    print("; ".join(parts))
    # 1: finished with processing errors (README): failed frames, or frames the file could not give
    return 0 if summary.errors.get(camera.id, 0) == 0 and corrupt == 0 else 1


# ---------------------------------------------------------------------------------------------
# run


def _install_signal_handlers(stop: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s: shutting down cleanly", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def build_live_sinks(cfg: StoreConfig, topics: Topics, runtime_ref: list[Any]) -> tuple[list[Sink], Any]:
    """MQTT publisher + on-box history, fed from the same message stream."""
    sinks: list[Sink] = []
    publisher = None
    history: Any = None
    if cfg.mqtt.enabled:
        from mqtt_bridge.publisher import MqttPublisher

        def on_lane_command(lane_id: str, state: str) -> None:
            if runtime_ref:
                runtime_ref[0].submit_lane_command(lane_id, state)

        lanes = {lane.lane_id for lane in cfg.lanes()}
        discovery: list[tuple[str, bytes]] = []
        if cfg.mqtt.home_assistant.enabled:
            from mqtt_bridge.homeassistant import discovery_messages

            discovery = discovery_messages(cfg, topics)
        publisher = MqttPublisher(
            cfg.mqtt, topics, data_dir=cfg.data_path(), on_lane_command=on_lane_command, known_lanes=lanes,
            status_extra=lambda: _history_status(history),
            config_dir=cfg.source_path.parent if cfg.source_path is not None else None,
            retained_on_connect=discovery,
        )
        sinks.append(publisher)
    from edge.history import HistoryDiskFull

    try:
        history = history_sink_from_config(cfg)
    except HistoryDiskFull as exc:  # history is sacrificed before events: the store still runs
        log.error("%s; running without history until the next start (events are still sent)", exc)
        history = None
    if history is not None:
        sinks.append(history)
    return sinks, publisher


def _start_metrics(cfg: StoreConfig, workers: list[Any], publisher: Any, runtime: Any) -> Any:
    """Prometheus /metrics (metrics: section): collectors read the workers and the publisher."""
    if not cfg.metrics.enabled:
        return None
    from edge.metrics import StoreCollector, StoreMetrics

    metrics = StoreMetrics(cfg.metrics)
    for w in workers:
        w.pipeline.timer.on_sample = metrics.stage_observer(w.camera.id)
    metrics.add_collector(StoreCollector(cfg.store.id, cfg.data_path(), workers, publisher, runtime))
    metrics.start()
    return metrics


def _history_status(history: Any) -> dict[str, Any]:
    if history is None:
        return {}
    return {"history_dropped": history.dropped, "history_disk_full": history.disk_full}


def run_store(cfg: StoreConfig, *, realtime: bool = False, loop: bool = False, events_path: str | None = None,
              stop_event: threading.Event | None = None) -> int:
    from edge.runtime import Runtime, build_analytics, build_detector, build_tracker, open_worker

    topics = Topics(cfg.store.id, cfg.mqtt.prefix)
    # files not paced at their frame rate always have a frame due: frames/s matters, not latency
    detector = build_detector(cfg, throughput=not realtime and any(not c.is_live for c in cfg.cameras if c.enabled))
    workers = []
    for camera in cfg.cameras:
        if not camera.enabled:
            continue
        workers.append(open_worker(cfg, camera, detector, build_tracker(cfg), realtime=realtime, loop=loop,
                                   tolerate_errors=True))
    if not workers:
        raise UserFacingError("no enabled cameras in the config")
    runtime_ref: list[Any] = []
    sinks, publisher = build_live_sinks(cfg, topics, runtime_ref)
    if events_path:
        sinks.append(JsonlSink(events_path, topics))
    sink = FanoutSink(sinks)
    notifier = SystemdNotifier()
    runtime = Runtime(cfg, workers, sink, build_analytics(cfg), heartbeat=notifier.watchdog)
    runtime_ref.append(runtime)
    if publisher is not None:
        publisher.start()
    _install_signal_handlers(runtime.stop)
    if stop_event is not None:
        def stop_on_event() -> None:
            stop_event.wait()
            runtime.stop()

        threading.Thread(target=stop_on_event, daemon=True).start()
    metrics = _start_metrics(cfg, workers, publisher, runtime)
    log.info("running store %s with %d camera(s)", cfg.store.id, len(workers))
    # READY once the model is loaded, cameras are opened and the publisher is connecting: a
    # Type=notify unit orders dependants after this, and the watchdog starts counting
    notifier.ready(f"store {cfg.store.id}: {len(workers)} camera(s)")
    try:
        summary = runtime.run()
    finally:
        notifier.stopping()
        sink.close()
        notifier.close()
        if metrics is not None:
            metrics.stop()
    log.info("stopped: %s frames, %d messages", summary.frames_processed, summary.messages)
    corrupt = {cam: n for cam, n in summary.frames_corrupt.items() if n}
    if corrupt or any(summary.errors.values()):
        log.warning("finished with processing errors: frames_corrupt %s, failed frames %s", corrupt,
                    {cam: n for cam, n in summary.errors.items() if n})
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_run_config(args.config)
    return run_store(cfg, realtime=args.realtime, loop=args.loop, events_path=args.events)


# ---------------------------------------------------------------------------------------------
# demo


def cmd_demo(args: argparse.Namespace) -> int:
    if args.day:
        return cmd_demo_day(args)
    from mqtt_bridge.broker import start_mosquitto
    from mqtt_bridge.display import DisplayServer, installer_routes

    os.environ.setdefault("STORESENSE_VIDEOS_DIR", str(videos_dir()))
    cfg = load_run_config(args.config or DEMO_CONFIG)
    # own group: Ctrl-C stops the pipeline first, then the broker; stop_with_owner: a demo killed
    # outright (SIGKILL, closed terminal) does not leave its private broker running
    broker = start_mosquitto(websockets=False, own_process_group=True, stop_with_owner=True)
    cfg.mqtt.port = broker.port
    cfg.mqtt.host = "127.0.0.1"
    # a sandbox, like its broker: /metrics on a free port, so a demo on a box that runs the real
    # service (which holds 9464) does not log "cannot listen" (test_demo failed while a soak ran)
    if args.config is None:
        cfg.metrics.port = 0
    log.info("private Mosquitto broker on 127.0.0.1:%d", broker.port)
    display = DisplayServer(
        cfg,
        host=args.host,
        port=args.port,
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        extra_routes=installer_routes(cfg),
    )
    display.start()
    print(f"StoreSense demo: open {display.url} (checkout display). Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    if args.duration_s:
        threading.Timer(args.duration_s, stop.set).start()
    try:
        return run_store(cfg, realtime=not args.fast, loop=not args.once, stop_event=stop)
    finally:
        stop.set()
        display.stop()
        broker.stop()


def cmd_demo_day(args: argparse.Namespace) -> int:
    """A simulated trading day in a demo history (edge/demo_day.py), then the report on it."""
    from edge.cli import main as cli_main
    from edge.demo_day import PROFILE, simulate_day

    day = args.date or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    try:
        if not 1971 <= dt.date.fromisoformat(day).year <= 9000:
            raise ValueError(day)
    except ValueError:
        raise UserFacingError(f"--date: expected a date like 2026-11-26 (years 1971..9000), found {day!r}") from None
    if not 1 <= args.hours <= len(PROFILE):
        raise UserFacingError(f"--hours: expected 1..{len(PROFILE)} (08:00 onwards), found {args.hours}")
    if not 0.2 <= args.sim_fps <= 10:
        raise UserFacingError(f"--sim-fps: expected 0.2..10 frames/s, found {args.sim_fps}")
    out = Path(args.out)
    print(f"StoreSense demo day {day}: simulating {args.hours} trading hour(s) from 08:00 into {out / 'data'} "
          f"(about a minute per hour)", flush=True)
    cfg_path = simulate_day(out, day, hours=args.hours, fps=args.sim_fps,
                            progress=lambda line: print(f"  {line}", flush=True))
    report = out / "report.html"
    rc = cli_main(["report", "--config", str(cfg_path), "--from", day, "--to", day, "--out", str(report)])
    if rc == 0:
        print(f"open {report.resolve()} in a browser; the store config is {cfg_path}", flush=True)
    return rc


# ---------------------------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import run_bench

    return run_bench(args)


def register(sub: Any) -> None:
    p = sub.add_parser("validate-config", help="check a store config and report problems with line numbers")
    p.add_argument("config")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("run", help="run every camera of the store and publish metrics")
    p.add_argument("--config", required=True)
    p.add_argument("--realtime", action="store_true", help="pace file sources at their frame rate")
    p.add_argument("--loop", action="store_true", help="restart file sources at their end")
    p.add_argument("--events", help="also write every message to this JSONL file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("analyze", help="run the pipeline over a recording; write MOT tracks and events")
    p.add_argument("video")
    p.add_argument("--config", help="store config (default: one camera, no zones, no MQTT)")
    p.add_argument("--camera", help="camera id in the config whose zones/calibration apply (default: first)")
    p.add_argument("--fps", type=fps_arg, help="the video's real frame rate, if its container is wrong")
    p.add_argument("--analysis-fps", type=fps_arg, help="override the camera's analysis fps")
    p.add_argument("--start", help="wall-clock time of the first frame (ISO), default now")
    p.add_argument("--mot", help="write tracks in MOTChallenge format to this file")
    p.add_argument("--events", help="write messages as JSONL {topic, payload} to this file")
    p.add_argument("--no-interpolate", action="store_true",
                   help="--mot: keep only observed boxes (default: fill gaps of re-associated tracks)")
    p.add_argument("--no-analytics", action="store_true", help="detect and track only")
    p.add_argument("--history", action="store_true",
                   help="also add the results to the store's history database (for `storesense report`) and "
                   "refresh the camera's /setup files (reference frame, track flow, static places); off by default "
                   "so a test recording never mixes with the store's real figures")
    p.add_argument("--no-history", action="store_true", help=argparse.SUPPRESS)  # the old default, kept for scripts
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bench", help="speed/accuracy frontier: frames/s vs session.run floor, MOTA/IDF1")
    from edge.bench import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="private broker + pipeline on the sample clip + checkout display; "
                       "--day: a simulated trading day and its report")
    p.add_argument("--config", help="default: the embedded demo store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=tcp_port_arg, default=8080)
    p.add_argument("--fast", action="store_true", help="do not pace the clip at real time")
    p.add_argument("--once", action="store_true", help="stop at the end of the clip instead of looping")
    p.add_argument("--duration-s", type=positive_float_arg, default=None, help="stop after this many seconds")
    p.add_argument("--day", action="store_true",
                   help="instead: fill a demo history with a simulated trading day (peaks, lanes opening and "
                   "closing, greetings, browsing, staff) and write the report on it")
    p.add_argument("--out", default="storesense-demo-day",
                   help="--day: folder for store.yaml, data/history.db (replaced) and report.html")
    p.add_argument("--date", default=None, help="--day: the simulated date, store time UTC (default: yesterday)")
    p.add_argument("--hours", type=int, default=13, help="--day: trading hours from 08:00 (1-13; default the whole day)")
    p.add_argument("--sim-fps", type=float, default=1.0,
                   help="--day: frame rate of the simulated cameras (lower is faster)")
    p.set_defaults(func=cmd_demo)
