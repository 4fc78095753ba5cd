"""inotify instances across dump --kill and restore: a program of ours that checks its watches
(tests/progs/rst_inotify.c) and `tail -f`, which follows a file with inotify.

The restored instance must keep every watch number (one removed before the dump included),
deliver the events that happen after the restore, and go on numbering new watches where the
original would have. What cannot be saved — events waiting to be read — is an ERROR record,
and a watched path that names another file at restore time is refused.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from formats import ext

from test_restore import (  # noqa: F401
    IMGTOOLS, build_prog, dump_kill, frames, pytestmark, restore, start, wait_for)

INOTIFY, INOTIFY_WATCH = ext.TYPES["ext_file_inotify"], ext.TYPES["ext_inotify_watch"]


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_inotify")


def test_watches_keep_their_numbers_and_deliver_events(prog, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    p = start([prog, out, go, tmp_path], ready_file=out)
    img = tmp_path / "ino.img"
    dump_kill(p, img)
    watches = [(t, p) for _, t, p in frames(img.read_bytes()) if t == INOTIFY_WATCH]
    assert sorted(int.from_bytes(w[:4], "little") for _, w in watches) == [1, 3]
    go.touch()
    r = restore(img)
    text = out.read_text()
    assert r.returncode == 0, (r.stderr, text)
    assert "PASSED" in text and "FAIL" not in text, text


def test_events_waiting_to_be_read_are_an_error_record(prog, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    p = start([prog, out, go, tmp_path, "pending"], ready_file=out)
    try:
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(tmp_path / "x.img")],
                           capture_output=True, text=True)
        assert r.returncode == 3, r.stderr
        assert "bytes of inotify events not read yet" in r.stderr
        assert p.poll() is None         # not harmed: it goes on
    finally:
        p.kill()
        p.wait()


def test_a_watched_path_that_is_another_file_now_is_refused(prog, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    p = start([prog, out, go, tmp_path], ready_file=out)
    img = tmp_path / "ino.img"
    dump_kill(p, img)
    # the old file is kept elsewhere, so the new one cannot reuse its inode number (a
    # deleted-and-recreated file can: the watch record has only inode and device)
    (tmp_path / "a").rename(tmp_path / "a.old")
    (tmp_path / "a").write_text("another file\n")
    go.touch()
    r = restore(img)
    assert r.returncode == 3, r.stderr
    assert "is another file now" in r.stderr
    assert "PASSED" not in out.read_text()


def test_tail_f_follows_its_file_after_restore(tmp_path):
    log, seen = tmp_path / "log", tmp_path / "seen"
    log.write_text("before\n")
    with open(seen, "w") as f:
        p = subprocess.Popen(["tail", "-f", str(log)], stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: "before" in seen.read_text(), what="tail to print the file")
    assert any("inotify" in os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd"))
    img = tmp_path / "tail.img"
    dump_kill(p, img)
    assert [t for _, t, _ in frames(img.read_bytes()) if t == INOTIFY], "no inotify instance in the image"
    r = subprocess.run([*IMGTOOLS, "restore", str(img), "--detach"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split()[-1])
    try:
        fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert "anon_inode:inotify" in fds
        with open(log, "a") as f:
            f.write("after\n")
        # tail sleeps 1 s between polls when it has no inotify; with it the line comes at once
        t0 = time.monotonic()
        wait_for(lambda: "after" in seen.read_text(), timeout=10, what="the restored tail")
        assert time.monotonic() - t0 < 0.9
        with open(f"/proc/{pid}/fdinfo/{next(fd for fd in os.listdir(f'/proc/{pid}/fd') if 'inotify' in os.readlink(f'/proc/{pid}/fd/{fd}'))}") as f:
            assert "inotify wd:" in f.read()
    finally:
        os.kill(pid, 9)
