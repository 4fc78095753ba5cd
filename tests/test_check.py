"""imgtools check: one broken rule per test, clean images of every version, the CLI.

Each test takes a clean composed image, breaks one rule by patching, deleting,
inserting or swapping records, and asserts the finding code (and, where the
break is clean, that it is the only error)."""
from __future__ import annotations

import glob
import io
import json
import os
import struct

import pytest
import typer
from typer.testing import CliRunner

import formats
from conftest import ALL, real_pipe, tree_spec
from imgtools import check as ck
from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, \
    compose_bytes
from imgtools.reader import ImageReader
from imgtools.stream import HDR
from imgtools.writer import ImageWriter


# -- a small toolkit for breaking images ----------------------------------------
class Img:
    """An image as bytes plus its ABI, with record-level surgery."""

    def __init__(self, data: bytes, version: str = "v23", arch: str = "x86_64"):
        self.data, self.version, self.arch = data, version, arch
        self.abi = formats.abi(version, arch)

    @classmethod
    def of(cls, version="v23", arch="x86_64", spec: ImageSpec | None = None):
        spec = spec or tree_spec(version)
        return cls(compose_bytes(spec, version, arch), version, arch)

    def records(self) -> list[tuple[int, str, int, int]]:
        """(offset, name, len, header size) of every record."""
        r = ImageReader(io.BytesIO(self.data), version=self.version, arch=self.arch)
        return [(rec.offset, r.name_of(rec), rec.len, rec.header_size) for rec in r.records()]

    def find(self, name: str, nth: int = 0, after: int = 0) -> int:
        """Index of the nth record named ``name`` at or after record index ``after``."""
        hits = [i for i, rec in enumerate(self.records()) if rec[1] == name and i >= after]
        return hits[nth]

    def names(self) -> list[str]:
        return [r[1] for r in self.records()]

    def span(self, i: int) -> tuple[int, int]:
        off, _, length, _ = self.records()[i]
        return off, off + length

    def payload(self, i: int) -> bytes:
        a, b = self.span(i)
        return self.data[a + HDR.size:b]

    def value(self, i: int):
        return self.abi.parse(self.records()[i][1], self.payload(i))

    def splice(self, a: int, b: int, new: bytes) -> "Img":
        self.data = self.data[:a] + new + self.data[b:]
        return self

    def patch(self, i: int, **fields) -> "Img":
        name = self.records()[i][1]
        v = self.value(i)
        for k, x in fields.items():
            if isinstance(x, dict):
                for kk, xx in x.items():
                    v[k][kk] = xx
            else:
                v[k] = x
        return self.set_payload(i, self.abi.build(name, v))

    def set_payload(self, i: int, payload: bytes) -> "Img":
        a, b = self.span(i)
        rtype = struct.unpack_from("<I", self.data, a)[0]
        return self.splice(a, b, HDR.pack(rtype, len(payload) + HDR.size) + payload)

    def delete(self, *idx: int) -> "Img":
        recs = self.records()
        for i in sorted(idx, reverse=True):
            off, _, length, _ = recs[i]
            self.splice(off, off + length, b"")
        return self

    def insert(self, i: int, *records: bytes) -> "Img":
        a = self.span(i)[0]
        return self.splice(a, a, b"".join(records))

    def rec(self, name: str, payload: bytes | None = None, **fields) -> bytes:
        buf = io.BytesIO()
        w = ImageWriter(buf, self.abi)
        if payload is not None or not fields and self.abi.struct(name) is None:
            w.raw(name, payload or b"")
        else:
            w.rec(name, fields)
        return buf.getvalue()

    def objref(self, kind: str, ref: int) -> bytes:
        return self.rec("objref", objtype=self.abi.objs[kind], objref=ref)

    def swap(self, i: int, j: int) -> "Img":
        (a1, b1), (a2, b2) = sorted([self.span(i), self.span(j)])
        d = self.data
        self.data = d[:a1] + d[a2:b2] + d[b1:a2] + d[a1:b1] + d[b2:]
        return self

    def check(self, **kw) -> list[ck.Finding]:
        return ck.check_bytes(self.data, **kw)


def run(img: Img, **kw) -> list[ck.Finding]:
    fs = img.check(**kw)
    assert "check.internal" not in codes(fs), [f.line() for f in fs]
    return fs


def codes(fs) -> set[str]:
    return {f.code for f in fs}


def errors(fs) -> set[str]:
    return {f.code for f in fs if f.severity == "error"}


def only(img: Img, code: str, **kw) -> list[ck.Finding]:
    """The image has exactly one kind of error finding: ``code``."""
    fs = run(img, **kw)
    assert errors(fs) == {code}, [f.line() for f in fs]
    return fs


def has(img: Img, code: str, **kw) -> list[ck.Finding]:
    fs = run(img, **kw)
    assert code in codes(fs), [f.line() for f in fs]
    return fs


def first(fs, code):
    return next(f for f in fs if f.code == code)


V = ["v17", "v19", "v23"]           # one of each task order / pids model, for rule tests


# -- the codes table ---------------------------------------------------------
def test_codes_table_is_complete():
    for code, (sev, title, text) in ck.CODES.items():
        assert sev in ck.SEVERITIES and title and text and "." in code
        assert ck.explain(code).startswith(f"{code} ({sev}): {title}")
    import re
    from pathlib import Path
    src = "".join(p.read_text() for p in Path(ck.__file__).parent.glob("*.py"))
    used = set(re.findall(r'"((?:framing|header|head|record|objref|loop|pipe|tree|task|mm|'
                          r'files|signal|error|check)\.[a-z-]+)"', src))
    assert used, "no finding code found in the sources"
    assert used <= set(ck.CODES), used - set(ck.CODES)


# -- clean images -------------------------------------------------------------
@pytest.mark.parametrize("version,arch", ALL, ids=[f"{v}-{a}" for v, a in ALL])
def test_clean_images_have_no_errors(version, arch):
    fs = run(Img.of(version, arch))
    assert not errors(fs), [f.line() for f in fs]
    assert not [f for f in fs if f.severity == "warning"], [f.line() for f in fs]
    assert "tree.outside" in codes(fs)          # the root's parent 1 is outside: a note


SAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "samples", "*",
                                         "*.img")))


@pytest.mark.skipif(not SAMPLES, reason="no engine samples")
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_engine_samples_are_sound(path):
    """Images the engine wrote from live processes: no error, no warning."""
    fs = ck.check_path(path)
    assert not [f for f in fs if f.severity != "note"], [f.line() for f in fs]


def test_clean_through_a_pipe():
    """A non-seekable source: streamed page buffers are drained, not sought."""
    img = Img.of("v23")
    with real_pipe(img.data) as src:
        fs = ck.check_stream(src)
    assert not errors(fs)



# -- framing -------------------------------------------------------------------
def test_empty_and_not_an_image():
    assert errors(ck.check_bytes(b"")) == {"framing.empty"}
    assert errors(ck.check_bytes(b"\x01\0\0\0")) == {"framing.empty"}
    assert errors(ck.check_bytes(HDR.pack(4, 16) + bytes(8))) == {"framing.not-image"}
    assert errors(ck.check_bytes(Img.of().data[:40])) == {"framing.truncated"}


@pytest.mark.parametrize("version", V)
def test_magic_head(version):
    img = Img.of(version, "i386")
    img.splice(8, 16, struct.pack("<Q", 0x1234))
    fs = only(img, "framing.magic-head")
    assert first(fs, "framing.magic-head").offset == 8


@pytest.mark.parametrize("version", V)
def test_magic_tail(version):
    img = Img.of(version)
    only(img.patch(img.find("tail"), magic=0xdead), "framing.magic-tail")


def test_bad_len():
    img = Img.of()
    off = img.span(img.find("task_ns"))[0]
    img.splice(off + 4, off + 8, struct.pack("<I", 4))
    fs = only(img, "framing.bad-len")
    assert first(fs, "framing.bad-len").offset == off


def test_len_past_eof():
    img = Img.of()
    off = img.span(img.find("cpu"))[0]
    img.splice(off + 4, off + 8, struct.pack("<I", 0xfffffff0))
    fs = only(img, "framing.past-eof")
    assert first(fs, "framing.past-eof").offset == off


def test_truncated_pipe_stream():
    img = Img.of()
    a, b = img.span(img.find("buffer", 5))             # the 3-page buffer
    data = img.data[:a + 9000]
    with real_pipe(data) as src:
        fs = ck.check_stream(src)
    assert errors(fs) == {"framing.truncated"}, [f.line() for f in fs]
    # a file: the len check sees it first
    assert errors(ck.check_bytes(data)) == {"framing.past-eof"}


@pytest.mark.parametrize("version", V)
def test_tail_missing(version):
    img = Img.of(version)
    only(img.delete(img.find("tail")), "framing.tail-missing")


@pytest.mark.parametrize("extra", [b"\x00\x01\x02", "record"])
def test_after_tail(extra):
    img = Img.of()
    if extra == "record":
        extra = img.rec("tail", magic=img.abi.magic_tail)
    tail_end = len(img.data)
    img.data += extra
    fs = only(img, "framing.after-tail")
    assert first(fs, "framing.after-tail").offset == tail_end


# -- header ---------------------------------------------------------------------
def test_header_rev_vs_forced_version():
    img = Img.of("v19-rc1")
    img.splice(24, 26, struct.pack("<H", 4))
    only(img, "header.rev", version="v19-rc1")


def test_header_rev_unknown():
    img = Img.of("v19")
    img.splice(24, 26, struct.pack("<H", 99))
    only(img, "header.rev-unknown")
    assert not errors(run(img, version="v19")) - {"header.rev"}


def test_header_arch_old_numbering():
    img = Img.of("v19")
    img.splice(16, 18, struct.pack("<H", 5))          # x86_64 as v19-rc2 numbered it
    fs = only(img, "header.arch")
    assert "x86_64" in first(fs, "header.arch").message


def test_header_const_and_mismatch():
    img = Img.of("v21")
    img.patch(0, constants={"n_tty_buf_size": 2048})
    fs = run(img)
    assert not errors(fs) and "header.const" in codes(fs)
    img.patch(0, constants={"uts_release_len": 64})
    only(img, "header.const-mismatch")


def test_header_uflags():
    img = Img.of("v19")
    fs = run(img.patch(0, uflags=0x81))
    assert not errors(fs) and "header.uflags" in codes(fs)


def test_anachronism_is_a_note():
    fs = run(Img.of("v18", "x86_64"))
    assert first(fs, "header.arch-anachronism").severity == "note"


# -- head ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_head_sequence(version):
    img = Img.of(version)
    only(img.delete(img.find("header_arch")), "head.sequence")


@pytest.mark.parametrize("version", V)
def test_head_pids_buffer_size(version):
    img = Img.of(version)
    i = img.find("buffer", 3)
    only(img.set_payload(i, img.payload(i) + bytes(24)), "head.pids")


def test_head_vpids_missing():
    img = Img.of("v21")
    i = img.find("buffer", 3)
    p = bytearray(img.payload(i))
    p[20:24] = struct.pack("<i", 1)                   # task 0 at depth 1: one vpid follows
    only(img.set_payload(i, bytes(p)), "head.vpids")


# -- records --------------------------------------------------------------------------
def test_record_unknown():
    img = Img.of()
    only(img.insert(img.find("tail"), HDR.pack(777, 16) + bytes(8)), "record.unknown")


@pytest.mark.parametrize("version", V)
def test_record_size(version):
    img = Img.of(version)
    i = img.find("task_ns")
    only(img.set_payload(i, img.payload(i) + bytes(8)), "record.size")


def test_record_parse():
    img = Img.of("v19")
    i = img.find("cred")
    only(img.set_payload(i, img.payload(i)[:8]), "record.parse")


def test_record_stray():
    img = Img.of()
    vma = img.rec("vma", vma_type=img.abi.vma_types["vdso"], vma_objref=0, ino_objref=0,
                  ino_size=0, vm_start=0x1000, vm_end=0x2000, vm_page_prot=0, vm_flags=0,
                  vm_pgoff=0, hugetlb_shift=0)
    only(img.insert(img.find("tail"), vma), "record.stray")


# -- objrefs ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_objref_undefined(version):
    img = Img.of(version)
    fs = only(img.patch(img.find("task_ns", 1), ns_objref=999), "objref.undefined")
    assert first(fs, "objref.undefined").task == 101


@pytest.mark.parametrize("version", V)
def test_objref_forward(version):
    img = Img.of(version)
    child_table = img.value(img.find("task_objs", 2)).files_objref
    fs = only(img.patch(img.find("task_objs", 0), files_objref=child_table), "objref.forward")
    assert first(fs, "objref.forward").task == 100


@pytest.mark.parametrize("version", V)
def test_objref_duplicate(version):
    img = Img.of(version)
    root_table = img.value(img.find("task_objs", 0)).files_objref
    ft = img.find("file_table", 1)
    img.patch(ft - 1, objref=root_table)              # the child's OBJREF(FILE_TABLE)
    img.patch(img.find("task_objs", 2), files_objref=root_table)
    only(img, "objref.duplicate")


@pytest.mark.parametrize("version", V)
def test_objref_wrong_type(version):
    img = Img.of(version)
    cred = img.value(img.find("task_creds", 0)).cred_ref
    fs = only(img.patch(img.find("file_desc"), fd_objref=cred), "objref.type")
    assert "a cred" in first(fs, "objref.type").message


def test_objref_unused():
    img = Img.of()
    img.insert(img.find("tail"), img.objref("groupinfo", 950),
               img.rec("groupinfo", ngroups=0, groups=[]))
    fs = run(img)
    assert not errors(fs) and first(fs, "objref.unused").severity == "warning"


def test_objref_bad_type_and_number():
    img = Img.of()
    only(img.insert(img.find("tail"), img.rec("objref", objtype=99, objref=960)),
         "objref.bad-type")
    img = Img.of()
    only(img.insert(img.find("tail"), img.rec("objref", objtype=img.abi.objs["inode"],
                                              objref=-5)), "objref.bad-number")


def test_objref_unbound():
    img = Img.of()
    only(img.insert(img.find("tail"), img.objref("mm", 970)), "objref.unbound")


def test_objref_missing():
    img = Img.of("v19")
    only(img.insert(img.find("tail"), img.rec("groupinfo", ngroups=0, groups=[])),
         "objref.missing")


@pytest.mark.parametrize("version", V)
def test_objref_null(version):
    img = Img.of(version)
    only(img.patch(img.find("task_creds"), cred_ref=0), "objref.null")


# -- loops --------------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_userns_creator_is_the_user_being_written(version):
    img = Img.of(version)
    o = img.value(img.find("groupinfo") + 1)          # OBJREF(USER), still open at USER_NS
    assert img.abi.obj_names[o.objtype] == "user"
    uref = o.objref
    only(img.patch(img.find("user_ns"), creator_ref=uref), "loop.userns")


def _second_userns(img: Img, at: int, u: int, n: int) -> Img:
    """OBJREF(USER,u) OBJREF(USER_NS,n) USER_NS{creator 0} USER{userns n} before record ``at``."""
    return img.insert(at, img.objref("user", u), img.objref("user_ns", n),
                      img.rec("user_ns", creator_ref=0), img.rec("user", uid=5, userns_ref=n))


@pytest.mark.parametrize("version", V)
def test_userns_creator_defined_later(version):
    img = Img.of(version)
    img.patch(img.find("user_ns"), creator_ref=900)
    only(_second_userns(img, img.find("tail"), 900, 901), "loop.creator-order")


def test_userns_chain_cycle():
    img = Img.of("v19")
    # root user_ns -> creator 900 (later) -> user_ns 901 -> creator: the root ns's user
    root_user = img.value(img.find("groupinfo") + 1).objref
    img.patch(img.find("user_ns"), creator_ref=900)
    at = img.find("tail")
    img.insert(at, img.objref("user", 900), img.objref("user_ns", 901),
               img.rec("user_ns", creator_ref=root_user), img.rec("user", uid=5,
                                                                  userns_ref=901))
    # 901's creator is root_user whose ns is the root ns, whose creator is 900 -> 901
    fs = has(img, "loop.userns")
    assert errors(fs) <= {"loop.userns", "loop.creator-order"}


@pytest.mark.parametrize("version", V)
def test_reference_to_an_object_being_written(version):
    """A FILE nested inside the definition of the cred it names."""
    img = Img.of(version)
    cref = img.value(img.find("task_creds")).cred_ref
    f = img.find("file")
    ffields = {k: v for k, v in img.value(f).items() if not k.startswith("_")}
    at = img.find("groupinfo") + 1                     # inside OBJREF(CRED) … CRED
    img.insert(at, img.objref("file", 990), img.rec("file", **(ffields | {"f_credref": cref})),
               img.rec("file_name", b"/x\0"))
    fs = only(img, "loop.open")
    assert "still open" in first(fs, "loop.open").message


def test_generic_cycle_through_a_forward_reference():
    """No record pair of the formats closes a cycle other than user/user_ns (loop.userns)
    without an open reference (loop.open); the generic search is checked on its own."""
    img = Img.of()
    reader = ImageReader(io.BytesIO(img.data))
    c = ck._Checker(reader, ck._Sink())
    c.objs = {1: ck._Obj("mm", ck.DONE, 0, "objref"), 2: ck._Obj("file", ck.DONE, 10, "objref")}
    c.edges = {1: [2], 2: [1]}
    c.fwd_edges = [(1, 2, 5, "MM", 100)]
    c.loops()
    fs = c.sink.close()
    assert codes(fs) == {"loop.cycle"} and fs[0].offset == 5


# -- pipes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_pipe_data_missing(version):
    img = Img.of(version)
    if version == "v17":
        i = img.find("file_pipe")
        img.delete(i, i + 1)                          # FILE_PIPE + its unframed bytes
    else:
        img.delete(img.find("pipe_buf"))
    only(img, "pipe.data-missing")


@pytest.mark.parametrize("version", ["v18", "v23"])
def test_pipe_data_duplicate(version):
    img = Img.of(version)
    second_end = img.find("file", 2)                  # /dev/null, pipe end 1, pipe end 2
    assert img.value(second_end).sub.pipe_objref
    only(img.insert(second_end + 1, img.rec("pipe_buf", b"again")), "pipe.data-duplicate")


def test_pipe_data_stray():
    img = Img.of()
    only(img.insert(img.find("tail"), img.rec("pipe_buf", b"x")), "pipe.data-stray")


def _pipe_spec(flags: list[int]) -> ImageSpec:
    return ImageSpec(tasks=[TaskSpec(10, 1)],
                     mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000)])},
                     files={"files": [FdSpec(3 + i, kind="pipe", pipe="p", flags=f)
                                      for i, f in enumerate(flags)]})


def test_pipe_single_end_is_a_note():
    fs = run(Img.of("v23", spec=_pipe_spec([0])))
    assert not errors(fs) and first(fs, "pipe.single-end").severity == "note"


def test_pipe_ends_of_one_direction():
    fs = run(Img.of("v23", spec=_pipe_spec([0, 0])))
    assert not errors(fs) and "pipe.ends" in codes(fs)


def test_pipe_inode_used_as_fifo():
    img = Img.of("v23")
    pipe_ino = img.value(img.find("file", 1)).sub.pipe_objref
    fifo = next(i for i, r in enumerate(img.records()) if r[1] == "file" and
                img.abi.file_type_names[img.value(i).f_type] == "fifo")
    img.delete(fifo + 2)                               # its PIPE_BUF
    only(img.patch(fifo, sub={"pipe_objref": pipe_ino}), "pipe.mixed")


# -- task tree --------------------------------------------------------------------------------
def _tree(img: Img) -> tuple[int, list[list[int]]]:
    """(index of the pids BUFFER, rows) — rows as pid numbers (tags in v23)."""
    i = img.find("buffer", 4 if img.version == "v23" else 3)
    p = img.payload(i)
    return i, [list(struct.unpack_from("<6i", p, k)) for k in range(0, len(p), 24)]


def _set_tree(img: Img, rows) -> Img:
    i, _ = _tree(img)
    return img.set_payload(i, b"".join(struct.pack("<6i", *r) for r in rows))


def _pid(img: Img, pid: int) -> int:
    """The value the pids array holds for ``pid`` (its tag in v23)."""
    if img.version != "v23":
        return pid
    p = img.payload(img.find("buffer", 3))
    nums = [struct.unpack_from("<Ii", p, k)[1] for k in range(0, len(p), 8)]
    return nums.index(pid) + 1


@pytest.mark.parametrize("version", V)
def test_tree_count(version):
    img = Img.of(version)
    t = img.find("task", 3)                            # the zombie: TASK + STRING
    only(img.delete(t, t + 1), "tree.count")


@pytest.mark.parametrize("version", ["v17", "v19"])
def test_tree_invalid_pid(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[3][0] = rows[3][2] = -3
    only(_set_tree(img, rows), "tree.pid")


def test_tree_pid_tag():
    img = Img.of("v23")
    _, rows = _tree(img)
    rows[3][4] = 99                                    # the zombie's sid tag
    only(_set_tree(img, rows), "tree.pid-tag")


@pytest.mark.parametrize("version", V)
def test_tree_parent_outside(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[2][1] = _pid(img, 1)                          # the child's parent: pid 1, outside
    fs = only(_set_tree(img, rows), "tree.parent")
    assert first(fs, "tree.parent").task == 102


@pytest.mark.parametrize("version", V)
def test_tree_outside_ids_warning(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[3][4] = _pid(img, 1)                          # zombie's session: pid 1 (outside)
    fs = run(_set_tree(img, rows))
    assert not errors(fs) and first(fs, "tree.outside-ids").task == 103


@pytest.mark.parametrize("version", V)
def test_tree_tgid(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[1][2] = _pid(img, 1)                          # thread 101 of a leader not in the image
    only(_set_tree(img, rows), "tree.tgid")


@pytest.mark.parametrize("version", V)
def test_tree_session_leader(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[2][3], rows[2][4] = _pid(img, 102), _pid(img, 101)   # sid names a thread
    only(_set_tree(img, rows), "tree.session")


@pytest.mark.parametrize("version", V)
def test_tree_group_across_sessions(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[2][3] = _pid(img, 103)                        # group 103 lives in session 103
    only(_set_tree(img, rows), "tree.group")


@pytest.mark.parametrize("version", V)
def test_tree_thread_ids(version):
    img = Img.of(version)
    _, rows = _tree(img)
    rows[1][1] = _pid(img, 102)
    only(_set_tree(img, rows), "tree.thread-ids")


@pytest.mark.parametrize("version", V)
def test_tree_not_dfs(version):
    """Thread 101 moved after the child 102 (rows and sections alike)."""
    img = Img.of(version)
    _, rows = _tree(img)
    rows[1], rows[2] = rows[2], rows[1]
    _set_tree(img, rows)
    t1, t2, t3 = (img.span(img.find("task", k))[0] for k in (1, 2, 3))
    d = img.data
    img.data = d[:t1] + d[t2:t3] + d[t1:t2] + d[t3:]
    fs = only(img, "tree.order")
    assert first(fs, "tree.order").task == 101


@pytest.mark.parametrize("version", V)
def test_thread_with_its_own_sighand(version):
    spec = tree_spec(version)
    spec.tasks[1].sighand = "other"
    only(Img.of(version, spec=spec), "tree.thread-shares")


def test_thread_with_its_own_files_is_a_warning():
    spec = tree_spec("v23")
    spec.tasks[1].files = "files2"
    fs = run(Img.of("v23", spec=spec))
    assert not errors(fs) and "tree.thread-files" in codes(fs)


@pytest.mark.parametrize("version", ["v18", "v23"])
def test_signal_shared_by_two_processes(version):
    spec = tree_spec(version)
    spec.tasks[2].signal = "signal-100"
    only(Img.of(version, spec=spec), "tree.signal-shared")


# -- tasks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_task_comm(version):
    img = Img.of(version)
    only(img.set_payload(img.find("task") + 1, b"x" * 20 + b"\0"), "task.comm")


@pytest.mark.parametrize("version", V)
def test_zombie_with_mm(version):
    img = Img.of(version)
    objs = img.value(img.find("task_objs"))
    z = img.find("task", 3)
    rec = img.rec("task_objs", **{k: v for k, v in objs.items() if not k.startswith("_")})
    only(img.insert(z + 2, rec), "task.zombie-mm")


@pytest.mark.parametrize("version", V)
def test_zombie_with_task_state(version):
    img = Img.of(version)
    z = img.find("task", 3)
    thread = img.data.__getitem__(slice(*img.span(img.find("thread"))))
    only(img.insert(z + 2, thread), "task.zombie-records")


@pytest.mark.parametrize("version", V)
def test_task_incomplete(version):
    img = Img.of(version)
    fs = only(img.delete(img.find("restart_block", 1)), "task.incomplete")
    assert first(fs, "task.incomplete").task == 101


@pytest.mark.parametrize("version", V)
def test_task_order(version):
    img = Img.of(version)
    i = img.find("task_creds", 1)
    assert img.names()[i + 1] == "task_ns"
    only(img.swap(i, i + 1), "task.order")


@pytest.mark.parametrize("version", ["v19", "v23"])
def test_task_fpu_size(version):
    img = Img.of(version)
    i = img.find("cpu_fpu")
    only(img.set_payload(i, img.payload(i) + bytes(64)), "task.fpu")


# -- memory ------------------------------------------------------------------------------------
def _vma(img, n=0):
    return img.find("vma", n)


@pytest.mark.parametrize("version", V)
def test_vma_range(version):
    img = Img.of(version)
    only(img.patch(_vma(img), vm_start=0x400001), "mm.vma-range")


@pytest.mark.parametrize("version", V)
def test_vma_type(version):
    img = Img.of(version)
    only(img.patch(_vma(img), vma_type=77), "mm.vma-type")


@pytest.mark.parametrize("version", V)
def test_vma_overlap(version):
    img = Img.of(version)
    only(img.patch(_vma(img, 2), vm_start=0x600000), "mm.vma-order")


@pytest.mark.parametrize("version", V)
def test_map_count(version):
    img = Img.of(version)
    only(img.patch(img.find("mm"), map_count=4), "mm.map-count")


def _pages(img: Img, n: int = 1) -> tuple[int, int]:
    """Index and word size of the nth page BUFFER (0: the 3-page batch)."""
    i = img.find("pgarr", (1, 3)[n]) + 1               # PGARR 0 (file VMA), PGARR 3, …
    assert img.names()[i] == "buffer"
    return i, img.abi.word


def _set_addr(img: Img, i: int, k: int, addr: int) -> Img:
    w = img.abi.word
    p = bytearray(img.payload(i))
    p[k * w:(k + 1) * w] = addr.to_bytes(w, "little")
    return img.set_payload(i, bytes(p))


@pytest.mark.parametrize("version,arch", [("v17", "i386"), ("v23", "x86_64")])
@pytest.mark.parametrize("addr", [0x600008, 0x600100, 0x600800])   # low byte, then bits 8-11
def test_page_align(version, arch, addr):
    img = Img.of(version, arch)
    i, _ = _pages(img, 0)
    only(_set_addr(img, i, 0, addr), "mm.page-align")


@pytest.mark.parametrize("version,arch", [("v17", "i386"), ("v23", "x86_64")])
def test_page_outside(version, arch):
    img = Img.of(version, arch)
    i, _ = _pages(img, 1)                              # the stack page
    only(_set_addr(img, i, 0, 0x1000), "mm.page-outside")


@pytest.mark.parametrize("version", V)
def test_page_order(version):
    img = Img.of(version)
    i, _ = _pages(img, 0)
    _set_addr(img, i, 0, 0x601000)
    only(_set_addr(img, i, 1, 0x600000), "mm.page-order")


@pytest.mark.parametrize("version", V)
def test_pages_for_a_skip_vma(version):
    img = Img.of(version)
    only(img.patch(_vma(img), vma_type=img.abi.vma_types["shm_anon_skip"]), "mm.page-kind")


@pytest.mark.parametrize("version", V)
def test_pages_for_a_vdso_are_sound(version):
    """The kernel saved no vdso pages; imgtools-engine saves them (gdb unwinds through
    them): both are sound."""
    img = Img.of(version)
    assert not errors(run(img.patch(_vma(img), vma_type=img.abi.vma_types["vdso"])))


@pytest.mark.parametrize("version", V)
def test_page_batch_count(version):
    img = Img.of(version)
    only(img.patch(img.find("pgarr", 1), nr_pages=2), "mm.page-batch")


@pytest.mark.parametrize("version", V)
def test_pgarr_terminator(version):
    img = Img.of(version)
    only(img.delete(img.find("pgarr", 2)), "mm.pgarr-terminator")


@pytest.mark.parametrize("version,arch", [("v17", "i386"), ("v19", "x86_64")])
def test_auxv_size(version, arch):
    img = Img.of(version, arch)
    i = img.find("mm") + 1
    only(img.set_payload(i, img.payload(i) + bytes(16)), "mm.auxv")


@pytest.mark.parametrize("version", V)
def test_mm_context_missing(version):
    img = Img.of(version)
    i = img.find("mm_context")
    only(img.delete(i, i + 1), "mm.context")


@pytest.mark.parametrize("version", V)
def test_ldt(version):
    img = Img.of(version)
    only(img.patch(img.find("mm_context"), nldt=1), "mm.ldt")


# -- files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_file_table_count(version):
    img = Img.of(version)
    only(img.patch(img.find("file_table"), fdt_nfds=4), "files.count")


@pytest.mark.parametrize("version", V)
def test_fd_duplicate(version):
    img = Img.of(version)
    only(img.patch(img.find("file_desc", 1), fd_descriptor=0), "files.fd-dup")


def test_fd_negative():
    img = Img.of()
    only(img.patch(img.find("file_desc", 1), fd_descriptor=-1), "files.fd-range")


@pytest.mark.parametrize("version", V)
def test_file_type(version):
    img = Img.of(version)
    only(img.patch(img.find("file"), f_type=99), "files.type")


@pytest.mark.parametrize("version", V)
def test_file_name_missing(version):
    img = Img.of(version)
    only(img.delete(img.find("file") + 1), "files.name-missing")


def test_file_name_format():
    img = Img.of()
    fs = run(img.set_payload(img.find("file") + 1, b"/dev/null"))
    assert not errors(fs) and "files.name-format" in codes(fs)


def test_fs_names_missing():
    img = Img.of("v19")
    i = img.find("fs")
    only(img.delete(i + 1, i + 2), "files.name-missing")


# -- signals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v18", "v23"])
def test_signal_missing(version):
    img = Img.of(version)
    only(img.delete(img.find("signal")), "signal.missing")


def test_signal_stray():
    img = Img.of()
    sig = img.data.__getitem__(slice(*img.span(img.find("signal"))))
    only(img.insert(img.find("tail"), sig), "signal.stray")


# -- ERROR records ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", V)
def test_error_records(version):
    spec = tree_spec(version)
    spec.errors = ["[E @ checkpoint_mm:123] unsupported vma", "second"]
    img = Img.of(version, spec=spec)
    fs = only(img, "error.record")
    errs = [f for f in fs if f.code == "error.record"]
    offsets = [off for off, name, _, _ in img.records() if name == "error"]
    assert [f.offset for f in errs] == offsets
    assert "unsupported vma" in errs[0].message and errs[1].message.endswith("second")


def test_error_record_ends_the_stream():
    spec = tree_spec("v23")
    spec.errors, spec.tail = ["leak"], False
    fs = run(Img.of("v23", spec=spec))
    assert errors(fs) == {"error.record", "framing.tail-missing"}


# -- limits ------------------------------------------------------------------------------------
def test_per_code_limit():
    img = Img.of()
    bad = HDR.pack(777, 8)
    img.insert(img.find("tail"), bad * 30)
    fs = run(img, per_code=5)
    assert sum(f.code == "record.unknown" for f in fs) == 5
    assert "25 more record.unknown" in first(fs, "check.limit").message
    assert ck.has_errors(fs)


# -- CLI ----------------------------------------------------------------------------------------
@pytest.fixture()
def cli():
    from imgtools.cli.check import register
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop():             # two commands: typer keeps "check" as a subcommand
        pass
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["check", *args])


def test_cli_sound_and_not(cli, tmp_path):
    good = tmp_path / "good.img"
    good.write_bytes(Img.of().data)
    r = cli(str(good))
    assert r.exit_code == 0 and "sound" in r.output and "tree.outside" in r.output
    img = Img.of()
    bad = tmp_path / "bad.img"
    bad.write_bytes(img.patch(img.find("mm"), map_count=9).data)
    r = cli(str(bad))
    assert r.exit_code == 3 and "mm.map-count" in r.output and "NOT SOUND" in r.output
    r = cli(str(bad), "--json")
    assert r.exit_code == 3
    data = json.loads(r.output)
    assert {"code", "severity", "offset", "record", "task", "message"} <= set(data[0])
    f = next(x for x in data if x["code"] == "mm.map-count")
    assert f["severity"] == "error" and f["record"] == "MM" and f["task"] == 100


def test_cli_format_and_errors(cli, tmp_path):
    p = tmp_path / "v19.img"
    p.write_bytes(Img.of("v19").data)
    assert cli(str(p), "--format", "v19").exit_code == 0
    assert cli(str(p), "--format", "v99").exit_code == 2
    assert cli(str(tmp_path / "missing.img")).exit_code == 2
    assert cli().exit_code == 2


def test_cli_explain(cli):
    r = cli("--explain", "objref.forward")
    assert r.exit_code == 0 and "forward reference" in r.output
    r = cli("--explain", "objref.forwad")
    assert r.exit_code == 2
    r = cli("--explain", "tree.order", "--json")
    assert json.loads(r.output)["severity"] == "error"
    r = cli("--codes")
    assert r.exit_code == 0 and all(c in r.output for c in ck.CODES)


# -- the checker's own safety nets ------------------------------------------------------------
def test_short_v17_file_pipe_ends_with_a_verdict():
    """reader.py reads pipe_len from FILE_PIPE before the checker sees it; a 2-byte
    payload must still end as a finding, not an exception."""
    img = Img.of("v17", "i386")
    recs = img.records()
    i = img.find("file_pipe")
    off, _, _, _ = recs[i]
    raw_off, _, raw_len, _ = recs[i + 1]               # its unframed bytes
    img.splice(off, raw_off + raw_len, HDR.pack(img.abi.types["file_pipe"], 10) + b"\x01\x00")
    fs = run(img)
    assert "record.parse" in errors(fs)


def test_framing_code_fallback():
    from imgtools.errors import FramingError, SchemaError
    assert ck._stream_code(FramingError("something new", offset=3)) == "framing.error"
    assert ck._stream_code(SchemaError("negative pipe_len -1")) == "record.parse"


def test_checker_bug_is_a_finding(monkeypatch):
    def boom(self, rec, v, matched):
        raise KeyError("bug")
    monkeypatch.setattr(ck._Checker, "on_vma", boom)
    fs = Img.of().check()
    internal = [f for f in fs if f.code == "check.internal"]
    assert internal and internal[0].record == "VMA"
    assert "framing.tail-missing" not in codes(fs)     # the pass went on to TAIL


def test_cli_stdin():
    img = Img.of("v19")
    from imgtools.cli.check import register
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(app, ["check", "-", "--json"], input=img.data)
    assert r.exit_code == 0, r.output
    assert {f["code"] for f in json.loads(r.output)} == {"tree.outside"}
