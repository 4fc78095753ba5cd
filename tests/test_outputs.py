"""Where -o writes (issue 10, item 1): real device nodes, FIFOs, symlinks and a SIGKILL,
through the CLI as a user runs it."""
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

IMGTOOLS = [sys.executable, "-m", "imgtools"]
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "v23" / "single.img"


def run(*args, **kw):
    return subprocess.run([*IMGTOOLS, *map(str, args)], capture_output=True, timeout=120, **kw)


@pytest.fixture
def work(tmp_path):
    img = tmp_path / "in.img"
    img.write_bytes(SAMPLE.read_bytes())
    (tmp_path / "in.json").write_bytes(run("decode", img).stdout)
    return tmp_path


# Each writing command, given its input in the work folder and an output path.
WRITERS = {
    "convert": lambda d, o: ("convert", d / "in.img", "--to", "v21", "-o", o),
    "to-core": lambda d, o: ("to-core", d / "in.img", "-o", o),
    "decode": lambda d, o: ("decode", d / "in.img", "-o", o),
    "encode": lambda d, o: ("encode", d / "in.json", "-o", o),
}


def _reference(work, name) -> bytes:
    out = work / f"ref-{name}"
    r = run(*WRITERS[name](work, out))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.parametrize("name", WRITERS)
def test_char_device_stays_a_device(work, name):
    node = work / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    r = run(*WRITERS[name](work, node))
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.lstat(node).st_mode) and os.lstat(node).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in work.iterdir()) == ["in.img", "in.json", "null"]


@pytest.mark.parametrize("name", WRITERS)
def test_fifo_reader_gets_every_byte(work, name):
    want = _reference(work, name)
    fifo = work / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = run(*WRITERS[name](work, fifo))
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert got == [want]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("name", WRITERS)
def test_symlink_is_followed_to_its_target(work, name):
    want = _reference(work, name)
    (work / "target").write_bytes(b"old")
    os.symlink("target", work / "link")
    r = run(*WRITERS[name](work, work / "link"))
    assert r.returncode == 0, r.stderr
    assert os.readlink(work / "link") == "target"
    assert (work / "target").read_bytes() == want
    assert stat.S_IMODE(os.stat(work / "target").st_mode) == 0o600


@pytest.mark.parametrize("name", WRITERS)
def test_new_and_replaced_files_are_0600_and_leave_no_temp(work, name):
    out = work / "out"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    r = run(*WRITERS[name](work, out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_bytes() != b"old"
    assert sorted(p.name for p in work.iterdir()) == ["in.img", "in.json", "out"]


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_naming_the_input_is_refused(work, name, how):
    src = WRITERS[name](work, "X")
    inp = src[1]
    before = inp.read_bytes()
    out = {"same": inp, "symlink": work / "alias", "hardlink": work / "hard"}[how]
    if how == "symlink":
        os.symlink(inp.name, out)
    elif how == "hardlink":
        os.link(inp, out)
    r = run(*WRITERS[name](work, out))
    assert r.returncode == 2, r.stderr
    assert b"names the input" in r.stderr and r.stderr.count(b"\n") == 1
    assert inp.read_bytes() == before


def test_sigkill_mid_write_leaves_no_temp_file(work):
    """convert from a pipe that stalls half-way, SIGKILLed while the output is open."""
    out = work / "out.img"
    data = (work / "in.img").read_bytes()
    p = subprocess.Popen([*IMGTOOLS, "convert", "-", "--to", "v21", "--allow-loss", "-o",
                          str(out)], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(data[:len(data) // 2])
    p.stdin.flush()
    deadline = time.monotonic() + 30
    # the output is open once the process holds a file in the work folder
    while not any(os.path.realpath(f"/proc/{p.pid}/fd/{fd}").startswith(str(work) + "/")
                  and not os.path.realpath(f"/proc/{p.pid}/fd/{fd}").endswith(".json")
                  for fd in os.listdir(f"/proc/{p.pid}/fd")):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdin.close()
    assert sorted(x.name for x in work.iterdir()) == ["in.img", "in.json"]


def test_dump_to_a_char_device_and_a_fifo(tmp_path):
    """dump writes through the engine into whatever -o resolved to."""
    try:
        from imgtools import engine
        engine.find_engine()
    except Exception as e:          # noqa: BLE001 - no engine: nothing to run
        pytest.skip(f"no engine: {e}")
    target = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        node = tmp_path / "null"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        r = run("dump", target.pid, "--single", "-o", node)
        assert r.returncode in (0, 3), r.stderr
        assert stat.S_ISCHR(os.lstat(node).st_mode)
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        r = run("dump", target.pid, "--single", "-o", fifo, "--allow-partial")
        reader.join(30)
        assert r.returncode == 0, r.stderr
        assert got and run("check", "-", input=got[0]).returncode == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "null"]
    finally:
        target.kill()
        target.wait()


def test_unix_socket_gets_every_byte(work):
    import socket
    want = _reference(work, "convert")
    path = work / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got = []

    def serve():
        conn, _ = server.accept()
        with conn:
            parts = []
            while chunk := conn.recv(1 << 16):
                parts.append(chunk)
            got.append(b"".join(parts))
    t = threading.Thread(target=serve)
    t.start()
    r = run(*WRITERS["convert"](work, path))
    t.join(30)
    server.close()
    assert r.returncode == 0, r.stderr
    assert got == [want] and stat.S_ISSOCK(os.lstat(path).st_mode)
