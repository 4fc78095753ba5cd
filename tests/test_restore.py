"""Restore against real processes: dump (--kill) a program, restart it, and let it check itself.

The programs in tests/progs (rst_solo.c, rst_tree.c, rst_count.c) record their own state
before the checkpoint and, once restarted, compare and go on working (itimers fire, blocked
reads return, pending signals reach their handlers, zombies are reaped, threads join); they
write "ok NAME"/"FAIL NAME" lines and exit 0 only if every check passed. `imgtools restore`
(without --detach) waits for the root and exits with its status, so the restore's exit code
is the program's verdict. Also: live migration through a pipe, concurrent restores, the
refusals (exit 3, nothing left running), and SIGKILL of the restorer at many points.
"""
from __future__ import annotations

import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import formats
from imgtools import engine
from imgtools.reader import open_image

ROOT = Path(__file__).resolve().parent.parent
PROGS = Path(__file__).resolve().parent / "progs"
SAMPLES = ROOT / "samples"
IMGTOOLS = [sys.executable, "-m", "imgtools"]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64" or os.geteuid() != 0
    or not shutil.which("gcc"), reason="restore needs Linux x86_64, root and gcc")


def build_prog(tmp_path_factory, name: str, *flags: str) -> Path:
    """tests/progs/NAME.c built with gcc -O1 and ``flags`` into a fresh folder."""
    exe = tmp_path_factory.mktemp(name) / name
    subprocess.run(["gcc", "-O1", *flags, "-o", str(exe), str(PROGS / f"{name}.c")], check=True)
    return exe


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    return {name: build_prog(tmp_path_factory, name, *flags)
            for name, flags in (("rst_solo", ["-mavx2", "-pthread"]), ("rst_tree", []),
                                ("rst_count", []), ("rst_pkru", ["-mavx2"]))}


def wait_for(cond, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def start(argv, ready_file=None, env=None):
    """A target with nothing of ours but what it opens itself."""
    p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if ready_file is not None:
        wait_for(lambda: ready_file.exists() and "ready" in ready_file.read_text(),
                 what=f"{argv[0]} to get ready")
    return p


def dump_kill(p, img):
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p.wait(timeout=10)


def restore(img, *flags, timeout=60, input=None, stdin=None):
    return subprocess.run([*IMGTOOLS, "restore", str(img), *flags], capture_output=True,
                          text=True, timeout=timeout, input=input, stdin=stdin)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def frames(data: bytes):
    """(offset, type, payload) of every record of an image: the {type, len} framing
    alone, nothing decoded (for tests that look at or forge one record)."""
    off = 0
    while off + 8 <= len(data):
        rtype, rlen = struct.unpack_from("<II", data, off)
        assert rlen >= 8, f"record at {off} has length {rlen}"
        yield off, rtype, data[off + 8:off + rlen]
        off += rlen


def tracer(pid: int) -> int:
    """The TracerPid of a task; -1 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(l for l in f if l.startswith("TracerPid:")).split()[1])
    except (OSError, StopIteration):
        return -1


def running(exe: Path) -> list[int]:
    """Live processes running exe (by /proc/PID/exe), zombies excluded."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe") == str(exe) and alive(int(d)):
                    found.append(int(d))
            except OSError:
                pass
    return found


def kill_tree_of(pid: int) -> None:
    """A detached restore: its namespace's init (and so everything in it) or the root."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def counter_image(progs, tmp_path, mib="1", name="count.img"):
    """rst_count started, counting, dumped with --kill: (its Popen, its output, the image)."""
    out, img = tmp_path / "out", tmp_path / name
    p = start([progs["rst_count"], out, mib])
    wait_for(lambda: len(lines(out)) >= 2, what="counting")
    dump_kill(p, img)
    return p, out, img


def test_single_process_with_threads_goes_on(progs, tmp_path):
    (tmp_path / "data").write_bytes(b"0123456789")
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "solo.img"
    env = dict(os.environ, RST_MARK="env-intact")
    p = start([progs["rst_solo"], out, go, tmp_path, "marker"], out, env=env)
    dump_kill(p, img)
    go.touch()
    r = restore(img)
    report = out.read_text()
    assert r.returncode == 0, (r.stderr, report)
    assert "FAIL" not in report and "done 0" in report
    for name in ("pids", "exe", "cwd", "umask", "rlimit", "sigaltstack", "argv-env", "heap",
                 "cmdline-auxv", "brk", "stack-grows",
                 "vdso", "read-position", "cloexec", "append", "itimer", "pending-shared",
                 "pending-thread", "pending-kill", "shared-file-map", "thread-tid", "thread-tls", "thread-mask", "thread-avx",
                 "thread-x87-sse", "restarted-read"):
        assert f"ok {name}" in report
    assert (tmp_path / "log").read_text() == "one\ntwo\n"


def test_tree_with_pipe_zombie_shared_memory_and_sessions(progs, tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "tree.img"
    p = start([progs["rst_tree"], out, go, tmp_path], out)
    dump_kill(p, img)
    ps = subprocess.run([*IMGTOOLS, "ps", str(img)], capture_output=True, text=True).stdout
    assert " Z " in ps                                  # the zombie is in the image
    go.touch()
    r = restore(img)
    report = out.read_text()
    assert r.returncode == 0, (r.stderr, report)
    assert "FAIL" not in report and "done 0" in report
    for who, name in (("parent", "ids"), ("child", "ids"), ("grandchild", "ids"),
                      ("parent", "zombie"), ("child", "pipe-data"), ("child", "fifo-data"), ("parent", "shm-shared"),
                      ("parent", "shared-offset"), ("child", "grandchild")):
        assert f"ok {who} {name}" in report


def test_detach_prints_the_root_pid_and_the_counter_goes_on(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "4")
    last = int(lines(out)[-1].split()[0])
    r = restore(img, "--detach")
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        assert alive(host)
        wait_for(lambda: int(lines(out)[-1].split()[0]) >= last + 5, what="counting on")
        after = [l for l in lines(out) if not l.startswith("FAIL")]
        numbers = [int(l.split()[0]) for l in after]
        # it goes on from where it was: the number after the last one before the dump
        assert numbers.index(last) < len(numbers) - 1 and numbers[numbers.index(last) + 1] in (last, last + 1)
        assert all(l.split()[2] == str(p.pid) for l in after)      # its own pid, in its namespace
        assert not any(l.startswith("FAIL") for l in lines(out))
    finally:
        kill_tree_of(host)


def test_live_migration_through_a_pipe(progs, tmp_path):
    out = tmp_path / "out"
    p = start([progs["rst_count"], out, "16"])
    wait_for(lambda: len(lines(out)) >= 3, what="counting")
    pipeline = subprocess.run(
        f"{sys.executable} -m imgtools dump {p.pid} -o - --kill | "
        f"{sys.executable} -m imgtools restore - --detach",
        shell=True, capture_output=True, text=True, timeout=60)
    p.wait(timeout=10)
    assert pipeline.returncode == 0, pipeline.stderr
    host = int(pipeline.stdout.strip().splitlines()[-1])
    try:
        before = len(lines(out))
        wait_for(lambda: len(lines(out)) >= before + 5, what="counting after the migration")
        numbers = [int(l.split()[0]) for l in lines(out)]
        assert numbers == sorted(numbers) and numbers[-1] - numbers[0] + 1 >= len(set(numbers))
        assert not any(l.startswith("FAIL") for l in lines(out))
    finally:
        kill_tree_of(host)


def test_two_concurrent_restores_of_one_image(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "1")
    # both append to the one output file: the second sees it changed since the dump
    a, b = (subprocess.Popen([*IMGTOOLS, "restore", str(img), "--detach", "--allow-changed-files"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2))
    hosts = []
    for proc in (a, b):
        so, se = proc.communicate(timeout=60)
        assert proc.returncode == 0, se
        hosts.append(int(so.strip().splitlines()[-1]))
    try:
        assert hosts[0] != hosts[1] and all(alive(h) for h in hosts)
        n = len(lines(out))
        wait_for(lambda: len(lines(out)) >= n + 10, what="both counting")
        assert all(alive(h) for h in hosts)             # neither one took the other's place
    finally:
        for h in hosts:
            kill_tree_of(h)


def test_no_pidns_original_pid_and_a_taken_pid_is_refused(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "1")
    r = restore(img, "--no-pidns", "--detach")
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        assert host == p.pid and alive(host)
        again = restore(img, "--no-pidns", "--detach", "--allow-changed-files")  # out grew
        assert again.returncode == 3
        assert f"pid {p.pid} is taken" in again.stderr
    finally:
        kill_tree_of(host)


def test_stopped_leaves_every_task_stopped(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "1")
    r = restore(img, "--detach", "--stopped")
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        tasks = [p_ for p_ in running(progs["rst_count"])]
        wait_for(lambda: all(open(f"/proc/{t}/stat").read().rsplit(")", 1)[1].split()[0] == "T"
                             for t in running(progs["rst_count"])), what="stopped")
        n = len(lines(out))
        time.sleep(0.2)
        assert len(lines(out)) == n and tasks
    finally:
        kill_tree_of(host)


# ---- refusals: exit 3 with the reason, nothing left running ---------------------------

def _fpu_payload_offset(img: Path) -> int:
    with open_image(str(img)) as reader:
        for rec in reader.records():
            if reader.name_of(rec) == "cpu_fpu":
                return rec.payload_offset
    raise AssertionError("no CPU_FPU record")


def test_a_feature_this_cpu_lacks_is_refused(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "1")
    forged = tmp_path / "forged.img"
    data = bytearray(img.read_bytes())
    at = _fpu_payload_offset(img) + 512          # xstate_bv of the XSAVE header
    bv = struct.unpack_from("<Q", data, at)[0] | 1 << 8     # PT: never a user feature
    struct.pack_into("<Q", data, at, bv)
    forged.write_bytes(bytes(data))
    r = restore(forged)
    assert r.returncode == 3
    assert "XSAVE features 0x100 this CPU does not have" in r.stderr
    assert not running(progs["rst_count"])


def test_a_deleted_file_is_refused_before_anything_runs(progs, tmp_path):
    (tmp_path / "data").write_bytes(b"0123456789")
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "solo.img"
    p = start([progs["rst_solo"], out, go, tmp_path, "marker"], out,
              env=dict(os.environ, RST_MARK="env-intact"))
    dump_kill(p, img)
    (tmp_path / "data").unlink()
    r = restore(img)
    assert r.returncode == 3
    assert f"{tmp_path}/data" in r.stderr and "cannot restore" in r.stderr
    assert not running(progs["rst_solo"])
    # the same refusal from a pipe, where it comes after the tree exists: it is killed
    with open(img, "rb") as f:
        r = restore("-", stdin=f)
    assert r.returncode == 3 and f"{tmp_path}/data" in r.stderr
    time.sleep(0.2)
    assert not running(progs["rst_solo"])


def test_an_image_with_an_error_record_is_refused(tmp_path):
    img = tmp_path / "sock.img"
    p = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW); "
                          "print('ready', flush=True); time.sleep(100)"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill", "--allow-partial"],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    r = restore(img)
    assert r.returncode == 3
    assert "could not save everything" in r.stderr and "socket" in r.stderr


def test_an_unprivileged_caller_cannot_restore_a_root_image(progs, tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing")
    p, out, img = counter_image(progs, tmp_path, "1")
    import tempfile
    with tempfile.TemporaryDirectory() as d:      # a place the unprivileged caller can read
        os.chmod(d, 0o755)
        readable = Path(d) / "count.img"
        shutil.copyfile(img, readable)
        readable.chmod(0o644)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            str(engine.find_engine()), "restore", str(readable)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 3, r.stderr
    assert "may not assume" in r.stderr
    assert not running(progs["rst_count"])


def killed_restores(cmd, data: bytes, fractions):
    """For each fraction: a restore (cmd reading stdin) fed that much of the image, then
    SIGKILLed; yields the fraction once the restorer is reaped, for the caller's checks."""
    for frac in fractions:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.stdin.write(data[:int(len(data) * frac)])
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        time.sleep(0.05)
        proc.kill()
        proc.wait()
        proc.stdin.close()
        yield frac


def test_sigkill_of_the_restorer_at_many_points_leaves_nothing_alive(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "24")
    for frac in killed_restores(engine.restore_command("-"), img.read_bytes(),
                                (0.0005, 0.002, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8,
                                 0.95, 0.999)):
        wait_for(lambda: not running(progs["rst_count"]), timeout=5,
                 what=f"no restored task after a SIGKILL at {frac:.1%}")


# ---- the committed samples of every ABI version ---------------------------------------

@pytest.mark.parametrize("version", formats.VERSIONS)
def test_every_sample_restores_or_is_refused_with_a_reason(version):
    for img in sorted((SAMPLES / version).glob("*.img")):
        r = restore(img, "--detach")
        if r.returncode == 0:
            kill_tree_of(int(r.stdout.strip().splitlines()[-1]))
            continue
        assert r.returncode == 3, (img, r.stderr)
        assert "cannot restore" in r.stderr, (img, r.stderr)
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize("version", ["v21", "v18"])
def test_an_older_abi_version_is_converted_on_the_way(progs, tmp_path, version):
    out, img, old = tmp_path / "out", tmp_path / "count.img", tmp_path / f"count-{version}.img"
    p = start([progs["rst_count"], out, "2"])
    wait_for(lambda: len(lines(out)) >= 2, what="counting")
    dump_kill(p, img)
    r = subprocess.run([*IMGTOOLS, "convert", str(img), "--to", version, "--allow-loss",
                        "-o", str(old)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(old, "rb") as f:                       # from a pipe: converted as it flows
        r = restore("-", "--detach", stdin=f)
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        n = len(lines(out))
        wait_for(lambda: len(lines(out)) >= n + 5, what="counting after the restore")
        assert not any(l.startswith("FAIL") for l in lines(out))
    finally:
        kill_tree_of(host)


def test_sigterm_during_a_restore_from_a_pipe_leaves_nothing(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "8")
    data = img.read_bytes()
    proc = subprocess.Popen([*IMGTOOLS, "restore", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(data[:len(data) // 2])           # the tree exists, half its pages are in
    proc.stdin.flush()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"Traceback" not in err
    wait_for(lambda: not running(progs["rst_count"]), timeout=5, what="nothing left")


def test_credentials_of_a_non_root_task_are_restored(progs, tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing")
    import tempfile
    with tempfile.TemporaryDirectory() as d:          # a place uid 1000 can use
        os.chmod(d, 0o777)
        exe, out, img = Path(d) / "rst_count", Path(d) / "out", tmp_path / "user.img"
        shutil.copy(progs["rst_count"], exe)
        p = start(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                   "--inh-caps=-all", exe, out, "1"])
        wait_for(lambda: len(lines(out)) >= 2, what="counting")
        dump_kill(p, img)
        r = restore(img, "--detach")
        assert r.returncode == 0, r.stderr
        host = int(r.stdout.strip().splitlines()[-1])
        try:
            task = next(pid for pid in running(exe))
            status = dict(l.split(":", 1) for l in open(f"/proc/{task}/status").read().splitlines())
            assert status["Uid"].split() == ["1000"] * 4
            assert status["Gid"].split() == ["1000"] * 4
            assert status["Groups"].split() == []
            assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
            n = len(lines(out))
            wait_for(lambda: len(lines(out)) >= n + 5, what="counting as uid 1000")
        finally:
            kill_tree_of(host)


def test_no_pidns_waits_for_a_zombie_awaiting_pid_1(progs, tmp_path):
    """An orphan killed by dump --kill stays a zombie until PID 1 reaps it (1-2 s here)."""
    out, img = tmp_path / "out", tmp_path / "orphan.img"
    launcher = subprocess.run(
        [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(sys.argv[1:], "
         "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
         "print(p.pid)", str(progs["rst_count"]), str(out), "1"],
        capture_output=True, text=True, check=True)
    orphan = int(launcher.stdout)
    wait_for(lambda: len(lines(out)) >= 2, what="counting")
    r = subprocess.run([*IMGTOOLS, "dump", str(orphan), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = restore(img, "--no-pidns", "--detach")
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        assert host == orphan and alive(host)
    finally:
        kill_tree_of(host)


# XSAVE standard-format offsets of the user features, by vendor (Intel SDM; AMD Zen has no
# MPX, so AVX-512 and PKRU sit lower) and their sizes: the test's own statement of the facts
# the engine relocates by.
XSAVE_LAYOUTS = {"intel": ({2: 576, 3: 960, 4: 1024, 5: 1088, 6: 1152, 7: 1664, 9: 2688}, 2696),
                 "amd": ({2: 576, 5: 832, 6: 896, 7: 1408, 9: 2432}, 2440)}
XSAVE_SIZES = {2: 256, 3: 64, 4: 64, 5: 64, 6: 512, 7: 1024, 9: 8}


def _relayout(data: bytes, src: str, dst: str) -> bytes:
    """The image as if dumped on a CPU of the other vendor: every XSAVE area moved."""
    (src_off, _), (dst_off, dst_size) = XSAVE_LAYOUTS[src], XSAVE_LAYOUTS[dst]
    out, pos = bytearray(), 0
    while pos < len(data):
        rtype, rlen = struct.unpack_from("<II", data, pos)
        payload = bytearray(data[pos + 8:pos + rlen])
        if rtype == 2:                                   # HEADER_ARCH: the dump CPU's size
            struct.pack_into("<H", payload, 4, dst_size)
        elif rtype == 201:                               # CPU_FPU: the XSAVE area
            bv = struct.unpack_from("<Q", payload, 512)[0]
            moved = bytearray(dst_size)
            moved[:576] = payload[:576]
            for bit, size in XSAVE_SIZES.items():
                if bv & 1 << bit and bit in src_off and bit in dst_off:
                    moved[dst_off[bit]:dst_off[bit] + size] = payload[src_off[bit]:src_off[bit] + size]
                elif bv & 1 << bit:
                    pytest.skip(f"XSAVE feature {bit} has no place in the {dst} layout")
            payload = moved
        out += struct.pack("<II", rtype, len(payload) + 8) + payload
        pos += rlen
    return bytes(out)


def test_xsave_state_is_relocated_between_intel_and_amd_layouts(progs, tmp_path):
    if "pku" not in open("/proc/cpuinfo").read().split():
        pytest.skip("this CPU has no protection keys (PKRU)")
    out, img = tmp_path / "out", tmp_path / "pkru.img"
    p = start([progs["rst_pkru"], out], out)
    dump_kill(p, img)
    data = img.read_bytes()
    with open_image(str(img)) as reader:
        size = next(reader.parse(r).xstate_size for r in reader.records()
                    if reader.name_of(r) == "header_arch")
    here = next((v for v, (_, s) in XSAVE_LAYOUTS.items() if s == size), None)
    if here is None:
        pytest.skip(f"a {size}-byte XSAVE area is neither layout the test knows")
    other = "intel" if here == "amd" else "amd"
    forged = tmp_path / f"pkru-{other}.img"
    forged.write_bytes(_relayout(data, here, other))
    r = restore(forged, "--detach")
    assert r.returncode == 0, r.stderr
    host = int(r.stdout.strip().splitlines()[-1])
    try:
        task = next(iter(running(progs["rst_pkru"])))
        os.kill(task, signal.SIGUSR1)
        wait_for(lambda: "pkru" in out.read_text(), what="the check after the restore")
        assert "ok ymm" in out.read_text() and "ok pkru" in out.read_text(), out.read_text()
    finally:
        kill_tree_of(host)


def test_a_truncated_or_foreign_input_is_invalid_and_nothing_runs(progs, tmp_path):
    p, out, img = counter_image(progs, tmp_path, "2")
    data = img.read_bytes()
    for cut in (10, 100, 400, 2000, len(data) // 3, len(data) // 2, len(data) - 20):
        bad = tmp_path / f"cut{cut}.img"
        bad.write_bytes(data[:cut])
        r = restore(bad)
        assert r.returncode == 3, (cut, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.count("\\n") <= 2, r.stderr
    assert not running(progs["rst_count"])
    r = restore("/etc/passwd")
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert restore(tmp_path / "missing.img").returncode == 2


@pytest.mark.parametrize("script, status", [("sleep 0.6; exit 7", 7),
                                            ("sleep 0.6; kill -TERM $$", 128 + signal.SIGTERM)])
def test_the_roots_exit_status_is_the_restores(tmp_path, script, status):
    """sh and sleep, restarted mid-sleep: the sleep restarts, sh ends as it would have."""
    img = tmp_path / "sh.img"
    p = start(["/bin/sh", "-c", script])
    wait_for(lambda: any(os.readlink(f"/proc/{k}/exe").endswith("sleep")
                         for k in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()),
             what="sh to start sleep")
    dump_kill(p, img)
    r = restore(img)
    assert r.returncode == status, r.stderr
