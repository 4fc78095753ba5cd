"""Dump and restore of file contents the tree alone still holds, with the real CLI.

Targets: `sleep` holding a deleted file of MIB mebibytes (a ghost: saved whole, as
EXT_EXTENT records) and `sleep` holding a memfd of MIB mebibytes (made by python, which
then execs sleep with the descriptor). For each: `imgtools dump PID --kill -o IMG` and
`imgtools restore IMG --detach` wall seconds (start-up included), GB/s = contents / wall,
and the baseline `cat FILE > OUT` of the same bytes on the same disk (page cache warm).
After every restore the contents are compared (a hash) through /proc/PID/fd/3.

Run: python3 bench/bench_files.py [--mib 256] [--runs 5] [--dir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "imgtools"]


def timed(cmd, stdout=subprocess.PIPE) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t, r


def wait_sleep(pid: int) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if os.readlink(f"/proc/{pid}/exe").endswith("sleep") and os.path.exists(f"/proc/{pid}/fd/3"):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"target {pid} did not get ready")


def ghost_target(d: Path, mib: int) -> subprocess.Popen:
    f = d / "ghost"
    with open(f, "wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(mib):
            out.write(block)
    p = subprocess.Popen(["sh", "-c", f'exec 3<"{f}"; rm "{f}"; exec sleep 1000'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_sleep(p.pid)
    return p


def memfd_target(d: Path, mib: int) -> subprocess.Popen:
    code = ("import os\nfd = os.memfd_create('bench', 0)\nb = os.urandom(1 << 20)\n"
            f"for _ in range({mib}): os.write(fd, b)\n"
            "os.dup2(fd, 3)\nos.execv('/bin/sleep', ['sleep', '1000'])\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_sleep(p.pid)
    return p


def digest(path: str) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def one(kind: str, d: Path, mib: int) -> tuple[float, float, float]:
    p = (ghost_target if kind == "ghost" else memfd_target)(d, mib)
    want = digest(f"/proc/{p.pid}/fd/3")
    img = d / f"{kind}.img"
    t_dump, r = timed([*CLI, "dump", str(p.pid), "--kill", "-o", str(img), "--ghost-limit", f"{mib + 1}M"])
    p.wait()
    if r.returncode:
        raise SystemExit(f"dump failed: {r.stderr}")
    t_restore, r = timed([*CLI, "restore", str(img), "--detach"])
    if r.returncode:
        raise SystemExit(f"restore failed: {r.stderr}")
    root = int(r.stdout.split()[-1])
    try:
        if digest(f"/proc/{root}/fd/3") != want:
            raise SystemExit(f"{kind}: restored contents differ")
    finally:
        os.kill(root, 9)
    src = d / "plain"
    with open(src, "wb") as out:
        out.truncate(0)
        block = os.urandom(1 << 20)
        for _ in range(mib):
            out.write(block)
    with open(d / "copy", "wb") as out:
        t_cat, _ = timed(["cat", str(src)], stdout=out)
    for f in (img, src, d / "copy"):
        f.unlink()
    return t_dump, t_restore, t_cat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        d = Path(tmp)
        for kind in ("ghost", "memfd"):
            rows = [one(kind, d, a.mib) for _ in range(a.runs)]
            gb = a.mib / 1024 * 1.073741824
            for name, col in (("dump --kill", 0), ("restore --detach", 1), ("cat (baseline)", 2)):
                ts = [r[col] for r in rows]
                med = statistics.median(ts)
                print(f"{kind:5} {a.mib} MiB  {name:17} {med:6.3f} s [{min(ts):.3f}]  {gb / med:5.2f} GB/s")


if __name__ == "__main__":
    main()
