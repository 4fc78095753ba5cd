"""Dump cost as the shape of the target grows: 1,000 threads, a tree of 500 processes,
20,000 VMAs (bench/scale_target.c, built here with gcc).

For each shape, --runs interleaved runs of

  cli      `python3 -m imgtools dump PID -o -` into /dev/null, start-up included, as a user
           runs it;
  engine   the bare engine, `imgtools-engine dump PID -o /dev/null`;

report the median wall time (best in brackets), the median CPU time (user + sys of the
dumper and its children) and the peak RSS (the largest process: the engine or its
tracer; for the CLI, Python), both from GNU time. The last column is the ratio of the
CLI's median wall time to CRIU's figure for the same shape as issue 11 measured it on
this kind of machine (criu is not installed here, so it cannot run in the same
session): 1,000 threads 1.9 s, 500 processes 6.9 s, 20,000 VMAs 0.52 s / 12 MiB RSS.
Below 1 is faster than CRIU. The CLI line also shows its ratio to the bare engine (the
cost of the Python wrapper, start-up included).

Every dump must exit 0 (the targets hold nothing the image cannot). The target keeps
running between runs; the machine's load is printed, since other work on a 2-core machine
moves these figures.

Run: python3 bench/bench_dump_scale.py [--runs 5] [--threads 1000] [--procs 500] [--vmas 20000]
"""
from __future__ import annotations

import argparse
import os
import select
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

TIME = "/usr/bin/time"       # GNU time
# shape -> (size, seconds, MiB) CRIU took (issue 11)
CRIU = {"threads": (1000, 1.9, None), "tree": (500, 6.9, None), "vmas": (20000, 0.52, 12.0)}


def build(workdir: Path) -> Path:
    out = workdir / "scale_target"
    subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(out),
                    str(ROOT / "bench" / "scale_target.c")], check=True)
    return out


def start(target: Path, shape: str, n: int) -> subprocess.Popen:
    p = subprocess.Popen([str(target), shape, str(n)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    if not select.select([p.stdout], [], [], 60)[0] or p.stdout.readline() != b"ready\n":
        raise SystemExit(f"scale_target {shape} {n} did not get ready")
    return p


def stop(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)        # the tree's children too (its own session)
    p.wait()
    p.stdout.close()


def timed(cmd: list[str], stdout: int, errlog: Path) -> dict:
    """Wall time of cmd, and its CPU time and peak RSS as GNU time reports them: a forked
    or vforked child's ru_maxrss counts the address space it had before exec (a copy of
    this Python process), so the command is run under /usr/bin/time, whose own small
    address space is what its child starts from."""
    timefmt = "%U %S %M"
    with open(errlog, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.run([TIME, "-f", timefmt, "-o", str(errlog) + ".time", *cmd],
                           stdout=stdout, stderr=err)
        wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}\n{errlog.read_text()}")
    user, sys_, rss = Path(str(errlog) + ".time").read_text().split()[-3:]
    return {"wall": wall, "cpu": float(user) + float(sys_), "rss": int(rss) / 1024}


def settle(pid: int) -> None:
    """Wait until no task of the target is in a ptrace stop any more."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            states = [open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[0]
                      for t in os.listdir(f"/proc/{pid}/task")]
        except FileNotFoundError:
            continue
        if "t" not in states:
            return
        time.sleep(0.01)
    raise SystemExit(f"target {pid} still stopped after a dump")


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=500)
    ap.add_argument("--vmas", type=int, default=20000)
    args = ap.parse_args()
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} (GNU time) is needed for CPU and RSS figures")
    bare = str(engine.find_engine())
    # as an installed package has it: the bytecode compiled (PYTHONDONTWRITEBYTECODE
    # would have the CLI compile every module on every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "imgtools", "formats"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="imgtools-bench-") as d:
        target = build(Path(d))
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
              f"medians of {args.runs} interleaved runs [best]")
        print(f"{'shape':<16} {'dumper':<7} {'wall s':>16} {'cpu s':>7} {'RSS MiB':>8} "
              f"{'vs CRIU':>8}")
        for shape, n, label in (("threads", args.threads, f"{args.threads} threads"),
                                ("tree", args.procs, f"{args.procs} processes"),
                                ("vmas", args.vmas, f"{args.vmas} VMAs")):
            p = start(target, shape, n)
            runs = {"cli": [], "engine": []}
            try:
                with open(os.devnull, "wb") as null:
                    os.chdir(ROOT)
                    for _ in range(args.runs):
                        for name, cmd in (
                                ("cli", [sys.executable, "-m", "imgtools", "dump", str(p.pid),
                                         "-o", "-"]),
                                ("engine", [bare, "dump", str(p.pid), "-o", "/dev/null"])):
                            runs[name].append(timed(cmd, null.fileno(), Path(d) / "err"))
                            settle(p.pid)
            finally:
                stop(p)
            criu_n, criu_s, criu_rss = CRIU[shape]
            bare_wall = median(runs["engine"], "wall")
            for name, rs in runs.items():
                wall = median(rs, "wall")
                rss = median(rs, "rss")
                ratio = ""
                if name == "cli":
                    ratio = (f"{wall / criu_s:.2f}x" if n == criu_n else "-") + \
                        f"  ({wall / bare_wall:.2f}x engine)"
                elif criu_rss and n == criu_n:
                    ratio = f"RSS {rss / criu_rss:.2f}x"
                print(f"{label:<16} {name:<7} {wall:>8.3f} [{min(r['wall'] for r in rs):.3f}]"
                      f" {median(rs, 'cpu'):>7.3f} {rss:>8.1f}  {ratio}")
        print("CRIU (issue 11): 1,000 threads 1.9 s; 500 processes 6.9 s; "
              "20,000 VMAs 0.52 s, 12 MiB")


if __name__ == "__main__":
    main()
