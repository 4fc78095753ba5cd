"""What the benchmarks share: large test images, written record by record (never held in
memory), and timing of shell pipelines."""
from __future__ import annotations

import os
import subprocess
import time

from imgtools.compose import CredSpec, FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose

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


def many_vmas(path: str, n: int = 20_000) -> str:
    """One process with ``n`` one-page VMAs (every third file-backed, every other one
    with its page in the image)."""
    base = 0x10000000
    vmas = [VmaSpec(base + i * 0x2000, base + i * 0x2000 + PAGE,
                    kind="file" if i % 3 == 0 else "anon",
                    path=f"/usr/lib/lib{i % 97}.so" if i % 3 == 0 else None,
                    pages={base + i * 0x2000: b"x"} if i % 2 == 0 else {}) for i in range(n)]
    return _compose(path, ImageSpec(tasks=[TaskSpec(4242, 1, comm="manyvmas")],
                                    mms={"mm": MmSpec(vmas)},
                                    files={"files": [FdSpec(0, path="/dev/null")]}))


def many_tasks(path: str, n: int = 10_000, own_sighands: bool = False) -> str:
    """A chain of ``n`` processes (each the parent of the next), one small mm shared;
    ``own_sighands``: each with a SIGHAND of its own, its handlers at addresses of its
    own (as programs loaded at random addresses have them), else one for all."""
    tasks = [TaskSpec(1000, 1, comm="root")] + [
        TaskSpec(1000 + i, 999 + i, comm=f"t{i}") for i in range(1, n)]
    sighands = {}
    if own_sighands:
        for i, t in enumerate(tasks):
            t.sighand = f"sighand-{i}"
            base = 0x5500_0000_0000 + (i << 28)
            sighands[t.sighand] = {2: base + 0x1230, 15: 1, 17: base + 0x4560}
    return _compose(path, ImageSpec(tasks=tasks, mms={"mm": MmSpec([VmaSpec(0x400000,
                                                                             0x401000)])},
                                    files={"files": [FdSpec(0, path="/dev/null")]},
                                    sighands=sighands))


def many_processes(path: str, n: int = 10_000) -> str:
    """``n`` processes as a kernel's image of them holds them: each with an address space
    of its own (10 VMAs), 4 descriptors of its own, its own SIGHAND (its handlers at
    addresses of its own) and creds."""
    tasks, mms, files, sighands, creds = [], {}, {}, {}, {}
    for i in range(n):
        t = TaskSpec(1000 + i, 999 + i if i else 1, comm=f"proc{i}", mm=f"mm{i}",
                     files=f"files{i}", sighand=f"sighand{i}", cred=f"cred{i}")
        tasks.append(t)
        base = 0x5500_0000_0000 + (i << 28)
        mms[t.mm] = MmSpec([VmaSpec(base + k * 0x10000, base + k * 0x10000 + 0x4000)
                            for k in range(10)])
        log = f"/var/log/p{i}.log"
        files[t.files] = [FdSpec(0, path="/dev/null"), FdSpec(1, path=log),
                          FdSpec(2, path=log), FdSpec(3, path="/etc/passwd")]
        sighands[t.sighand] = {2: base + 0x1230, 15: 1, 17: base + 0x4560}
        creds[t.cred] = CredSpec(uid=1000 + i % 50, gid=100, groups=[4, 27])
    return _compose(path, ImageSpec(tasks=tasks, mms=mms, files=files, sighands=sighands,
                                    creds=creds))


def many_fds(path: str, n: int = 40_000) -> str:
    """One process with ``n`` open files."""
    return _compose(path, ImageSpec(
        tasks=[TaskSpec(4242, 1, comm="manyfds")],
        mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000)])},
        files={"files": [FdSpec(i, path=f"/tmp/file{i}") for i in range(n)]}))


def _compose(path: str, spec: ImageSpec) -> str:
    if not os.path.exists(path):
        with open(path + ".tmp", "wb", buffering=1 << 20) as f:
            compose(f, spec, "v23")
        os.replace(path + ".tmp", path)
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
    dt, _, kib = timed_cpu(cmd)
    return dt, kib


def timed_cpu(cmd: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system of the whole pipeline: steadier than the
    wall clock on a shared machine) and peak RSS (KiB, its largest process)."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "bash", "-c", cmd],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"failed: {cmd}\n{r.stderr}")
    kib, user, system = r.stderr.strip().splitlines()[-1].split()
    return dt, float(user) + float(system), int(kib)
