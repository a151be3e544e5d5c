"""The host the edge runs on: what its CPU can do, and how glibc's malloc is kept in check.

Two facts decide whether settings are worth it on a given box, and neither shows in the config:

* **int8 needs VNNI.** ONNX Runtime's int8 convolutions beat fp32 clearly only where the CPU has
  dot-product instructions for bytes (x86 AVX-512 VNNI, AVX-VNNI or AMX; Arm's dot product). On
  a plain AVX2 CPU they measured no faster than fp32 here (README, "Speed"), so ``precision:
  int8`` there is a warning, not a speed-up.
* **glibc malloc arenas.** Every thread that allocates gets its own arena, up to eight per core.
  With a dozen camera decode threads and the detector workers, the arenas fill and fragment for
  hours (docs/operations.md §8): with 12 cameras, 359 → 421 MB over 30 minutes and still 1 MB/min
  at the end, against 356 → 392 MB and 0.08 MB/min with four arenas, in the same hour. Capping
  them before any thread starts is the same as ``MALLOC_ARENA_MAX`` in the environment, without
  every way of starting the edge (systemd, Docker, a shell) having to remember it.
* **Freed memory stays resident.** Even with four arenas, glibc gives freed memory back to the
  kernel only from the top of a heap, so RSS follows the high-water mark of fragmentation rather
  than what the edge holds. With 12 cameras analysing all they can, RSS before and after a
  ``malloc_trim`` every minute was 444-459 MB and 433-441 MB: the "after" figure is flat from the
  fifth minute, while without trimming RSS had grown 0.5 MB/min for 30 minutes. The runtime trims
  once a minute (a 1-11 ms call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from functools import lru_cache

log = logging.getLogger("storesense.host")

# Arenas the edge allows itself: 4 kept 12 cameras' throughput within run-to-run noise of glibc's
# default (16 on 2 cores) where 2 cost ~5 % (docs/operations.md §8)
MALLOC_ARENAS = 4
# glibc's mallopt() parameter number for the arena cap (malloc.h: #define M_ARENA_MAX -8)
_M_ARENA_MAX = -8
# x86 and Arm flag names (as /proc/cpuinfo spells them) of byte dot-product instructions
_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


@lru_cache(maxsize=4)
def _cpuinfo(*keys: str) -> str | None:
    """The first /proc/cpuinfo value under one of ``keys`` (x86 and Arm name fields differently)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in keys and value.strip():
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags; empty where there is no /proc/cpuinfo (not Linux)."""
    return frozenset((_cpuinfo("flags", "Features") or "").split())


def cpu_name() -> str:
    return _cpuinfo("model name", "Model", "Hardware") or platform.processor() or platform.machine() or "unknown CPU"


def int8_dot_product() -> bool | None:
    """True if the CPU has byte dot-product instructions, False if not, None if unknown."""
    flags = cpu_flags()
    if not flags:
        return None
    return bool(flags & _INT8_DOT_FLAGS)


def int8_note() -> str:
    """One line for logs and the bench header: will int8 pay off on this CPU?"""
    has = int8_dot_product()
    if has is None:
        return "int8: CPU features unknown"
    found = sorted(cpu_flags() & _INT8_DOT_FLAGS)
    if has:
        return f"int8: this CPU has {', '.join(found)}, so int8 convolutions can beat fp32"
    return "int8: this CPU has no VNNI/AMX/dot-product instructions, so int8 is about as fast as fp32 here"


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool | None:
    """Hand the pages malloc holds free back to the kernel (glibc ``malloc_trim(0)``).

    glibc returns freed memory to the kernel only from the top of each heap; frame-sized buffers
    freed in the middle stay resident, so RSS climbs towards the high-water mark of fragmentation
    and stops saying how much memory the edge really uses. Trimming walks the arenas and releases
    whole free pages (a few ms). True if something was released, None where it is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return None
    try:
        return bool(libc.malloc_trim(ctypes.c_size_t(0)))
    except AttributeError:
        return None


def cap_malloc_arenas(max_arenas: int = MALLOC_ARENAS) -> int | None:
    """Cap glibc's malloc arenas for this process; the cap in force, or None if not glibc.

    Must run before the camera and detector threads start: an arena, once made, stays. An operator's
    own ``MALLOC_ARENA_MAX`` wins (glibc read it at start-up), so this never overrides a deliberate
    choice.
    """
    env = os.environ.get("MALLOC_ARENA_MAX")
    if env is not None:
        return int(env) if env.isdigit() else None
    libc = _glibc()
    if libc is None:
        return None
    try:
        ok = libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(max_arenas))
    except AttributeError:
        return None
    if ok != 1:  # mallopt returns 1 on success
        log.debug("mallopt(M_ARENA_MAX, %d) refused", max_arenas)
        return None
    return max_arenas
