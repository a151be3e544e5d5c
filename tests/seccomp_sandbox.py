"""Run a command under the system-call filter a systemd unit would give it.

    python tests/seccomp_sandbox.py UNIT_FILE -- COMMAND [ARGS...]

Why: `systemd-analyze verify` checks a unit's syntax, not whether the program survives its
sandbox. ``SystemCallFilter=`` without ``SystemCallErrorNumber=`` kills the process on the first
call outside the list, and NumPy's OpenBLAS calls ``mbind`` at import: both shipped units died
before logging a line. CI has no systemd as PID 1, so this applies the unit's filter the way
systemd does (libseccomp, the groups expanded by ``systemd-analyze syscall-filter``) and then
execs the command, which keeps the filter.

Applied: ``SystemCallFilter=`` (an allow list, ``~`` lines removing from it),
``SystemCallErrorNumber=`` (else the process is killed), ``MemoryDenyWriteExecute=yes``
(no writable and executable mapping, no ``mprotect`` to executable).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ACT_KILL_PROCESS = 0x80000000
ACT_ALLOW = 0x7FFF0000
CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4


def act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@cache
def expand(group: str) -> frozenset[str]:
    """The system calls of a systemd group (``@system-service``), nested groups included."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True)
    names: set[str] = set()
    for raw in out.stdout.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == group:
            continue
        if line.startswith("@"):
            names |= expand(line)
        elif re.fullmatch(r"[a-z0-9_]+", line):
            names.add(line)
    return frozenset(names)


def unit_policy(unit_text: str) -> tuple[set[str], int, bool]:
    """(allowed calls, default action, deny write+exec memory) of a unit's [Service] section."""
    allowed: set[str] = set()
    default = ACT_KILL_PROCESS
    mdwe = False
    for raw in unit_text.splitlines():
        key, _, value = raw.strip().partition("=")
        if key == "SystemCallFilter":
            deny = value.startswith("~")
            calls: set[str] = set()
            for item in value.lstrip("~").split():
                calls |= expand(item) if item.startswith("@") else {item}
            allowed = allowed - calls if deny else allowed | calls
        elif key == "SystemCallErrorNumber":
            default = act_errno(getattr(errno, value.strip()))
        elif key == "MemoryDenyWriteExecute":
            mdwe = value.strip() in ("yes", "true", "1")
    if not allowed:
        raise SystemExit(f"{unit_text[:40]!r}...: no SystemCallFilter= allow list to apply")
    return allowed, default, mdwe


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


def load_filter(allowed: set[str], default: int, mdwe: bool) -> None:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(default)
    guarded = {"mmap": PROT_WRITE | PROT_EXEC, "mprotect": PROT_EXEC, "pkey_mprotect": PROT_EXEC} if mdwe else {}
    for name in sorted(allowed - set(guarded)):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # a name this kernel's architecture lacks
            lib.seccomp_rule_add(ctx, ACT_ALLOW, nr, 0)
    for name, mask in guarded.items():
        if name not in allowed:
            continue
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        for prot in range(0, mask + 1):
            if prot & ~mask:
                continue
            action = act_errno(errno.EPERM) if prot == mask else ACT_ALLOW
            if action == default:
                continue
            cmp = _ArgCmp(2, CMP_MASKED_EQ, mask, prot)
            assert lib.seccomp_rule_add_array(ctx, action, nr, 1, ctypes.byref(cmp)) == 0, (name, prot)
    assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    load_filter(*unit_policy(Path(argv[0]).read_text()))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
