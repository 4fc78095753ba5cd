"""info on a seekable 1 GiB image (must not read page bytes), and show from a pipe vs cat.

Run: python3 bench/bench_info.py [--gib N] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from _image import big_image, timed  # noqa: E402

PY = sys.executable


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    a = ap.parse_args()
    img = big_image(os.path.join(a.dir, f"imgtools-bench-{a.gib}g.img"), a.gib)
    size = os.path.getsize(img)
    mb = size / 1e6
    print(f"image: {img} {mb:.0f} MB")

    # info on the file: bytes actually read (rchar) against the file size
    probe = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__) + '/..'!r});"
             "from imgtools.reader import open_image; from imgtools.build import build_model;"
             f"\nwith open_image({img!r}) as r: m = build_model(r)\n"
             "io = dict(l.split(': ') for l in open('/proc/self/io').read().splitlines())\n"
             "print(io['rchar'], m.pages)")
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True).stdout
    rchar, pages = map(int, out.split())
    dt, rss = timed(f"{PY} -m imgtools info {img} > /dev/null")
    print(f"info (file):      {dt:6.2f} s  {pages} pages  read {rchar / 1e6:.2f} MB of {mb:.0f} MB"
          f"  peak RSS {rss / 1024:.0f} MiB")

    cat_dt, _ = timed(f"cat {img} > /dev/null")
    catcat_dt, _ = timed(f"cat {img} | cat > /dev/null")
    show_dt, rss = timed(f"cat {img} | {PY} -m imgtools show - > /dev/null")
    print(f"cat:              {cat_dt:6.2f} s  {mb / cat_dt:8.0f} MB/s")
    print(f"cat | cat:        {catcat_dt:6.2f} s  {mb / catcat_dt:8.0f} MB/s")
    print(f"show (pipe):      {show_dt:6.2f} s  {mb / show_dt:8.0f} MB/s  "
          f"({cat_dt / show_dt:.2f}x cat, {catcat_dt / show_dt:.2f}x cat|cat)  "
          f"peak RSS {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
