"""What the benchmarks share: large test images, written record by record (never held in
memory), and timing of shell pipelines."""
from __future__ import annotations

import os
import subprocess
import time

from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose

PAGE = 4096


def big_image(path: str, gib: float = 1.0, version: str = "v23") -> str:
    """One process whose heap VMA holds ``gib`` GiB of present pages."""
    if os.path.exists(path) and os.path.getsize(path) > gib * (1 << 30):
        return path
    n = int(gib * (1 << 30)) // PAGE
    base = 0x10000000
    chunk = os.urandom(PAGE * 256)
    pages = _LazyPages(base, n, chunk)
    spec = ImageSpec(tasks=[TaskSpec(4242, 1, comm="bigmem")],
                     mms={"mm": MmSpec([VmaSpec(base, base + n * PAGE, pages=pages)])},
                     files={"files": [FdSpec(0, path="/dev/null")]})
    tmp = path + ".tmp"
    with open(tmp, "wb", buffering=1 << 20) as f:
        compose(f, spec, version)
    os.replace(tmp, path)
    return path


class _LazyPages(dict):
    """addr -> page bytes, made on demand so the spec stays small."""

    def __init__(self, base, n, chunk):
        super().__init__()
        self.base, self.n, self.chunk = base, n, chunk

    def __iter__(self):
        return (self.base + i * PAGE for i in range(self.n))

    def __len__(self):
        return self.n

    def __getitem__(self, addr):
        i = (addr - self.base) // PAGE % 256
        return self.chunk[i * PAGE:(i + 1) * PAGE]

    def keys(self):
        return iter(self)


def timed(cmd: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, largest process of the pipeline) of a shell command."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "bash", "-c", cmd],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"failed: {cmd}\n{r.stderr}")
    return dt, int(r.stderr.strip().splitlines()[-1])
