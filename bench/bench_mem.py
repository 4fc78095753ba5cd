"""`mem --search` over a large image against `grep -c` of the same bytes, from the file
and from a pipe; also `mem --strings`.  Targets: >= 0.5x grep -c, peak RSS <= 100 MB.

The image (one process, GIB GiB of present pages) is made in --dir (default $TMPDIR) and
kept for the next run.  Run: python3 bench/bench_mem.py [--gib 4] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from _image import PAGE, big_image, timed  # noqa: E402

PY = sys.executable
# (not "cd ROOT && ...": after "cat IMG |" the cd would take the pipe and python would read
# an empty stdin)
CLI = f"PYTHONPATH={ROOT} {PY} -m imgtools"


def _needle(img: str) -> bytes:
    """12 bytes of page data (no NUL or newline, which a grep pattern cannot hold); the
    benchmark image repeats its pages every 256, so they recur."""
    from imgtools.build import build_model
    from imgtools.reader import open_image
    with open_image(img) as r:
        m = build_model(r)
    vma = next(v for o in m.objects.values() if o.kind == "mm" for v in o.value.vmas
               if v.batches)
    with open(img, "rb") as f:
        f.seek(vma.batches[0].data_offset)
        data = f.read(PAGE)
    i = next(i for i in range(len(data) - 12)
             if b"\0" not in data[i:i + 12] and b"\n" not in data[i:i + 12])
    return data[i:i + 12]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs (medians)")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--strings", action="store_true",
                    help="also time --strings (slow on the image's random bytes)")
    a = ap.parse_args()
    img = big_image(os.path.join(a.dir, f"imgtools-bench-{a.gib}g.img"), a.gib)
    mb = os.path.getsize(img) / 1e6
    needle = _needle(img)
    hexed = "0x" + needle.hex()
    print(f"image: {img} {mb:.0f} MB; pattern {hexed}; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; medians of {a.runs} interleaved runs")
    pattern_file = os.path.join(a.dir, "imgtools-bench-needle")
    with open(pattern_file, "wb") as f:
        f.write(needle)
    timed(f"cat {img} > /dev/null")                             # warm the page cache
    # (grep into a pipe: with its output on /dev/null grep stops at the first match)
    grep = f"LC_ALL=C grep -c -a -F -f {pattern_file}"
    cases = [("grep -c (file)", f"{grep} {img} | cat", None),
             ("cat | grep -c (pipe)", f"cat {img} | {grep} | cat", None),
             ("mem --search (file)", f"{CLI} mem {img} --search {hexed} | wc -l",
              "grep -c (file)"),
             ("mem --search (pipe)", f"cat {img} | {CLI} mem - --search {hexed} | wc -l",
              "cat | grep -c (pipe)")]
    if a.strings:
        cases.append(("mem --strings (file)", f"{CLI} mem {img} --strings --min 8 | wc -l",
                      "grep -c (file)"))
    times: dict[str, list[float]] = {w: [] for w, _, _ in cases}
    rss: dict[str, int] = {w: 0 for w, _, _ in cases}
    for _ in range(a.runs):
        for what, cmd, _ in cases:
            dt, kib = timed(cmd + " > /dev/null")
            times[what].append(dt)
            rss[what] = max(rss[what], kib)
    med = {w: statistics.median(t) for w, t in times.items()}
    for what, _, base in cases:
        dt = med[what]
        vs = ""
        if base:
            vs = f"({med[base] / dt:.2f}x {base}, {med['grep -c (file)'] / dt:.2f}x grep file)"
        print(f"{what:<22} {dt:6.2f} s  {mb / dt:7.0f} MB/s  peak RSS {rss[what] / 1024:4.0f} MiB"
              f"  {vs}")
    print("target: mem --search >= 0.5x grep -c, peak RSS <= 100 MB")


if __name__ == "__main__":
    main()
