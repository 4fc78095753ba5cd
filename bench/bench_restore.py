"""Restore speed and live-migration downtime, with the real CLI (start-up included).

Target: tests/progs/rst_count.c (built here with gcc): MIB mebibytes of private anonymous
memory, every page written with its own index, and a line "N pid PID ok NS" appended to a
file every PERIOD microseconds, NS being CLOCK_REALTIME (a restore's time namespace
carries CLOCK_MONOTONIC on from the dump's value, hiding the downtime). It checks a page on every line,
so a restore that misplaced pages shows as "FAIL".

  restore    `imgtools restore IMG --detach` from a file (dumped with --kill): wall seconds
             from the start of the command to its exit, which is when the tree runs;
             GB/s = image bytes / wall. The bare engine (`imgtools-engine restore`) too.
  downtime   the span in which the program runs nowhere, as the program itself sees it:
             the first line the restored program writes minus the last line the original
             wrote (its period, 1 ms here, is the resolution). For `dump -o - | restore -`
             (pipelined: pages are restored while the dumper still writes them) against the
             two done one after the other through a file (dump --kill -o FILE; restore FILE).

Each configuration runs --runs times (≥ 5), interleaved; the median is shown, with the best
in brackets. After every restore the counter must go on counting (no FAIL) before it is
killed. The reference is CRIU's restore of 1 GiB on this kind of machine: restore_time
1.07–1.40 s (../shared/reference/restore.md).

Run: python3 bench/bench_restore.py [--mib 1024 64] [--runs 5] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from imgtools import engine  # noqa: E402

CLI = [sys.executable, "-m", "imgtools"]
CRIU_RESTORE_1GIB = (1.07, 1.40)
PERIOD_US = 1000


def build(out: Path) -> Path:
    exe = out / "rst_count"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "tests/progs/rst_count.c")], check=True)
    return exe


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def start(exe: Path, out: Path, mib: int) -> subprocess.Popen:
    out.unlink(missing_ok=True)
    p = subprocess.Popen([str(exe), str(out), str(mib), str(PERIOD_US)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(lines(out)) < 3:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("the target did not start counting")
        time.sleep(0.01)
    return p


def last_stamp(out: Path) -> tuple[int, int]:
    """(count of lines, NS of the last one)."""
    ls = [l for l in lines(out) if l.split()[-1].isdigit()]
    return len(ls), int(ls[-1].split()[-1])


def goes_on(out: Path, before: int) -> int:
    """Wait for the restored program's first line; its NS. Fails on FAIL."""
    deadline = time.monotonic() + 60
    while True:
        ls = lines(out)
        if any(l.startswith("FAIL") for l in ls):
            raise SystemExit(f"the restored program failed: {[l for l in ls if 'FAIL' in l]}")
        if len(ls) > before + 2:
            return int(ls[before].split()[-1])
        if time.monotonic() > deadline:
            raise SystemExit("the restored program does not go on")
        time.sleep(0.002)


def kill_detached(stdout: str) -> None:
    try:
        os.kill(int(stdout.strip().splitlines()[-1]), signal.SIGKILL)
    except (ValueError, IndexError, ProcessLookupError):
        pass
    time.sleep(0.05)


def timed(cmd, **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t0, r


def restore_runs(exe: Path, work: Path, mib: int, runs: int) -> None:
    out, img = work / "out", work / "count.img"
    p = start(exe, out, mib)
    subprocess.run([*CLI, "dump", str(p.pid), "-o", str(img), "--kill"], check=True)
    p.wait()
    size = img.stat().st_size
    walls = {"imgtools restore": [], "imgtools-engine restore": []}
    for _ in range(runs):
        # the counter appends to its output file after the dump, and one image is restored
        # several times: that file has changed since the dump, as expected here
        for name, cmd in (("imgtools restore", [*CLI, "restore", str(img), "--detach",
                                                "--allow-changed-files"]),
                          ("imgtools-engine restore", [*engine.restore_command(
                              str(img), detach=True, allow_changed_files=True)])):
            n, _ = last_stamp(out)
            wall, r = timed(cmd)
            if r.returncode:
                raise SystemExit(f"{name} failed: {r.stderr}")
            goes_on(out, n)
            kill_detached(r.stdout)
            walls[name].append(wall)
    print(f"\nrestore of {mib} MiB ({size / 1e6:.0f} MB image), {runs} runs:")
    for name, w in walls.items():
        med = statistics.median(w)
        print(f"  {name:<26} {med:6.3f} s [{min(w):.3f}]  {size / med / 1e9:5.2f} GB/s")
    if mib == 1024:
        print(f"  CRIU restore_time (reference)  {CRIU_RESTORE_1GIB[0]:.2f}–{CRIU_RESTORE_1GIB[1]:.2f} s")


def downtime_runs(exe: Path, work: Path, mib: int, runs: int) -> None:
    out, img = work / "out", work / "mig.img"
    res = {"dump | restore - (pipelined)": [], "dump -o FILE; restore FILE": []}
    for _ in range(runs):
        for name in res:
            p = start(exe, out, mib)
            time.sleep(0.05)
            if "pipelined" in name:
                r = subprocess.run(f"{' '.join(CLI)} dump {p.pid} -o - --kill | "
                                   f"{' '.join(CLI)} restore - --detach", shell=True,
                                   capture_output=True, text=True)
                detached = r.stdout
            else:
                subprocess.run([*CLI, "dump", str(p.pid), "-o", str(img), "--kill"], check=True)
                r = subprocess.run([*CLI, "restore", str(img), "--detach",
                                    "--allow-changed-files"], capture_output=True,
                                   text=True)
                detached = r.stdout
            p.wait()
            if r.returncode:
                raise SystemExit(f"{name} failed: {r.stderr}")
            # lines written once the restore returned (the tree runs from then on): wait for
            # a few, so the pause across the migration is among the stamps
            n, _ = last_stamp(out)
            goes_on(out, n)
            kill_detached(detached)
            stamps = [int(l.split()[-1]) for l in lines(out) if l.split()[-1].isdigit()]
            # the program's longest pause: from its last line before the freeze to its
            # first line after the release
            res[name].append(max(b - a for a, b in zip(stamps, stamps[1:])) / 1e9)
    print(f"\ndowntime of a same-host migration, {mib} MiB, {runs} runs (program's own clock):")
    for name, d in res.items():
        print(f"  {name:<30} {statistics.median(d):6.3f} s [{min(d):.3f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, nargs="+", default=[1024, 64])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where the images go (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        work = Path(d)
        exe = build(work)
        for mib in args.mib:
            restore_runs(exe, work, mib, args.runs)
            downtime_runs(exe, work, mib, args.runs)


if __name__ == "__main__":
    main()
