"""to-core throughput on an image with >= 1 GiB of pages, against cat of the same bytes,
and peak RSS.  Targets: >= 0.5x cat, peak RSS < 100 MB.

Run: python3 bench/bench_core.py [--gib N] [--dir DIR] [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from _image import big_image, timed  # noqa: E402

PY = sys.executable
CLI = f"cd {ROOT} && {PY} -m imgtools"


def one(cmd: str, cleanup: str) -> tuple[float, int]:
    """One timed run after a sync, so dirty pages of earlier runs do not throttle it."""
    os.sync()
    r = timed(cmd)
    if os.path.exists(cleanup):
        os.unlink(cleanup)
    return r


INPROC = """
import os, sys, time
sys.path.insert(0, {root!r})
from imgtools.reader import open_image
from imgtools.build import build_model
from imgtools.core import plan_core, write_core
t0 = time.perf_counter()
with open_image({img!r}) as r:
    m = build_model(r)
fd = os.open({img!r}, os.O_RDONLY)
plan = plan_core(m, lambda o, n: os.pread(fd, n, o))
t1 = time.perf_counter()
with open({out!r}, "wb") as f:
    write_core(plan, fd, f)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def in_process(img: str, out: str) -> tuple[float, float]:
    """Model + plan seconds, and write seconds, without interpreter and CLI start-up."""
    os.sync()
    r = subprocess.run([PY, "-c", INPROC.format(root=ROOT, img=img, out=out)],
                       capture_output=True, text=True, check=True)
    os.unlink(out)
    a, b = map(float, r.stdout.split())
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    img = big_image(os.path.join(a.dir, f"imgtools-bench-{a.gib}g.img"), a.gib)
    out = os.path.join(a.dir, "imgtools-bench.core")
    mb = os.path.getsize(img) / 1e6
    print(f"image: {img} {mb:.0f} MB")
    timed(f"cat {img} > /dev/null")                       # warm the page cache

    rows = [
        ("cat > file", f"cat {img} > {out}", None),
        ("to-core -o file", f"{CLI} to-core {img} -o {out} 2>/dev/null", None),
        ("cat | cat > null", f"cat {img} | cat > /dev/null", None),
        ("to-core | cat > null", f"{CLI} to-core {img} | cat > /dev/null", None),
        ("cat | to-core - | cat", f"cat {img} | {CLI} to-core - | cat > /dev/null", None),
    ]
    runs: dict[str, list] = {name: [] for name, _, _ in rows}
    for _ in range(a.repeat):                    # interleaved: noise hits every command alike
        for name, cmd, _ in rows:
            runs[name].append(one(cmd, out))
    res = {k: (min(r[0] for r in v), max(r[1] for r in v)) for k, v in runs.items()}
    inproc = [in_process(img, out) for _ in range(a.repeat)]
    plan_s, write_s = min(x[0] for x in inproc), min(x[1] for x in inproc)
    startup, _ = min(timed(f"{CLI} to-core --help > /dev/null") for _ in range(a.repeat))
    subprocess.run(["bash", "-c", f"{CLI} to-core {img} -o {out} 2>/dev/null"], check=True)
    core_mb = os.path.getsize(out) / 1e6
    os.unlink(out)
    print(f"core: {core_mb:.0f} MB")
    for name, (dt, rss) in res.items():
        line = f"{name:24s} {dt:6.2f} s  {mb / dt:7.0f} MB/s  peak RSS {rss / 1024:5.0f} MiB"
        if name.startswith("to-core"):
            ref = res["cat > file" if "file" in name else "cat | cat > null"][0]
            line += f"  ({ref / dt:.2f}x cat)"
        elif name.startswith("cat | to-core"):
            line += f"  ({res['cat | cat > null'][0] / dt:.2f}x cat|cat; spools stdin first)"
        print(line)
    print(f"{'  start-up (--help)':24s} {startup:6.2f} s")
    print(f"{'  model + plan':24s} {plan_s:6.2f} s")
    print(f"{'  write_core -> file':24s} {write_s:6.2f} s  {mb / write_s:7.0f} MB/s  "
          f"({res['cat > file'][0] / write_s:.2f}x cat)")


if __name__ == "__main__":
    main()
