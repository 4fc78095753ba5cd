"""Adversarial: the dumper and the restorer SIGKILLed at many points of trees that hold
the kinds of issue 13 — a pty pair with bytes in its buffers, SysV shared memory,
semaphores with undo entries, a deleted log file, sealed memfds.

A killed dump must leave the tree as it was: untraced, every object as the program left
it (the program's own checks after GO pass, with no restore in between). A killed restore
must leave nothing: no restored task alive, no deleted file brought back under its name,
no IPC object in the caller's namespace.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from test_restore import (  # noqa: F401
    IMGTOOLS, build_prog, killed_restores, pytestmark, running, tracer, wait_for)

# (program, its arguments after OUT GO, extra gcc flags); OUT/GO/DIR are filled in
KINDS = {
    "pty": ("rst_pty", [], []),
    "shm": ("rst_ipc", ["shm"], ["-pthread"]),
    "semundo": ("rst_ipc", ["semundo"], ["-pthread"]),
    "ghostlog": ("rst_files", ["ghostlog"], []),
    "memfd": ("rst_files", ["memfd"], []),
}
POINTS = 8


@pytest.fixture(scope="module")
def exes(tmp_path_factory):
    return {name: build_prog(tmp_path_factory, name, *flags)
            for name, flags in {name: flags for name, _, flags in KINDS.values()}.items()}


def argv(exes, kind, out: Path, go: Path, tmp: Path) -> list[str]:
    name, args, _ = KINDS[kind]
    if name == "rst_pty":
        return [str(exes[name]), str(out), str(go)]
    if name == "rst_ipc":
        return [str(exes[name]), *args, str(out), str(go)]
    return [str(exes[name]), *args, str(out), str(go), str(tmp)]


def started(exes, kind, tmp: Path):
    out, go = tmp / "out", tmp / "go"
    p = subprocess.Popen(argv(exes, kind, out, go, tmp), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what=f"{kind} ready")
    return p, out, go


def stop(p, exe: Path) -> None:
    for pid in running(exe):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    if p.poll() is None:
        p.kill()
    p.wait()


@pytest.mark.parametrize("kind", KINDS)
def test_a_dumper_killed_at_any_point_leaves_the_tree_as_it_was(exes, kind, tmp_path):
    exe = exes[KINDS[kind][0]]
    p, out, go = started(exes, kind, tmp_path)
    try:
        t0 = time.monotonic()
        subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", os.devnull],
                       capture_output=True, timeout=60)        # (a pty's bytes: ERROR, exit 3)
        span = time.monotonic() - t0
        for i in range(POINTS):
            d = subprocess.Popen([*IMGTOOLS, "dump", str(p.pid), "-o", os.devnull],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(span * (i + 1) / (POINTS + 1))
            d.kill()
            d.wait()
            for pid in running(exe):
                wait_for(lambda pid=pid: tracer(pid) <= 0, timeout=10,
                         what=f"pid {pid} released after a kill at {i + 1}/{POINTS + 1}")
        go.touch()
        assert p.wait(timeout=60) == 0, out.read_text()
        report = out.read_text()
        assert "ok " in report and "FAIL" not in report, report
    finally:
        stop(p, exe)


def ipc_ids() -> set[str]:
    """The SysV objects of this IPC namespace, as the kernel lists them."""
    ids = set()
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)
            ids |= {f"{kind}:{line.split()[1]}" for line in f}
    return ids


@pytest.mark.parametrize("kind", ["ghostlog", "shm", "memfd"])
def test_a_restorer_killed_at_any_point_leaves_nothing(exes, kind, tmp_path):
    exe = exes[KINDS[kind][0]]
    p, out, go = started(exes, kind, tmp_path)
    img = tmp_path / "img"
    try:
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
    finally:
        stop(p, exe)
    wait_for(lambda: not running(exe), what="the dumped tree gone")
    files, objects = sorted(os.listdir(tmp_path)), ipc_ids()
    try:
        # (the whole image restores: the tree then runs on as it should, so 0.999 is the last)
        for frac in killed_restores([*IMGTOOLS, "restore", "-"], img.read_bytes(),
                                    (0.001, 0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.999)):
            wait_for(lambda: not running(exe), timeout=10,
                     what=f"no restored task after a kill at {frac:.1%}")
            assert sorted(os.listdir(tmp_path)) == files, f"after a kill at {frac:.1%}"
            assert ipc_ids() == objects, f"IPC objects left after a kill at {frac:.1%}"
    finally:
        if kind == "shm":   # the killed original's segment (rst_ipc removes it at its end)
            subprocess.run(["ipcrm", "-m", out.read_text().split()[1]], capture_output=True)
