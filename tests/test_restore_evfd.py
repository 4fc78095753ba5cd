"""Event files, rseq and the clocks: real processes dumped (--kill), restored, checking themselves.

tests/progs/rst_evfd.c sits in epoll_wait on a pipe, an eventfd, a signalfd and a timerfd;
after the restore a thread of it (waiting for the file GO) writes to the pipe and the eventfd
and sends the signal; the program then checks the wake-up, the counts, the semaphore mode,
the epoll items' data and that EPOLL_CTL_MOD/DEL find them, the timers (interval, ticks not
read at the dump), an inotify watch by its number, CLOCK_MONOTONIC/BOOTTIME across the
downtime, and that every thread's rseq area is registered again. Its exit status (passed on
by `imgtools restore`) is the verdict. Also: `tail -f` (inotify) follows its file after a
restore, what --strict writes instead of the extension records, an epoll item whose
descriptor was closed, and an extension record in an image whose header does not allow it.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import formats
from formats import ext

from test_restore import IMGTOOLS, build_prog, frames, pytestmark, wait_for  # noqa: F401

from imgtools import engine

ROOT = Path(__file__).resolve().parent.parent
DOWNTIME = 2.0          # between dump and restore; rst_evfd wants >= 1.5 s of it not counted

# record types and the header flag (engine/include/ckpt_hdr.h)
V23 = formats.abi("v23").types    # record type numbers (one home: formats/)
HEADER_ARCH, FILE, EPOLL_ITEMS, STRING, ERROR = (V23[n] for n in (
    "header_arch", "file", "epoll_items", "string", "error"))
EXT_FIRST, EXT_LAST, UFLAG_EXT = ext.FIRST, ext.LAST, ext.UFLAG_EXT
EXT_CLOCKS, EXT_RSEQ, EXT_FILE_SIGNALFD, EXT_FILE_TIMERFD, EXT_FILE_INOTIFY, \
    EXT_INOTIFY_WATCH = (ext.TYPES[n] for n in (
        "ext_clocks", "ext_rseq", "ext_file_signalfd", "ext_file_timerfd", "ext_file_inotify",
        "ext_inotify_watch"))
FILE_EVENTFD, FILE_EPOLL = (formats.abi("v23").file_types[n] for n in ("eventfd", "epoll"))
UFLAGS_AT = 64          # HEADER: hdr 8, magic 8, arch..rev+pad 16, constants 24, time 8

@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_evfd", "-pthread")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_ready(argv, out: Path):
    p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "ready" in lines(out), what=f"{argv[0]} to get ready")
    return p


def error_messages(data: bytes) -> list[str]:
    recs = list(frames(data))
    return [recs[i + 1][2].strip(b"\0").decode() for i, (_, t, _) in enumerate(recs)
            if t == ERROR and i + 1 < len(recs) and recs[i + 1][1] == STRING]


def dump_evfd(prog, tmp_path, mode: str, *extra, name="evfd.img"):
    """rst_evfd started and dumped with --kill: (its output file, GO file, image, dump result)."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / name
    p = start_ready([prog, out, go, mode], out)
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill", *extra],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    return out, go, img, r


def restore_and_verdict(img: Path, go: Path, out: Path, *flags):
    time.sleep(DOWNTIME)
    go.touch()          # seen by the restored writer thread only: the original is dead
    r = subprocess.run([*IMGTOOLS, "restore", str(img), *flags], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, (r.stderr, lines(out))
    assert [ln for ln in lines(out) if not ln.startswith("ok ")] == ["ready", "done 0"]
    return lines(out)


def test_epoll_wakes_after_restore_with_event_files_timers_rseq_and_clocks(prog, tmp_path):
    out, go, img, r = dump_evfd(prog, tmp_path, "timens")
    assert r.returncode == 0, r.stderr
    data = img.read_bytes()
    types = [t for _, t, _ in frames(data)]
    assert struct.unpack_from("<Q", data, UFLAGS_AT)[0] & UFLAG_EXT
    assert types[types.index(HEADER_ARCH) + 1] == EXT_CLOCKS
    assert types.count(EXT_RSEQ) == 2                   # the main thread and the writer
    assert types.count(EXT_FILE_SIGNALFD) == 1 and types.count(EXT_FILE_TIMERFD) == 3
    assert types.count(EXT_FILE_INOTIFY) == 1 and types.count(EXT_INOTIFY_WATCH) == 2
    items = [(o, p) for o, t, p in frames(data) if t == EPOLL_ITEMS]
    assert len(items) == 1 and struct.unpack_from("<iI", items[0][1])[1] == 4
    eventfds = [p for _, t, p in frames(data)
                if t == FILE and struct.unpack_from("<I", p)[0] == FILE_EVENTFD]
    # (count, flags): the semaphore one non-blocking with 2, the other with 3
    assert sorted(struct.unpack_from("<QI", p, 40) for p in eventfds) == [
        (2, 1 | os.O_NONBLOCK), (3, 0)]
    ok = restore_and_verdict(img, go, out)
    for name in ("epoll-wakes", "eventfd-count", "eventfd-semaphore", "signalfd", "epoll-mod",
                 "epoll-del", "timerfd-fires", "timerfd-oneshot", "timerfd-ticks", "monotonic",
                 "boottime", "rseq-after", "rseq-after-thread", "inotify", "inotify-watch-2"):
        assert f"ok {name}" in ok


def test_no_pidns_restore_keeps_the_callers_clocks(prog, tmp_path):
    """No new namespaces: no time namespace either, so CLOCK_MONOTONIC counts the downtime."""
    out, go, img, r = dump_evfd(prog, tmp_path, "host")
    assert r.returncode == 0, r.stderr
    ok = restore_and_verdict(img, go, out, "--no-pidns")
    assert "ok monotonic" in ok and "ok rseq-after" in ok


def test_strict_dump_writes_error_records_instead_of_extension_records(prog, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    p = start_ready([prog, out, go, "timens"], out)
    img = tmp_path / "strict.img"
    r = subprocess.run([str(engine.find_engine()), "dump", str(p.pid), "-o", str(img), "--kill",
                        "--strict"], capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 3, r.stderr              # partial: what only an extension holds
    data = img.read_bytes()
    assert not struct.unpack_from("<Q", data, UFLAGS_AT)[0] & UFLAG_EXT
    assert not [t for _, t, _ in frames(data) if EXT_FIRST <= t <= EXT_LAST]
    errors = error_messages(data)
    assert sum("no extension record (--strict) for anon_inode:[timerfd]" in e for e in errors) == 3
    assert sum("anon_inode:[signalfd]" in e for e in errors) == 1
    assert sum("no extension record (--strict) for anon_inode:inotify" in e for e in errors) == 1
    assert sum("rseq area" in e and "--strict" in e for e in errors) == 2
    # the v23 kinds are still there; the items of the files that were not saved are reported
    types = [t for _, t, _ in frames(data)]
    assert EPOLL_ITEMS in types
    assert sum("epoll fd" in e and "not saved" in e for e in errors) == 2
    r = subprocess.run([*IMGTOOLS, "restore", str(img)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "could not save everything" in r.stderr
    assert not [d for d in os.listdir("/proc") if d.isdigit() and _exe(d) == str(prog)]


def _exe(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""


CLOSED_ITEM = """
import os, select, sys
ep = select.epoll()
r, w = os.pipe()
keep = os.dup(r)
ep.register(r, select.EPOLLIN)
os.close(r)                 # the item lives on: its file is still open as `keep`
print("ready", flush=True)
sys.stdin.read()
"""


def test_epoll_item_of_a_closed_descriptor_is_an_error_record(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CLOSED_ITEM], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        img = tmp_path / "closed.img"
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img)], capture_output=True,
                           text=True)
        assert r.returncode == 3, r.stderr
        errors = error_messages(img.read_bytes())
        assert any("its item for fd" in e and "closed" in e for e in errors), errors
        assert p.poll() is None                     # the target goes on
    finally:
        p.kill()
        p.wait()


def test_extension_record_without_the_header_flag_is_refused(prog, tmp_path):
    out, go, img, r = dump_evfd(prog, tmp_path, "timens")
    assert r.returncode == 0, r.stderr
    data = bytearray(img.read_bytes())
    flags = struct.unpack_from("<Q", data, UFLAGS_AT)[0]
    struct.pack_into("<Q", data, UFLAGS_AT, flags & ~UFLAG_EXT)
    bad = tmp_path / "noflag.img"
    bad.write_bytes(bytes(data))
    r = subprocess.run([str(engine.find_engine()), "restore", str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3
    assert "does not allow extension records" in r.stderr
    assert not [d for d in os.listdir("/proc") if d.isdigit() and _exe(d) == str(prog)]


def test_tail_follows_its_file_after_restore(tmp_path):
    """coreutils tail -f waits for the file's changes with inotify."""
    log, out, img = tmp_path / "log", tmp_path / "tail.out", tmp_path / "tail.img"
    log.write_text("one\n")
    with open(out, "wb") as o:
        p = subprocess.Popen(["tail", "-f", str(log)], stdin=subprocess.DEVNULL, stdout=o,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: out.read_text() == "one\n", what="tail to print the file")
    wait_for(lambda: any(os.readlink(f"/proc/{p.pid}/fd/{fd}") == "anon_inode:inotify"
                         for fd in os.listdir(f"/proc/{p.pid}/fd")), what="tail's inotify")
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    with open(log, "a") as f:
        f.write("two\n")            # while no tail runs: read from its offset once it wakes
    # the log grew since the dump: a changed file, accepted when asked
    r = subprocess.run([*IMGTOOLS, "restore", str(img), "--detach", "--allow-changed-files"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        with open(log, "a") as f:
            f.write("three\n")      # only inotify tells the restored tail to read on
        wait_for(lambda: out.read_text() == "one\ntwo\nthree\n", timeout=5,
                 what="the line written after restore")
    finally:
        os.kill(host, 9)


def test_epoll_item_naming_another_descriptor_is_refused(prog, tmp_path):
    """An item's descriptor number must be its file in the task's table: else EPOLL_CTL_MOD
    and DEL by the program would miss it, so the image is refused (and nothing runs)."""
    out, go, img, r = dump_evfd(prog, tmp_path, "timens")
    assert r.returncode == 0, r.stderr
    data = bytearray(img.read_bytes())
    recs = list(frames(bytes(data)))
    [i] = [k for k, (_, t, _) in enumerate(recs) if t == EPOLL_ITEMS]
    buf_off = recs[i + 1][0] + 8
    first_fd, second_fd = (struct.unpack_from("<I", data, buf_off + 8 + 24 * k)[0] for k in (0, 1))
    struct.pack_into("<I", data, buf_off + 8, second_fd)     # item 0 now names item 1's fd
    bad = tmp_path / "swapped.img"
    bad.write_bytes(bytes(data))
    go.touch()
    r = subprocess.run([*IMGTOOLS, "restore", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert f"watches descriptor {second_fd}, which is not the item's file" in r.stderr
    assert first_fd != second_fd
    assert not [d for d in os.listdir("/proc") if d.isdigit() and _exe(d) == str(prog)]


SHARED_EPOLL = """
import os, select, sys, time
go = sys.argv[1]
ep = select.epoll()
r, w = os.pipe()
ep.register(r, select.EPOLLIN)
inner = select.epoll()
inner.register(ep.fileno(), select.EPOLLIN)     # an epoll watching an epoll
pid = os.fork()
if pid:
    open(go + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
if pid:
    os.write(w, b"x")
    ok = bool(ep.poll(5)) and bool(inner.poll(5))
    _, st = os.waitpid(pid, 0)
    sys.exit(0 if ok and st == 0 else 1)
time.sleep(0.2)
ok = bool(ep.poll(5))
try:
    ep.modify(r, select.EPOLLIN | select.EPOLLOUT)  # the item is found by its number here too
except OSError:
    ok = False
os._exit(0 if ok else 1)
"""


def test_epoll_shared_by_a_forked_child_and_nested_in_an_epoll(tmp_path):
    go, img = tmp_path / "go", tmp_path / "shared.img"
    p = subprocess.Popen([sys.executable, "-c", SHARED_EPOLL, str(go)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "go.ready").exists(), what="the fork")
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    assert [t for _, t, _ in frames(img.read_bytes())].count(EPOLL_ITEMS) == 2   # once each
    go.touch()
    r = subprocess.run([*IMGTOOLS, "restore", str(img)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_inotify_watch_of_a_replaced_file_is_refused(tmp_path):
    """The watch was on an inode: a new file at its path is not what the program watched."""
    log, img = tmp_path / "log", tmp_path / "tail.img"
    log.write_text("one\n")
    p = subprocess.Popen(["tail", "-f", str(log)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(os.readlink(f"/proc/{p.pid}/fd/{fd}") == "anon_inode:inotify"
                         for fd in os.listdir(f"/proc/{p.pid}/fd")), what="tail's inotify")
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    log.rename(tmp_path / "old")    # kept, so that the new file cannot reuse its inode
    log.write_text("one\n")
    r = subprocess.run([*IMGTOOLS, "restore", str(img), "--detach"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode == 0:
        os.kill(int(r.stdout.split()[-1]), 9)
    assert r.returncode == 3
    # tail also holds the file open: its reopen by path may be refused first (changed file)
    assert f"inotify watch 1: {log} is another file now" in r.stderr or \
        f"file {log} changed since the dump" in r.stderr, r.stderr
    assert not [d for d in os.listdir("/proc") if d.isdigit() and str(log) in _cmdline(d)]
