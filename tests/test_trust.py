"""Opening an untrusted image never runs anything, never writes to the terminal what the
image says, and what we write of a process's memory is private (issue 10, item 6).

Real gdb, real files, the CLI as a user runs it (a subprocess)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import tree_spec
from imgtools.compose import compose_bytes

IMGTOOLS = [sys.executable, "-m", "imgtools"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is missing")


def run(*args, cwd=None, umask=None, **kw):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([*IMGTOOLS, *args], capture_output=True, timeout=120, cwd=cwd,
                          env=ENV, preexec_fn=pre, **kw)


def hostile_image(tmp_path, exe="/usr/bin/prog", comm="parent", path="/dev/null",
                  errors=()) -> str:
    spec = tree_spec("v23")
    spec.mms["mm"].exe = spec.mms["mm"].vmas[0].path = exe
    spec.tasks[0].comm = comm
    spec.files["files"][0].path = path
    spec.errors = list(errors)
    p = tmp_path / "hostile.img"
    p.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    return str(p)


# -- gdb: no image content becomes a gdb option or command ----------------------------
GDB_OPTION_NAMES = ["-ex=shell touch PWNED", "--eval-command=shell touch PWNED",
                    "-x=PWNED.gdb", "--init-eval-command=shell touch PWNED"]


@needs_gdb
@pytest.mark.parametrize("exe", GDB_OPTION_NAMES)
def test_debug_exe_named_like_a_gdb_option_runs_nothing(tmp_path, exe):
    img = hostile_image(tmp_path, exe=exe)
    assert run("check", img).returncode == 0        # check calls it sound
    (tmp_path / exe).write_bytes(b"")               # and a file of that name is right there
    (tmp_path / "PWNED.gdb").write_text("shell touch PWNED\n")
    r = run("debug", img, "--batch", "-ex", "bt", cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists(), r.stderr.decode()
    assert b"#0" in r.stdout


@needs_gdb
def test_debug_exe_with_a_newline_is_not_used(tmp_path):
    exe = "prog\nshell touch PWNED"
    img = hostile_image(tmp_path, exe=exe)
    (tmp_path / exe).write_bytes(b"")
    r = run("debug", img, "--batch", "-ex", "bt", cwd=tmp_path)
    assert not (tmp_path / "PWNED").exists()
    assert b"control characters" in r.stderr and b"\n shell" not in r.stderr
    assert b"#0" in r.stdout


@needs_gdb
def test_debug_user_gdb_args_still_work(tmp_path):
    img = hostile_image(tmp_path)
    r = run("debug", img, "--", "-batch", "-ex", "info threads")
    assert r.returncode == 0, r.stderr
    assert b"LWP 100" in r.stdout and b"LWP 101" in r.stdout


# -- views: control characters from the image are shown escaped -----------------------
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"


@pytest.mark.parametrize("cmd", [["show"], ["show", "--records"], ["info"], ["ps"],
                                 ["maps"], ["files"], ["check"], ["to-core", "-o", "core"]])
def test_views_escape_control_characters(tmp_path, cmd):
    img = hostile_image(tmp_path, exe="/bin/\x1b[31mred", comm="pa\x1b[2Jrent",
                        path="/tmp/\x1b]0;title\x07\nfake line",
                        errors=[f"[E @ x:1] {ESCAPES}"])
    r = run(*cmd, img, cwd=tmp_path)
    assert r.returncode in (0, 3), r.stderr
    both = r.stdout + r.stderr
    for ch in "\x1b\x07\x9b\u202e":
        assert ch.encode() not in both, (cmd, both)
    if cmd in (["show"], ["ps"]):
        assert rb"pa\x1b[2Jrent" in r.stdout
    if cmd[0] == "maps":
        assert rb"/bin/\x1b[31mred" in r.stdout
    if cmd[0] == "files":
        assert rb"/tmp/\x1b]0;title\x07\nfake line" in r.stdout


def test_json_keeps_the_strings_exact(tmp_path):
    import json
    img = hostile_image(tmp_path, comm="pa\x1b[2Jrent")
    r = run("ps", "--json", img)
    assert b"\x1b" not in r.stdout
    assert json.loads(r.stdout)[0]["comm"] == "pa\x1b[2Jrent"


def test_errors_on_stderr_are_escaped(tmp_path):
    r = run("info", str(tmp_path / "no\x1b[2Jsuch"))
    assert r.returncode == 2 and b"\x1b" not in r.stderr and rb"\x1b" in r.stderr


# -- what holds process memory is created 0600 -----------------------------------------
def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("cmd,out", [
    (["to-core", "{img}", "-o", "{out}"], "core"),
    (["to-core", "{img}", "--all", "-o", "{out}"], "cores/core.100"),
    (["convert", "{img}", "--to", "v21", "--allow-loss", "-o", "{out}"], "v21.img"),
    (["decode", "{img}", "-o", "{out}"], "img.json"),
])
def test_outputs_are_private(tmp_path, cmd, out):
    img = hostile_image(tmp_path)
    target = tmp_path / out
    dest = target.parent if "--all" in cmd else target
    (tmp_path / "old").write_bytes(b"")
    r = run(*(a.format(img=img, out=dest) for a in cmd), umask=0o022)
    assert r.returncode == 0, r.stderr
    assert _mode(target) == 0o600


def test_encode_output_is_private_even_replacing_a_public_file(tmp_path):
    img = hostile_image(tmp_path)
    js = tmp_path / "img.json"
    assert run("decode", img, "-o", str(js)).returncode == 0
    out = tmp_path / "back.img"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    r = run("encode", str(js), "-o", str(out), umask=0o022)
    assert r.returncode == 0, r.stderr
    assert _mode(out) == 0o600 and out.read_bytes() == open(img, "rb").read()


needs_engine = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is missing: no engine")


@pytest.fixture
def partial_target():
    """A real process holding a netlink socket, which the engine writes as an ERROR record
    (unix and inet sockets are saved)."""
    import socket
    a = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    proc = subprocess.Popen(["sleep", "60"], pass_fds=[a.fileno()])
    a.close()
    yield proc.pid
    proc.kill()
    proc.wait()


def _error_records(image: bytes) -> int:
    import io
    from imgtools.check import check_stream
    return sum(f.code == "error.record" for f in check_stream(io.BytesIO(image)))


@needs_engine
def test_dump_output_is_private(tmp_path, partial_target):
    out = tmp_path / "dump.img"
    r = run("dump", str(partial_target), "--allow-partial", "-o", str(out), umask=0o022)
    assert r.returncode == 0, r.stderr
    assert _mode(out) == 0o600


# -- item 10: a dump with ERROR records is the same with -o FILE and -o - -------------
@needs_engine
def test_partial_dump_to_a_file_is_kept(tmp_path, partial_target):
    out = tmp_path / "dump.img"
    r = run("dump", str(partial_target), "-o", str(out))
    assert r.returncode == 3, r.stderr
    assert b"--allow-partial" in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
        b"imgtools: ")
    assert _error_records(out.read_bytes()) >= 1


@needs_engine
def test_partial_dump_to_stdout_matches(tmp_path, partial_target):
    piped = run("dump", str(partial_target), "-o", "-")
    assert piped.returncode == 3 and b"--allow-partial" in piped.stderr
    assert _error_records(piped.stdout) >= 1
    with open(tmp_path / "redirected.img", "wb") as f:     # stdout a regular file
        r = subprocess.run([*IMGTOOLS, "dump", str(partial_target)], stdout=f,
                           stderr=subprocess.PIPE, env=ENV, timeout=120)
    assert r.returncode == 3 and b"--allow-partial accepts it" in r.stderr
    assert _error_records((tmp_path / "redirected.img").read_bytes()) >= 1


@needs_engine
def test_refused_dump_leaves_no_file(tmp_path):
    out = tmp_path / "dump.img"
    r = run("dump", "1", "-o", str(out))        # init: the dumper's own ancestor
    assert r.returncode in (2, 3), r.stderr
    assert not out.exists()


def test_a_device_named_by_o_keeps_its_mode(tmp_path):
    """Privacy is for files we create: a device -o names (item 1 writes those directly)
    keeps its mode. A device node of our own, never the system's /dev/null."""
    from imgtools.cli._private import make_private
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(dev, 0o666)
    with open(dev, "wb") as f:
        make_private(f)
    assert _mode(dev) == 0o666
    with open(tmp_path / "file", "wb") as f:
        make_private(f)
    assert _mode(tmp_path / "file") == 0o600
