"""A private PostgreSQL cluster (``initdb`` + ``pg_ctl``) in a temp dir on an ephemeral loopback port.

For tests, drills and the load benchmark: the real engine, started and stopped by the code that
needs it, never a shared server. PostgreSQL refuses to run as root, so as root the cluster is
owned by and runs as an unprivileged user (``postgres`` from the Debian package, else
``nobody``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import UserFacingError
from mqtt_bridge.broker import free_port


def pg_binary(name: str) -> str:
    """``initdb``/``pg_ctl``: on PATH, else the newest ``/usr/lib/postgresql/*/bin`` (Debian)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    if candidates:
        return candidates[-1]
    raise UserFacingError(f"PostgreSQL's {name} is not installed: run `apt-get install -y postgresql` (scripts/setup.sh does)")


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise UserFacingError("running as root and neither a 'postgres' nor a 'nobody' user exists for PostgreSQL")


@dataclass
class PostgresProcess:
    """One cluster. ``dsn`` connects as the superuser ``storesense`` (trust auth on loopback only)."""

    workdir: Path
    port: int
    user: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    dbname: str = "storesense"

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=storesense dbname={self.dbname} connect_timeout=5"

    def _cmd(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, check=False, user=self.user,
                              cwd=self.workdir, env={**os.environ, "LC_ALL": "C.UTF-8"})

    def init(self) -> PostgresProcess:
        res = self._cmd([pg_binary("initdb"), "-D", str(self.datadir), "-U", "storesense", "-A", "trust",
                         "-E", "UTF8", "--no-instructions", "--no-sync"])
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stderr or res.stdout}")
        opts = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.workdir}'",
            "fsync": "on",  # the drills restart PostgreSQL: keep its real durability
            "max_connections": "50",
            **self.settings,
        }
        with (self.datadir / "postgresql.conf").open("a") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in opts.items())
        return self

    def start(self, timeout_s: float = 30.0) -> PostgresProcess:
        res = self._cmd([pg_binary("pg_ctl"), "-D", str(self.datadir), "-l", str(self.log_path), "-w",
                         "-t", str(int(timeout_s)), "start"])
        if res.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr or res.stdout}\n{log[-2000:]}")
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.dsn.replace(f"dbname={self.dbname}", "dbname=postgres"), autocommit=True) as c:
                    exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
                    if not exists:
                        c.execute(f'CREATE DATABASE "{self.dbname}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._cmd([pg_binary("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def start_postgres(settings: dict[str, str] | None = None) -> PostgresProcess:
    """initdb + start a cluster in a fresh temp dir (under /tmp: the cluster user must reach it)."""
    workdir = Path(tempfile.mkdtemp(prefix="storesense-pg-"))
    user = _run_as_user()
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    pg = PostgresProcess(workdir=workdir, port=free_port(), user=user, settings=dict(settings or {}))
    try:
        return pg.init().start()
    except BaseException:
        pg.remove()
        raise
