"""A desktop-ish set of real programs, none of them ours, dumped and restored as one tree:
`script` running `bash -i` on a pty pair, and in that shell `python3 -m http.server` and a
`tail -f` of a log, as background jobs (issue 13: "the share of the tree's fds that a dump
saves without an ERROR record: 100 %").

The dump must succeed without --allow-partial (no ERROR record: every descriptor of every
process saved), and after the restore each program goes on working: the server answers on
its port, tail prints what is appended to the log, and the shell runs a command typed into
script's input.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from test_restore import IMGTOOLS, pytestmark, wait_for  # noqa: F401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue            # gone
        out.append(p)
    return out


def kill_tree(pid: int) -> None:
    for p in reversed(tree_of(pid)):
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass


def get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=5) as r:
        return r.read()


@pytest.mark.skipif(not all(os.path.exists(p) for p in ("/usr/bin/script", "/usr/bin/tail")),
                    reason="needs util-linux script and coreutils tail")
def test_shell_http_server_tail_and_script_go_on(tmp_path):
    port = free_port()
    (tmp_path / "hello.txt").write_text("hello from the checkpointed server\n")
    log, typed, seen = tmp_path / "log", tmp_path / "typed", tmp_path / "seen"
    log.write_text("first line\n")
    os.mkfifo(typed)
    keep = os.open(typed, os.O_RDWR)       # script's input: never at end of file
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb", "PS1": "$ ",
           "PYTHONDONTWRITEBYTECODE": "1"}
    with open(seen, "w") as out:
        script = subprocess.Popen(["script", "-qfc", "exec bash --norc -i", "/dev/null"], stdin=keep,
                                  stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        os.write(keep, f"python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &\n"
                       f"tail -f {log} &\n".encode())
        wait_for(lambda: "first line" in seen.read_text(), what="tail in the shell")
        wait_for(lambda: _answers(port), what="the http server")
        procs = tree_of(script.pid)
        comms = sorted(open(f"/proc/{p}/comm").read().strip() for p in procs)
        assert comms == ["bash", "python3", "script", "tail"], comms
        nfds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in procs)

        img = tmp_path / "desktop.img"
        r = subprocess.run([*IMGTOOLS, "dump", str(script.pid), "-o", str(img), "--kill"],
                           capture_output=True, text=True, timeout=60)
        # exit 0 without --allow-partial: no ERROR record, all nfds descriptors saved
        assert r.returncode == 0, f"{nfds} descriptors; not saved:\n{r.stderr}"
        script.wait(timeout=10)
        with pytest.raises(OSError):
            get(port)

        r = subprocess.run([*IMGTOOLS, "restore", str(img), "--detach"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        root = int(r.stdout.split()[-1])
        try:
            assert get(port) == b"hello from the checkpointed server\n"
            with open(log, "a") as f:
                f.write("appended after the restore\n")
            wait_for(lambda: "appended after the restore" in seen.read_text(), timeout=10,
                     what="the restored tail to print the new line")
            os.write(keep, b"echo answer=$((6*7))\n")
            wait_for(lambda: "answer=42" in seen.read_text(), timeout=10,
                     what="the restored shell to run a command")
        finally:
            kill_tree(root)
    finally:
        if script.poll() is None:
            kill_tree(script.pid)
            script.wait()
        os.close(keep)


def _answers(port: int) -> bool:
    try:
        return get(port).startswith(b"hello")
    except OSError:
        time.sleep(0.05)
        return False
