"""`imgtools to-core IMG | gdb` as the user writes it (issue 10, item 13): real gdb, a real
process dumped by the engine, real shell pipelines.

gdb gets commands that open a private temporary core and print every thread's
backtrace; the core is gone once gdb exits; any other reader of the pipe gets the ELF."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from test_core_gdb import Stopped, _build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)
TOCORE = f"{sys.executable} -m imgtools to-core"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gdb") is None,
                                reason="needs gcc (the engine) and gdb")


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """(image, process) of the threads sample, stopped, dumped by the engine."""
    from imgtools.engine import dump
    d = tmp_path_factory.mktemp("core-pipe")
    p = Stopped(_build(d, "threads"))
    try:
        img = d / "threads.img"
        assert dump(p.pid, img) == 0
        yield img, p
    finally:
        p.kill()


def sh(cmd: str, tmpdir) -> subprocess.CompletedProcess:
    env = dict(ENV, TMPDIR=str(tmpdir))
    return subprocess.run(cmd, shell=True, capture_output=True, env=env, timeout=300)


def _left(tmpdir) -> list[str]:
    """Temporary cores still there, given the cleanup child a moment to see gdb exit."""
    deadline = time.monotonic() + 5
    while (left := glob.glob(os.path.join(tmpdir, "imgtools-core.*"))) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_pipe_to_gdb_prints_every_threads_backtrace(dumped, tmp_path):
    img, p = dumped
    r = sh(f"{TOCORE} {img} | gdb -nx", tmp_path)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    for tid in p.tids:
        assert re.search(rf"^Thread \d+ \(.*LWP {tid}\)\):$", out, re.M), out
    for fn in ("sleeper", "reader", "waiter", "main"):       # symbols: the exe was loaded
        assert re.search(rf"in {fn} \(", out), (fn, out)
    assert re.search(r"^rip\s+0x", out, re.M)                  # the current thread's registers
    assert "Undefined command" not in out + r.stderr.decode()
    assert _left(tmp_path) == []


def test_other_readers_get_the_elf(dumped, tmp_path):
    img, _ = dumped
    assert sh(f"{TOCORE} {img} -o {tmp_path}/file.core", tmp_path).returncode == 0
    r = sh(f"{TOCORE} {img} | cat > {tmp_path}/piped.core", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "piped.core").read_bytes() == (tmp_path / "file.core").read_bytes()
    r = sh(f"{TOCORE} {img} | gzip -1 | gzip -d > {tmp_path}/gz.core", tmp_path)
    assert (tmp_path / "gz.core").read_bytes()[:4] == b"\x7fELF"


def test_gdb_script_option(dumped, tmp_path):
    """--gdb-script to any reader: the commands; the temporary core is private while the
    reader runs and removed after it; with -o the core is kept there."""
    img, _ = dumped
    probe = (f"{sys.executable} -c \"import os, re, sys; s = sys.stdin.read(); "
             f"core = re.search(r'^core-file (.*)$', s, re.M).group(1); "
             f"print(oct(os.stat(core).st_mode & 0o777), core)\"")
    r = sh(f"{TOCORE} {img} --gdb-script | {probe}", tmp_path)
    assert r.returncode == 0, r.stderr
    mode, core = r.stdout.decode().split()
    assert mode == "0o600" and core.startswith(str(tmp_path))
    assert _left(tmp_path) == []
    r = sh(f"{TOCORE} {img} --gdb-script -o {tmp_path}/kept.core > {tmp_path}/s.gdb && "
           f"gdb -nx -batch -x {tmp_path}/s.gdb", tmp_path)
    assert r.returncode == 0, r.stderr
    assert b"in sleeper (" in r.stdout and (tmp_path / "kept.core").exists()
    # without -o the core would outlive nothing: a file on stdout is refused
    r = sh(f"{TOCORE} {img} --gdb-script > {tmp_path}/s2.gdb", tmp_path)
    assert r.returncode == 2 and b"-o CORE" in r.stderr


def test_executable_path_with_quotes_and_spaces(dumped, tmp_path):
    """The gdb script quotes the executable for gdb's `file`."""
    from imgtools.cli.core import gdb_quoted
    odd = tmp_path / 'a "b" \\c'
    shutil.copy(dumped[1].exe, odd)
    r = subprocess.run(["gdb", "-nx", "-batch", "-ex", f"file {gdb_quoted(str(odd))}",
                        "-ex", "info symbol main"], capture_output=True, timeout=60)
    assert b"main in section .text" in r.stdout, r.stdout + r.stderr
