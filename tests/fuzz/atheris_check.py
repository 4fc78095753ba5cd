"""Coverage-guided fuzzing of ``imgtools check`` with atheris (libFuzzer), by hand.

Not part of the test suite (pytest does not collect this file).  Run:

    pip install atheris
    python tests/fuzz/atheris_check.py -seed_corpus          # write seeds to corpus/
    python tests/fuzz/atheris_check.py corpus/ -max_total_time=600 -rss_limit_mb=2048

Any libFuzzer flag works (-runs=N, -max_len=..., -jobs=...).  The property: a
check of any byte string ends with a list of findings whose codes are known, never
raises, never reports check.internal, and returns within a few seconds.  Inputs
are checked from memory and, when the first byte is odd, through a pipe-like
non-seekable stream (the streaming path of page buffers differs).
"""
from __future__ import annotations

import io
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(HERE))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from imgtools import check as ck  # noqa: E402

SLOW = 5.0


class _Pipe(io.RawIOBase):
    def __init__(self, data: bytes):
        self.b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        chunk = self.b.read(min(len(buf), 4096))
        buf[:len(chunk)] = chunk
        return len(chunk)


def TestOneInput(data: bytes) -> None:
    t = time.perf_counter()
    if data[:1] and data[0] & 1:
        findings = ck.check_stream(_Pipe(data))
    else:
        findings = ck.check_bytes(data)
    elapsed = time.perf_counter() - t
    if elapsed > SLOW:
        raise RuntimeError(f"check took {elapsed:.1f}s on {len(data)} bytes")
    for f in findings:
        if f.code not in ck.CODES or f.severity != ck.CODES[f.code][0]:
            raise RuntimeError(f"bad finding {f}")
        if f.code == "check.internal":
            raise RuntimeError(f"checker bug: {f.line()}")


def write_seeds(path: str = "corpus") -> None:
    """Small composed images of every version and arch, as the starting corpus."""
    import formats
    from conftest import tree_spec
    from imgtools.compose import compose_bytes
    os.makedirs(path, exist_ok=True)
    for v in formats.VERSIONS:
        for a in formats.ARCHES:
            spec = tree_spec(v, pages=1)
            with open(os.path.join(path, f"{v}-{a}.img"), "wb") as f:
                f.write(compose_bytes(spec, v, a))
    print(f"seeds written to {path}/")


def main() -> None:
    if "-seed_corpus" in sys.argv:
        write_seeds()
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
