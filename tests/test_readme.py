"""Every `imgtools` example of the README runs as written (issue 10, item 17).

The examples are taken from the README's sh blocks, with IMG a sample image, PID a real
process, P a pid of the image, CODE a finding code; they run in bash (pipefail) in a
scratch directory, in the README's order (encode reads what decode wrote), with an
`imgtools` on PATH that runs this tree. Only `imgtools debug IMG` (gdb at a prompt) and
the install/test commands are left out."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "v23" / "threads.img"
# upgrade/downgrade show the lossless case: an image v18 can hold whole (the v23 sample,
# a live process's, loses its fs_struct below v19 and is refused, as documented)
OLDER = ROOT / "samples" / "v19-rc2" / "threads.img"


def examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            cmd = line.split("  #")[0].strip()
            if cmd.startswith("imgtools") and cmd != "imgtools debug IMG":
                lines.append(cmd)
    return lines


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    bin_ = d / "bin"
    bin_.mkdir()
    (bin_ / "imgtools").write_text(f"#!/bin/sh\nexec {sys.executable} -m imgtools \"$@\"\n")
    (bin_ / "imgtools").chmod(0o755)
    shutil.copy(SAMPLE, d / "sample.img")
    shutil.copy(OLDER, d / "older.img")
    return d


def test_readme_has_examples():
    assert len(examples()) >= 20


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gdb") is None,
                    reason="the examples need the engine (gcc) and gdb")
def test_every_example_runs(scratch):
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               PATH=f"{scratch / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def sleeper():
        return subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    target = sleeper()
    restored = []
    ps = subprocess.run([sys.executable, "-m", "imgtools", "ps", "--json", "sample.img"],
                        cwd=scratch, env=env, capture_output=True)
    pid_in_image = json.loads(ps.stdout)[0]["pid"]
    failed = []
    try:
        for cmd in examples():
            if "zstd" in cmd and shutil.which("zstd") is None:
                continue
            img = " older.img" if cmd.split()[1] in ("upgrade", "downgrade") else " sample.img"
            line = (cmd.replace("[--pid P]", f"--pid {pid_in_image}")
                    .replace("--pid P", f"--pid {pid_in_image}")
                    .replace(" IMG", img).replace(" PID", f" {target.pid}")
                    .replace(" CODE", " objref.forward").replace(" DIR", " cores"))
            if " PID" in cmd and target.poll() is not None:
                target = sleeper()          # the previous example ended it (dump --kill)
            if " PID" in cmd:
                line = re.sub(r"dump \d+", f"dump {target.pid}", line)
            r = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=scratch, env=env,
                               capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
            if " PID" in cmd and "--kill" in cmd:
                target.wait()               # reaped: its pid is the example's no more
            if "restore" in cmd and "--detach" in cmd and r.returncode == 0:
                restored.append(int(r.stdout.split()[-1]))
            if r.returncode != 0:
                failed.append(f"{cmd!r} -> exit {r.returncode}: "
                              f"{r.stderr.decode(errors='replace').strip()[-300:]}")
    finally:
        target.kill()
        for pid in restored:                # a restored sleep: its namespace goes with it
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        target.wait()
    assert not failed, "\n".join(failed)
