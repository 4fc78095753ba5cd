"""Our cores against gdb's own: dump a stopped sample with the engine, convert it, take a
``gcore`` of the same (still stopped) process, and ask gdb the same questions of both.

The process is stopped with SIGSTOP first, so nothing changes between the two dumps: the
engine seizes, dumps and detaches (the process stays in its group stop), then gdb attaches
for gcore.  Skipped only when the engine cannot be built (no gcc)."""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from imgtools.cli import core as core_cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "src"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="gcc is missing: the engine cannot be built")

# Register lines gdb prints from the XSAVE area (AVX-512 mask registers).
K_REG = re.compile(r"^k[0-7]\s")


@pytest.fixture(scope="module")
def engine():
    from imgtools.engine import find_engine
    return str(find_engine())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("core-gdb")


def _build(workdir: Path, name: str) -> Path:
    exe = workdir / name
    if not exe.exists():
        subprocess.run(["gcc", "-g", "-O0", "-pthread", "-o", str(exe), str(SAMPLES / f"{name}.c")],
                       check=True)
    return exe


def _states(pid: int) -> list[str]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            out.append(f.read().rsplit(")", 1)[1].split()[0])
    return out


class Stopped:
    """A sample started, ready, and stopped with SIGSTOP; killed at the end."""

    def __init__(self, exe: Path):
        self.exe = exe
        self.proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, cwd=exe.parent,
                                     stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.kill()
            raise AssertionError(f"{exe.name} did not get ready: {line!r}")
        self.pid = self.proc.pid
        self._settle()
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while set(_states(self.pid)) != {"T"}:
            assert time.monotonic() < deadline, f"{exe.name} did not stop: {_states(self.pid)}"
            time.sleep(0.02)
        self.tids = sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))

    def _settle(self):
        """Wait until every thread sleeps in the blocking call of its loop (not still
        inside the write of "ready"), so the stop happens at a known place."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tids = os.listdir(f"/proc/{self.pid}/task")
            calls = []
            for tid in tids:
                with open(f"/proc/{self.pid}/task/{tid}/syscall") as f:
                    calls.append(f.read().split()[0])
            if set(_states(self.pid)) == {"S"} and "1" not in calls and \
                    all(c.isdigit() for c in calls):
                return
            time.sleep(0.02)
        raise AssertionError(f"{self.exe.name} did not settle: {_states(self.pid)}")

    def kill(self):
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _to_core(image: Path, out: Path) -> None:
    app = typer.Typer()
    core_cli.register(app)
    r = CliRunner().invoke(app, ["to-core", str(image), "-o", str(out)])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module", params=["single", "threads"])
def cores(request, engine, workdir):
    """(sample name, process, our core, gcore core, image)."""
    from imgtools.engine import dump
    name = request.param
    p = Stopped(_build(workdir, name))
    try:
        img = workdir / f"{name}.img"
        rc = dump(p.pid, img)
        assert rc == 0, f"engine dump exited {rc}"
        # a detached task goes back into its group stop: it may be seen running first
        deadline = time.monotonic() + 5
        while set(_states(p.pid)) != {"T"} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(_states(p.pid)) == {"T"}, "the engine did not leave the process stopped"
        ours = workdir / f"{name}.ours.core"
        _to_core(img, ours)
        theirs = workdir / f"{name}.gcore.core"
        r = subprocess.run(["gdb", "-batch", "-nx", "-p", str(p.pid), "-ex", f"gcore {theirs}"],
                           capture_output=True, text=True, timeout=300)
        assert theirs.exists(), r.stdout + r.stderr
        yield name, p, ours, theirs, img
    finally:
        p.kill()


def _gdb(exe: Path, core: Path, commands: list[str]) -> tuple[dict[str, str], str]:
    """Run commands in gdb on a core; returns {command: output} and the load messages."""
    args = ["gdb", "-batch", "-nx", "-iex", "set sysroot /", "-ex", "set pagination off",
            "-ex", "set width 0", str(exe), "-c", str(core)]
    for i, c in enumerate(commands):
        args += ["-ex", f"echo @@{i}@@\\n", "-ex", c]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    text = r.stdout + r.stderr
    parts = re.split(r"^@@(\d+)@@$", r.stdout, flags=re.M)
    out = {commands[int(parts[i])]: parts[i + 1].strip("\n") for i in range(1, len(parts), 2)}
    return out, text


def _per_thread(text: str) -> dict[int, str]:
    """'thread apply all' output -> {LWP: block}, without gdb's thread numbers."""
    blocks = re.split(r"^Thread \d+ \(.*?\(LWP (\d+)\)\):$", text, flags=re.M)
    return {int(blocks[i]): blocks[i + 1].strip("\n") for i in range(1, len(blocks), 2)}


def _host_xsave_is_intel_layout(img: Path) -> bool:
    """gdb 13 reads a live XSAVE area with Intel's offsets; on a CPU with another layout
    (AMD: no MPX gap) its view of the AVX-512 registers, and so its gcore, is wrong."""
    from imgtools.build import build_model
    from imgtools.core import notes as N
    from imgtools.reader import open_image
    with open_image(str(img)) as r:
        m = build_model(r)
    t = m.tasks[0]
    with open(img, "rb") as f:
        f.seek(t.fpu_offset)
        xs = N.parse_xsave(f.read(t.fpu_size))
    return xs is None or xs.layout == "intel"


COMMON = ["info threads", "thread apply all bt", "thread apply all info registers",
          "thread apply all info registers fs_base gs_base",
          "info sharedlibrary", "thread apply all x/8gx $sp", "p stdout->_IO_buf_base",
          "x/s stdout->_IO_buf_base"]
VARS = {"single": ["p greeting", "p counter", "frame function main", "p heap",
                   "p *heap@40", "x/4gx heap"],
        "threads": ["p pipefd", "p lock", "p never", "p started"]}


@pytest.fixture(scope="module")
def answers(cores):
    name, p, ours, theirs, img = cores
    cmds = COMMON + VARS[name]
    a, a_text = _gdb(p.exe, ours, cmds)
    b, b_text = _gdb(p.exe, theirs, cmds)
    return name, p, a, b, a_text, img


def test_every_thread_is_there(answers):
    name, p, a, b, text, _ = answers
    lwps = sorted(int(x) for x in re.findall(r"\(LWP (\d+)\)", a["info threads"]))
    assert lwps == p.tids
    assert len(p.tids) == (4 if name == "threads" else 1)
    # the process leader is the current thread
    assert re.search(rf"^\* 1 .*\(LWP {p.pid}\)", a["info threads"], re.M)


def test_backtraces_match_gcore(answers):
    name, p, a, b, _, _ = answers
    ours, theirs = _per_thread(a["thread apply all bt"]), _per_thread(b["thread apply all bt"])
    assert sorted(ours) == p.tids
    assert ours == theirs
    for bt in ours.values():
        assert "??" not in bt, bt
    main = ours[p.pid]
    assert " main () at " in main and f"{name}.c" in main
    if name == "threads":
        text = "\n".join(ours.values())
        for fn in ("sleeper", "reader", "waiter"):
            assert f" {fn} (arg=0x0) at " in text


def test_registers_match_gcore(answers):
    name, p, a, b, _, img = answers
    ours = _per_thread(a["thread apply all info registers"])
    theirs = _per_thread(b["thread apply all info registers"])
    assert sorted(ours) == sorted(theirs) == p.tids
    intel = _host_xsave_is_intel_layout(img)
    for lwp in p.tids:
        mine = [ln for ln in ours[lwp].splitlines() if intel or not K_REG.match(ln)]
        gdbs = [ln for ln in theirs[lwp].splitlines() if intel or not K_REG.match(ln)]
        assert mine == gdbs, lwp
        names = [ln.split()[0] for ln in mine]
        for reg in ("rax", "rip", "rsp", "eflags", "cs", "ss", "ds", "es", "fs", "gs"):
            assert reg in names
    # gdb 13 leaves fs_base/gs_base out of a core's general group: asked for by name
    ours = _per_thread(a["thread apply all info registers fs_base gs_base"])
    assert ours == _per_thread(b["thread apply all info registers fs_base gs_base"])
    for lwp in p.tids:
        lines = ours[lwp].splitlines()
        assert [ln.split()[0] for ln in lines] == ["fs_base", "gs_base"]
        assert int(lines[0].split()[1], 16) != 0        # the thread's TLS block


def test_shared_libraries_match_gcore(answers):
    _, _, a, b, _, _ = answers
    assert a["info sharedlibrary"] == b["info sharedlibrary"]
    assert "libc.so.6" in a["info sharedlibrary"] and "ld-linux-x86-64" in a["info sharedlibrary"]
    assert "No shared libraries" not in a["info sharedlibrary"]


def test_stack_memory_matches_gcore(answers):
    _, p, a, b, _, _ = answers
    ours = _per_thread(a["thread apply all x/8gx $sp"])
    assert sorted(ours) == p.tids
    assert ours == _per_thread(b["thread apply all x/8gx $sp"])


def test_globals_and_heap_match_gcore(answers):
    name, _, a, b, _, _ = answers
    for c in ["p stdout->_IO_buf_base", "x/s stdout->_IO_buf_base"] + VARS[name]:
        assert a[c] == b[c], c
    assert '"ready\\n"' in a["x/s stdout->_IO_buf_base"]          # stdio buffer on the heap
    if name == "single":
        assert '"hello from the data segment"' in a["p greeting"]
        assert '"heap block marker"' in a["p heap"]
        assert "ABCDEF" in a["p *heap@40"] or "STUVWXYZ" in a["p *heap@40"]


def test_no_xstate_warning(answers):
    _, _, _, _, text, _ = answers
    assert "too small" not in text
    assert "Error reading" not in text and "warning: Error" not in text
    assert "Failed to read a valid object file" not in text     # no zero-filled vDSO


def test_core_streamed_from_a_pipe_answers_the_same(answers, cores):
    """to-core - -o FILE with the image on a pipe writes the page data as it arrives and
    the program headers and notes after it: gdb loads it and answers every question as
    for the core made from the file, with no other load messages."""
    name, p, a, _, a_text, img = answers
    _, _, ours, _, _ = cores
    streamed = ours.with_suffix(".streamed.core")
    r = subprocess.run([sys.executable, "-m", "imgtools", "to-core", "-", "-o", str(streamed)],
                       input=img.read_bytes(), capture_output=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    with open(streamed, "rb") as f:
        head = f.read(64)
    assert int.from_bytes(head[32:40], "little") > 4096      # e_phoff: after the data
    s, s_text = _gdb(p.exe, streamed, COMMON + VARS[name])
    assert s == a
    assert s_text.replace(str(streamed), str(ours)) == a_text


def test_debug_command_runs_gdb(cores):
    """imgtools debug: temporary core, executable from the image, gdb in batch mode."""
    name, p, _, _, img = cores
    code = ("import sys, typer; from imgtools.cli import core; app = typer.Typer(); "
            "core.register(app); app()")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    before = {x for x in os.listdir(tmp) if x.startswith("imgtools-core.")}
    r = subprocess.run([sys.executable, "-c", code, "debug", str(img), "--batch",
                        "-ex", "thread apply all bt", "--", "-nx"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert f"(LWP {p.pid})" in r.stdout and " main () at " in r.stdout
    assert "libc" in r.stdout or "__GI_" in r.stdout or "__libc" in r.stdout
    after = {x for x in os.listdir(tmp) if x.startswith("imgtools-core.")}
    assert after <= before                                   # the temporary core is gone


def _vdso_range(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/maps") as f:
        line = next(ln for ln in f if ln.rstrip().endswith("[vdso]"))
    start, end = line.split()[0].split("-")
    return int(start, 16), int(end, 16)


def _stop_inside_vdso(pid: int, tries: int = 500) -> None:
    """SIGSTOP the spinning process until it stops with its pc inside the vDSO
    (/proc/PID/syscall of a task stopped outside a syscall: "-1 SP PC")."""
    lo, hi = _vdso_range(pid)
    for _ in range(tries):
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while _states(pid) != ["T"]:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        with open(f"/proc/{pid}/syscall") as f:
            pc = int(f.read().split()[2], 16)
        if lo <= pc < hi:
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.001)
    raise AssertionError("the process never stopped inside the vDSO")


def test_task_stopped_inside_the_vdso(engine, workdir):
    """A task stopped inside clock_gettime: the image holds the vDSO's pages, so gdb on
    our core unwinds out of the vDSO and prints what it prints on gcore's core, every
    line and warning the same (no "Can't read pathname for load map")."""
    from imgtools.engine import dump
    exe = workdir / "clockspin"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(exe), str(ROOT / "tests/progs/clockspin.c")],
                   check=True)
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        _stop_inside_vdso(proc.pid)
        img = workdir / "clockspin.img"
        assert dump(proc.pid, img) == 0
        ours, theirs = workdir / "clockspin.ours.core", workdir / "clockspin.gcore.core"
        _to_core(img, ours)
        r = subprocess.run(["gdb", "-batch", "-nx", "-p", str(proc.pid), "-ex", f"gcore {theirs}"],
                           capture_output=True, text=True, timeout=300)
        assert theirs.exists(), r.stdout + r.stderr
        cmds = ["bt", "info sharedlibrary", "x/2i $pc", "info symbol $pc"]
        a, a_text = _gdb(exe, ours, cmds)
        b, b_text = _gdb(exe, theirs, cmds)
        assert a_text.replace(str(ours), "CORE") == b_text.replace(str(theirs), "CORE")
        assert a == b
        bt = a["bt"]
        assert bt.startswith("#0 ") and " in clock_gettime " in bt.splitlines()[0], bt
        assert " spin () at " in bt and " main () at " in bt and "??" not in bt, bt
        assert "Can't read pathname" not in a_text
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
