"""Real HTTP MJPEG cameras on loopback, for the tests and for ``scripts/camera_soak.py --live``.

OpenCV's FFmpeg backend reads ``multipart/x-mixed-replace`` streams over HTTP, so the edge reads
these through its real live path (``LiveSource``: capture thread, newest frame kept, reconnects).
"""

from __future__ import annotations

import http.server
import re
import socketserver
import threading
import time
from pathlib import Path

import cv2


class MjpegServer:
    """``cameras`` streams of ``jpegs`` at ``/cam-I.mjpg`` (any other path is camera 0), each
    from offset ``I * len / cameras``, looped, paced by a monotonic schedule at one frame per
    ``frame_interval_s`` (a reader that falls behind is not waited for: the frames due while it
    was blocked are skipped, as a camera would). With ``frames_per_connection`` the server drops
    each connection after that many frames: a camera whose stream dies."""

    def __init__(self, jpegs: list[bytes], frames_per_connection: int | None = None,
                 frame_interval_s: float = 0.02, cameras: int = 1) -> None:
        if not jpegs:
            raise ValueError("MjpegServer needs at least one JPEG")
        self.jpegs = jpegs
        self.frames_per_connection = frames_per_connection
        self.frame_interval_s = frame_interval_s
        self.connections = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.connections += 1
                m = re.fullmatch(r"/cam-(\d+)\.mjpg", self.path)
                n = len(server.jpegs)
                offset = int(m.group(1)) * n // max(cameras, 1) if m else 0
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0 = time.monotonic()
                sent = 0
                try:
                    while server.frames_per_connection is None or sent < server.frames_per_connection:
                        k = int((time.monotonic() - t0) / server.frame_interval_s)
                        j = server.jpegs[(offset + k) % n]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j))
                        self.wfile.write(j + b"\r\n")
                        sent += 1
                        time.sleep(max(0.0, t0 + (k + 1) * server.frame_interval_s - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def camera_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/cam-{i}.mjpg"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def jpegs_of(video: Path, n: int | None = 10, size_px: tuple[int, int] | None = (320, 180),
             quality: int = 95) -> list[bytes]:
    """The first ``n`` frames of ``video`` (all with None) as JPEG, resized to ``size_px`` (None:
    as they are)."""
    cap = cv2.VideoCapture(str(video))
    out: list[bytes] = []
    while n is None or len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if size_px is not None:
            frame = cv2.resize(frame, size_px)
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    cap.release()
    return out
