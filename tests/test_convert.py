"""Converters: every version pair, both directions, losses, streaming, the CLI."""
from __future__ import annotations

import hashlib
import io
import os
import pty
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import formats
from converters import LossRefused, convert, describe_path, path
from converters._base import Context, Rec, Spool
from converters.chain import STEPS
from imgtools.compose import ImageSpec, VmaSpec, compose_bytes
from imgtools.reader import ImageReader
from imgtools.writer import ImageWriter

from conftest import read_model, real_pipe, tree_spec

V = formats.VERSIONS
ROOT = Path(__file__).resolve().parents[1]


# -- helpers (also used by test_convert_props) ------------------------------------------------


def conv(data: bytes, to: str, allow_loss: bool = True, **kw):
    """Convert image bytes; returns (bytes, report)."""
    out = io.BytesIO()
    report = convert(ImageReader(io.BytesIO(data), **kw), out, to, allow_loss=allow_loss)
    return out.getvalue(), report


def older(a: str, b: str) -> bool:
    return V.index(a) < V.index(b)


def common_spec(version: str, pages: int = 3) -> ImageSpec:
    """The tree spec with only what ``version`` can hold (v17: no signal state)."""
    s = tree_spec(version, pages)
    if version == "v17":
        for t in s.tasks:
            t.blocked, t.pending = 0, []
    return s


def needs(spec: ImageSpec) -> dict[str, str]:
    """What ``spec`` holds beyond v17 -> the oldest version that holds it."""
    live = [t for t in spec.tasks if not t.zombie]
    out = {}
    if any(t.sas != (0, 0) for t in spec.tasks):     # (a zombie's TASK record has it too)
        out["sas"] = "v23-rc1"
    if spec.cwd != "/":
        out["cwd"] = "v19"
    if any(t.blocked or t.pending for t in live):
        out["signals"] = "v18"
    if any(fd.kind == "fifo" for t in live for fd in spec.files.get(t.files, [])):
        out["fifo"] = "v18"
    return out


def canonical(spec: ImageSpec, version: str, arch: str = "x86_64") -> bytes:
    """``spec`` as the converters (and the engine) lay it out in ``version``.

    The composer shares one fs_struct between all processes (v19+) and sorts the pid
    objects (v23); the engine writes one fs_struct per thread group and numbers pids
    in order of first reference, and so do the converters.  So: compose in the oldest
    version that holds ``spec`` and upgrade; when that is v19 or newer, compose in
    ``version`` and only renumber the pids."""
    base = max(["v17", *needs(spec).values()], key=V.index)
    if older(base, "v19") and older(base, version):
        return conv(compose_bytes(spec, base, arch), version, allow_loss=False)[0]
    return pids_in_engine_order(compose_bytes(spec, version, arch))


def pids_in_engine_order(data: bytes) -> bytes:
    """A v23 image with its pid objects renumbered as the engine numbers them."""
    if ImageReader(io.BytesIO(data)).version != "v23":
        return data
    return conv(conv(data, "v23-rc1", allow_loss=False)[0], "v23", allow_loss=False)[0]


def summary(data: bytes, signals: bool = True) -> dict:
    """What every version holds, from the model: tasks, registers, memory with page
    bytes, descriptors with paths and pipe contents (and signal state if asked)."""
    m = read_model(data)
    tasks = []
    for t in m.tasks:
        regs = t.regs
        if isinstance(regs, dict):
            regs = {k: v for k, v in regs.items() if not k.startswith("debugreg")}
        entry = {"ids": (t.pid, t.ppid, t.tgid, t.pgid, t.sid), "comm": t.comm,
                 "zombie": t.zombie, "exit_code": t.fields.get("exit_code"), "regs": regs,
                 "fpu": t.fpu_size}
        if signals:
            entry["blocked"] = t.blocked or 0
            entry["pending"] = sorted(p["csi_signo"] for p in t.pending)
        mm = m.get(t.obj("mm"), "mm")
        if mm is not None:
            vmas = []
            for v in mm.vmas:
                h = hashlib.sha256()
                for addr, off in v.page_offsets():
                    h.update(struct.pack("<Q", addr) + data[off:off + 4096])
                vmas.append((v.start, v.end, v.vm_flags, v.pgoff, v.vma_type, v.pages,
                             h.hexdigest()))
            exe = m.get(mm.exe_ref, "file")
            entry["mm"] = {"vmas": vmas, "auxv": mm.auxv, "exe": exe.path if exe else None,
                           "brk": (mm.fields["start_brk"], mm.fields["brk"])}
        table = m.get(t.obj("files"), "file_table")
        if table is not None:
            fds = []
            for fd in table.fds:
                f = m.get(fd.file_ref, "file")
                pipe = m.get(f.pipe_ref, "inode") if f and f.pipe_ref else None
                content = None
                if pipe is not None:        # (v17 writes no data record for an empty pipe)
                    content = b"" if pipe.data_offset is None else \
                        data[pipe.data_offset:pipe.data_offset + pipe.data_len]
                fds.append((fd.fd, fd.close_on_exec, f.f_type, f.path, f.f_flags, f.f_pos,
                            content))
            entry["fds"] = fds
        tasks.append(entry)
    return {"arch": m.arch, "uts": m.uts, "tasks": tasks, "pages": m.pages,
            "errors": [e.message for e in m.errors], "tail": m.tail}


def rewrite(data: bytes, edit) -> bytes:
    """Re-serialise an image, letting ``edit(name, value, writer)`` change records: the
    parsed value (or the payload bytes of a small opaque record) is returned changed,
    or None to drop the record."""
    r = ImageReader(io.BytesIO(data))
    out = io.BytesIO()
    w = ImageWriter(out, r.abi)
    for rec in r.records():
        name = r.name_of(rec)
        if name == "pipe_data":
            w.unframed(rec.data())
            continue
        if not rec.streamed:
            opaque = r.abi.struct(name) is None
            v = edit(name, rec.data() if opaque else r.parse(rec), w)
            if v is None:
                continue
            w.raw(rec.type, v if opaque else r.abi.build(name, v))
        else:
            w.begin(rec.type, rec.size)
            rec.copy_to(w.write)
    return out.getvalue()


def upd(v, **fields):
    """A parsed record with some fields changed (for ``rewrite`` edits)."""
    for k, x in fields.items():
        v[k] = x
    return v


def loss_fields(report) -> set[tuple[str, str]]:
    return {(lo.record, lo.field) for lo in report.losses}


# -- paths -------------------------------------------------------------------------------------


def test_paths_walk_adjacent_steps():
    assert [s.OLD for s in STEPS] == list(V[:-1])
    for a in V:
        for b in V:
            p = path(a, b)
            assert len(p) == abs(V.index(a) - V.index(b))
            names = describe_path(a, b)
            if p:
                assert names[0].startswith(a + "->") and names[-1].endswith("->" + b)
                for x, y in zip(names, names[1:]):
                    assert x.split("->")[1] == y.split("->")[0]
    assert describe_path("v20", "v21") == []


# -- every pair, both archs: the tree image -----------------------------------------------------

PAIRS = [(arch, a, b) for arch in formats.ARCHES for a in V for b in V if a != b]


@pytest.mark.parametrize("arch,a,b", PAIRS, ids=[f"{x}-{a}-{b}" for x, a, b in PAIRS])
def test_tree_image_pair(arch, a, b):
    spec = common_spec(a)
    src = canonical(spec, a, arch)
    if older(a, "v19"):
        assert src == compose_bytes(spec, a, arch)      # the composer agrees below v19
    out, rep = conv(src, b)
    r = ImageReader(io.BytesIO(out))
    assert (r.version, r.arch) == (b, arch)
    assert r.header.rev == formats.abi(b).rev
    assert r.header.arch_id == formats.abi(b, arch).arch_id
    assert (r.header.major, r.header.minor, r.header.patch) == formats.abi(b).kernel
    assert rep.path == describe_path(a, b)

    if b == "v17" and a != "v17":
        # The tree holds a FIFO and signal state (v18+): lost going to v17.
        assert loss_fields(rep) == {("FILE", "f_type"), ("FILE_NAME", "path"),
                                    ("SIGPENDING", "siginfo"), ("SIGPENDING", "signal"),
                                    ("SIGNAL_TASK", "blocked")}
        assert all(lo.pid == 102 and lo.offset is not None for lo in rep.losses)
        with pytest.raises(LossRefused):
            conv(src, b, allow_loss=False)
        s_src, s_out = summary(src, signals=False), summary(out, signals=False)
        for t in s_src["tasks"]:
            if "fds" in t:
                t["fds"] = [(fd, ce, "pipe" if k == "fifo" else k, None if k == "fifo" else p,
                             fl, pos, c) for fd, ce, k, p, fl, pos, c in t["fds"]]
        assert s_out == s_src
        # what is left converts back without further loss, and down again identically
        back, rep2 = conv(out, a)
        assert rep2.lossless and conv(back, b, allow_loss=False)[0] == out
        return

    assert rep.lossless, [str(lo) for lo in rep.losses]
    assert summary(out) == summary(src)
    back, rep2 = conv(out, a)
    assert rep2.lossless
    assert back == src                                  # A -> B -> A byte for byte
    # every path gives the same image: here, A -> B and (oldest ->) B
    assert out == canonical(spec, b, arch)


SAMPLES = sorted((ROOT / "samples").glob("*/*.img"))


def core(s: dict) -> dict:
    """What survives any conversion: tasks, registers, memory and pages."""
    return {"arch": s["arch"], "tasks": [{k: t.get(k) for k in ("ids", "comm", "zombie",
                                                                 "regs", "mm")}
                                         for t in s["tasks"]]}


@pytest.mark.skipif(not SAMPLES, reason="no samples")
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_engine_samples_every_version(sample):
    """Images the engine wrote: lossless conversions come back byte for byte; lossy ones
    keep tasks, registers and memory, and what they give converts up and down again
    identically (down(up(x)) == x)."""
    data = sample.read_bytes()
    home = ImageReader(io.BytesIO(data)).version
    base = summary(data)
    for v in V:
        out, rep = conv(data, v)
        assert ImageReader(io.BytesIO(out)).version == v
        back, rep2 = conv(out, home)
        assert rep2.lossless
        if rep.lossless:
            assert back == data and summary(out) == base
        else:
            assert core(summary(out)) == core(base)
            assert conv(back, v, allow_loss=False)[0] == out


def test_on_loss_and_progress_callbacks():
    src = canonical(tree_spec("v23"), "v23")
    seen, done = [], []
    with pytest.raises(LossRefused) as e:
        convert(ImageReader(io.BytesIO(src)), io.BytesIO(), "v17", on_loss=seen.append,
                progress=done.append)
    assert seen == e.value.report.losses and len(seen) == 5
    assert sum(done) == len(src) == e.value.report.bytes_in


def test_same_version_is_a_copy(any_image):
    v, a, data = any_image
    out, rep = conv(data, v)
    assert out == data and rep.path == [] and rep.lossless


def test_upgrade_notes_assumed_values():
    src = compose_bytes(common_spec("v17"), "v17", "i386")
    _, rep = conv(src, "v23")
    noted = {(n.record, n.field) for n in rep.notes}
    assert {("SIGNAL", "signal"), ("SIGNAL_TASK", "blocked"), ("FS", "fs"), ("FS", "umask"),
            ("TASK", "sas_ss_sp"), ("TASK", "flags"), ("THREAD", "sysenter_return"),
            ("CRED", "sec_ref")} <= noted
    assert rep.lossless


# -- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", formats.ARCHES)
def test_header_constants_and_auxv(arch):
    spec = common_spec("v17")
    spec.mms["mm"].auxv = [(6, 4096), (25, 0xbfff0000), (0, 0)]
    src = compose_bytes(spec, "v19-rc2", arch)
    out, rep = conv(src, "v19")
    old, new = ImageReader(io.BytesIO(src)), ImageReader(io.BytesIO(out))
    word = 4 if arch == "i386" else 8
    n = old.header.constants.mm_saved_auxv_len
    assert n % word == 0 and new.header.constants.at_vector_size == n // word
    assert old.header.arch_id == (1 if arch == "i386" else 5)
    assert new.header.arch_id == (1 if arch == "i386" else 2)
    assert read_model(out).objects and summary(out)["tasks"][0]["mm"]["auxv"] == \
        [(6, 4096), (25, 0xbfff0000), (0, 0)]
    assert out == canonical(spec, "v19", arch) and conv(out, "v19-rc2")[0] == src


def test_kernel_version_other_than_default_is_noted():
    src = rewrite(compose_bytes(common_spec("v21"), "v21"),
                  lambda n, v, w: upd(v, patch=99) if n == "header" else v)
    out, rep = conv(src, "v23")
    assert ImageReader(io.BytesIO(out)).kernel == formats.abi("v23").kernel
    assert [n.field for n in rep.notes if n.record == "HEADER"] == ["kernel"]


# -- losses --------------------------------------------------------------------------------------


def test_sigaltstack_is_lost_going_to_v19_and_refused_by_default():
    spec = tree_spec("v23")
    spec.tasks[0].sas = (0x7f0000001000, 8192)
    src = canonical(spec, "v23")
    with pytest.raises(LossRefused) as e:
        conv(src, "v19", allow_loss=False)
    rep = e.value.report
    assert rep.refused and rep.loss_count == 2
    assert {(lo.record, lo.field, lo.value, lo.pid) for lo in rep.losses} == {
        ("TASK", "sas_ss_sp", 0x7f0000001000, 100), ("TASK", "sas_ss_size", 8192, 100)}
    assert {lo.step for lo in rep.losses} == {"v23-rc1->v21"}
    out, rep = conv(src, "v19")
    assert rep.loss_count == 2 and summary(out) == summary(src)
    # up again: the stack is gone, the rest comes back identical
    back, rep2 = conv(out, "v23")
    assert rep2.lossless and back == pids_in_engine_order(compose_bytes(tree_spec("v23"), "v23"))


def test_hugetlb_shift_and_task_flags_are_lost_below_v23():
    def edit(name, v, w):
        if name == "vma" and v.vm_start == 0x600000:
            v.hugetlb_shift = 21
        if name == "task" and v.exit_state == 0:
            v.flags = 1
        return v
    src = rewrite(compose_bytes(tree_spec("v23"), "v23"), edit)
    with pytest.raises(LossRefused):
        conv(src, "v23-rc1", allow_loss=False)
    _, rep = conv(src, "v23-rc1")
    assert loss_fields(rep) == {("VMA", "hugetlb_shift"), ("TASK", "flags")}
    assert {lo.pid for lo in rep.losses} == {100, 101, 102}


def test_fs_umask_and_cwd_are_lost_going_down():
    after_fs = [0]

    def edit(name, v, w):
        if name == "fs":
            after_fs[0] = 1
            return upd(v, umask=0o77)
        if name == "file_name" and after_fs[0]:
            after_fs[0] = 0
            return b"/srv\0"                            # the cwd
        return v
    src = rewrite(canonical(tree_spec("v23"), "v23"), edit)
    _, rep = conv(src, "v19-rc2")
    got = {(lo.record, lo.field, lo.value, lo.pid) for lo in rep.losses}
    assert got == {("FS", "umask", 0o77, 100), ("FS", "cwd", "/srv", 100),
                   ("FS", "umask", 0o77, 102), ("FS", "cwd", "/srv", 102)}
    _, rep = conv(src, "v19")
    assert {(lo.record, lo.field) for lo in rep.losses} == {("FS", "umask")}


def test_fs_shared_between_thread_groups_is_lost():
    """v19-rc2 cannot tell which tasks share an fs_struct: an upgrade gives one to each
    thread group, so any other sharing is a loss going down."""
    src = canonical(tree_spec("v19"), "v19")
    refs = {}

    def edit(name, v, w):
        if name == "task_objs":
            refs.setdefault("first", v.fs_objref)
            return upd(v, fs_objref=refs["first"])     # the child uses the parent's
        return v
    shared = rewrite(src, edit)
    _, rep = conv(shared, "v19-rc2")
    assert [(lo.record, lo.field, lo.pid) for lo in rep.losses] == [
        ("TASK_OBJS", "fs_objref", 102)]


def test_composer_conventions():
    """Where the composer lays an image out otherwise than the engine (one fs_struct
    for all processes, sorted pid objects), converting renumbers the pids (a note) and
    going below v19 loses the sharing; nothing else differs."""
    spec = tree_spec("v23")
    data = compose_bytes(spec, "v23")
    out, rep = conv(data, "v23-rc1", allow_loss=False)
    up = conv(out, "v23")[0]
    assert summary(up) == summary(data)
    assert conv(up, "v23-rc1", allow_loss=False)[0] == out      # now in engine order
    if up != data:
        assert [(n.record, n.field) for n in rep.notes] == [("PIDS", "offset")]
    _, rep = conv(compose_bytes(spec, "v19"), "v19-rc2")
    assert {(lo.record, lo.field, lo.pid) for lo in rep.losses} <= {
        ("TASK_OBJS", "fs_objref", 102)}


def test_nested_pid_depth_is_lost_below_v21():
    """v21 with one task in a nested pid namespace: depth + vpids buffer."""
    src = compose_bytes(tree_spec("v21"), "v21")
    r = ImageReader(io.BytesIO(src))
    out = io.BytesIO()
    w = ImageWriter(out, r.abi)
    st = r.abi.struct("ckpt_pids")
    state = None
    for rec in r.records():
        name = r.name_of(rec)
        if name == "tree":
            state = "rows"
        elif name == "buffer" and state == "rows":
            data = bytearray(rec.data())
            row = st.parse(data[48:72])
            row.depth = 2
            data[48:72] = st.build(row)
            w.raw(rec.type, bytes(data))
            w.raw(rec.type, struct.pack("<2i", 1, 7))          # vpids of task 102
            state = None
            continue
        w.begin(rec.type, rec.size)
        rec.copy_to(w.write)
    nested = out.getvalue()
    assert read_model(nested).tasks[2].depth == 2
    # up to v23: the pid entry of 102 carries its nested numbers; back again identical
    up, rep = conv(nested, "v23")
    assert rep.lossless
    assert read_model(up).tasks[2].depth == 2
    assert conv(up, "v21")[0] == nested
    # down to v19: lost
    with pytest.raises(LossRefused):
        conv(nested, "v19", allow_loss=False)
    down, rep = conv(nested, "v19")
    assert loss_fields(rep) == {("BUFFER", "pids[2].depth"), ("BUFFER", "vpids")}
    assert [lo.value for lo in rep.losses if lo.field == "vpids"] == [[1, 7]]
    assert summary(down) == summary(nested)


def test_sec_ref_is_lost_below_v19_rc2():
    def edit(name, v, w):
        if name == "cred":
            v.sec_ref = 42
        if name == "file" and v.f_type == 1:
            v.f_secref = 43
        return v
    src = rewrite(compose_bytes(tree_spec("v19-rc2"), "v19-rc2"), edit)
    _, rep = conv(src, "v19-rc1")
    assert ("CRED", "sec_ref") in loss_fields(rep) and ("FILE", "f_secref") in loss_fields(rep)
    assert {lo.value for lo in rep.losses} == {42, 43}


def test_debug_registers_going_up_are_no_loss_and_down_fill_zero():
    src = compose_bytes(tree_spec("v19-rc2"), "v19-rc2")
    dbg = rewrite(src, lambda n, v, w: upd(v, debugreg7=0x401, debugreg0=0x1000)
                  if n == "cpu" else v)
    up, rep = conv(dbg, "v19", allow_loss=False)
    assert rep.lossless and {n.field for n in rep.notes} == {"debugreg0", "debugreg7", "fs"}
    down, rep = conv(up, "v19-rc2", allow_loss=False)
    assert down == src                                  # debugregs back as 0
    assert all(t.regs is None or t.regs["debugreg7"] == 0 for t in read_model(down).tasks)


def test_siginfo_48_to_88_and_back():
    src = compose_bytes(tree_spec("v21"), "v21")
    up, rep = conv(src, "v23-rc1", allow_loss=False)
    m = read_model(up)
    assert [p["csi_signo"] for p in m.tasks[2].pending] == [12]
    assert set(m.tasks[2].pending[0]) >= {"csi_fd", "csi_addr", "csi_int", "csi_ptr"}
    assert conv(up, "v21")[0] == src
    lossy = rewrite(up, lambda n, v, w: upd(v, siginfo=[upd(x, csi_addr=0xdead)
                                                        for x in v.siginfo])
                    if n == "sigpending" else v)
    _, rep = conv(lossy, "v21")
    assert [(lo.field, lo.value) for lo in rep.losses] == [("siginfo[0].csi_addr", 0xdead)]


def test_thread_sysenter_return_and_net_ns_are_lost():
    src = compose_bytes(tree_spec("v23-rc1"), "v23-rc1")
    edited = rewrite(src, lambda n, v, w: upd(v, sysenter_return=0xffffe410)
                     if n == "thread" else upd(v, net_objref=99) if n == "ns" else v)
    _, rep = conv(edited, "v19")
    assert loss_fields(rep) == {("THREAD", "sysenter_return"), ("NS", "net_objref")}


def test_records_the_target_lacks_are_lost_and_unknown_types_too():
    src = compose_bytes(tree_spec("v23"), "v23")

    def edit(name, v, w):
        if name == "tail":
            w.raw("hpage", b"\0" * 16)
            w.raw(4242, b"opaque")
        return v
    edited = rewrite(src, edit)
    out, rep = conv(edited, "v23-rc1")
    assert {(lo.record, lo.field, lo.value) for lo in rep.losses} == {
        ("HPAGE", "record", "HPAGE"), ("TYPE_4242", "record", "TYPE_4242")}
    assert summary(out) == summary(src)


def test_pid_objects_shift_every_objref():
    """v23 numbers pid objects first: every other objref moves by nr_pids, consistently."""
    src = compose_bytes(tree_spec("v21"), "v21")
    up, _ = conv(src, "v23")
    m_old, m_new = read_model(src), read_model(up)
    r = ImageReader(io.BytesIO(up))
    pids = next(r.parse(x) for x in r.records() if r.name_of(x) == "pids")
    assert pids.offset == 1 and pids.nr_pids == 5            # 1, 100, 101, 102, 103
    shift = pids.nr_pids
    assert sorted(m_new.objects) == sorted(k + shift for k in m_old.objects)
    for t_old, t_new in zip(m_old.tasks, m_new.tasks):
        assert {k: (v + shift if v else 0) for k, v in t_old.objs.items()
                if k in t_new.objs} == {k: v for k, v in t_new.objs.items() if k in t_old.objs}
        for kind in ("files", "mm", "sighand"):
            assert (m_new.get(t_new.obj(kind)) is None) == (m_old.get(t_old.obj(kind)) is None)


def test_pids_numbering_other_than_offset_1_is_noted_and_renumbered():
    """A v23 image whose pid objects start at objref 50 (others below)."""
    src = compose_bytes(tree_spec("v23-rc1"), "v23-rc1")
    up, _ = conv(src, "v23")
    # move the pid objects to 100..104 and the other objects down to 1..
    N, AT = 5, 100

    def move(ref):
        return ref - N if ref > N else (ref - 1 + AT if ref > 0 else ref)

    def edit(name, v, w):
        from converters._base import REF_FIELDS, get_path, set_path
        if name == "pids":
            v.offset = AT
        elif name == "objref":
            v.objref = move(v.objref)
        for p in REF_FIELDS.get(name, ()):
            x = get_path(v, p)
            if x is not None:
                set_path(v, p, move(x))
        return v
    odd = rewrite(up, edit)
    # the tags in the task pids buffer must follow
    r = ImageReader(io.BytesIO(odd))
    out = io.BytesIO()
    w = ImageWriter(out, r.abi)
    seen_tree = False
    for rec in r.records():
        name = r.name_of(rec)
        if name == "buffer" and seen_tree:
            st = r.abi.struct("ckpt_task_pids")
            rows = [st.parse(rec.data()[i:i + 24]) for i in range(0, rec.size, 24)]
            for row in rows:
                for f in ("vpid", "vppid", "vtgid", "vpgid", "vsid"):
                    if row[f] > 0:
                        row[f] += AT - 1
            w.raw(rec.type, b"".join(st.build(x) for x in rows))
            seen_tree = False
            continue
        seen_tree = name == "tree"
        w.begin(rec.type, rec.size)
        rec.copy_to(w.write)
    odd = out.getvalue()
    assert summary(odd) == summary(up)
    down, rep = conv(odd, "v23-rc1")
    assert rep.lossless and [n.field for n in rep.notes] == ["offset"]
    assert summary(down) == summary(src)
    assert conv(down, "v23")[0] == up


def test_opaque_records_pass_renumbered():
    """SOCKET_UNIX is 704 in v19-rc1 and 705 in v19-rc2 (SOCKET_FRAG was inserted)."""
    src = rewrite(compose_bytes(tree_spec("v19-rc1"), "v19-rc1"),
                  lambda n, v, w: (w.raw("socket_unix", b"unix-socket-bytes") or v)
                  if n == "tail" else v)
    out, rep = conv(src, "v19-rc2", allow_loss=False)
    r = ImageReader(io.BytesIO(out))
    got = [(x.type, x.data()) for x in r.records() if r.name_of(x) == "socket_unix"]
    assert got == [(705, b"unix-socket-bytes")]
    assert conv(out, "v19-rc1")[0] == src


def test_big_pipe_data_streams_between_framings():
    """v17's unframed pipe bytes <-> v18's PIPE_BUF, larger than a record read whole."""
    spec = common_spec("v17")
    spec.pipes["p1"] = os.urandom(300_000)
    v17 = compose_bytes(spec, "v17")
    r = ImageReader(io.BytesIO(v17))
    assert any(x.streamed for x in r.records() if r.name_of(x) == "pipe_data")
    up, rep = conv(v17, "v23", allow_loss=False)
    assert up == canonical(spec, "v23") and summary(up) == summary(v17)
    assert conv(up, "v17", allow_loss=False)[0] == v17


def test_moved_section_of_a_file_input_is_read_back_not_copied(tmp_path):
    """From a regular file the spooled page buffers are references into the input."""
    spec = _big_spec(6)
    path = tmp_path / "v19-rc2.img"
    path.write_bytes(compose_bytes(spec, "v19-rc2"))
    with open(path, "rb") as f:
        out = io.BytesIO()
        rep = convert(ImageReader(f), out, "v19", allow_loss=False)
    assert out.getvalue() == canonical(spec, "v19") and rep.bytes_in == path.stat().st_size


def test_tty_termios_widens_and_narrows_back():
    """a272e68's termios (u32 flags, speeds, NCCS c_cc) from v21's, and back unchanged."""
    spec = tree_spec("v21")
    src = compose_bytes(spec, "v21")

    def edit(name, v, w):
        if name == "tail":
            w.rec("tty", driver_type=4, driver_subtype=1, link_objref=0, file_objref=0,
                  index=0, ldisc=0, flags=0,
                  termios=dict(c_iflag=0x500, c_oflag=5, c_cflag=0o10002, c_lflag=0x8a3b,
                               c_line=0, c_cc=bytes(range(1, 9))),
                  winsize=dict(ws_row=24, ws_col=80, ws_xpixel=0, ws_ypixel=0))
        return v
    old = rewrite(src, edit)
    up, rep = conv(old, "v23-rc1", allow_loss=False)
    tty = [r for r in ImageReader(io.BytesIO(up)).records() if r.type == 306][0]
    t = formats.abi("v23-rc1").parse("tty", tty.data()).termios
    assert (t.c_cflag, t.c_ispeed, t.c_ospeed) == (0o10002, 115200, 115200)
    assert t.c_cc == bytes(range(1, 9)) + bytes(11)
    assert conv(up, "v21", allow_loss=False)[0] == old


# -- records seen one at a time -------------------------------------------------------------


def _step(cls, up, arch="x86_64"):
    return cls(Context(), up, arch)


def _rec(abi, name, **fields):
    return Rec(name, abi.build(name, fields), None, 0, None)


def test_msg_msg_m_type_widens_and_narrows():
    from converters.v19_rc2_v19 import Step
    old, new = formats.abi("v19-rc2"), formats.abi("v19")
    up = _step(Step, True)
    out = list(up.each([_rec(old, "ipc_msg_msg", m_type=-5, m_ts=10, sec_ref=0)]))
    assert new.parse("ipc_msg_msg", out[0].payload).m_type == -5
    down = _step(Step, False)
    out = list(down.each([_rec(new, "ipc_msg_msg", m_type=1 << 40, m_ts=10, sec_ref=0)]))
    assert len(out[0].payload) == old.sizeof("ipc_msg_msg")
    assert [(lo.field, lo.value) for lo in down.ctx.losses] == [("m_type", 1 << 40)]


def test_ipc_perms_gain_sec_ref():
    from converters.v19_rc1_v19_rc2 import Step
    old, new = formats.abi("v19-rc1"), formats.abi("v19-rc2")
    perms = dict(h=bytes(8), id=1, key=2, uid=3, gid=4, cuid=5, cgid=6, mode=0o600, seq=7)
    rec = _rec(old, "ipc_sem", perms=perms, sem_otime=1, sem_ctime=2, sem_nsems=3)
    up = _step(Step, True)
    (out,) = up.each([rec])
    v = new.parse("ipc_sem", out.payload)
    assert v.perms.sec_ref == 0 and v.perms.mode == 0o600 and v.sem_nsems == 3
    v.perms.sec_ref = 9
    down = _step(Step, False)
    (back,) = down.each([Rec("ipc_sem", new.build("ipc_sem", v))])
    assert back.payload == rec.payload
    assert [(lo.field, lo.value) for lo in down.ctx.losses] == [("perms.sec_ref", 9)]


def test_spool_keeps_order_and_moves_big_sections_to_a_file():
    sp = Spool(budget=1 << 16)
    big = os.urandom(300_000)
    recs = [Rec("buffer", bytes([i]) * 1000) for i in range(100)]
    recs.insert(50, Rec("buffer", big))
    for r in recs:
        sp.add(r)
    assert sp.f is not None and len(sp.mem) < 100
    streamed = 0
    got = []
    for r in sp.replay():           # (a replayed body is read before the next record)
        streamed += r.payload is None
        got.append(r.data())
    assert got == [r.data() for r in recs] and streamed == 1


# -- streaming -----------------------------------------------------------------------------------


def _big_spec(mib: int) -> ImageSpec:
    base = 0x10000000
    n = mib * 256
    pages = {base + i * 4096: bytes([i % 251]) * (64 + i % 4000) for i in range(n)}
    spec = common_spec("v17")
    spec.mms["mm"].vmas.append(VmaSpec(base, base + n * 4096, pages=pages))
    return spec


def test_stream_through_a_pipe_spools_the_moved_section():
    """v17 -> v23 reads from a pipe and moves 9 MiB of pages past the CPU records."""
    spec = _big_spec(9)
    src = compose_bytes(spec, "v17")
    want = conv(src, "v23")[0]
    with real_pipe(src) as f:
        reader = ImageReader(f, "<pipe>")
        assert not reader.src.seekable
        out = io.BytesIO()
        rep = convert(reader, out, "v23")
    assert rep.lossless and rep.bytes_in == len(src)
    assert out.getvalue() == want and want == canonical(spec, "v23")


APP = ("import typer, sys; from imgtools.cli.convert import register; "
       "app = typer.Typer(); register(app); app.callback()(lambda: None); app()")


def _cli(*args, input=None, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", APP, *args], input=input, capture_output=True,
                          env=env, cwd=ROOT, **kw)


def test_cli_streams_stdin_to_stdout():
    spec = _big_spec(3)
    src = canonical(spec, "v23")
    p = _cli("convert", "-", "--to", "v17", input=src)
    assert p.returncode == 0, p.stderr
    assert p.stdout == compose_bytes(spec, "v17")
    assert b"v23 -> v17" in p.stderr


def test_cli_refuses_to_write_to_a_terminal(tmp_path):
    img = tmp_path / "a.img"
    img.write_bytes(canonical(tree_spec("v23"), "v23"))
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-c", APP, "convert", str(img), "--to", "v21"],
                           stdout=slave, stderr=subprocess.PIPE, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2 and b"terminal" in p.stderr


# -- CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli():
    app = typer.Typer()
    from imgtools.cli.convert import register
    register(app)
    app.callback()(lambda: None)
    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(app, list(args), **kw)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cli_convert_to_file_atomically(cli, tmp_path):
    img = tmp_path / "a.img"
    img.write_bytes(canonical(tree_spec("v23"), "v23"))
    res = cli("convert", str(img), "--to", "v19", "-o", str(tmp_path / "b.img"))
    assert res.exit_code == 0, res.output
    assert ImageReader(io.BytesIO((tmp_path / "b.img").read_bytes())).version == "v19"
    assert _files(tmp_path) == ["a.img", "b.img"]
    assert (tmp_path / "b.img").stat().st_mode & 0o777 == 0o600     # holds process memory


def test_cli_refused_loss_writes_nothing(cli, tmp_path):
    img = tmp_path / "a.img"
    img.write_bytes(canonical(tree_spec("v23"), "v23"))
    (tmp_path / "old.img").write_bytes(b"keep me")
    res = cli("convert", str(img), "--to", "v17", "-o", str(tmp_path / "old.img"))
    assert res.exit_code == 3
    assert "refusing" in res.output and "SIGNAL_TASK" in res.output
    assert (tmp_path / "old.img").read_bytes() == b"keep me"
    assert _files(tmp_path) == ["a.img", "old.img"]
    res = cli("convert", str(img), "--to", "v17")                 # stdout: nothing either
    assert res.exit_code == 3 and not res.stdout_bytes


def test_cli_allow_loss_lists_losses(cli, tmp_path):
    img = tmp_path / "a.img"
    img.write_bytes(canonical(tree_spec("v23"), "v23"))
    res = cli("convert", str(img), "--to", "v17", "--allow-loss", "-o", str(tmp_path / "b.img"))
    assert res.exit_code == 0
    assert res.output.count("loss:") == 5 and "pid 102" in res.output
    assert ImageReader(io.BytesIO((tmp_path / "b.img").read_bytes())).version == "v17"


def test_cli_json_report(cli, tmp_path):
    import json
    img = tmp_path / "a.img"
    img.write_bytes(canonical(tree_spec("v23"), "v23"))
    res = cli("convert", str(img), "--to", "v17", "--json", "-o", str(tmp_path / "b.img"))
    assert res.exit_code == 3
    doc = json.loads(res.stdout)
    assert doc["refused"] and doc["loss_count"] == 5 and doc["path"][0] == "v23->v23-rc1"
    assert {lo["field"] for lo in doc["losses"]} == {"f_type", "path", "siginfo", "signal",
                                                      "blocked"}
    res = cli("convert", str(img), "--to", "v21", "--json", "-o", str(tmp_path / "c.img"))
    assert res.exit_code == 0 and json.loads(res.stdout)["loss_count"] == 0


def test_cli_upgrade_and_downgrade_check_direction(cli, tmp_path):
    img = tmp_path / "a.img"
    img.write_bytes(compose_bytes(tree_spec("v19"), "v19"))
    assert cli("upgrade", str(img), "--to", "v18", "-o", str(tmp_path / "x")).exit_code == 2
    assert cli("downgrade", str(img), "--to", "v21", "-o", str(tmp_path / "x")).exit_code == 2
    assert not (tmp_path / "x").exists()
    res = cli("upgrade", str(img), "-o", str(tmp_path / "up.img"))
    assert res.exit_code == 0
    assert ImageReader(io.BytesIO((tmp_path / "up.img").read_bytes())).version == "v23"
    res = cli("downgrade", str(tmp_path / "up.img"), "--to", "v20", "-o", str(tmp_path / "d.img"))
    assert res.exit_code == 0
    assert ImageReader(io.BytesIO((tmp_path / "d.img").read_bytes())).version == "v21"


def test_cli_usage_and_invalid_images(cli, tmp_path):
    img = tmp_path / "a.img"
    data = canonical(tree_spec("v23"), "v23")
    img.write_bytes(data[:5000])
    assert cli("convert", str(img), "--to", "v99").exit_code == 2
    assert cli("convert", str(tmp_path / "none"), "--to", "v21").exit_code == 2
    res = cli("convert", str(img), "--to", "v21", "-o", str(tmp_path / "b.img"))
    assert res.exit_code == 3 and "invalid image" in res.output
    assert _files(tmp_path) == ["a.img"]
    img.write_bytes(data)
    res = cli("convert", str(img), "--to", "v21", "--format", "v21", "-o",
              str(tmp_path / "b.img"))
    assert res.exit_code == 3 and _files(tmp_path) == ["a.img"]


def test_incomplete_pids_section_is_refused(tmp_path):
    """A v21 tree that announces nested pids but carries no vpids buffer: exit 3, no output."""
    import struct as _struct
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    data = bytearray((root / "samples" / "v21" / "single.img").read_bytes())
    pos = 0
    while True:
        rtype, length = _struct.unpack_from("<II", data, pos)
        if rtype == 101 and length == 16:           # TREE; the pids BUFFER follows
            _struct.pack_into("<i", data, pos + length + 8 + 20, 2)    # depth of task 0
            break
        pos += length
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.img"
    r = subprocess.run([sys.executable, "-m", "imgtools", "convert", str(bad), "--to", "v23",
                        "-o", str(out)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 3 and "pids section" in r.stderr
    assert not out.exists()
