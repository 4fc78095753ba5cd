"""Fuzz imgtools check with hypothesis: mutated real images always end with a verdict.

Bit flips, truncation, len and type changes, interesting words, record swaps,
duplicates and deletions on composed images of several versions.  Every run
must return findings with known codes, never raise, never report a checker
bug (check.internal), and stay fast.  Bounded: a few hundred cases, < 30 s.
"""
from __future__ import annotations

import glob
import io
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import formats
from conftest import kinds_spec, real_pipe, tree_spec
from imgtools import check as ck
from imgtools.compose import compose_bytes
from imgtools.reader import ImageReader

BASES = [("v17", "i386"), ("v18", "x86_64"), ("v19-rc2", "i386"), ("v19", "x86_64"),
         ("v21", "i386"), ("v23-rc1", "x86_64"), ("v23", "x86_64")]


# Images with a descriptor of every kind (sockets, event files, ttys; v23: the extension
# records too): their mutations reach the new records' schemas.
KIND_BASES = [("v23", "x86_64"), ("v21", "i386"), ("v18", "x86_64")]
# The records of those kinds (a mutation inside one of them).
KIND_RECORDS = {"socket", "socket_queue", "socket_buffer", "socket_frag", "socket_unix",
                "socket_inet", "epoll_items", "tty", "tty_ldisc", "task_sem_undo_list",
                "task_sem_undo", *formats.ext.TYPES}


def _base(version, arch, kinds=False):
    spec = kinds_spec(version, ext=version == "v23") if kinds else tree_spec(version, pages=2)
    if version == "v21":
        spec.errors = ["[E @ checkpoint_obj:99] boom"]
    data = compose_bytes(spec, version, arch)
    r = ImageReader(io.BytesIO(data), version=version, arch=arch)
    spans = [(rec.offset, rec.len) for rec in r.records() if rec.header_size]
    return data, spans


def _sample(path):
    data = open(path, "rb").read()
    r = ImageReader(io.BytesIO(data))
    return data, [(rec.offset, rec.len) for rec in r.records() if rec.header_size]


def _kind_spans(version, arch):
    """A kinds image and the spans of its new records (and of the BUFFERs after them)."""
    data, _ = _base(version, arch, kinds=True)
    r = ImageReader(io.BytesIO(data), version=version, arch=arch)
    spans, prev = [], ""
    for rec in r.records():
        name = r.name_of(rec)
        if name in KIND_RECORDS or (name == "buffer" and prev in KIND_RECORDS):
            spans.append((rec.offset, rec.len))
        prev = name
    return data, spans


KIND_IMAGES = [_kind_spans(v, a) for v, a in KIND_BASES]
IMAGES = [_base(v, a) for v, a in BASES] + [_base(v, a, kinds=True) for v, a in KIND_BASES] + [
    _sample(p) for p in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..",
                                                      "samples", "*", "*.img")))[:2]]
WORDS = [0, 1, 7, 8, 9, 16, 0x7f, 0x80, 0xff, 0x1000, 0x7fffffff, 0x80000000, 0xfffffff0,
         0xffffffff]

op = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
    st.tuples(st.just("len"), st.integers(0, 500), st.sampled_from(WORDS + [-8, -1, 1, 8])),
    st.tuples(st.just("type"), st.integers(0, 500),
              st.sampled_from([1, 2, 3, 4, 5, 6, 101, 102, 103, 104, 301, 302, 303, 304, 305,
                               401, 402, 403, 404, 405, 601, 602, 9001, 9999, 777])),
    st.tuples(st.just("word"), st.integers(0, 500), st.integers(0, 120),
              st.sampled_from(WORDS)),
    st.tuples(st.just("swap"), st.integers(0, 500), st.integers(0, 500)),
    st.tuples(st.just("dup"), st.integers(0, 500)),
    st.tuples(st.just("delete"), st.integers(0, 500)),
)


def mutate(data: bytes, spans, ops) -> bytes:
    b = bytearray(data)
    for o in ops:
        kind = o[0]
        n = len(spans)
        if kind == "flip":
            if b:
                pos = o[1] % len(b)
                b[pos] ^= 1 << o[2]
        elif kind == "truncate":
            del b[o[1] % (len(b) + 1):]
        elif kind in ("len", "type", "word", "qword"):
            off, length = spans[o[1] % n]
            size = 8 if kind == "qword" else 4
            if kind == "len":
                at, val = off + 4, (length + o[2] if o[2] in (-8, -1, 1, 8) else o[2])
            elif kind == "type":
                at, val = off, o[2]
            else:
                at, val = off + 8 + o[2], o[3]
            if at + size <= len(b):
                b[at:at + size] = (val & (1 << 8 * size) - 1).to_bytes(size, "little")
        else:
            (a1, l1) = spans[o[1] % n]
            if a1 + l1 > len(b):
                continue
            rec1 = bytes(b[a1:a1 + l1])
            if kind == "dup":
                b[a1:a1] = rec1
            elif kind == "delete":
                del b[a1:a1 + l1]
            else:
                (a2, l2) = spans[o[2] % n]
                if a2 + l2 > len(b) or a2 == a1 or not (a1 + l1 <= a2 or a2 + l2 <= a1):
                    continue
                (a1, l1), (a2, l2) = sorted([(a1, l1), (a2, l2)])
                b[:] = b[:a1] + b[a2:a2 + l2] + b[a1 + l1:a2] + b[a1:a1 + l1] + b[a2 + l2:]
        spans = spans  # offsets stay those of the base image: mutations compound
    return bytes(b)



def verdict_of(data: bytes, pipe: bool) -> list[ck.Finding]:
    t = time.perf_counter()
    if pipe:
        with real_pipe(data) as src:
            fs = ck.check_stream(src)
    else:
        fs = ck.check_bytes(data)
    elapsed = time.perf_counter() - t
    assert elapsed < 2.0, f"check took {elapsed:.2f}s"
    assert isinstance(fs, list)
    for f in fs:
        assert f.code in ck.CODES and f.severity == ck.CODES[f.code][0]
        assert f.offset is None or 0 <= f.offset <= len(data) + 8
    assert "check.internal" not in {f.code for f in fs}, [f.line() for f in fs]
    return fs


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(base=st.integers(0, len(IMAGES) - 1), ops=st.lists(op, min_size=1, max_size=4),
       pipe=st.booleans())
def test_mutated_images_end_with_a_verdict(base, ops, pipe):
    data, spans = IMAGES[base]
    verdict_of(mutate(data, spans, ops), pipe)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(base=st.integers(0, len(KIND_IMAGES) - 1), ops=st.lists(op, min_size=1, max_size=3),
       pipe=st.booleans())
def test_mutated_new_records_end_with_a_verdict(base, ops, pipe):
    """Mutations inside the socket, epoll, tty, sem undo and extension records only."""
    data, spans = KIND_IMAGES[base]
    verdict_of(mutate(data, spans, ops), pipe)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(base=st.integers(0, len(IMAGES) - 1), junk=st.binary(min_size=0, max_size=256),
       at=st.integers(0, 1 << 20))
def test_spliced_garbage(base, junk, at):
    data, _ = IMAGES[base]
    at %= len(data) + 1
    verdict_of(data[:at] + junk + data[at:], pipe=False)


@pytest.mark.parametrize("data", [b"", b"\x01", bytes(8), bytes(72), b"\xff" * 200])
def test_tiny_inputs(data):
    fs = verdict_of(data, pipe=False)
    assert ck.has_errors(fs)


def test_hostile_lens_do_not_hang():
    """Huge lens on a pipe: skipped by draining what is there, no allocation by len."""
    data, spans = IMAGES[-1]
    for idx in range(5, len(spans), 7):
        off, _ = spans[idx]
        b = bytearray(data)
        b[off + 4:off + 8] = struct.pack("<I", 0xfffffff0)
        fs = verdict_of(bytes(b), pipe=True)
        assert ck.has_errors(fs)
