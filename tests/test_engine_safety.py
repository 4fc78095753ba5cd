"""The engine's promises under adversity, against real processes: no CAP_SYS_RESOURCE,
pending stop signals, vfork parents, dumpers SIGKILLed at random points (also inside the
syscall-injection window), a killed wrapper, the refusal messages of `imgtools dump`,
shared anonymous memory touched through several mappings and processes, and state the
image cannot hold (ERROR records, never a silent loss).
"""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgtools.build import build_model
from imgtools.reader import open_image
from test_engine import (PAGE, ROOT, SHM_ANON, SYS_TGKILL, built, children_of,  # noqa: F401
                         image_pages, read_maps, run_cli, sigmask, state_of, status_of,
                         pytestmark, targets, tracer_of, wait_for)

# uid 1000, no supplementary groups: a target root does not own
AS_USER = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"]
# the engine with CAP_SYS_RESOURCE gone from every set (as in many containers)
NO_SYS_RESOURCE = ["setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"]
INF = 2**64 - 1


def load(path: Path):
    with open_image(str(path)) as r:
        return build_model(r)


def spawn(argv, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def reap(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.mark.skipif(not shutil.which("setpriv") or not shutil.which("prlimit"),
                    reason="needs setpriv and prlimit (util-linux)")
def test_limits_without_cap_sys_resource(built, tmp_path):
    """A target of another user, the engine without CAP_SYS_RESOURCE: prlimit(2) would
    fail with EPERM; the limits come from /proc/PID/limits, exactly."""
    p = spawn(["prlimit", "--nofile=1234:5678", "--core=0:4096", "--stack=unlimited:unlimited",
               *AS_USER, "sleep", "100"], cwd="/")
    try:
        wait_for("the target to run as uid 1000",
                 lambda: status_of(p.pid)["Uid"].split()[0] == "1000" and
                 status_of(p.pid)["Name"] == "sleep")
        out = tmp_path / "u.img"
        r = subprocess.run([*NO_SYS_RESOURCE, built.engine, "dump", str(p.pid), "-o", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        img = load(out)
        sig = img.get(img.tasks[0].obj("signal"), "signal")
        got = [tuple(x) for x in sig.fields["rlim"]]       # (rlim_cur, rlim_max) pairs
        assert got[7] == (1234, 5678)           # RLIMIT_NOFILE
        assert got[4] == (0, 4096)              # RLIMIT_CORE
        assert got[3] == (INF, INF)             # RLIMIT_STACK
        with open(f"/proc/{p.pid}/limits") as f:
            assert f.read().splitlines()[8].split()[3:5] == ["1234", "5678"]
        assert state_of(p.pid) in "SR" and tracer_of(p.pid) == 0
    finally:
        reap(p)


SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)
SI_USER, SI_TKILL = 0, -6          # si_code of kill(2) and tgkill(2)


@pytest.mark.parametrize("queue", ["shared", "private"])
def test_pending_sigstop_dumped_and_kept(built, tmp_path, queue):
    """A stopped process sent SIGSTOP again holds it pending (kill: shared queue; tgkill:
    the thread's own). Running a syscall in the task dequeues it (SIGSTOP cannot be
    blocked): the dump must succeed, write it in SIGPENDING with its sender, and leave the
    process stopped with the same signal pending; twice in a row."""
    p = spawn(["sleep", "100"])
    try:
        wait_for("sleep to start", lambda: status_of(p.pid)["Name"] == "sleep")
        os.kill(p.pid, signal.SIGSTOP)
        wait_for("the stop", lambda: state_of(p.pid) == "T")
        if queue == "shared":
            os.kill(p.pid, signal.SIGSTOP)
        else:
            assert ctypes.CDLL(None).syscall(SYS_TGKILL, p.pid, p.pid, signal.SIGSTOP) == 0
        key = "ShdPnd" if queue == "shared" else "SigPnd"
        wait_for("SIGSTOP pending", lambda: sigmask(status_of(p.pid), key) == SIGSTOP_BIT)
        for n in range(2):
            out = tmp_path / f"s{n}.img"
            r = subprocess.run([built.engine, "dump", str(p.pid), "-o", str(out)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            img = load(out)
            t = img.tasks[0]
            pending = img.get(t.obj("signal"), "signal").shared_pending \
                if queue == "shared" else t.pending
            assert [(s["csi_signo"], s["csi_code"], s["csi_pid"]) for s in pending] == \
                [(signal.SIGSTOP, SI_USER if queue == "shared" else SI_TKILL, os.getpid())]
            wait_for("the target to stop again", lambda: state_of(p.pid) == "T", timeout=2)
            st = status_of(p.pid)
            assert tracer_of(p.pid) == 0
            assert sigmask(st, key) == SIGSTOP_BIT and sigmask(st, "SigBlk") == 0
        os.kill(p.pid, signal.SIGCONT)
        wait_for("the target to run", lambda: state_of(p.pid) == "S", timeout=2)
        assert sigmask(status_of(p.pid), key) == 0     # SIGCONT discards pending stops
    finally:
        reap(p)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, r.stderr.decode()
    assert b"Traceback" not in r.stderr and b"usage" not in r.stderr.lower()
    return lines[0]


@pytest.mark.parametrize("arg,code,message", [
    ("abc", 2, "PID must be a number, not 'abc'"),
    ("0", 2, "PID must be a positive number"),
    ("2", 3, "pid 2 is a kernel thread"),
], ids=["abc", "0", "kthread"])
def test_dump_refusals_name_the_reason(built, tmp_path, arg, code, message):
    r = run_cli("dump", arg, "-o", tmp_path / "x.img")
    assert r.returncode == code and message in one_line_error(r)
    assert os.listdir(tmp_path) == []


def test_dump_refusal_engine_pid_zero(built):
    """The engine itself: a bad PID is one line, without its usage text."""
    r = subprocess.run([built.engine, "dump", "0", "-o", "/dev/null"], capture_output=True)
    assert r.returncode == 2 and "PID must be a positive number" in one_line_error(r)


def test_dump_refuses_own_ancestor(built, tmp_path):
    """`dump $$` from a shell: the shell's tree holds the dumper; refused by name before
    anything is frozen, the shell and the wrapper untraced."""
    script = (f"cd {ROOT} && {sys.executable} -m imgtools dump $$ -o {tmp_path}/x.img; "
              "echo rc=$?")
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert "rc=3" in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and " (sh) is an ancestor of the dumper, pid " in lines[0], r.stderr
    assert "(imgtools-tracer)" in lines[0]
    assert not (tmp_path / "x.img").exists()


ALL_BLOCKED = ~((1 << (signal.SIGKILL - 1)) | SIGSTOP_BIT) & (2**64 - 1)   # SETSIGMASK(~0)


def started(argv) -> subprocess.Popen:
    p = spawn(argv)
    wait_for(f"{argv[0]} to exec", lambda: status_of(p.pid)["Name"] == argv[0], timeout=5,
             interval=0.001)
    return p


def kill_in_window(dumper: subprocess.Popen, target: int) -> bool:
    """SIGKILL the dumper as soon as the target's mask shows the injection running;
    True if it was seen (False: the dump ended first, killed anyway)."""
    seen = False
    while dumper.poll() is None and not seen:
        try:
            seen = sigmask(status_of(target), "SigBlk") == ALL_BLOCKED
        except FileNotFoundError:
            break
    dumper.kill()
    return seen


def test_sigkill_of_the_dumper_never_harms_the_target(built):
    """200 dumps of `sleep` targets, the dumper SIGKILLed at a random point of each: half
    at a random delay within a dump's duration, half the moment the syscall injection is
    seen running (all signals blocked). Every target must be released untraced, with its
    mask and pending set as before, and go on to finish its sleep normally (exit 0): its
    registers and stack were put back."""
    rng = random.Random(os.getpid() ^ int(time.time()))
    engine = [str(built.engine), "dump"]
    timing = []
    for _ in range(3):
        t = started(["sleep", "30"])
        t0 = time.monotonic()
        assert subprocess.run(engine + [str(t.pid), "-o", "/dev/null"],
                              stderr=subprocess.DEVNULL).returncode in (0, 3)
        timing.append(time.monotonic() - t0)
        reap(t)
    span = sorted(timing)[1] * 1.2
    targets, in_window = [], 0
    try:
        for i in range(200):
            target = started(["sleep", "4"])
            dumper = subprocess.Popen(engine + [str(target.pid), "-o", "/dev/null"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if i % 2:
                in_window += kill_in_window(dumper, target.pid)
            else:
                time.sleep(rng.uniform(0, span))
                dumper.kill()
            dumper.wait()
            targets.append(target)
        assert in_window >= 50, f"only {in_window} kills landed inside the injection window"
        for t in targets:
            wait_for(f"target {t.pid} to be released", lambda: tracer_of(t.pid) == 0,
                     timeout=5)
            st = status_of(t.pid)
            if st["State"][0] == "Z":
                continue        # its sleep is over already: the exit code tells below
            assert st["State"][0] in "SR", f"target {t.pid}: {st['State']}"
            assert (sigmask(st, "SigBlk"), sigmask(st, "SigPnd"), sigmask(st, "ShdPnd")) == \
                (0, 0, 0), f"target {t.pid}: signal state changed"
        codes = [t.wait(timeout=15) for t in targets]
        assert codes == [0] * len(targets), \
            f"{sum(c != 0 for c in codes)} targets harmed: exit {sorted(set(codes))}"
    finally:
        reap(*targets)


def test_vfork_parent_refused_in_bounded_time(built, targets, tmp_path):
    """A vfork parent cannot stop until its child execs or exits: the dump refuses it by
    name within the stop timeout instead of waiting forever with the tree frozen, and
    both tasks are left as they were (the parent then returns from vfork normally)."""
    p = targets.start([built.progs / "vforker"])
    child = children_of(p.pid)[0]
    wait_for("the parent to wait in vfork", lambda: state_of(p.pid) == "D")
    t0 = time.monotonic()
    r = run_cli("dump", p.pid, "-o", tmp_path / "v.img", timeout=30)
    took = time.monotonic() - t0
    line = one_line_error(r)
    assert r.returncode == 3
    assert f"pid {p.pid} is a vfork parent waiting for its child {child}" in line
    assert took < 10, f"refusal took {took:.1f} s"
    assert not (tmp_path / "v.img").exists()
    wait_for("the parent to be released", lambda: tracer_of(p.pid) == 0, timeout=5)
    assert tracer_of(child) == 0 and state_of(p.pid) == "D" and state_of(child) == "S"
    os.kill(child, signal.SIGKILL)
    assert p.wait(timeout=5) == 0, "the vfork parent did not return from vfork normally"


def test_engine_dies_with_its_wrapper(built, targets):
    """`imgtools dump` SIGKILLed while the engine is blocked writing into a full pipe:
    the engine (and its tracer) must not live on as orphans holding the tasks."""
    p = targets.start([built.progs / "hog", 256])
    wrapper = subprocess.Popen([sys.executable, "-m", "imgtools", "dump", str(p.pid), "-o", "-"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_for("the dump to block", lambda: state_of(p.pid) == "t" and
                 children_of(wrapper.pid), timeout=10)
        time.sleep(0.2)
        engine_pid = children_of(wrapper.pid)[0]
        tracer = tracer_of(p.pid)
        assert tracer in children_of(engine_pid)
        wrapper.kill()
        wrapper.wait()
        wait_for("the target to be released", lambda: tracer_of(p.pid) == 0, timeout=5)
        for pid in (engine_pid, tracer):
            wait_for(f"engine process {pid} to end", lambda: state_of(pid) in ("Z", "gone"),
                     timeout=5)
        wait_for("the target to run", lambda: state_of(p.pid) in "SR", timeout=5)
        os.kill(p.pid, signal.SIGUSR1)
        assert targets.read_line(p, 5) == b"pong"
    finally:
        reap(wrapper)
        wrapper.stdout.close()


def shm_present(pid: int) -> dict[int, list[bool]]:
    """Shared-anonymous mapping start -> present bit of each page in pid's page table."""
    out = {}
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for start, end, _, _, path in read_maps(pid):
            if path == SHM_ANON:
                raw = os.pread(pm.fileno(), (end - start) // PAGE * 8, start // PAGE * 8)
                out[start] = [bool(e >> 63) for (e,) in struct.iter_unpack("<Q", raw)]
    return out


def test_shared_anonymous_pages_of_every_mapping(built, targets, tmp_path):
    """One shared-anonymous object, three mappings in the parent (one a window on its
    second half), one in a child; pages touched through different mappings and by the
    child only. Every touched page is in the image exactly once, under a VMA whose window
    shows it; no page table gained a page; `check` calls it sound; and the core shows
    every page through every mapping of it."""
    p = targets.start([built.progs / "shmanon"])
    a, b, part = (int(x, 16) for x in targets.read_line(p, 5).split())
    (child,) = children_of(p.pid)
    before = {pid: shm_present(pid) for pid in (p.pid, child)}
    assert not before[p.pid][part][1] and not before[p.pid][part][3]   # the child's pages
    out = tmp_path / "shm.img"
    r = subprocess.run([built.engine, "dump", str(p.pid), "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert {pid: shm_present(pid) for pid in (p.pid, child)} == before
    img = load(out)
    saved = {}                                      # object page -> bytes
    for t in img.tasks:
        for v in img.get(t.obj("mm"), "mm").vmas:
            if v.vma_type != "shm_anon":
                continue
            for addr, data in image_pages(out, v).items():
                page = v.pgoff + (addr - v.start) // PAGE
                assert page not in saved, f"object page {page} saved twice"
                saved[page] = data
    assert sorted(saved) == [0, 1, 5, 7]
    for page, data in saved.items():
        assert data.startswith(f"shm page {page}\0".encode()), page
    assert run_cli("check", out).returncode == 0
    core = tmp_path / "shm.core"
    assert run_cli("to-core", out, "-o", core).returncode == 0
    views_of = {0: a, 1: b + PAGE, 5: part + PAGE, 7: b + 7 * PAGE}
    views_of |= {"5b": b + 5 * PAGE, "7p": part + 3 * PAGE, "1a": a + PAGE}
    cmds = [arg for addr in views_of.values() for arg in ("-ex", f"x/s {addr:#x}")]
    g = subprocess.run(["gdb", "-nx", "-batch", *cmds, str(built.progs / "shmanon"), str(core)],
                       capture_output=True, text=True, timeout=60)
    shown = [line.split(":", 1)[1].strip() for line in g.stdout.splitlines()
             if line.startswith("0x")]
    assert shown == ['"shm page 0"', '"shm page 1"', '"shm page 5"', '"shm page 7"',
                     '"shm page 5"', '"shm page 7"', '"shm page 1"'], g.stdout + g.stderr


LOSSY_TARGET = r"""
import ctypes, fcntl, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
timer = ctypes.c_long()
for _ in range(3):
    assert libc.timer_create(1, None, ctypes.byref(timer)) == 0      # CLOCK_MONOTONIC
a = open(sys.argv[1], "w+")
a.write("x" * 100)
a.flush()
fcntl.lockf(a, fcntl.LOCK_EX, 10, 0)
fcntl.lockf(a, fcntl.LOCK_SH, 10, 50)
b = open(sys.argv[2], "w+")
fcntl.flock(b, fcntl.LOCK_EX)
master, slave = os.openpty()
os.write(master, b"typed ahead\n")        # a line for the slave, its echo for the master
print("ready", flush=True)
print(a.fileno(), b.fileno(), master, slave, flush=True)
time.sleep(1000)
"""


def errors_of(path: Path) -> list[str]:
    return [e.message for e in load(path).errors]


def test_unsaved_state_is_an_error_record(built, targets, tmp_path):
    """POSIX timers, file locks (POSIX and flock) and a pty's unread bytes (a dump without
    --kill leaves them to the task) cannot be saved: each is an ERROR record (exit 3), never
    dropped silently; --allow-partial takes the image."""
    p = targets.start(["nice", "-n", "7", "setarch", "-R", sys.executable, "-c", LOSSY_TARGET,
                       tmp_path / "posix.lock", tmp_path / "flock.lock"])
    line = targets.read_line(p, 5)
    locked, flocked, master, slave = map(int, line.split())
    out = tmp_path / "lossy.img"
    r = subprocess.run([built.engine, "dump", str(p.pid), "-o", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 3, r.stderr
    errs = errors_of(out)
    pid = p.pid

    def one(text: str) -> str:
        hits = [e for e in errs if text in e]
        assert len(hits) == 1, (text, errs)
        return hits[0]

    one(f"pid {pid}: 3 POSIX timers not saved")
    posix = one(f"pid {pid} fd {locked}: 2 file locks on {tmp_path}/posix.lock not saved")
    assert "POSIX" in posix and "WRITE" in posix and "READ" in posix
    assert "FLOCK" in one(f"pid {pid} fd {flocked}: 1 file lock on {tmp_path}/flock.lock")
    one(f"/dev/pts/{os.readlink(f'/proc/{pid}/fd/{slave}').rsplit('/', 1)[1]}: unread bytes "
        "on both sides not saved")
    one(f"task {pid}: scheduling (policy 0, rt priority 0, nice 7) not saved")
    one(f"pid {pid}: personality 00040000 not saved")             # ADDR_NO_RANDOMIZE
    assert len(errs) == 6, errs
    r = subprocess.run([built.engine, "dump", str(p.pid), "-o", str(out), "--allow-partial"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and len(errors_of(out)) == 6
    assert state_of(p.pid) in "SR" and tracer_of(p.pid) == 0
