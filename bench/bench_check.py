"""imgtools check throughput on a large image: records/s and MB/s, file and pipe.

The image (composed once, cached in --dir) is a process tree of --tasks tasks
(fan-out 8, DFS order, a thread after every 3rd process), each process with --vmas
VMAs and --fds descriptors (pipe pairs among them), holding --mib MiB of pages in all.

Run: python3 bench/bench_check.py [--mib 256] [--tasks 256] [--vmas 32] [--fds 16]
                                  [--version v23] [--dir DIR] [--no-pipe]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from imgtools import check as ck  # noqa: E402
from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose  # noqa: E402
from imgtools.stream import RecordReader, Source  # noqa: E402

PAGE = 4096


def spec(mib: int, ntasks: int, nvmas: int, nfds: int) -> ImageSpec:
    """A tree of fan-out 8 in DFS order; every 3rd process has a thread right after it."""
    budget = [mib * 256]                        # pages still to place
    per_proc = -(-budget[0] // max(1, ntasks // 2))   # processes >= ntasks/2
    page = bytes(range(256)) * 16
    tasks, mms, files, pipes = [], {}, {}, {}

    def process(ppid: int) -> None:
        i = len(tasks)
        pid = 1000 + i
        key = f"mm{i}"
        pages_per_proc = min(per_proc, budget[0])
        budget[0] -= pages_per_proc
        vmas, base, left = [], 0x400000, pages_per_proc
        for k in range(nvmas):
            n = left if k == nvmas - 1 else min(left, -(-pages_per_proc // max(1, nvmas // 2)))
            size = max(n, 1) * PAGE + PAGE
            vmas.append(VmaSpec(base, base + size, kind="file" if k == 0 else "anon",
                                path="/usr/bin/bench" if k == 0 else None,
                                pages={base + j * PAGE: page for j in range(n)} if k else {}))
            left -= n if k else 0
            base += size + PAGE
        mms[key] = MmSpec(vmas, exe="/usr/bin/bench")
        fds = [FdSpec(0, path="/dev/null"), FdSpec(1, path="/dev/null"),
               FdSpec(2, path="/dev/null")]
        for k in range(3, nfds - (nfds - 3) % 2):
            if k % 2:
                pipes[f"p{i}-{k}"] = b"x" * 64
                fds.append(FdSpec(k, kind="pipe", pipe=f"p{i}-{k}"))
            else:
                fds.append(FdSpec(k, kind="pipe", pipe=f"p{i}-{k - 1}", flags=1))
        files[f"files{i}"] = fds
        tasks.append(TaskSpec(pid, ppid, pgid=1000, sid=1000, comm=f"bench{i}", mm=key,
                              files=f"files{i}"))
        if i % 3 == 0 and len(tasks) < ntasks:
            tasks.append(TaskSpec(pid + 1, ppid, tgid=pid, pgid=1000, sid=1000, comm="worker",
                                  mm=key, files=f"files{i}"))
        for _ in range(8):
            if len(tasks) < ntasks:
                process(pid)

    process(1)
    return ImageSpec(tasks=tasks, mms=mms, files=files, pipes=pipes, time=1_700_000_000)


def make(path: str, a, version: str) -> str:
    if os.path.exists(path):
        return path
    t = time.perf_counter()
    tmp = path + ".tmp"
    with open(tmp, "wb", buffering=1 << 20) as f:
        compose(f, spec(a.mib, a.tasks, a.vmas, a.fds), version)
    os.replace(tmp, path)
    print(f"composed {path} in {time.perf_counter() - t:.1f} s")
    return path


def count_records(path: str) -> tuple[int, float]:
    t = time.perf_counter()
    with open(path, "rb") as f:
        n = sum(1 for _ in RecordReader(Source(f, path)))
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--tasks", type=int, default=256)
    ap.add_argument("--vmas", type=int, default=32)
    ap.add_argument("--fds", type=int, default=16)
    ap.add_argument("--version", default="v23")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--no-pipe", action="store_true")
    a = ap.parse_args()
    name = f"imgtools-bench-check-{a.version}-{a.mib}m-{a.tasks}t-{a.vmas}v-{a.fds}f.img"
    path = make(os.path.join(a.dir, name), a, a.version)
    size = os.path.getsize(path)
    nrec, frame_dt = count_records(path)
    print(f"image: {path}  {size / 1e6:.0f} MB  {nrec} records  ({a.tasks} tasks, "
          f"{a.vmas} VMAs and {a.fds} fds per process)")
    print(f"framing only:  {frame_dt:6.2f} s  {nrec / frame_dt:9.0f} records/s")

    t = time.perf_counter()
    findings = ck.check_path(path)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errs = sum(f.severity == "error" for f in findings)
    print(f"check (file):  {dt:6.2f} s  {nrec / dt:9.0f} records/s  {size / 1e6 / dt:8.0f} MB/s"
          f"  peak RSS {rss / 1024:.0f} MiB  {len(findings)} findings, {errs} errors")
    if errs:
        for f in findings[:10]:
            print("  ", f.line())

    if not a.no_pipe:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        code = (f"import sys,time,resource; sys.path.insert(0, {root!r});"
                "from imgtools import check as ck; t=time.perf_counter();"
                "fs=ck.check_path('-'); dt=time.perf_counter()-t;"
                "print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
                " sum(f.severity=='error' for f in fs))")
        t = time.perf_counter()
        out = subprocess.run(f"cat {path} | {sys.executable} -c \"{code}\"", shell=True,
                             capture_output=True, text=True, check=True).stdout.split()
        wall = time.perf_counter() - t
        pdt, prss, perr = float(out[0]), int(out[1]), int(out[2])
        print(f"check (pipe):  {pdt:6.2f} s  {nrec / pdt:9.0f} records/s  "
              f"{size / 1e6 / pdt:8.0f} MB/s  peak RSS {prss / 1024:.0f} MiB  {perr} errors"
              f"  (wall with interpreter start {wall:.2f} s)")


if __name__ == "__main__":
    main()
