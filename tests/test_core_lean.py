"""to-core's model (core.build: the task records of the dumped process only, no
descriptors; issue 11) gives the core the whole model gives, byte for byte, for every
sample, every --pid (threads and later processes too), every path (a file, --all, a
stream) and both forms of the lean tables, and refuses what the whole model refuses with
the same error."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from conftest import kinds_spec, real_pipe, tree_spec
from imgtools.build import build_model
from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.core import plan_core, processes, write_core
from imgtools.core.build import CORE_READS, ProcessBuilder
from imgtools.core.streamed import Layout, StreamingBuilder
from imgtools.errors import ImageError, UsageError
from imgtools.model import NOT_KEPT
from imgtools.reader import ImageReader
from imgtools.vmatable import CompactBuilder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("samples/*/*.img"))
LEAN_TABLES = pytest.mark.usefixtures("lean_tables")   # (conftest: a test twice)


def _borrowing_image() -> bytes:
    """Two processes mapping one shared-anonymous object: the image holds its pages
    under the second one's VMA only, so the first one's core borrows them."""
    spec = ImageSpec(tasks=[TaskSpec(300, 1, comm="first"),
                            TaskSpec(301, 300, comm="second", mm="mm2")],
                     mms={"mm": MmSpec([VmaSpec(0x10000000, 0x10004000, kind="shm_anon",
                                                flags=0xfb),
                                        VmaSpec(0x30000000, 0x30001000,
                                                pages={0x30000000: b"heap"})]),
                          "mm2": MmSpec([VmaSpec(0x20000000, 0x20004000, kind="shm_anon",
                                                 flags=0xfb, pages={0x20001000: b"shared"})])})
    image = bytearray(compose_bytes(spec, "v23"))
    r = ImageReader(io.BytesIO(bytes(image)))
    vmas = [(rec.payload_offset, r.parse(rec)) for rec in r.records()
            if r.name_of(rec) == "vma" and r.parse(rec).ino_objref]     # (the shm_anon)
    (at, first), (_, second) = vmas
    assert struct.unpack_from("<I", image, at + 8)[0] == first.ino_objref
    struct.pack_into("<I", image, at + 8, second.ino_objref)    # the first names the second's
    return bytes(image)


COMPOSED = {"tree": lambda: compose_bytes(tree_spec("v23"), "v23"),
            "kinds": lambda: compose_bytes(kinds_spec("v23"), "v23"),
            "borrowing": _borrowing_image}


def _image(name: str) -> bytes:
    return COMPOSED[name]() if name in COMPOSED else (ROOT / name).read_bytes()


def _pids(data: bytes) -> list[int | None]:
    """None (the image's first process), every task's pid, and one no task has."""
    whole = build_model(ImageReader(io.BytesIO(data)))
    return [None, *dict.fromkeys(t.pid for t in whole.tasks), 999999]


def _whole(data: bytes, pid, every=False):
    return build_model(ImageReader(io.BytesIO(data)), None, CompactBuilder)


def _lean(data: bytes, pid, every=False):
    return build_model(ImageReader(io.BytesIO(data)), None,
                       partial(ProcessBuilder, pid=pid, every=every), keep=CORE_READS)


def _core(img, path: Path, pid, layout="gdb"):
    """The core file's bytes, or the refusal (its type and message)."""
    with open(path, "rb") as src:
        try:
            plan = plan_core(img, lambda off, n: os.pread(src.fileno(), n, off), pid, layout)
        except (ImageError, UsageError) as e:
            return type(e), str(e)
        out = io.BytesIO()
        write_core(plan, src, out)
    return out.getvalue(), plan.warnings, plan.tids, plan.exe, plan.files


@LEAN_TABLES
@pytest.mark.parametrize("name", SAMPLES + list(COMPOSED))
def test_each_pid_gets_the_core_of_the_whole_model(name, tmp_path):
    data = _image(name)
    path = tmp_path / "image"
    path.write_bytes(data)
    cores = 0
    for pid in _pids(data):
        lean = _lean(data, pid)
        whole = _core(_whole(data, pid), path, pid)
        assert _core(lean, path, pid) == whole, (name, pid)
        cores += type(whole[0]) is bytes
        if name == "borrowing" and pid is None:     # (the other process's page)
            assert b"shared" in whole[0]
        if pid is None:
            assert _core(lean, path, pid, "native") == _core(_whole(data, pid), path, pid,
                                                              "native")
    assert cores


@LEAN_TABLES
@pytest.mark.parametrize("name", ["samples/v23/threads.img", "tree", "borrowing"])
def test_only_the_dumped_process_keeps_its_task_records(name):
    data = _image(name)
    whole = build_model(ImageReader(io.BytesIO(data)))
    for pid in _pids(data)[:-1]:
        lean = _lean(data, pid)
        leader = next(t for t in whole.tasks if t.pid == pid) if pid is not None else \
            next(t for t in whole.tasks if not t.is_thread)
        group = leader.tgid if any(t.pid == leader.tgid for t in whole.tasks) else leader.pid
        for t in lean.tasks:
            held = t._fields is not NOT_KEPT and t.offset is not None
            assert held == (t.offset is not None and group in (t.pid, t.tgid)), (pid, t)
            if held:
                w = whole.tasks[t.index]
                assert (t.fields, t.regs, list(t.pending), t.fpu_offset) == \
                    (w.fields, w.regs, w.pending, w.fpu_offset)
        kinds = {o.kind: o.value is not None for o in lean.objects.values()}
        assert "file_table" in kinds and {k for k, v in kinds.items() if v} <= CORE_READS


@LEAN_TABLES
@pytest.mark.parametrize("name", SAMPLES[::4] + list(COMPOSED))
def test_all_gets_the_cores_of_the_whole_model(name, tmp_path):
    data = _image(name)
    path = tmp_path / "image"
    path.write_bytes(data)
    lean, whole = _lean(data, None, every=True), _whole(data, None)
    assert [t.pid for t in processes(lean)] == [t.pid for t in processes(whole)]
    for t in processes(whole):
        assert _core(lean, path, t.pid) == _core(whole, path, t.pid), (name, t.pid)


def _streamed(data: bytes, path: Path, pid, keep):
    """The core a stream of the image makes (or the refusal), as _streamed does."""
    out = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    layout = Layout(out, 0)
    try:
        with real_pipe(data) as f:
            img = build_model(ImageReader(f), None,
                              partial(StreamingBuilder, layout=layout, pid=pid), keep=keep)
        try:
            plan = plan_core(img, layout.read_at, pid, "gdb")
        except (ImageError, UsageError) as e:
            return type(e), str(e)
        layout.finish(plan)
    finally:
        layout.close()
        os.close(out)
    return path.read_bytes(), plan.warnings


@LEAN_TABLES
@pytest.mark.parametrize("name", SAMPLES[1::4] + list(COMPOSED))
def test_a_stream_gets_the_core_of_the_whole_model(name, tmp_path):
    data = _image(name)
    for pid in _pids(data):
        assert _streamed(data, tmp_path / "lean", pid, CORE_READS) == \
            _streamed(data, tmp_path / "whole", pid, None), (name, pid)


CLI = [sys.executable, "-m", "imgtools"]


@pytest.mark.parametrize("path", ["file", "stdout", "pipe"])
def test_refusals_are_the_whole_models(tmp_path, path):
    """Each refusal through the CLI: the message plan_core gives on the whole model, the
    exit code of its kind (no task: 2; a zombie, no live thread, no mm: 3)."""
    spec = tree_spec("v23")
    spec.tasks.append(TaskSpec(104, 1, comm="nomm", mm=None))
    data = compose_bytes(spec, "v23")
    image = tmp_path / "image"
    image.write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for pid, code in ((999, 2), (103, 3), (104, 3)):
        expected = _core(_whole(data, pid), image, pid)
        assert type(expected[0]) is type, pid
        out = tmp_path / "core"
        args = ["to-core", "--pid", str(pid)]
        if path == "file":
            r = subprocess.run(CLI + args + [str(image), "-o", str(out)], env=env,
                               capture_output=True)
        elif path == "stdout":
            r = subprocess.run(CLI + args + [str(image), "-o", "-"], env=env,
                               capture_output=True)
        else:
            r = subprocess.run(CLI + args + ["-", "-o", str(out)], env=env, input=data,
                               capture_output=True)
        assert r.returncode == code, (pid, r.stderr)
        assert expected[1] in r.stderr.decode(), (pid, r.stderr)
        assert not out.exists() and not r.stdout
