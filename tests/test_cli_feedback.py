"""Consistent feedback from the command line (issue 10, item 16): Ctrl-C, one error form,
the help's names, and what the views call things. The CLI as a user runs it."""
from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import tree_spec
from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="120")
IMGTOOLS = [sys.executable, "-m", "imgtools"]


def run(*args, **kw):
    return subprocess.run([*IMGTOOLS, *args], capture_output=True, timeout=120, env=ENV, **kw)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    p = tmp_path_factory.mktemp("fb") / "tree.img"
    p.write_bytes(compose_bytes(tree_spec("v23"), "v23", "x86_64"))
    return str(p)


def _running_our_code(pid: int, deadline: float) -> None:
    """Wait until the interpreter's own start-up (site, .pth files: out of our reach) is
    over and it imports our modules: it has mapped an extension module site never loads
    and the modules of `info` import (array: the image model's; the others: what they
    imported before the start-up work, issue 11)."""
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
        if any(f"/{name}.cpython" in maps for name in ("array", "_datetime", "_json", "select")):
            return
        time.sleep(0.002)
    raise AssertionError("the CLI did not start importing its modules")


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5])
def test_ctrl_c_at_any_moment_of_start_up(delay):
    """SIGINT while our modules load or the command waits for input: exit 130, one line."""
    r, w = os.pipe()
    p = subprocess.Popen([*IMGTOOLS, "info", "-"], stdin=r, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    os.close(r)
    try:
        _running_our_code(p.pid, time.monotonic() + 60)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        os.close(w)
    # 130, or killed by the SIGINT itself (what a shell also reports as 130)
    assert p.returncode in (130, -signal.SIGINT), err
    assert b"Traceback" not in err and err in (b"", b"\n", b"imgtools: interrupted\n"), err


@pytest.mark.parametrize("args", [["info"], ["info", "--bogus", "x"], ["nosuch"],
                                  ["dump", "abc"], ["info", "/no/such/file"],
                                  ["convert", "x", "--to", "v99"]])
def test_one_error_form(args):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgtools: "), lines
    assert not r.stderr.startswith(b"Usage") and b"Error:" not in r.stderr


def test_help_names_the_arguments():
    usage = {c: run(c, "--help").stdout.decode().splitlines()[0]
             for c in ("info", "dump", "debug", "to-core")}
    assert usage["info"] == "Usage: imgtools info [OPTIONS] IMG…"      # several images
    assert usage["dump"] == "Usage: imgtools dump [OPTIONS] PID"
    assert usage["debug"] == "Usage: imgtools debug [OPTIONS] IMG [GDB_ARGS]…"
    assert "{" not in "".join(usage.values())
    assert "x86_64|i386" in run("info", "--help").stdout.decode()


def test_patch_series_version_names(tree, tmp_path):
    r = run("convert", tree, "--to", "ckpt-v21", "-o", str(tmp_path / "x.img"))
    assert r.returncode == 0, r.stderr
    assert json.loads(run("info", "--json", str(tmp_path / "x.img")).stdout)["version"] == "v21"


def test_files_show_pipe_ids(tree):
    text = run("files", tree).stdout.decode()
    pipes = re.findall(r"pipe:\[(\d+)\]", text)
    assert len(pipes) == 4 and len(set(pipes[:3])) == 1      # both ends, both processes
    assert re.search(r"pipe:\[\d+\]", run("show", tree).stdout.decode())


def test_singular_counts(tmp_path):
    spec = ImageSpec(tasks=[TaskSpec(7, 1, comm="alone")],
                     mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000,
                                                pages={0x400000: b"x"})])},
                     files={"files": [FdSpec(0, path="/dev/null")]})
    p = tmp_path / "one.img"
    p.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    head = run("show", str(p)).stdout.decode().splitlines()[0]
    assert ", 1 task, 1 page, " in head, head
    info = run("info", str(p)).stdout.decode()
    assert "1 (1 process, 0 threads, 0 zombies)" in info


def test_vvar_mappings_are_named(tmp_path):
    io_flags = 0x1 | 0x10 | 0x400 | 0x4000          # read, mayread, VM_PFNMAP, VM_IO
    spec = ImageSpec(tasks=[TaskSpec(7, 1)], files={"files": []},
                     mms={"mm": MmSpec([
                         VmaSpec(0x400000, 0x401000, pages={0x400000: b"x"}),
                         VmaSpec(0x7f0000000000, 0x7f0000004000, flags=io_flags),
                         VmaSpec(0x7f0000004000, 0x7f0000006000, flags=io_flags),
                         VmaSpec(0x7f0000006000, 0x7f0000008000, kind="vdso", flags=0x75),
                         VmaSpec(0x7f0000100000, 0x7f0000101000, flags=io_flags)])})
    p = tmp_path / "vvar.img"
    p.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    paths = [m["path"] for m in json.loads(run("maps", "--json", str(p)).stdout)]
    assert paths == [None, "[vvar]", "[vvar_vclock]", "[vdso]", None]


GROWSDOWN_PROG = f"""
import mmap, sys, time
m = mmap.mmap(-1, 4 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | {0x100})
m[:1] = b"x"
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is missing: no engine")
def test_growsdown_mapping_that_is_not_the_stack(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", GROWSDOWN_PROG], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        with open(f"/proc/{p.pid}/maps") as f:
            real = [ln.split()[0] for ln in f if ln.rstrip().endswith("[stack]")]
        img = tmp_path / "py.img"
        r = run("dump", str(p.pid), "--single", "--allow-partial", "-o", str(img))
        assert r.returncode == 0, r.stderr
    finally:
        p.kill()
        p.wait()
    maps = json.loads(run("maps", "--json", str(img)).stdout)
    stacks = [f"{m['start']:x}-{m['end']:x}" for m in maps if m["path"] == "[stack]"]
    growsdown = [m for m in maps if m["vm_flags"] & 0x100]
    assert len(growsdown) >= 2                  # ours and the real stack
    assert stacks == real


def test_dump_says_in_one_line_what_it_wrote(tmp_path):
    """As to-core and convert do: the file, the pid, the tasks, the size."""
    import subprocess
    import sys
    target = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        img = tmp_path / "s.img"
        r = subprocess.run([sys.executable, "-m", "imgtools", "dump", str(target.pid), "-o",
                            str(img)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip().splitlines()[-1] == \
            f"{img}: pid {target.pid}, 1 task, {img.stat().st_size / 2**20:.1f} MiB"
    finally:
        target.kill()
        target.wait()
