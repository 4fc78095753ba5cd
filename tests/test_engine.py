"""The C engine against live processes (no mocks).

Each sample program (and two helpers in tests/progs) is started, stopped with SIGSTOP so
nothing moves, and everything /proc and ptrace say about it is recorded: the task tree,
/proc/PID/maps, pagemap, the bytes of every page the image should hold (/proc/PID/mem),
registers and XSAVE area (PTRACE_SEIZE/INTERRUPT/GETREGS/GETREGSET/DETACH via ctypes),
descriptors and fdinfo, pipe contents (peeked with tee), signal masks, kcmp sharing. Then
the engine dumps the tree and the image is compared with that record; registers and
memory are read again after the dump and must not have changed. Then the tree gets
SIGCONT and must run as before (no ptrace stop, TracerPid 0, and it still answers).

Also: a dumper SIGKILLed (or SIGTERMed) mid-dump leaves its target running; refused
dumps exit non-zero with a one-line reason and leave no file; streaming into `info -`;
`show` and `info --json` over the committed samples.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from elftools.elf.elffile import ELFFile

from imgtools import engine, views
from imgtools.build import build_model
from imgtools.reader import open_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PROGS = Path(__file__).resolve().parent / "progs"
PAGE = 4096

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64"
    or not (shutil.which("make") and shutil.which("gcc")),
    reason="the engine needs Linux x86_64, make and gcc")

# ----------------------------------------------------------------------------------------
# ptrace and kcmp through ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long
_libc.tee.restype = ctypes.c_ssize_t
_libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]

PTRACE_GETREGS, PTRACE_DETACH = 12, 17
PTRACE_GETREGSET, PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4204, 0x4206, 0x4207
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F
PTRACE_EVENT_STOP = 128
NT_X86_XSTATE = 0x202
WALL = 0x40000000
SYS_KCMP, SYS_TGKILL = 312, 234
KCMP = {"file": 0, "mm": 1, "files": 2, "fs": 3, "sighand": 4}
SPLICE_F_NONBLOCK = 2

REG_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
             "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")


class UserRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in REG_NAMES]


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class RseqConfig(ctypes.Structure):
    _fields_ = [("pointer", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("signature", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


def ptrace(req: int, tid: int, addr: int = 0, data: int = 0) -> int:
    r = _libc.ptrace(req, tid, addr, data)
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")
    return r


def seize(tid: int) -> None:
    """PTRACE_SEIZE + PTRACE_INTERRUPT and wait for the PTRACE_EVENT_STOP."""
    ptrace(PTRACE_SEIZE, tid)
    ptrace(PTRACE_INTERRUPT, tid)
    while True:
        _, status = os.waitpid(tid, WALL)
        assert os.WIFSTOPPED(status), f"task {tid} ended while seized ({status:#x})"
        if status >> 16 == PTRACE_EVENT_STOP:
            return
        raise AssertionError(f"task {tid}: unexpected stop {status:#x} while seizing")


def read_regs(tid: int) -> tuple[dict, bytes, tuple[int, int]]:
    """Registers, XSAVE area and rseq area (address, size) of a task stopped by SIGSTOP,
    left stopped and detached.

    PTRACE_DETACH wakes a group-stopped task, which runs for a moment in the kernel
    before it stops again: wait until /proc shows it stopped."""
    seize(tid)
    try:
        regs = UserRegs()
        ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
        buf = ctypes.create_string_buffer(64 << 10)
        iov = IoVec(ctypes.addressof(buf), len(buf))
        ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))
        rseq = RseqConfig()
        ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(rseq), ctypes.addressof(rseq))
        return ({n: getattr(regs, n) for n in REG_NAMES}, buf.raw[:iov.len],
                (rseq.pointer, rseq.size))
    finally:
        ptrace(PTRACE_DETACH, tid)
        wait_for(f"task {tid} to stop again", lambda: state_of(tid) == "T")


def kcmp(pid1: int, pid2: int, kind: str, idx1: int = 0, idx2: int = 0) -> bool:
    """True if the two tasks hold the same kernel object."""
    r = _libc.syscall(SYS_KCMP, pid1, pid2, KCMP[kind], ctypes.c_ulong(idx1),
                      ctypes.c_ulong(idx2))
    assert r >= 0, f"kcmp: {os.strerror(ctypes.get_errno())}"
    return r == 0


def peek_pipe(path: str) -> bytes:
    """The bytes buffered in the pipe or FIFO behind path, left in place (tee)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        if n == 0:
            return b""
        r, w = os.pipe()
        try:
            assert _libc.tee(fd, w, n, SPLICE_F_NONBLOCK) == n
            return os.read(r, n)
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------
# /proc

def proc_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def status_of(tid: int) -> dict[str, str]:
    out = {}
    for line in proc_text(f"/proc/{tid}/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def stat_of(tid: int) -> list[str]:
    """/proc/TID/stat fields, numbered as in proc(5) minus 1 (comm is [1])."""
    raw = proc_text(f"/proc/{tid}/stat")
    head, _, rest = raw.rpartition(")")
    pid, _, comm = head.partition(" (")
    return [pid, comm] + rest.split()


def state_of(tid: int) -> str:
    try:
        return stat_of(tid)[2]
    except FileNotFoundError:
        return "gone"


def threads_of(pid: int) -> list[int]:
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return [pid] + [t for t in tids if t != pid]


def children_of(pid: int) -> list[int]:
    kids = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            kids.update(int(x) for x in proc_text(f"/proc/{pid}/task/{tid}/children").split())
        except FileNotFoundError:
            pass
    return sorted(kids)


def processes(root: int) -> list[int]:
    """root and its descendants, depth first, children by ascending pid."""
    out = [root]
    for c in children_of(root):
        out += processes(c)
    return out


def wait_for(what: str, pred, timeout: float = 5.0, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def tracer_of(tid: int) -> int:
    return int(status_of(tid)["TracerPid"])


def read_maps(pid: int) -> list[tuple[int, int, str, int, str]]:
    rows = []
    for line in proc_text(f"/proc/{pid}/maps").splitlines():
        parts = line.split(None, 5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        rows.append((start, end, parts[1], int(parts[2], 16), parts[5] if len(parts) > 5 else ""))
    return rows


SPECIAL = ("[vvar]", "[vvar_vclock]")       # kernel pages (VM_IO | VM_PFNMAP)
SHM_ANON = "/dev/zero (deleted)"
PM_PRESENT, PM_SWAP, PM_FILE = 1 << 63, 1 << 62, 1 << 61


def proc_vma_name(path: str) -> str:
    return "[vvar*]" if path in SPECIAL else path


def saved_pages(pid: int, maps) -> list[int]:
    """Pages the image must hold (engine/README.md): present or swapped pages of private
    and shared-anonymous mappings; of a private file mapping only its anonymous
    (copy-on-write) pages; every page of [vdso]; nothing of [vvar], shared file
    mappings."""
    out = []
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for start, end, perms, _, path in maps:
            if path == "[vdso]":
                out += range(start, end, PAGE)
                continue
            if path == "[vsyscall]" or path in SPECIAL:
                continue
            is_file = path.startswith("/") and path != SHM_ANON
            if is_file and perms[3] == "s":
                continue
            n = (end - start) // PAGE
            raw = os.pread(fd, 8 * n, start // PAGE * 8)
            for i, (e,) in enumerate(struct.iter_unpack("<Q", raw)):
                if e & PM_SWAP or (e & PM_PRESENT and not (is_file and e & PM_FILE)):
                    out.append(start + i * PAGE)
    finally:
        os.close(fd)
    return out


def masked(page: bytes, addr: int, areas) -> bytes:
    """page with the bytes of the (address, size) areas zeroed."""
    b = bytearray(page)
    for start, size in areas:
        lo, hi = max(start, addr), min(start + size, addr + PAGE)
        if lo < hi:
            b[lo - addr:hi - addr] = bytes(hi - lo)
    return bytes(b)


def read_mem(pid: int, addrs) -> dict[int, bytes]:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return {a: os.pread(fd, PAGE, a) for a in addrs}
    finally:
        os.close(fd)


@dataclass
class FdInfo:
    fd: int
    link: str
    flags: int
    pos: int
    dev: int
    ino: int
    mode: int
    buffered: bytes | None = None


def read_fds(pid: int) -> dict[int, FdInfo]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        fd = int(name)
        info = dict(line.split(":", 1) for line in
                    proc_text(f"/proc/{pid}/fdinfo/{fd}").splitlines() if ":" in line)
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        fi = FdInfo(fd, os.readlink(f"/proc/{pid}/fd/{fd}"), int(info["flags"], 8),
                    int(info["pos"]), st.st_dev, st.st_ino, st.st_mode)
        if stat.S_ISFIFO(st.st_mode):
            fi.buffered = peek_pipe(f"/proc/{pid}/fd/{fd}")
        out[fd] = fi
    return out


@dataclass
class TaskFacts:
    tid: int
    tgid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    state: str
    exit_signal: int
    exit_code: int
    status: dict


@dataclass
class ProcFacts:
    pid: int
    maps: list
    pages: list[int]
    mem: dict[int, bytes]
    fds: dict[int, FdInfo]
    auxv: list[tuple[int, int]]
    exe: str
    cwd: str
    root: str
    stat: list[str]
    rlimits: list[tuple[int, int]]


@dataclass
class Snapshot:
    """What /proc and ptrace say about a stopped tree."""
    tasks: list[TaskFacts] = field(default_factory=list)
    procs: dict[int, ProcFacts] = field(default_factory=dict)
    regs: dict[int, tuple[dict, bytes, tuple[int, int]]] = field(default_factory=dict)


def task_facts(tid: int) -> TaskFacts:
    s = stat_of(tid)
    st = status_of(tid)
    return TaskFacts(tid, int(st["Tgid"]), int(s[3]), int(s[4]), int(s[5]), s[1], s[2],
                     int(s[37]), int(s[51]), st)


def rlimits_of(pid: int) -> list[tuple[int, int]]:
    """RLIMIT_CPU..RLIMIT_RTTIME by prlimit(2) (RLIM_INFINITY as 2**64 - 1)."""
    inf = 2**64 - 1
    return [tuple(inf if v == resource.RLIM_INFINITY else v for v in resource.prlimit(pid, i))
            for i in range(16)]


def take_snapshot(root: int) -> Snapshot:
    snap = Snapshot()
    for pid in processes(root):
        if state_of(pid) == "Z":
            snap.tasks.append(task_facts(pid))
            continue
        for tid in threads_of(pid):
            snap.tasks.append(task_facts(tid))
        maps = read_maps(pid)
        pages = saved_pages(pid, maps)
        raw = open(f"/proc/{pid}/auxv", "rb").read()
        auxv = []
        for k, v in struct.iter_unpack("<QQ", raw):
            auxv.append((k, v))
            if k == 0:
                break
        snap.procs[pid] = ProcFacts(
            pid, maps, pages, read_mem(pid, pages), read_fds(pid), auxv,
            os.readlink(f"/proc/{pid}/exe"), os.readlink(f"/proc/{pid}/cwd"),
            os.readlink(f"/proc/{pid}/root"), stat_of(pid), rlimits_of(pid))
    for t in snap.tasks:
        if t.state != "Z":
            snap.regs[t.tid] = read_regs(t.tid)
    return snap


# ----------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    for d in (ROOT / "engine", SAMPLES):
        r = subprocess.run(["make", "-s", "-C", str(d)], capture_output=True, text=True)
        assert r.returncode == 0, f"make -C {d}:\n{r.stdout}{r.stderr}"
    out = tmp_path_factory.mktemp("progs")
    for name in ("hog", "tree", "vforker", "shmanon", "novdso"):
        r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out / name), str(PROGS / f"{name}.c"),
                            "-pthread"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    os.chmod(out, 0o755)
    return SimpleNamespace(engine=engine.find_engine(), progs=out,
                           sample=lambda name: SAMPLES / "build" / name)


class Targets:
    """Programs started for a test; every one (and its descendants) is SIGKILLed at the end."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.buf: dict[int, bytes] = {}

    def start(self, argv, stderr=subprocess.DEVNULL, **kw) -> subprocess.Popen:
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=stderr, bufsize=0, **kw)
        self.procs.append(p)
        self.buf[p.pid] = b""
        assert self.read_line(p, 10) == b"ready", f"{argv[0]} did not get ready"
        return p

    def read_line(self, p: subprocess.Popen, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf[p.pid]:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                raise AssertionError(f"pid {p.pid}: no line on stdout within {timeout}s")
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"pid {p.pid}: stdout closed")
            self.buf[p.pid] += chunk
        line, _, self.buf[p.pid] = self.buf[p.pid].partition(b"\n")
        return line

    def cleanup(self):
        for p in self.procs:
            try:
                pids = processes(p.pid)
            except FileNotFoundError:
                pids = [p.pid]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait(timeout=10)
            p.stdout.close()


@pytest.fixture
def targets():
    t = Targets()
    try:
        yield t
    finally:
        t.cleanup()


def run_cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgtools", *map(str, args)], cwd=ROOT,
                          capture_output=True, **kw)


# ----------------------------------------------------------------------------------------
# stop, dump, compare, resume

def stop_tree(root: int) -> None:
    pids = [p for p in processes(root) if state_of(p) != "Z"]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    for pid in pids:
        for tid in threads_of(pid):
            wait_for(f"task {tid} to stop", lambda: state_of(tid) == "T")


def resume_tree(root: int) -> None:
    """SIGCONT; every live task must leave the stop and nobody may trace it."""
    pids = [p for p in processes(root) if state_of(p) != "Z"]
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    for pid in pids:
        for tid in threads_of(pid):
            wait_for(f"task {tid} to run again", lambda: state_of(tid) not in "tT")
            assert tracer_of(tid) == 0


def dump_stopped(root: int, out: Path, dump=None) -> tuple[Snapshot, object]:
    """SIGSTOP the tree, record it, dump it, check the dump changed nothing; the model."""
    stop_tree(root)
    before = take_snapshot(root)
    if dump is None:
        assert engine.dump(root, out) == 0
    else:
        dump(root, out)
    for t in before.tasks:
        # (a detached task may run for a moment in the kernel before it stops again)
        wait_for(f"task {t.tid} to be back in state {t.state}",
                 lambda: state_of(t.tid) == t.state, timeout=2)
        if t.state != "Z":
            assert tracer_of(t.tid) == 0, f"task {t.tid} still traced after the dump"
    # the engine ran syscalls inside the tasks: registers and memory must be as they were
    for tid, (regs, xstate, rseq) in before.regs.items():
        after_regs, after_xstate, _ = read_regs(tid)
        assert after_regs == regs, f"task {tid}: registers changed by the dump"
        assert after_xstate == xstate, f"task {tid}: XSAVE area changed by the dump"
    for pid, pf in before.procs.items():
        # Known engine bug (test_dump_adds_no_pages): the syscall scratch 4 KiB below a
        # thread's sp faults in a stack page that did not exist. Tolerated here only for
        # that page, and only as a zero page (the image then holds it too).
        after = saved_pages(pid, read_maps(pid))
        added = sorted(set(after) - set(pf.pages))
        assert set(pf.pages) <= set(after), f"pid {pid}: the dump removed pages"
        scratch = {(r[0]["sp"] - 4096) & ~(PAGE - 1) for tid, r in before.regs.items()
                   if tid in threads_of(pid)}
        assert set(added) <= scratch, f"pid {pid}: the dump added pages {added}"
        mem = read_mem(pid, after)
        assert all(mem[a] == bytes(PAGE) for a in added)
        # Running the probe syscalls returns the task to user space, where the kernel
        # rewrites its rseq area (cpu_id after a migration): those bytes may change.
        rseqs = [r[2] for tid, r in before.regs.items() if tid in threads_of(pid)]
        for a in pf.pages:
            assert masked(mem[a], a, rseqs) == masked(pf.mem[a], a, rseqs), \
                f"pid {pid}: the dump changed the page at {a:#x}"
        pf.pages, pf.mem = after, mem
    with open_image(str(out)) as r:
        img = build_model(r)
    check_image(img, out, before)
    return before, img


TASK_STATE = {"R": (0, 0), "S": (1, 0), "D": (2, 0), "T": (4, 0), "t": (8, 0), "Z": (64, 16)}
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x8, 0x80
VM_PFNMAP, VM_IO = 0x400, 0x4000
SEGMENT = {0: 0, 0x23: 1, 0x33: 3, 0x2B: 4}     # selector -> CKPT_X86_SEG_*
SHARED_KINDS = {"mm": "mm", "files": "files", "fs": "fs", "sighand": "sighand"}


def image_vma_row(img, mm, v) -> tuple[int, int, str, int, str]:
    f = v.vm_flags
    perms = ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
        ("x" if f & VM_EXEC else "-") + ("s" if f & (VM_SHARED | VM_MAYSHARE) else "p")
    if v.file_ref:
        path = img.get(v.file_ref, "file").path
    elif v.vma_type == "vdso":
        path = "[vdso]"
    elif v.vma_type == "shm_anon":
        path = SHM_ANON
    elif v.vma_type == "anon" and f & (VM_IO | VM_PFNMAP):
        path = "[vvar*]"
    else:
        assert v.vma_type == "anon", f"unexpected VMA type {v.vma_type}"
        path = views.vma_path(img, mm, v) or ""
    return v.start, v.end, perms, v.pgoff * PAGE, path


def image_pages(path: Path, vma) -> dict[int, bytes]:
    out = {}
    with open(path, "rb") as f:
        for addr, off in vma.page_offsets():
            f.seek(off)
            out[addr] = f.read(PAGE)
    return out


def read_at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def sigmask(status: dict, key: str) -> int:
    return int(status[key], 16)


def check_image(img, path: Path, snap: Snapshot) -> None:
    assert img.version == "v23" and img.arch == "x86_64"
    assert img.tail and not img.errors, [e.message for e in img.errors]

    # the tree: every task (threads and zombies too), depth first, with its pid numbers
    assert [(t.pid, t.ppid, t.tgid, t.pgid, t.sid) for t in img.tasks] == \
        [(t.tid, t.ppid, t.tgid, t.pgid, t.sid) for t in snap.tasks]
    for it, pt in zip(img.tasks, snap.tasks):
        assert it.comm == pt.comm
        assert (it.fields["state"], it.fields["exit_state"]) == TASK_STATE[pt.state]
        assert it.zombie == (pt.state == "Z")
        assert it.fields["exit_signal"] == pt.exit_signal & 0xFFFFFFFF     # __u32; -1 for threads
        if it.zombie:
            assert it.fields["exit_code"] == pt.exit_code
            continue
        # registers: the image holds what ptrace shows for the stopped task
        regs, xstate, _ = snap.regs[pt.tid]
        want = {k: regs[k] for k in REG_NAMES[:17] + ("sp", "flags")}
        want |= {"fs": regs["fs_base"], "gs": regs["gs_base"]}
        assert {k: it.regs[k] for k in want} == want, f"task {pt.tid}: registers"
        for seg in ("cs", "ss", "ds", "es"):
            assert it.regs[seg] == SEGMENT[regs[seg]], f"task {pt.tid}: {seg}"
        assert it.fpu_size == len(xstate)
        assert read_at(path, it.fpu_offset, it.fpu_size) == xstate, f"task {pt.tid}: XSAVE"
        # signal masks and queues
        st = pt.status
        assert it.blocked == sigmask(st, "SigBlk")
        assert it.pending_mask == sigmask(st, "SigPnd")
        assert {p["csi_signo"] for p in it.pending} == \
            {s + 1 for s in range(64) if it.pending_mask >> s & 1}
        sig = img.get(it.obj("signal"), "signal")
        assert sig.shared_mask == sigmask(st, "ShdPnd")
        assert {p["csi_signo"] for p in sig.shared_pending} == \
            {s + 1 for s in range(64) if sig.shared_mask >> s & 1}
        action = img.get(it.obj("sighand"), "sighand")["action"]
        ign, cgt = sigmask(st, "SigIgn"), sigmask(st, "SigCgt")
        for i, a in enumerate(action):
            h = a["_sa_handler"]
            assert (h == 1, h > 1) == (bool(ign >> i & 1), bool(cgt >> i & 1)), f"signal {i + 1}"
        # credentials
        cred = img.get(it.cred_ref, "cred")
        assert [cred[k] for k in ("uid", "euid", "suid", "fsuid")] == \
            [int(x) for x in st["Uid"].split()]
        assert [cred[k] for k in ("gid", "egid", "sgid", "fsgid")] == \
            [int(x) for x in st["Gid"].split()]

    live = [(it, pt) for it, pt in zip(img.tasks, snap.tasks) if pt.state != "Z"]
    # kernel objects shared exactly as kcmp says (threads, forked children)
    for i, (a, pa) in enumerate(live):
        for b, pb in live[:i]:
            for kind, name in SHARED_KINDS.items():
                assert (a.obj(name) == b.obj(name)) == kcmp(pa.tid, pb.tid, kind), \
                    f"tasks {pa.tid} and {pb.tid}: {name} sharing"
            assert (a.obj("signal") == b.obj("signal")) == (pa.tgid == pb.tgid)

    # per process: memory, files, fs
    fd_refs = []                                    # (pid, FdInfo, File)
    for it, pt in live:
        if it.is_thread:
            continue
        pf = snap.procs[pt.tid]
        mm = img.get(it.obj("mm"), "mm")
        assert img.get(mm.exe_ref, "file").path == pf.exe
        assert mm.auxv == pf.auxv
        s = pf.stat
        for name, idx in (("start_code", 25), ("end_code", 26), ("start_stack", 27),
                          ("start_data", 44), ("end_data", 45), ("start_brk", 46),
                          ("arg_start", 47), ("arg_end", 48), ("env_start", 49),
                          ("env_end", 50)):
            assert mm.fields[name] == int(s[idx]), name
        heap = [m for m in pf.maps if m[4] == "[heap]"]
        if heap:
            assert (mm.fields["brk"] + PAGE - 1) // PAGE * PAGE == heap[0][1]
        # every mapping of /proc/PID/maps and nothing else ([vsyscall] is not the mm's)
        want = [(a, b, p, o, proc_vma_name(n)) for a, b, p, o, n in pf.maps if n != "[vsyscall]"]
        assert [image_vma_row(img, mm, v) for v in mm.vmas] == want
        # the pages that exist, with the bytes /proc/PID/mem shows
        pages = {}
        for v in mm.vmas:
            got = image_pages(path, v)
            assert all(v.start <= a < v.end for a in got)
            pages.update(got)
        assert sorted(pages) == pf.pages, f"pid {pt.tid}: page set"
        for a in pf.pages:
            assert pages[a] == pf.mem[a], f"pid {pt.tid}: page {a:#x} differs from /proc/PID/mem"
        # descriptors
        table = img.get(it.obj("files"), "file_table")
        assert sorted(fd.fd for fd in table.fds) == sorted(pf.fds)
        for fd in table.fds:
            pfd = pf.fds[fd.fd]
            f = img.get(fd.file_ref, "file")
            assert fd.close_on_exec == bool(pfd.flags & os.O_CLOEXEC), f"fd {fd.fd}"
            assert f.f_flags == pfd.flags & ~os.O_CLOEXEC, f"fd {fd.fd}"
            assert f.f_pos == pfd.pos, f"fd {fd.fd}"
            if pfd.link.startswith("pipe:["):
                assert f.f_type == "pipe"
            elif stat.S_ISFIFO(pfd.mode):
                assert (f.f_type, f.path) == ("fifo", pfd.link)
            else:
                assert (f.f_type, f.path) == ("generic", pfd.link), f"fd {fd.fd}"
            if pfd.buffered is not None:
                p = img.get(f.pipe_ref, "inode")
                assert p.data_len == len(pfd.buffered)
                if p.data_len:
                    assert read_at(path, p.data_offset, p.data_len) == pfd.buffered
            fd_refs.append((pt.tid, pfd, f))
        # resource limits as prlimit(2) reports them (the engine reads /proc/PID/limits)
        rlim = img.get(it.obj("signal"), "signal").fields["rlim"]
        assert [tuple(r) for r in rlim] == pf.rlimits      # (rlim_cur, rlim_max) pairs
        fs = img.get(it.obj("fs"), "fs")
        assert (fs.cwd, fs.root) == (pf.cwd, pf.root)
        assert fs.umask == int(pt.status["Umask"], 8)
    # one FILE object per open file description, one pipe inode per pipe
    for i, (pa, a, fa) in enumerate(fd_refs):
        for pb, b, fb in fd_refs[:i]:
            same_inode = (a.dev, a.ino) == (b.dev, b.ino)
            same_file = same_inode and kcmp(pa, pb, "file", a.fd, b.fd)
            assert (fa.ref == fb.ref) == same_file, f"{pa}/{a.fd} vs {pb}/{b.fd}"
            if fa.pipe_ref or fb.pipe_ref:
                assert (fa.pipe_ref == fb.pipe_ref) == same_inode


def symbols(binary: Path, names) -> dict[str, int]:
    with open(binary, "rb") as f:
        elf = ELFFile(f)
        pie = elf["e_type"] == "ET_DYN"
        tab = elf.get_section_by_name(".symtab")
        return {n: (tab.get_symbol_by_name(n)[0]["st_value"], pie) for n in names}


def runtime_addr(pid: int, binary: Path, names) -> dict[str, int]:
    real = os.path.realpath(binary)
    base = min(a for a, _, _, off, p in read_maps(pid) if p == real and off == 0)
    return {n: v + (base if pie else 0) for n, (v, pie) in symbols(binary, names).items()}


def peek_mem(pid: int, addr: int, n: int) -> bytes:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return os.pread(fd, n, addr)
    finally:
        os.close(fd)


def image_bytes(img, path: Path, task, addr: int, n: int) -> bytes:
    mm = img.get(task.obj("mm"), "mm")
    for v in mm.vmas:
        for a, off in v.page_offsets():
            if a <= addr < a + PAGE:
                assert addr + n <= a + PAGE
                return read_at(path, off + addr - a, n)
    raise AssertionError(f"no page at {addr:#x} in the image")


# ----------------------------------------------------------------------------------------
# the samples, one by one

def test_single(built, targets, tmp_path):
    """single via the CLI (`dump PID --single -o FILE`); stderr is a regular file at pos 7."""
    log = tmp_path / "log"
    log.write_bytes(b"0123456789")
    fd = os.open(log, os.O_RDWR)
    os.lseek(fd, 7, os.SEEK_SET)
    try:
        p = targets.start([built.sample("single")], stderr=fd)
    finally:
        os.close(fd)
    out = tmp_path / "out" / "single.img"
    out.parent.mkdir()

    def cli_dump(pid, path):
        r = run_cli("dump", pid, "--single", "-o", path)
        assert r.returncode == 0, r.stderr
        assert os.listdir(path.parent) == [path.name]      # no temporary left behind

    snap, img = dump_stopped(p.pid, out, cli_dump)
    assert [t.pid for t in img.tasks] == [p.pid]
    f = img.get(img.get(img.tasks[0].obj("files"), "file_table").fds[2].file_ref, "file")
    assert (f.path, f.f_pos, f.f_type) == (str(log), 7, "generic")
    # the globals and the heap block are in the image where the program put them
    addr = runtime_addr(p.pid, built.sample("single"), ["greeting", "counter"])
    assert image_bytes(img, out, img.tasks[0], addr["greeting"], 28) == \
        b"hello from the data segment\0"
    heap = next(v for v in img.get(img.tasks[0].obj("mm"), "mm").vmas
                if views.vma_path(img, img.get(img.tasks[0].obj("mm"), "mm"), v) == "[heap]")
    # strcpy over 'A' + i % 26: the marker, its NUL, then the pattern from i = 18 on
    assert any(b"heap block marker\0STUVWXYZABC" in data
               for data in image_pages(out, heap).values())
    # resumed, the loop goes on counting
    counter = int.from_bytes(peek_mem(p.pid, addr["counter"], 8), "little")
    resume_tree(p.pid)
    wait_for("the counter to move", lambda: int.from_bytes(
        peek_mem(p.pid, addr["counter"], 8), "little") > counter, timeout=5, interval=0.05)


def syscall_of(pid: int, tid: int) -> int | None:
    v = proc_text(f"/proc/{pid}/task/{tid}/syscall").split()[0]
    return None if v == "running" else int(v)


def test_threads(built, targets, tmp_path):
    p = targets.start([built.sample("threads")])
    # "ready" comes when the barrier opens: let every thread get to its own syscall
    # (pause, clock_nanosleep, read, futex) before stopping them
    wait_for("the threads to settle", lambda: {syscall_of(p.pid, t) for t in threads_of(p.pid)}
             == {34, 230, 0, 202})
    out = tmp_path / "threads.img"
    snap, img = dump_stopped(p.pid, out)
    assert len(img.tasks) == 4 and all(t.tgid == p.pid for t in img.tasks)
    assert [t.is_thread for t in img.tasks] == [False, True, True, True]
    assert len({t.obj("mm") for t in img.tasks}) == 1
    # the threads sit in different syscalls: pause, clock_nanosleep, read, futex
    assert {t.pid: t.regs["orig_ax"] for t in img.tasks} == \
        {t.pid: syscall_of(p.pid, t.pid) for t in img.tasks}
    resume_tree(p.pid)
    # the reader thread still reads: a byte written into its pipe is consumed
    wfd = next(fd for fd, i in snap.procs[p.pid].fds.items()
               if fd > 2 and i.link.startswith("pipe:") and i.flags & os.O_ACCMODE == os.O_WRONLY)
    w = os.open(f"/proc/{p.pid}/fd/{wfd}", os.O_WRONLY)
    try:
        os.write(w, b"x")
        wait_for("the reader thread to consume the byte", lambda: struct.unpack(
            "i", fcntl.ioctl(w, termios.FIONREAD, b"\0" * 4))[0] == 0)
    finally:
        os.close(w)


PIPE_DATA = b"buffered pipe data nobody has read yet\0"
FIFO_DATA = b"fifo contents\0"


def test_pipes(built, targets, tmp_path):
    fifo = tmp_path / "sample.fifo"
    # own process group (pgid = its pid), session from outside the tree
    p = targets.start([built.sample("pipes"), fifo], process_group=0)
    out = tmp_path / "pipes.img"
    snap, img = dump_stopped(p.pid, out)
    kids = children_of(p.pid)
    assert len(kids) == 2
    assert [(t.pid, t.ppid, t.pgid) for t in img.tasks] == \
        [(p.pid, os.getpid(), p.pid)] + [(k, p.pid, p.pid) for k in kids]
    assert all(t.sid == os.getsid(0) for t in img.tasks)
    parent = img.tasks[0]
    table = img.get(parent.obj("files"), "file_table")
    files = {fd.fd: img.get(fd.file_ref, "file") for fd in table.fds}
    assert (files[3].f_type, files[4].f_type, files[5].f_type) == ("pipe", "pipe", "fifo")
    assert files[3].pipe_ref == files[4].pipe_ref != files[5].pipe_ref
    assert files[5].path == str(fifo)
    pipe, fifo_ino = img.get(files[3].pipe_ref, "inode"), img.get(files[5].pipe_ref, "inode")
    assert read_at(out, pipe.data_offset, pipe.data_len) == PIPE_DATA
    assert read_at(out, fifo_ino.data_offset, fifo_ino.data_len) == FIFO_DATA
    # the children's descriptors are the parent's open files (fork), not copies
    for child in img.tasks[1:]:
        ct = img.get(child.obj("files"), "file_table")
        assert ct.ref != table.ref
        assert [(fd.fd, fd.file_ref) for fd in ct.fds] == [(fd.fd, fd.file_ref) for fd in table.fds]
    resume_tree(p.pid)
    # the data is still in the pipes (copied, not consumed) ...
    r = os.open(f"/proc/{p.pid}/fd/3", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(r, 4096) == PIPE_DATA
    finally:
        os.close(r)
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(r, 4096) == FIFO_DATA
    finally:
        os.close(r)
    # ... and the children still take signals: SIGTERM ends them (zombies of the parent)
    for k in kids:
        os.kill(k, signal.SIGTERM)
    for k in kids:
        wait_for(f"child {k} to exit", lambda: state_of(k) == "Z")
    assert state_of(p.pid) in "SR"


def test_signals(built, targets, tmp_path):
    binary = built.sample("signals")
    p = targets.start([binary])
    started = time.monotonic()
    # what the program gave sigaltstack and sigaction, asked from its debug info
    r = subprocess.run(["gdb", "-q", "-batch", "-nx", "-p", str(p.pid),
                        "-ex", "frame function main",
                        "-ex", 'printf "VALUES %lu %lu %lu %lu %lu %lu\\n", ss.ss_sp, ss.ss_size, '
                               '&on_usr1, &on_usr2, &on_alarm, &got'],
                       capture_output=True, text=True, timeout=30)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("VALUES ")), None)
    assert line, f"gdb:\n{r.stdout}\n{r.stderr}"
    ss_sp, ss_size, on_usr1, on_usr2, on_alarm, got = map(int, line.split()[1:])
    wait_for("the sample to sit in pause() again", lambda: state_of(p.pid) == "S")
    assert tracer_of(p.pid) == 0
    # one more SIGUSR2, directed at the thread (tgkill): the private queue
    assert _libc.syscall(SYS_TGKILL, p.pid, p.pid, signal.SIGUSR2) == 0

    out = tmp_path / "signals.img"
    snap, img = dump_stopped(p.pid, out)
    t = img.tasks[0]
    assert (t.fields["sas_ss_sp"], t.fields["sas_ss_size"]) == (ss_sp, ss_size)
    action = img.get(t.obj("sighand"), "sighand")["action"]
    SA_SIGINFO, SA_ONSTACK, SA_RESTART, SA_RESTORER = 4, 0x08000000, 0x10000000, 0x04000000
    usr1, usr2, alrm = action[9], action[11], action[13]
    assert (usr1["_sa_handler"], usr2["_sa_handler"], alrm["_sa_handler"]) == \
        (on_usr1, on_usr2, on_alarm)
    assert usr1["sa_flags"] & ~SA_RESTORER == SA_RESTART
    assert usr2["sa_flags"] & ~SA_RESTORER == SA_SIGINFO | SA_ONSTACK
    assert (usr1["sa_mask"], usr2["sa_mask"]) == (0, 1 << (signal.SIGUSR1 - 1))
    libc_text = [(a, b) for a, b, perms, _, path in snap.procs[p.pid].maps
                 if "x" in perms and "/libc" in path]
    for a in (usr1, usr2, alrm):
        assert a["sa_flags"] & SA_RESTORER
        assert any(lo <= a["sa_restorer"] < hi for lo, hi in libc_text)
    for i, a in enumerate(action):
        if i not in (9, 11, 13):
            assert a["_sa_handler"] in (0, 1), f"signal {i + 1}"
    # SIGUSR2 blocked, and queued once by sigqueue(getpid(), SIGUSR2, 42): process-wide
    usr2_bit = 1 << (signal.SIGUSR2 - 1)
    assert t.blocked == usr2_bit
    [q] = t.pending
    assert t.pending_mask == usr2_bit
    assert (q["csi_signo"], q["csi_code"], q["csi_pid"], q["csi_uid"]) == \
        (signal.SIGUSR2, -6, os.getpid(), os.getuid())     # SI_TKILL
    sig = img.get(t.obj("signal"), "signal")
    assert sig.shared_mask == usr2_bit
    [q] = sig.shared_pending
    assert (q["csi_signo"], q["csi_code"], q["csi_pid"], q["csi_uid"], q["csi_int"]) == \
        (signal.SIGUSR2, -1, p.pid, os.getuid(), 42)       # SI_QUEUE
    # the interval timer: 3600 s interval, 1800.5 s first expiry minus the time since
    elapsed = time.monotonic() - started
    real, incr = sig.fields["it_real_value"], sig.fields["it_real_incr"]
    assert incr == 3600 * 10**9
    assert (1800.5 - elapsed - 1) * 1e9 < real <= 1800.5 * 1e9
    resume_tree(p.pid)
    # it still takes signals: SIGUSR1 runs its handler; SIGUSR2 is still pending
    os.kill(p.pid, signal.SIGUSR1)
    wait_for("the SIGUSR1 handler", lambda: peek_mem(p.pid, got, 4) ==
             struct.pack("i", signal.SIGUSR1))
    assert sigmask(status_of(p.pid), "ShdPnd") == sigmask(status_of(p.pid), "SigPnd") == usr2_bit


def test_vdso_address_taken_by_a_writable_page(built, targets, tmp_path):
    """The auxv's [vdso] address is a hint: a process that unmapped its vdso and mapped a
    writable page holding a syscall instruction's bytes there is probed through another
    executable mapping (a syscall run from that page would fault the process), dumped
    whole and unchanged, and runs on."""
    p = targets.start([built.progs / "novdso"])
    handler = int(targets.read_line(p, 5))
    snap, img = dump_stopped(p.pid, tmp_path / "novdso.img")
    t = img.tasks[0]
    assert img.get(t.obj("sighand"), "sighand")["action"][signal.SIGUSR1 - 1]["_sa_handler"] \
        == handler                                  # read by an injected rt_sigaction
    resume_tree(p.pid)
    os.kill(p.pid, signal.SIGUSR1)
    assert targets.read_line(p, 5) == b"usr1"


def test_dump_adds_no_pages(built, targets, tmp_path):
    """A dump must not change the target's memory, not even which pages exist."""
    p = targets.start([built.sample("threads")])
    stop_tree(p.pid)
    before = saved_pages(p.pid, read_maps(p.pid))
    assert engine.dump(p.pid, tmp_path / "t.img") == 0
    after = saved_pages(p.pid, read_maps(p.pid))
    assert sorted(set(after) - set(before)) == []


def test_dump_by_thread_id(built, targets, tmp_path):
    """Dumping a non-leader thread id: either the whole process, as by its pid, or refused."""
    p = targets.start([built.sample("threads")])
    tid = threads_of(p.pid)[2]
    r = subprocess.run([str(built.engine), "dump", str(tid), "-o", str(tmp_path / "t.img")],
                       capture_output=True)
    if r.returncode:
        assert len(r.stderr.decode().strip().splitlines()) == 1
        return
    with open_image(str(tmp_path / "t.img")) as rd:
        img = build_model(rd)
    assert [(t.pid, t.tgid) for t in img.tasks] == [(x, p.pid) for x in threads_of(p.pid)]


def test_tree_depth_first_with_zombie(built, targets, tmp_path):
    """root(+thread) -> A -> A1, B, Z(zombie): the image lists root, thread, A, A1, B, Z."""
    p = targets.start([built.progs / "tree"])
    out = tmp_path / "tree.img"
    snap, img = dump_stopped(p.pid, out)
    a, b, z = children_of(p.pid)
    [a1] = children_of(a)
    thread = threads_of(p.pid)[1]
    assert [t.pid for t in img.tasks] == [p.pid, thread, a, a1, b, z]
    assert [t.zombie for t in img.tasks] == [False] * 5 + [True]
    assert img.tasks[-1].fields["exit_code"] == 3 << 8
    resume_tree(p.pid)
    assert state_of(z) == "Z"


def test_hog_small(built, targets, tmp_path):
    """Close-on-exec descriptors, shared anonymous memory, pages that each hold their index."""
    p = targets.start([built.progs / "hog", 8])
    out = tmp_path / "hog.img"
    snap, img = dump_stopped(p.pid, out)
    table = img.get(img.tasks[0].obj("files"), "file_table")
    assert sum(fd.close_on_exec for fd in table.fds) == 3     # /dev/null, both pipe ends
    mm = img.get(img.tasks[0].obj("mm"), "mm")
    [shm] = [v for v in mm.vmas if v.vma_type == "shm_anon"]
    assert image_pages(out, shm)[shm.start].startswith(b"shared anonymous page\0")
    [big] = [v for v in mm.vmas if v.end - v.start == 8 << 20]
    pages = image_pages(out, big)
    assert len(pages) == 2048
    assert all(pages[big.start + i * PAGE][:8] == struct.pack("<Q", i) for i in range(2048))
    resume_tree(p.pid)
    os.kill(p.pid, signal.SIGUSR1)
    assert targets.read_line(p, 5) == b"pong"


# ----------------------------------------------------------------------------------------
# after the dump, without SIGSTOP; interrupted dumpers

def test_stream_into_info(built, targets):
    """`imgtools dump PID -o - | imgtools info --json -` of a running process."""
    p = targets.start([built.sample("threads")])
    dumper = subprocess.Popen([sys.executable, "-m", "imgtools", "dump", str(p.pid), "-o", "-"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    info = subprocess.run([sys.executable, "-m", "imgtools", "info", "--json", "-"], cwd=ROOT,
                          stdin=dumper.stdout, capture_output=True, timeout=60)
    dumper.stdout.close()
    assert dumper.wait(timeout=60) == 0, dumper.stderr.read()
    dumper.stderr.close()
    assert info.returncode == 0, info.stderr
    j = json.loads(info.stdout)
    assert (j["version"], j["arch"], j["tasks"], j["processes"], j["threads"]) == \
        ("v23", "x86_64", 4, 1, 3)
    assert j["tail"] and j["errors"] == [] and j["pages"] > 0
    for tid in threads_of(p.pid):
        assert state_of(tid) not in "tT" and tracer_of(tid) == 0


def test_kill_flag(built, targets, tmp_path):
    """--kill: the tree is SIGKILLed once the image is complete."""
    p = targets.start([built.sample("pipes"), tmp_path / "f.fifo"])
    kids = children_of(p.pid)
    assert engine.dump(p.pid, tmp_path / "k.img", kill=True) == 0
    assert p.wait(timeout=5) == -signal.SIGKILL
    for k in kids:
        wait_for(f"child {k} to die", lambda: state_of(k) in ("Z", "gone"))
    with open_image(str(tmp_path / "k.img")) as r:
        img = build_model(r)
    assert img.tail and len(img.tasks) == 3


def read_some(dumper: subprocess.Popen, n: int) -> None:
    """n bytes of the image from the dumper's stdout (then left unread: the pipe fills)."""
    got = 0
    while got < n:
        chunk = os.read(dumper.stdout.fileno(), 1 << 16)
        assert chunk, dumper.stderr.read()
        got += len(chunk)


def end_dumper(dumper: subprocess.Popen) -> None:
    """Killed if still running, reaped, its pipes closed."""
    if dumper.poll() is None:
        dumper.kill()
        dumper.wait()
    dumper.stdout.close()
    dumper.stderr.close()


def assert_hog_answers(targets, p: subprocess.Popen, mib: int) -> None:
    """tests/progs/hog still answers SIGUSR1 and its pages still hold their indexes."""
    os.kill(p.pid, signal.SIGUSR1)
    assert targets.read_line(p, 5) == b"pong"
    maps = read_maps(p.pid)
    big = next((m for m in maps if m[1] - m[0] == mib << 20), None)
    assert big, f"no mapping of {mib} MiB: {maps}"
    for i in (0, 1, (mib << 7) - 1, (mib << 8) - 1):
        assert peek_mem(p.pid, big[0] + i * PAGE, 8) == struct.pack("<Q", i)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_dumper_killed_mid_dump(built, targets, sig):
    """512 MiB of touched memory streamed into a pipe nobody drains: the dumper blocks in
    the middle of the pages with the target frozen; killing it lets the target go."""
    p = targets.start([built.progs / "hog", 512])
    dumper = subprocess.Popen([str(built.engine), "dump", str(p.pid), "-o", "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        read_some(dumper, 2 << 20)
        # mid-dump: the pipe is full, the dumper is blocked, the target frozen under it
        time.sleep(0.05)
        assert dumper.poll() is None
        # the tracer is the dumper's child, which outlives it long enough to let go
        assert tracer_of(p.pid) in children_of(dumper.pid) and state_of(p.pid) == "t"
        dumper.send_signal(sig)
        if sig == signal.SIGKILL:
            assert dumper.wait(timeout=5) == -signal.SIGKILL
        # the target is released at once (for SIGTERM: before the dumper writes its ERROR)
        wait_for("the target to be released", lambda: tracer_of(p.pid) == 0, timeout=5)
        wait_for("the target to run", lambda: state_of(p.pid) in "SR", timeout=5)
        if sig == signal.SIGTERM:
            while os.read(dumper.stdout.fileno(), 1 << 20):
                pass
            assert dumper.wait(timeout=5) != 0
            err = dumper.stderr.read().decode()
            assert "interrupted" in err, err
    finally:
        end_dumper(dumper)
    # it still answers, and its memory is intact
    assert_hog_answers(targets, p, 512)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_dump_interrupted_mid_dump(built, targets, sig):
    """`imgtools dump` (the Python wrapper, not the engine) signalled while the engine is
    blocked mid-pages: a SIGINT is passed on and the wrapper exits 130 only once the
    engine has let go; SIGTERM ends the wrapper and the engine follows it (PDEATHSIG).
    Either way the target is released and runs on with its memory intact."""
    p = targets.start([built.progs / "hog", 512])
    dumper = subprocess.Popen([sys.executable, "-m", "imgtools", "dump", str(p.pid), "-o", "-"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_some(dumper, 2 << 20)
        wait_for("the target frozen", lambda: tracer_of(p.pid) != 0 and state_of(p.pid) == "t")
        t0 = time.monotonic()
        dumper.send_signal(sig)
        if sig == signal.SIGINT:
            # the pipe stays full: the engine gives up on its last writes after 1 s in all
            # (a write blocked past that would keep it until the wrapper's SIGKILL at 5 s)
            assert dumper.wait(timeout=10) == 130
            assert time.monotonic() - t0 < 3
            assert tracer_of(p.pid) == 0, "the wrapper returned before the engine let go"
            err = dumper.stderr.read().decode()
            assert err.splitlines()[-1] == "imgtools: interrupted", err
        else:
            assert dumper.wait(timeout=10) == -sig
            wait_for("the target to be released", lambda: tracer_of(p.pid) == 0, timeout=5)
    finally:
        end_dumper(dumper)
    wait_for("the target to run", lambda: state_of(p.pid) in "SR", timeout=5)
    assert_hog_answers(targets, p, 512)


# ----------------------------------------------------------------------------------------
# refusals

def assert_refused(r: subprocess.CompletedProcess, out_dir: Path) -> None:
    assert r.returncode != 0
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0], r.stderr
    assert os.listdir(out_dir) == [], "a refused dump left a file behind"


def free_pid() -> int:
    pid_max = int(proc_text("/proc/sys/kernel/pid_max"))
    return next(p for p in range(pid_max - 1, 300, -1) if not os.path.exists(f"/proc/{p}"))


def test_refused_no_such_pid(built, tmp_path):
    pid = free_pid()
    r = run_cli("dump", pid, "-o", tmp_path / "x.img")
    assert_refused(r, tmp_path)
    assert r.returncode == 2 and f"pid {pid}: no such process" in r.stderr.decode()


def test_refused_already_traced(built, targets, tmp_path):
    """A task someone else traces cannot be seized: refused, and left to its tracer."""
    p = targets.start([built.sample("single")])
    out = tmp_path / "out"
    out.mkdir()
    ptrace(PTRACE_SEIZE, p.pid)
    try:
        r = run_cli("dump", p.pid, "-o", out / "x.img")
        assert_refused(r, out)
        me = proc_text("/proc/self/comm").strip()
        assert r.returncode == 3
        assert f"pid {p.pid} is traced by pid {os.getpid()} ({me})" in r.stderr.decode()
        assert tracer_of(p.pid) == os.getpid()
    finally:
        ptrace(PTRACE_INTERRUPT, p.pid)
        os.waitpid(p.pid, WALL)
        ptrace(PTRACE_DETACH, p.pid)
    assert state_of(p.pid) in "SR" and tracer_of(p.pid) == 0


def test_refused_unprivileged(built, targets, tmp_path):
    """The CLI without capabilities (setpriv, uid 0 but no CAP_SYS_PTRACE) against a
    process of another user (nobody)."""
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    p = targets.start(nobody + [built.sample("single")], cwd="/")
    assert status_of(p.pid)["Uid"].split()[0] == "65534"
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
                        sys.executable, "-m", "imgtools", "dump", str(p.pid), "-o",
                        str(out / "x.img")], cwd=ROOT, capture_output=True)
    assert_refused(r, out)
    assert r.returncode == 3 and b"not permitted" in r.stderr
    assert state_of(p.pid) in "SR" and tracer_of(p.pid) == 0


# ----------------------------------------------------------------------------------------
# the committed samples

def test_committed_samples_show_and_info():
    images = sorted((SAMPLES / "v23").glob("*.img"))
    assert images
    runs = {}
    for img in images:
        for cmd in (["show", img], ["info", "--json", img]):
            runs[(img.name, cmd[0])] = subprocess.Popen(
                [sys.executable, "-m", "imgtools", *map(str, cmd)], cwd=ROOT,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {k: (p.communicate(timeout=60), p.returncode) for k, p in runs.items()}
    tasks = {"single.img": 1, "threads.img": 4, "pipes.img": 3, "signals.img": 1}
    for (name, cmd), ((out, err), rc) in results.items():
        assert rc == 0, f"{cmd} {name}: {err.decode()}"
        assert out.strip(), f"{cmd} {name}: no output"
        if cmd == "info":
            j = json.loads(out)
            assert (j["version"], j["arch"], j["tail"], j["errors"]) == ("v23", "x86_64", True, [])
            if name in tasks:
                assert j["tasks"] == tasks[name]
