"""Shared fixtures: a process tree described once, composed in every ABI version."""
from __future__ import annotations

import io
import os
import threading
from contextlib import contextmanager

import pytest

import formats
from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.reader import ImageReader
from imgtools.build import build_model

ALL = [(v, a) for v in formats.VERSIONS for a in formats.ARCHES]


def tree_spec(version: str = "v23", pages: int = 3) -> ImageSpec:
    """Parent with a second thread, a child sharing a pipe, a zombie; an ERROR-free image."""
    fifo = [FdSpec(5, kind="fifo", pipe="fifo", path="/tmp/imgtools.fifo")] \
        if "fifo" in formats.abi(version).file_types else []
    data = {0x600000 + i * 4096: bytes([65 + i % 26]) * 100 for i in range(pages)}
    return ImageSpec(
        tasks=[TaskSpec(100, 1, comm="parent", regs={"ip": 0x401000, "sp": 0x7ffc0000, "ax": 7}),
               TaskSpec(101, 1, tgid=100, comm="parent", regs={"ip": 0x401100}),  # a thread's ppid is its leader's
               TaskSpec(102, 100, pgid=100, sid=100, comm="child", mm="mm2", files="files2",
                        blocked=1 << 11, pending=[12]),
               TaskSpec(103, 100, comm="zombie", zombie=True, exit_code=3)],
        mms={"mm": MmSpec([VmaSpec(0x400000, 0x402000, kind="file", path="/usr/bin/prog",
                                   flags=0x75),
                           VmaSpec(0x600000, 0x600000 + max(pages, 1) * 4096 + 4096,
                                   pages=data),
                           VmaSpec(0x7ffc0000 - 0x21000, 0x7ffc1000, flags=0x100173,
                                   pages={0x7ffc0000: b"stack"})],
                          exe="/usr/bin/prog", brk=(0x601000, 0x602000)),
             "mm2": MmSpec([VmaSpec(0x600000, 0x601000, pages={0x600000: b"child"})])},
        files={"files": [FdSpec(0, path="/dev/null"), FdSpec(3, kind="pipe", pipe="p1"),
                         FdSpec(4, kind="pipe", pipe="p1", flags=1, cloexec=True)],
               "files2": [FdSpec(3, kind="pipe", pipe="p1"), *fifo]},
        pipes={"p1": b"hello through the pipe"},
        handlers={10: 0x401234},
        time=1_700_000_000,
    )


def kinds_spec(version: str = "v23", ext: bool = True) -> ImageSpec:
    """tree_spec with a descriptor of every kind the version holds: a unix pair with data
    queued, a listening unix socket, TCP (connected, listening), an eventfd, an epoll
    watching a pipe and the eventfd, a pty pair with input buffered; with ``ext`` the
    extension records' files too (signalfd, timerfd, a sealed memfd also mapped shared, a
    deleted file, inotify) and the annotations (clocks, rseq, file stats)."""
    abi = formats.abi(version)
    spec = tree_spec(version)
    spec.ext = ext
    fds = [FdSpec(5, kind="unix", opts={"sock": "a", "peer": "b", "queued": [b"queued data"]}),
           FdSpec(6, kind="unix", opts={"sock": "b", "peer": "a"}),
           FdSpec(7, kind="unix", opts={"sock": "l", "addr": "/tmp/srv.sock", "listen": True})
           ] if "socket" in abi.file_types else []
    if abi.has("socket_inet"):
        fds += [FdSpec(8, kind="tcp", opts={"sock": "t", "laddr": ("127.0.0.1", 8000),
                                            "raddr": ("127.0.0.1", 40000)}),
                FdSpec(9, kind="tcp", opts={"sock": "ls", "laddr": ("0.0.0.0", 8000),
                                            "state": 10})]
    if "epoll" in abi.file_types:
        fds += [FdSpec(10, kind="eventfd", opts={"count": 3}),
                FdSpec(11, kind="epoll", opts={"watch": [3, 10]})]
    if "tty" in abi.file_types:
        fds += [FdSpec(12, kind="tty", opts={"tty": "ptm", "link": "pts", "master": True,
                                             "index": 4, "data": b"ls\n"}),
                FdSpec(13, kind="tty", opts={"tty": "pts", "link": "ptm", "index": 4})]
    if ext:
        memfd = FdSpec(16, kind="memfd", file="memfd",
                       opts={"name": "buf", "data": b"M" * 10000, "seals": 8})
        fds += [FdSpec(14, kind="signalfd"), FdSpec(15, kind="timerfd"), memfd,
                FdSpec(17, kind="ghost", path="/tmp/log.txt", opts={"data": b"log line\n"}),
                FdSpec(18, kind="inotify", opts={"watches": [(1, "/etc")]})]
        spec.mms["mm"].vmas.insert(2, VmaSpec(0x30000000, 0x30003000, kind="shm_file",
                                              flags=0xfb, fd=memfd, file="memfd"))
    spec.files["files"] += fds
    if abi.has("task_sem_undo_list"):
        spec.tasks[0].sem_undo = [(7, [1, -1, 0])]
    return spec


def read_model(data: bytes, **kw):
    return build_model(ImageReader(io.BytesIO(data), **kw))


@pytest.fixture(params=["objects", "columns"])
def lean_tables(request, monkeypatch):
    """A test twice: as a small image's lean model holds its tasks, files and fds (as
    objects), and as a large one's does (in columns: HOLD_* set to 0)."""
    if request.param == "columns":
        from imgtools import lean
        for name in ("HOLD_TASKS", "HOLD_FILES", "HOLD_FDS"):
            monkeypatch.setattr(lean, name, 0)
    return request.param


@pytest.fixture(params=ALL, ids=[f"{v}-{a}" for v, a in ALL])
def any_image(request):
    """(version, arch, bytes) of the tree spec composed in each ABI."""
    v, a = request.param
    return v, a, compose_bytes(tree_spec(v), v, a)


@contextmanager
def real_pipe(data: bytes):
    """The read end of an os.pipe that a thread fills with ``data`` (then closes)."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as out:
            try:
                out.write(data)
            except BrokenPipeError:
                pass                # the reader stopped early: fine
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    with os.fdopen(r, "rb") as src:
        yield src
    t.join()
