"""The engine's promises under adversity, against real processes: no CAP_SYS_RESOURCE,
pending stop signals, vfork parents, dumpers SIGKILLed at random points (also inside the
syscall-injection window), a killed wrapper, and the refusal messages of `imgtools dump`.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgtools.build import build_model
from imgtools.reader import open_image
from test_engine import (PROGS, ROOT, built, children_of, free_pid, run_cli, sigmask,  # noqa: F401
                         state_of, status_of, targets, tracer_of, wait_for)

pytestmark = pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv")

# uid 1000, no supplementary groups: a target root does not own
AS_USER = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"]
# the engine with CAP_SYS_RESOURCE gone from every set (as in many containers)
NO_SYS_RESOURCE = ["setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"]
INF = 2**64 - 1


def load(path: Path):
    with open_image(str(path)) as r:
        return build_model(r)


def spawn(argv, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def reap(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_limits_without_cap_sys_resource(built, tmp_path):
    """A target of another user, the engine without CAP_SYS_RESOURCE: prlimit(2) would
    fail with EPERM; the limits come from /proc/PID/limits, exactly."""
    p = spawn(["prlimit", "--nofile=1234:5678", "--core=0:4096", "--stack=unlimited:unlimited",
               *AS_USER, "sleep", "100"], cwd="/")
    try:
        wait_for("the target to run as uid 1000",
                 lambda: status_of(p.pid)["Uid"].split()[0] == "1000" and
                 status_of(p.pid)["Name"] == "sleep")
        out = tmp_path / "u.img"
        r = subprocess.run([*NO_SYS_RESOURCE, built.engine, "dump", str(p.pid), "-o", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        img = load(out)
        sig = img.get(img.tasks[0].obj("signal"), "signal")
        got = [(x["rlim_cur"], x["rlim_max"]) for x in sig.fields["rlim"]]
        assert got[7] == (1234, 5678)           # RLIMIT_NOFILE
        assert got[4] == (0, 4096)              # RLIMIT_CORE
        assert got[3] == (INF, INF)             # RLIMIT_STACK
        with open(f"/proc/{p.pid}/limits") as f:
            assert f.read().splitlines()[8].split()[3:5] == ["1234", "5678"]
        assert state_of(p.pid) in "SR" and tracer_of(p.pid) == 0
    finally:
        reap(p)
