"""Throughput and memory of `imgtools convert` against `cat` on an image with >= 1 GiB of pages.

    python bench/bench_convert.py [--mib 1024] [--dir DIR] [--runs 2]

Builds, in a temporary directory, the same process tree in v23 and in v17 (one
task maps ``--mib`` MiB of present pages, plus a thread and a zombie),
then times, each in a child process (wall clock; peak RSS from wait4):

* ``cat IMG > /dev/null`` (the reference) and ``convert()`` writing to /dev/null
  (timed inside the child, without the interpreter's start-up):
  v23 -> v17 (all seven steps down; the CPU records are held back) and
  v17 -> v23 (all seven steps up; the first task's objects section, pages
  included, is spooled to a temporary file to move the CPU records before it);
* the CLI end to end (wall clock, start-up included), ``convert IMG --to V -o
  OUT`` (temporary file, rename) against ``cat IMG > OUT``; both are bound by
  the disk here.

Targets: convert >= 0.5x cat, peak RSS < 100 MB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The parent stays small: a child's peak RSS (wait4) starts from its parent's at fork.
BUILD_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
               "import bench_convert; bench_convert.build(Path(sys.argv[2]), sys.argv[3], "
               "int(sys.argv[4]))")

API_CHILD = """
import sys, time
from converters import convert
from imgtools.reader import open_image
t = time.perf_counter()
with open_image(sys.argv[1]) as r, open(sys.argv[3], "wb") as out:
    convert(r, out, sys.argv[2])
sys.stderr.write(f"elapsed={time.perf_counter() - t}\\n")
"""
CLI_CHILD = ("import typer; from imgtools.cli.convert import register; app = typer.Typer(); "
             "register(app); app.callback()(lambda: None); app()")


def build(path: Path, version: str, mib: int) -> int:
    """Compose the bench image (run in a child process: it holds the page table)."""
    from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose
    base = 0x10000000
    n = mib * 256
    distinct = [bytes([i]) * 2048 + os.urandom(2048) for i in range(256)]
    pages = {base + i * 4096: distinct[i % 256] for i in range(n)}
    spec = ImageSpec(
        # one thread group (the composer shares one fs_struct between all processes,
        # which v19-rc2 and older could not tell: that would be a loss)
        tasks=[TaskSpec(100, 1, comm="bench", regs={"ip": 0x401000}),
               TaskSpec(101, 100, tgid=100, comm="bench"),
               TaskSpec(103, 100, comm="zombie", zombie=True)],
        mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000, kind="file", path="/bin/bench"),
                           VmaSpec(base, base + n * 4096, pages=pages)], exe="/bin/bench")},
        files={"files": []}, time=1_700_000_000)
    with open(path, "wb") as f:
        compose(f, spec, version, "x86_64")
    return path.stat().st_size


def timed(argv: list[str], stdout=None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process; the seconds are the ones the
    child reports as ``elapsed=`` on stderr if it does (work without start-up)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    p = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{argv[:3]}... failed ({p.returncode}): {err.decode()[-2000:]}")
    for line in err.decode().splitlines():
        if line.startswith("elapsed="):
            dt = float(line[8:])
    return dt, usage.ru_maxrss / 1024


def best(runs: int, argv: list[str], out: str | None = None) -> tuple[float, float]:
    results = []
    for _ in range(runs):
        if out is None:
            results.append(timed(argv))
        else:
            with open(out, "wb") as f:
                results.append(timed(argv, stdout=f))
    return min(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="MiB of page data (default 1024)")
    ap.add_argument("--dir", default=None, help="where to put the images (default: $TMPDIR)")
    ap.add_argument("--runs", type=int, default=2, help="runs per measurement (best time)")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-convert-", dir=args.dir) as tmp:
        tmp = Path(tmp)
        sizes = {}
        for v in ("v23", "v17"):
            t = time.perf_counter()
            subprocess.run([py, "-c", BUILD_CHILD, str(Path(__file__).parent),
                            str(tmp / f"{v}.img"), v, str(args.mib)], check=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
            sizes[v] = (tmp / f"{v}.img").stat().st_size
            print(f"built {v}.img: {sizes[v] / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s",
                  flush=True)
        rows = []
        for src, dst in (("v23", "v17"), ("v17", "v23")):
            img = str(tmp / f"{src}.img")
            size = sizes[src]
            subprocess.run(["cat", img], stdout=subprocess.DEVNULL, check=True)   # warm cache
            cat_t, cat_rss = best(args.runs, ["cat", img], os.devnull)
            api_t, api_rss = best(args.runs, [py, "-c", API_CHILD, img, dst, os.devnull])
            out = str(tmp / "out.img")
            catf_t, _ = best(args.runs, ["cat", img], out)
            os.unlink(out)
            cli_t, cli_rss = best(args.runs, [py, "-c", CLI_CHILD, "convert", img, "--to", dst,
                                              "-o", out])
            os.unlink(out)
            rows.append((f"{src}->{dst}", size, cat_t, api_t, api_rss, catf_t, cli_t, cli_rss))
    mb = lambda size, t: size / t / 1e6  # noqa: E731
    print()
    print(f"{'path':10} {'MB':>6} | {'cat>null':>9} {'convert>null':>12} {'ratio':>6} "
          f"{'RSS MB':>7} | {'cat>file':>9} {'CLI -o file':>11} {'ratio':>6} {'RSS MB':>7}")
    ok = True
    for name, size, cat_t, api_t, api_rss, catf_t, cli_t, cli_rss in rows:
        r1, r2 = cat_t / api_t, catf_t / cli_t
        print(f"{name:10} {size / 1e6:6.0f} | {mb(size, cat_t):9.0f} {mb(size, api_t):12.0f} "
              f"{r1:6.2f} {api_rss:7.1f} | {mb(size, catf_t):9.0f} {mb(size, cli_t):11.0f} "
              f"{r2:6.2f} {cli_rss:7.1f}")
        ok &= r1 >= 0.5 and max(api_rss, cli_rss) < 100
    print("(MB/s, best of %d; ratio = convert speed / cat speed; RSS = peak of the child;"
          " convert>null timed in the child, CLI wall clock)" % args.runs)
    print("targets (convert>null >= 0.5x cat>null, RSS < 100 MB):", "met" if ok else "MISSED")


if __name__ == "__main__":
    main()
