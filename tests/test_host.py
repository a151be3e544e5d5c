"""edge.host: the malloc arena cap really caps (counted by glibc itself), and the int8 note."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge import host

REPO = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# six threads alive at once, each allocating blocks big enough to bypass pymalloc: without a cap
# glibc gives each its own arena; malloc_stats() prints one "Arena N:" line per arena to stderr
_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, threading
    from edge.host import cap_malloc_arenas
    if sys.argv[1] == "cap":
        print("cap", cap_malloc_arenas(1), flush=True)
    elif sys.argv[1] == "cli":  # the storesense command caps before it starts any thread
        from edge.cli import main
        try:
            main(["models", "--help"])
        except SystemExit:
            pass
    gate = threading.Barrier(7)
    def work():
        held = [bytearray(300_000) for _ in range(4)]
        gate.wait(); gate.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads: t.start()
    gate.wait()
    ctypes.CDLL("libc.so.6").malloc_stats()
    gate.wait()
    for t in threads: t.join()
    """
)


def _arenas(mode: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", _ARENAS, mode], cwd=REPO, env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True, text=True, timeout=60, check=True,
    )
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines()), out.stdout


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_cap_malloc_arenas_limits_the_arenas_glibc_makes() -> None:
    free, _ = _arenas("none")
    capped, said = _arenas("cap")
    assert free >= 4, f"without a cap six threads should get their own arenas, glibc made {free}"
    assert capped == 1, f"cap 1 but glibc made {capped} arenas"
    assert "cap 1" in said


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_operators_malloc_arena_max_wins() -> None:
    # the operator's own setting (read by glibc at start-up) is reported, never overridden
    capped, said = _arenas("cap", MALLOC_ARENA_MAX="3")
    assert "cap 3" in said
    assert capped == 3


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_storesense_command_caps_the_arenas() -> None:
    capped, _ = _arenas("cli")
    assert 1 <= capped <= host.MALLOC_ARENAS, f"storesense left glibc {capped} arenas"


def test_int8_note_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert host.int8_dot_product() is False
    assert "no VNNI" in host.int8_note()
    monkeypatch.setattr(host, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert host.int8_dot_product() is True
    assert "avx512_vnni" in host.int8_note()
    monkeypatch.setattr(host, "cpu_flags", lambda: frozenset())
    assert host.int8_dot_product() is None


@pytest.mark.skipif(platform.system() != "Linux", reason="/proc/cpuinfo is Linux's")
def test_cpu_flags_are_read_from_proc() -> None:
    flags = host.cpu_flags()
    assert flags, "no flags line found in /proc/cpuinfo"
    if platform.machine() == "x86_64":
        assert "sse2" in flags


# 200 blocks of 1 MB from the heap (the mmap threshold raised, as glibc does by itself once a
# frame-sized buffer has been freed), all freed but the topmost: the heap cannot shrink from the
# top, so the freed 199 MB stay resident until malloc_trim hands their pages back
_TRIM = textwrap.dedent(
    """
    import ctypes
    from edge.host import release_free_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    blocks = [libc.malloc(1 << 20) for _ in range(200)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    for b in blocks[:-1]:
        libc.free(b)
    before = rss_mb()
    released = release_free_memory()
    print(before, rss_mb(), released)
    """
)


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_free_memory_hands_freed_heap_pages_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _TRIM], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=True,
    )
    before_mb, after_mb, released = out.stdout.split()
    assert released == "True"
    assert float(before_mb) - float(after_mb) > 150.0, out.stdout  # of the 199 MB freed
