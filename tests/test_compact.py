"""The compact forms the big-image commands hold (issue 11): check's objref table, the
VMA table of to-core and diff, diff's merge of two processes' VMAs."""
from __future__ import annotations

import json
import subprocess
import sys
from array import array

import pytest

from imgtools.check.objrefs import DONE, OPEN, ObjTable
from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.model import PageBatch, Vma
from imgtools.core.elf import _by_start, _of_type
from imgtools.vmatable import VmaTable

PAGE = 4096


def test_objref_table_keeps_far_numbers_and_the_order_of_definition():
    t = ObjTable()
    far = (1 << 29) + 7                         # beyond the dense numbers: the dict
    t.add(5, "file", OPEN, 100, "objref")
    t.add(far, ("security", "security_ptr"), DONE, 200, "implicit")
    t.add(3, "pid", DONE, 300, "pids")
    assert len(t) == 3 and 5 in t and far in t and 3 in t
    assert 4 not in t and far + 1 not in t and -1 not in t and t.get(6) is None
    assert far in t.far and 5 not in t.far
    o = t.get(5)
    o.used = True
    o.state, o.how, o.offset = DONE, "reserved", 1 << 40
    assert [(r, e.kind, e.state, e.used, e.how, e.offset) for r, e in t.items()] == [
        (5, "file", DONE, True, "reserved", 1 << 40),
        (far, ("security", "security_ptr"), DONE, False, "implicit", 200),
        (3, "pid", DONE, False, "pids", 300)]
    o.used = False
    assert t.get(5).used is False and t.get(5).state == DONE


def _vma(start, end, vtype="anon", batches=(), file_ref=0):
    return Vma(start, end, 0x73, 0x27, 2, vtype, file_ref, 0, start // 16, 0, list(batches))


def test_vma_table_gives_back_the_vmas_it_was_given():
    vmas = [_vma(0x30000, 0x34000, batches=[
                PageBatch(array("Q", [0x30000, 0x31000]), 1000),         # one run
                PageBatch(array("Q", [0x33000, 0x32000]), 9000)]),       # not one
            _vma(0x10000, 0x12000, "file", file_ref=4),
            _vma(0x20000, 0x21000, "shm_anon", [PageBatch(array("Q", [0x20000]), 5)])]
    t = VmaTable()
    for v in vmas:
        t.append(v)
    assert len(t) == 3 and list(t) == vmas and t[-1] == vmas[-1]
    assert [v.start for v in _by_start(t)] == [0x10000, 0x20000, 0x30000]
    assert list(_of_type(t, "shm_anon")) == [vmas[2]] and list(_of_type(t, "vdso")) == []
    assert [v.start for v in _by_start(vmas)] == [0x10000, 0x20000, 0x30000]


def test_vma_tables_of_one_builder_share_their_columns():
    """The address spaces a builder reads hold their VMAs in one set of arrays, each its
    range: each table gives back its own VMAs (with their batches, the last one's too),
    in order, by start and by type; a VMA for a table read before the last is refused."""
    from imgtools.vmatable import _Columns
    columns = _Columns()
    spaces = [[_vma(0x30000, 0x34000, batches=[PageBatch(array("Q", [0x30000]), 7)]),
               _vma(0x10000, 0x11000, "shm_anon")],
              [],
              [_vma(0x50000, 0x52000, "file", file_ref=9,
                    batches=[PageBatch(array("Q", [0x51000, 0x50000]), 70)])],
              [_vma(0x70000, 0x71000, batches=[PageBatch(array("Q", [0x70000]), 99)])]]
    tables = []
    for vmas in spaces:
        t = VmaTable(columns)
        for v in vmas:
            t.append(v)
        tables.append(t)
    for t, vmas in zip(tables, spaces):
        assert len(t) == len(vmas) and list(t) == vmas
        assert [v.start for v in _by_start(t)] == sorted(v.start for v in vmas)
        assert list(_of_type(t, "shm_anon")) == [v for v in vmas if v.vma_type == "shm_anon"]
        if vmas:
            assert t[-1] == vmas[-1] and t[0] == vmas[0]
        with pytest.raises(IndexError):
            t[len(vmas)]
    with pytest.raises(RuntimeError):
        tables[0].append(_vma(0x90000, 0x91000))


def _image(tmp_path, name, vmas):
    spec = ImageSpec(tasks=[TaskSpec(4242, 1, comm="m")], mms={"mm": MmSpec(vmas)})
    p = tmp_path / name
    p.write_bytes(compose_bytes(spec, "v23"))
    return str(p)


def test_diff_of_vmas_added_removed_resized_reprotected_replaced(tmp_path):
    base = 0x10000000
    r, rw = 0x1 | 0x10, 0x3 | 0x30

    def v(i, n=1, **kw):
        return VmaSpec(base + i * 0x10000, base + i * 0x10000 + n * PAGE, **kw)

    a = _image(tmp_path, "a.img", [v(0), v(1), v(2, 2), v(3, flags=rw), v(4, kind="file",
               path="/x"), v(5), v(7)])
    b = _image(tmp_path, "b.img", [v(0), v(2, 3), v(3, flags=r), v(4, kind="file",
               path="/y"), v(5), v(6), v(8)])
    out = subprocess.run([sys.executable, "-m", "imgtools", "diff", "--json", a, b],
                         capture_output=True)
    assert out.returncode == 1, out.stderr
    (task,) = json.loads(out.stdout)["tasks"]

    def row(i, n=1, perms="rw-p", path=None):
        return {"start": base + i * 0x10000, "end": base + i * 0x10000 + n * PAGE,
                "perms": perms, "path": path}

    assert task["vmas"] == {
        "added": [row(6), row(8)],
        "removed": [row(1), row(7)],
        "resized": [{"from": row(2, 2), "to": row(2, 3)}],
        "reprotected": [{"vma": row(3, perms="r--p"), "perms": ["rw-p", "r--p"],
                         "vm_flags": [rw, r]}],
        "replaced": [{"vma": row(4, path="/y"), "path": ["/x", "/y"],
                      "type": ["file", "file"]}]}


def test_fd_set_near_and_far():
    from imgtools.check.files import FdSet
    s = FdSet()
    near, far = [0, 7, 8, 3, 1000], [1 << 30, 70_000]
    for fd in near + far:
        s.add(fd)
    for fd in range(0, 90_000, 7):      # the bits grow past a number added as far
        if fd not in s:
            s.add(fd)
    assert all(fd in s for fd in near + far + list(range(0, 90_000, 7)))
    assert 2 not in s and 89_998 not in s and (1 << 30) + 1 not in s
