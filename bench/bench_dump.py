"""Dump speed of the C engine against gcore, on a process with 1 GiB of touched memory.

Target: tests/progs/hog.c (MiB of private anonymous memory, every page written; built
here with gcc). For each way of dumping it measures:

  wall      seconds from the start of the dumper to its exit (perf_counter around it);
  MB/s      output bytes / wall (MB = 10^6 bytes);
  frozen    how long the target could not run: a thread here reads /proc/PID/stat
            (pread on one open fd, then sleeps 50 us, so it does not take a CPU from the
            dumper) and takes the time from the first to the last sample that shows the
            target in a ptrace stop ('t'); reported with the number of samples and the
            mean sampling interval, which bounds the error at both ends.

Ways: the engine and `gcore` (gdb) of the same process, each to /dev/null (gcore's
core.PID is a symlink to /dev/null) and to a file in --dir (page cache; the "+ fsync" line
includes flushing it; engine and gcore runs alternate, each after a sync), and the engine
into a pipe read by cat. The target keeps running between runs (tests/test_engine.py
checks that it resumes); each configuration runs --runs times, the median is shown with
the best in brackets.

Run: python3 bench/bench_dump.py [--mib 1024] [--runs 3] [--dir DIR] [--no-gcore]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from imgtools import engine  # noqa: E402


class FreezeProbe:
    """Samples the target's /proc state letter from a thread while a dumper runs."""

    def __init__(self, pid: int):
        self.fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        self.stop = threading.Event()
        self.first = self.last = None
        self.samples = 0
        self.frozen_samples = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        fd, pread, now, sleep = self.fd, os.pread, time.perf_counter, time.sleep
        while not self.stop.is_set():
            sleep(50e-6)
            raw = pread(fd, 512, 0)
            t = now()
            state = raw[raw.rindex(b")") + 2:raw.rindex(b")") + 3]
            self.samples += 1
            if state in (b"t", b"T"):
                self.frozen_samples += 1
                if self.first is None:
                    self.first = t
                self.last = t

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.t1 = time.perf_counter()
        os.close(self.fd)

    @property
    def frozen(self) -> float:
        return 0.0 if self.first is None else self.last - self.first

    @property
    def interval_us(self) -> float:
        return (self.t1 - self.t0) / max(self.samples, 1) * 1e6


def build(workdir: Path) -> tuple[Path, Path]:
    eng = engine.find_engine()
    subprocess.run(["make", "-s", "-C", str(ROOT / "engine")], check=True)
    hog = workdir / "hog"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(hog), str(ROOT / "tests/progs/hog.c")],
                   check=True)
    return eng, hog


def start_hog(hog: Path, mib: int) -> subprocess.Popen:
    p = subprocess.Popen([str(hog), str(mib)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    if p.stdout.readline() != b"ready\n":
        raise SystemExit("hog did not get ready")
    return p


def run(pid: int, cmd: list[str], shell: bool = False, out: Path | None = None,
        fsync: bool = False) -> dict:
    with FreezeProbe(pid) as probe:
        t = time.perf_counter()
        r = subprocess.run(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t
        if fsync and out is not None:
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            synced = time.perf_counter() - t
        else:
            synced = None
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {cmd}\n{r.stderr.decode()}")
    return {"wall": wall, "synced": synced, "frozen": probe.frozen,
            "samples": probe.frozen_samples, "interval_us": probe.interval_us}


def settle(pid: int) -> None:
    """Wait until the target sleeps again (a detached task may run a moment in the kernel)."""
    for _ in range(1000):
        raw = open(f"/proc/{pid}/stat", "rb").read()
        if raw[raw.rindex(b")") + 2:raw.rindex(b")") + 3] == b"S":
            return
        time.sleep(0.001)
    raise SystemExit(f"target {pid} does not go back to sleep")


def report(name: str, runs: list[dict], size: int) -> None:
    walls = [r["wall"] for r in runs]
    wall, best = statistics.median(walls), min(walls)
    frozen = statistics.median(r["frozen"] for r in runs)
    iv = statistics.median(r["interval_us"] for r in runs)
    samples = statistics.median(r["samples"] for r in runs)
    line = (f"{name:<22} {wall:6.3f} s [{best:6.3f}]  {size / wall / 1e6:7.0f} MB/s "
            f"[{size / best / 1e6:7.0f}]  frozen {frozen:6.3f} s ({samples:.0f} samples, "
            f"every {iv:.0f} us)  size {size / 2**20:7.1f} MiB")
    synced = [r["synced"] for r in runs if r["synced"] is not None]
    if synced:
        s = statistics.median(synced)
        line += f"\n{'  + fsync':<22} {s:6.3f} s           {size / s / 1e6:7.0f} MB/s"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--no-gcore", action="store_true")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgtools-bench-", dir=a.dir))
    eng, hog = build(work)
    p = start_hog(hog, a.mib)
    try:
        print(f"target: hog {a.mib} MiB touched, pid {p.pid}; engine {eng}; "
              f"{os.cpu_count()} CPUs; output dir {work}", flush=True)
        # the size of the image the engine writes, from one run into a pipe
        size_probe = subprocess.run(f"{eng} dump {p.pid} -o - | wc -c", shell=True,
                                    capture_output=True, text=True, check=True)
        size = int(size_probe.stdout)
        settle(p.pid)
        core = work / "core"
        core_file = Path(f"{core}.{p.pid}")
        have_gcore = not a.no_gcore and shutil.which("gcore") is not None
        null, gnull, efile, gfile, piped = [], [], [], [], []
        csize = 0

        for _ in range(a.runs):
            null.append(run(p.pid, [str(eng), "dump", str(p.pid), "-o", "/dev/null"]))
            settle(p.pid)
            if have_gcore:
                # gcore names its output core.PID: a symlink to /dev/null takes it
                core_file.symlink_to("/dev/null")
                gnull.append(run(p.pid, ["gcore", "-o", str(core), str(p.pid)]))
                core_file.unlink()
                settle(p.pid)

        # files: engine and gcore alternate, each starting with no dirty data around
        out = work / "dump.img"
        for _ in range(a.runs):
            os.sync()
            efile.append(run(p.pid, [str(eng), "dump", str(p.pid), "-o", str(out)], out=out,
                             fsync=True))
            out.unlink()
            settle(p.pid)
            if have_gcore:
                os.sync()
                gfile.append(run(p.pid, ["gcore", "-o", str(core), str(p.pid)], out=core_file,
                                 fsync=True))
                csize = core_file.stat().st_size
                core_file.unlink()
                settle(p.pid)
        for _ in range(a.runs):
            piped.append(run(p.pid, f"{eng} dump {p.pid} -o - | cat > /dev/null", shell=True))
            settle(p.pid)
        report("engine > /dev/null", null, size)
        if have_gcore:
            report("gcore > /dev/null", gnull, csize)
        report("engine > file", efile, size)
        if have_gcore:
            report("gcore > file", gfile, csize)
        report("engine | cat", piped, size)

        def med(runs):
            return statistics.median(r["wall"] for r in runs)
        if have_gcore:
            print(f"engine vs gcore, wall: /dev/null {med(gnull) / med(null):.1f}x faster, "
                  f"file {med(gfile) / med(efile):.1f}x faster", flush=True)
        elif not a.no_gcore:
            print("gcore: not installed")
    finally:
        p.kill()
        p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
