"""Ptys across a checkpoint and restart: pairs inside the tree, and the caller's terminal.

Real processes only: tests/progs/rst_pty.c (a pair with a session on the slave that checks
its own termios, window size, controlling terminal, foreground group and buffered bytes
after the restart, exit status = verdict); `bash -i` with a job on a pty held by a small
relay (tests/progs/pty_relay.py); a job of an interactive bash on a pty of the test's,
restored with --shell-job onto another pty of the test's; `script` from util-linux. And the
refusals: an outside terminal without --shell-job, a session's terminal from a pipe, and
the unread bytes a dump without --kill must leave alone.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from test_restore import IMGTOOLS, PROGS, build_prog, tracer, wait_for

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64" or os.geteuid() != 0
    or not shutil.which("gcc") or not shutil.which("bash"),
    reason="restore needs Linux x86_64, root, gcc and bash")


@pytest.fixture(scope="module")
def rst_pty_exe(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_pty")


@pytest.fixture
def rst_pty(rst_pty_exe):
    """The program; a failed test leaves none of its restored copies running."""
    yield rst_pty_exe
    for pid in running(rst_pty_exe):
        os.kill(pid, signal.SIGKILL)


def run(*args, **kw):
    return subprocess.run([*IMGTOOLS, *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=60, **kw)


def dump_kill(p, img):
    r = run("dump", p.pid, "-o", img, "--kill")
    assert r.returncode == 0, r.stderr
    p.wait(timeout=10)


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the comm: [state, ppid, pgrp, session, tty_nr, tpgid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tty_nr(rdev: int) -> int:
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def records(img: Path) -> list[str]:
    """The record names of an image, in order."""
    r = run("decode", "--no-pages", img)
    assert r.returncode == 0, r.stderr
    return [rec["name"] for rec in json.loads(r.stdout)["records"]]


def test_a_pty_pair_inside_the_tree_goes_on(rst_pty, tmp_path):
    """termios, window size, both buffers, controlling terminal and foreground group."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "pty.img"
    p = subprocess.Popen([rst_pty, out, go], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_pty")
    dump_kill(p, img)
    names = records(img)
    assert "ERROR" not in names
    # master then slave, each TTY TTY_LDISC BUFFER (both had unread bytes), then the FILE
    first = names.index("TTY")
    assert names[first - 1:first + 8] == ["OBJREF", "TTY", "TTY_LDISC", "BUFFER", "OBJREF",
                                          "TTY", "TTY_LDISC", "BUFFER", "FILE"]
    go.touch()
    r = run("restore", img)
    report = out.read_text()
    assert r.returncode == 0, (r.stderr, report)
    assert "FAIL" not in report and "done 0" in report
    for who, name in (("parent", "pending-output"), ("parent", "pong"), ("child", "raw"),
                      ("child", "winsize"), ("child", "ctty"), ("child", "session"),
                      ("child", "foreground"), ("grandchild", "ctty"),
                      ("grandchild", "foreground"), ("grandchild", "typed-ahead"),
                      ("grandchild", "ping")):
        assert f"ok {who} {name}" in report


def test_unread_bytes_stay_with_the_target_without_kill(rst_pty, tmp_path):
    """A dump that does not kill must not take the pair's bytes: ERROR record, target intact."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "pty.img"
    p = subprocess.Popen([rst_pty, out, go], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_pty")
        r = run("dump", p.pid, "-o", img)
        assert r.returncode == 3, r.stderr
        assert "unread bytes on both sides not saved" in r.stderr
        names = records(img)
        assert names.count("TTY_LDISC") == 2
        assert all(names[i + 1] != "BUFFER" for i, n in enumerate(names) if n == "TTY_LDISC")
        go.touch()
        assert p.wait(timeout=30) == 0, out.read_text()
        assert "ok grandchild typed-ahead" in out.read_text()
        assert "ok parent pending-output" in out.read_text()
    finally:
        p.kill()
        p.wait()


def test_a_sessions_terminal_from_a_pipe_is_refused(rst_pty, tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "pty.img"
    p = subprocess.Popen([rst_pty, out, go], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_pty")
    dump_kill(p, img)
    r = subprocess.run([*IMGTOOLS, "restore", "-"], input=img.read_bytes(), capture_output=True,
                       env=ENV, timeout=60)
    assert r.returncode == 3, r.stderr
    assert b"restored only from a file, not a pipe" in r.stderr
    assert not running(rst_pty)


def test_a_forged_tty_buffer_is_refused_before_anything_runs(rst_pty, tmp_path):
    """TTY_LDISC.datalen beyond the format's 4096-byte buffer: invalid, one line, exit 3."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "pty.img"
    p = subprocess.Popen([rst_pty, out, go], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_pty")
    dump_kill(p, img)
    r = run("decode", "--no-pages", img)
    ldisc = next(rec["offset"] for rec in json.loads(r.stdout)["records"]
                 if rec["name"] == "TTY_LDISC")
    data = bytearray(img.read_bytes())
    data[ldisc + 12:ldisc + 16] = (5000).to_bytes(4, "little")     # datalen
    forged = tmp_path / "forged.img"
    forged.write_bytes(data)
    go.touch()
    r = run("restore", forged)
    assert r.returncode == 3
    assert f"TTY_LDISC at offset {ldisc}: 5000 buffered bytes (at most 4096)" in r.stderr
    assert "Traceback" not in r.stderr and not running(rst_pty)
    assert "ok" not in out.read_text()


def running(exe: Path) -> list[int]:
    """Live processes running exe, zombies excluded."""
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{d}/exe") == str(exe) and stat_fields(int(d))[0] != "Z":
                found.append(int(d))
        except OSError:
            pass
    return found


@pytest.fixture
def bash_on_relay(tmp_path):
    """bash -i on a pty whose master a relay holds; input by a FIFO, output in a log."""
    fifo, log = tmp_path / "in", tmp_path / "log"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)        # a writer the restore does not take away
    relay = subprocess.Popen([sys.executable, PROGS / "pty_relay.py", fifo, log, "bash",
                              "--norc", "--noprofile", "-i"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: log.exists() and "# " in log.read_text(errors="replace"), what="a prompt")

    def say(line: str, expect: str, timeout=15.0):
        os.write(writer, line.encode() + b"\n")
        wait_for(lambda: expect in log.read_text(errors="replace").replace("\r", ""),
                 timeout=timeout, what=repr(expect))

    yield relay, say, log
    relay.kill()
    relay.wait()
    os.close(writer)


def test_bash_with_a_job_on_a_pty_is_restored_as_a_pair(bash_on_relay, tmp_path):
    relay, say, log = bash_on_relay
    img = tmp_path / "bash.img"
    say("stty rows 33 cols 99; sleep 1000 | cat &", "[1]")
    say("echo started", "started\n")
    dump_kill(relay, img)
    assert "ERROR" not in records(img)
    r = run("restore", img, "--detach")
    assert r.returncode == 0, r.stderr
    root = int(r.stdout.split()[-1])
    try:
        say("echo $((6*7)); stty size; jobs", "Running                 sleep 1000 | cat &")
        text = log.read_text(errors="replace").replace("\r", "")
        after = text.split("echo $((6*7))")[-1]
        assert "\n42\n" in after and "\n33 99\n" in after
        procs = {comm(pid): pid for pid in descendants(root)}
        bash, sleep, cat = procs["bash"], procs["sleep"], procs["cat"]
        st = {pid: stat_fields(pid) for pid in (bash, sleep, cat)}
        assert st[bash][1] != "0" and st[bash][3] == st[bash][2]     # leads its session
        tty = st[bash][4]
        assert tty != "0" and st[sleep][4] == tty and st[cat][4] == tty
        assert st[sleep][2] == st[cat][2] != st[bash][2]             # the job's own group
        assert st[bash][5] == st[bash][2]                             # bash in the foreground
    finally:
        os.kill(root, signal.SIGKILL)


def test_a_job_is_restored_onto_the_callers_terminal_with_shell_job(tmp_path):
    """A foreground job of an interactive shell on pty A, restored on pty B: B's job."""
    img = tmp_path / "job.img"
    a_master, a_slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    shell = subprocess.Popen(["bash", "--norc", "--noprofile", "-i"], stdin=a_slave,
                             stdout=a_slave, stderr=a_slave, preexec_fn=controlling_terminal)
    b_master = b_slave = -1
    restorer = None
    try:
        os.write(a_master, b"bash --norc -c 'sleep 1000 | cat'\n")

        def the_job():
            jobs = [k for k in children(shell.pid) if comm(k) == "bash"]
            return jobs[0] if jobs and len(children(jobs[0])) == 2 else None

        wait_for(the_job, what="the job")
        job = the_job()
        st = stat_fields(job)
        assert st[2] == str(job) and st[5] == str(job)       # its own group, in the foreground
        r = run("dump", job, "-o", img, "--kill")
        assert r.returncode == 0, r.stderr
        refused = run("restore", img)
        assert refused.returncode == 3
        assert "terminal outside the image: restore with --shell-job" in refused.stderr

        b_master, b_slave = os.openpty()
        restorer = subprocess.Popen([*IMGTOOLS, "restore", str(img), "--shell-job"], env=ENV,
                                    stdin=b_slave, stdout=b_slave, stderr=b_slave,
                                    preexec_fn=controlling_terminal)
        os.set_blocking(b_master, False)

        def restored():
            try:
                os.read(b_master, 65536)                     # the restorer's progress lines
            except BlockingIOError:
                pass
            kids = [k for k in descendants(restorer.pid) if comm(k) == "bash"]
            if not kids or len(children(kids[0])) != 2:
                return None
            # the tree exists before its release, and the foreground is set at the release
            tree = [kids[0], *children(kids[0])]
            return kids[0] if all(tracer(k) == 0 for k in tree) else None

        wait_for(restored, what="the restored job")
        new = restored()
        b = tty_nr(os.fstat(b_slave).st_rdev)
        st = stat_fields(new)
        assert int(st[4]) == b                               # B is its controlling terminal
        assert st[5] == st[2] == str(new)                    # its group is B's foreground
        assert st[3] == str(os.getsid(restorer.pid))         # in the caller's session
        for k in children(new):
            assert int(stat_fields(k)[4]) == b and stat_fields(k)[2] == st[2]
        os.kill(new, signal.SIGKILL)
        assert restorer.wait(timeout=20) == 128 + signal.SIGKILL
    finally:
        if restorer and restorer.poll() is None:
            for k in descendants(restorer.pid):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass                                         # gone since the listing
            restorer.kill()
            restorer.wait()
        shell.kill()
        shell.wait()
        for fd in (a_master, a_slave, b_master, b_slave):
            if fd >= 0:
                os.close(fd)


def test_script_from_util_linux_goes_on(tmp_path):
    """`script` relays a shell on a pty; it holds a signalfd, which this engine may not save."""
    if not shutil.which("script"):
        pytest.skip("no script(1)")
    fifo, log, img = tmp_path / "in", tmp_path / "typescript", tmp_path / "script.img"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)
    reader = os.open(fifo, os.O_RDONLY)
    out = open(tmp_path / "out", "wb")
    p = subprocess.Popen(["script", "-qfc", "bash --norc --noprofile -i", str(log)],
                         stdin=reader, stdout=out, stderr=subprocess.DEVNULL)
    os.close(reader)
    try:
        wait_for(lambda: log.exists() and "# " in log.read_text(errors="replace"),
                 what="a prompt")
        r = run("dump", p.pid, "-o", img, "--kill")
        if r.returncode == 3 and "signalfd" in r.stderr:
            pytest.skip("this engine does not save signalfd yet")
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
        restored = run("restore", img, "--detach")
        assert restored.returncode == 0, restored.stderr
        root = int(restored.stdout.split()[-1])
        try:
            os.write(writer, b"echo $((6*7))\n")
            wait_for(lambda: "\n42" in log.read_text(errors="replace").replace("\r", ""),
                     what="42")
        finally:
            os.kill(root, signal.SIGKILL)
    finally:
        p.kill()
        p.wait()
        os.close(writer)
        out.close()
