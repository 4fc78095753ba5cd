"""ELF cores from composed images, read back with pyelftools.

The emitter works from the version-independent model, so the same process composed
in any ABI version gives the same core, byte for byte."""
from __future__ import annotations

import io
import os
import stat
import struct
import sys

import pytest
import typer
from elftools.elf.elffile import ELFFile
from typer.testing import CliRunner

import formats
from conftest import tree_spec
from imgtools.build import build_model
from imgtools.cli import core as core_cli
from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.core import UnsupportedImage, notes as N, plan_core, write_core
from imgtools.core.elf import PN_XNUM, held_runs
from imgtools.errors import UsageError
from imgtools.model import Image, Mm, Obj, PageBatch, Task, Vma
from imgtools.reader import open_image

PAGE = 4096
X86_64 = [v for v in formats.VERSIONS]
XCR0_AMD = 0xE7
VM_RW = 0x73            # read, write, mayread, maywrite, mayexec
VM_RX = 0x75


# -- helpers ----------------------------------------------------------------------------
def image_file(tmp_path, spec: ImageSpec, version: str = "v23", name: str = "img") -> str:
    path = tmp_path / f"{name}.{version}.img"
    path.write_bytes(compose_bytes(spec, version))
    return str(path)


def make_core(image: str, pid=None, layout="gdb", out=None):
    """(core bytes, plan) for one process of an image file."""
    with open_image(image) as r:
        img = build_model(r)
    with open(image, "rb") as src:
        plan = plan_core(img, lambda o, n: os.pread(src.fileno(), n, o), pid, layout)
        out = out or image + f".{pid}.{layout}.core"
        with open(out, "wb") as f:
            n = write_core(plan, src, f)
    data = open(out, "rb").read()
    assert n == len(data) == plan.size
    return data, plan


def notes_of(core: bytes):
    elf = ELFFile(io.BytesIO(core))
    seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE")
    out = []
    for n in seg.iter_notes():
        desc = core[n["n_offset"] + 12 + ((n["n_namesz"] + 3) & ~3):][:n["n_descsz"]]
        out.append((n["n_type"], n["n_name"], n["n_descsz"], desc, n))
    return out


def loads(core: bytes):
    elf = ELFFile(io.BytesIO(core))
    return [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]


def prstatus(desc: bytes) -> dict:
    v = N.PRSTATUS.unpack(desc)
    regs = dict(zip(("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
                     "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
                     "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"), v[18:45]))
    return {"signo": v[0], "cursig": v[3], "sigpend": v[4], "sighold": v[5], "pid": v[6],
            "ppid": v[7], "pgrp": v[8], "sid": v[9], "regs": regs, "fpvalid": v[45]}


# -- the tree image, every version --------------------------------------------------------
@pytest.fixture(scope="module")
def tree_cores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cores")
    out = {}
    for v in X86_64:
        path = image_file(tmp, tree_spec(v), v)
        out[v] = make_core(path)
    return out


def test_header_and_note_layout(tree_cores):
    core, plan = tree_cores["v23"]
    elf = ELFFile(io.BytesIO(core))
    h = elf.header
    assert (h["e_type"], h["e_machine"], h["e_ident"]["EI_CLASS"]) == \
        ("ET_CORE", "EM_X86_64", "ELFCLASS64")
    assert (h["e_phoff"], h["e_phentsize"], h["e_shnum"], h["e_entry"]) == (64, 56, 0, 0)
    segs = list(elf.iter_segments())
    assert segs[0]["p_type"] == "PT_NOTE" and segs[0]["p_align"] == 4
    assert segs[0]["p_offset"] == 64 + 56 * len(segs)
    kinds = [(t, name, size) for t, name, size, _, _ in notes_of(core)]
    assert kinds == [
        ("NT_PRSTATUS", "CORE", 336), ("NT_PRPSINFO", "CORE", 136), ("NT_SIGINFO", "CORE", 128),
        ("NT_AUXV", "CORE", 32), ("NT_FILE", "CORE", kinds[4][2]),
        ("NT_FPREGSET", "CORE", 512), (N.NT_X86_XSTATE, "LINUX", 832),
        ("NT_PRSTATUS", "CORE", 336), ("NT_FPREGSET", "CORE", 512),
        (N.NT_X86_XSTATE, "LINUX", 832), (N.NT_X86_XSAVE_LAYOUT, "LINUX", 16)]
    # 4-byte aligned notes: each starts where the previous one's padded desc ends
    ns = notes_of(core)
    for (_, _, _, _, a), (_, _, _, _, b) in zip(ns, ns[1:]):
        assert b["n_offset"] == a["n_offset"] + 12 + ((a["n_namesz"] + 3) & ~3) + \
            ((a["n_descsz"] + 3) & ~3)
    assert plan.tids == [100, 101]


def test_prstatus_registers_and_ids(tree_cores):
    core, _ = tree_cores["v23"]
    ps = [prstatus(d) for t, _, _, d, _ in notes_of(core) if t == "NT_PRSTATUS"]
    assert [(p["pid"], p["ppid"], p["pgrp"], p["sid"]) for p in ps] == \
        [(100, 1, 100, 100), (101, 1, 100, 100)]         # a thread: its leader's parent
    r = ps[0]["regs"]
    assert (r["rip"], r["rsp"], r["rax"], r["eflags"]) == (0x401000, 0x7FFC0000, 7, 0x246)
    assert (r["cs"], r["ss"], r["ds"], r["es"], r["fs"], r["gs"]) == (0x33, 0x2B, 0, 0, 0, 0)
    assert ps[1]["regs"]["rip"] == 0x401100
    assert all(p["fpvalid"] == 1 and p["cursig"] == 0 for p in ps)


def test_prpsinfo_siginfo_auxv(tree_cores):
    core, _ = tree_cores["v23"]
    ns = {t: d for t, _, _, d, _ in notes_of(core)}
    st, sname, zomb, nice, flag, uid, gid, pid, ppid, pgrp, sid, fname, args = \
        N.PRPSINFO.unpack(ns["NT_PRPSINFO"])
    assert (pid, ppid, pgrp, sid, uid, gid) == (100, 1, 100, 100, 0, 0)
    assert (st, sname, zomb) == (1, b"S", 0)          # TASK_INTERRUPTIBLE
    assert fname.rstrip(b"\0") == b"parent" and args.rstrip(b"\0") == b"parent"
    signo, errno_, code = struct.unpack_from("<3i", ns["NT_SIGINFO"])
    assert (signo, code) == (N.SIGSTOP, N.SI_USER)
    assert struct.unpack("<4Q", ns["NT_AUXV"]) == (6, 4096, 0, 0)


def test_nt_file_entries(tree_cores):
    core, _ = tree_cores["v23"]
    f = next(n for t, _, _, _, n in notes_of(core) if t == "NT_FILE")["n_desc"]
    assert (f["num_map_entries"], f["page_size"]) == (1, 4096)
    e = f["Elf_Nt_File_Entry"][0]
    assert (e["vm_start"], e["vm_end"], e["page_offset"]) == (0x400000, 0x402000, 0)
    assert f["filename"] == [b"/usr/bin/prog"]


def test_load_segments_and_page_bytes(tree_cores):
    core, plan = tree_cores["v23"]
    segs = loads(core)
    spec = tree_spec("v23")
    vmas = spec.mms["mm"].vmas
    assert [(s["p_vaddr"], s["p_memsz"]) for s in segs] == [(v.start, v.end - v.start)
                                                             for v in vmas]
    assert [s["p_flags"] for s in segs] == [5, 6, 6]               # R+X, R+W, R+W
    assert all(s["p_align"] == PAGE and s["p_offset"] % PAGE == 0 for s in segs)
    # the file-backed text holds no page: nothing written, gdb reads it from the file
    assert segs[0]["p_filesz"] == 0
    # anonymous: whole VMA, pages where the image has them, zeros elsewhere
    off = segs[0]["p_offset"]
    assert segs[1]["p_offset"] == off and segs[1]["p_filesz"] == segs[1]["p_memsz"]
    assert segs[2]["p_offset"] == off + segs[1]["p_filesz"]
    for seg, v in zip(segs[1:], vmas[1:]):
        for a in range(v.start, v.end, PAGE):
            got = core[seg["p_offset"] + a - v.start:][:PAGE]
            want = v.pages.get(a, b"").ljust(PAGE, b"\0")
            assert got == want, hex(a)
    assert segs[-1]["p_offset"] + segs[-1]["p_filesz"] == len(core) == plan.size


@pytest.mark.parametrize("version", [v for v in X86_64 if v != "v23"])
def test_same_core_from_every_version(tree_cores, version):
    """The model hides the version: same process, same core bytes."""
    assert tree_cores[version][0] == tree_cores["v23"][0]


def test_child_process_and_thread_selection(tmp_path):
    path = image_file(tmp_path, tree_spec("v23"))
    core, plan = make_core(path, pid=102)
    assert plan.pid == 102 and plan.tids == [102]
    p = prstatus(next(d for t, _, _, d, _ in notes_of(core) if t == "NT_PRSTATUS"))
    assert p["sighold"] == 1 << 11 and p["sigpend"] == 1 << 11      # SIGUSR2 pending
    seg = loads(core)[0]
    assert core[seg["p_offset"]:][:5] == b"child"
    # no NT_FILE: the child maps no file
    assert "NT_FILE" not in [t for t, *_ in notes_of(core)]
    # a thread id names its process
    assert make_core(path, pid=101)[1].tids == [100, 101]
    with pytest.raises(UnsupportedImage, match="zombie"):        # an image condition: exit 3
        make_core(path, pid=103)
    with pytest.raises(UsageError, match="no task with pid 999"):
        make_core(path, pid=999)


def test_i386_is_refused(tmp_path):
    path = tmp_path / "i386.img"
    path.write_bytes(compose_bytes(tree_spec("v19"), "v19", "i386"))
    with pytest.raises(UnsupportedImage, match="i386"):
        make_core(str(path))


# -- file-backed and shared mappings ------------------------------------------------------
def test_file_mapping_partly_held_is_tiled(tmp_path):
    """Held pages of a private file mapping are written; the ranges between them are left
    to the file (NT_FILE), not zero-filled."""
    base = 0x500000
    spec = ImageSpec(tasks=[TaskSpec(10, 1, comm="p")], mms={"mm": MmSpec([
        VmaSpec(base, base + 5 * PAGE, kind="file", path="/lib/x.so", pgoff=3,
                pages={base + PAGE: b"one", base + 2 * PAGE: b"two"}),
        VmaSpec(base + 5 * PAGE, base + 7 * PAGE, kind="file", path="/lib/x.so", pgoff=8,
                pages={base + 5 * PAGE: b"all", base + 6 * PAGE: b"held"})])})
    core, plan = make_core(image_file(tmp_path, spec))
    segs = [(s["p_vaddr"] - base, s["p_memsz"], s["p_filesz"]) for s in loads(core)]
    assert segs == [(0, PAGE, 0), (PAGE, 2 * PAGE, 2 * PAGE), (3 * PAGE, 2 * PAGE, 0),
                    (5 * PAGE, 2 * PAGE, 2 * PAGE)]
    s = loads(core)[1]
    assert core[s["p_offset"]:][:3] == b"one" and core[s["p_offset"] + PAGE:][:3] == b"two"
    f = next(n for t, _, _, _, n in notes_of(core) if t == "NT_FILE")["n_desc"]
    assert [(e["vm_start"] - base, e["page_offset"]) for e in f["Elf_Nt_File_Entry"]] == \
        [(0, 3), (5 * PAGE, 8)]


def test_vdso_without_pages_gets_no_segment(tmp_path):
    base = 0x7FFF0000
    spec = ImageSpec(tasks=[TaskSpec(10, 1, comm="p")], mms={"mm": MmSpec([
        VmaSpec(0x600000, 0x601000, pages={0x600000: b"x"}),
        VmaSpec(base, base + 2 * PAGE, kind="vdso", flags=0x75)],
        auxv=[(33, base), (6, 4096), (0, 0)], vdso=base)})
    core, _ = make_core(image_file(tmp_path, spec))
    assert [s["p_vaddr"] for s in loads(core)] == [0x600000]
    auxv = next(d for t, _, _, d, _ in notes_of(core) if t == "NT_AUXV")
    assert struct.unpack("<6Q", auxv) == (33, base, 6, 4096, 0, 0)


def _model(vmas: list[Vma], fpu_size: int = 0) -> Image:
    img = Image("v23", "x86_64", (2, 6, 38), 6, {}, header_arch={"has_xsave": 1})
    mm = Mm(1, {}, 0, [(0, 0)], vmas)
    img.objects[1] = Obj(1, "mm", mm, 0)
    t = Task(0, 7, 1, 7, 7, 7, comm="m", offset=0, objs={"mm_objref": 1},
             regs={"used_math": 0, "cs": 3, "ss": 4})
    img.tasks.append(t)
    return img


def test_shared_anon_borrows_pages_of_its_inode():
    owner = Vma(0x1000000, 0x1002000, 0xFB, 0, 0, "shm_anon", 0, 5, 0,
                batches=[PageBatch(__import__("array").array("Q", [0x1001000]), 1 << 20)])
    other = Vma(0x2000000, 0x2002000, 0xFB, 0, 0, "shm_anon", 0, 5, 0)
    img = _model([other])
    img.objects[2] = Obj(2, "mm", Mm(2, {}, 0, [], [owner]), 0)
    plan = plan_core(img, lambda o, n: b"")
    (seg,) = plan.segments
    assert (seg.memsz, seg.filesz) == (0x2000, 0x2000)
    assert [(r.seg_off, r.src, r.length) for r in seg.runs] == [(PAGE, 1 << 20, PAGE)]


def test_held_runs_merge_adjacent_pages():
    from array import array
    v = Vma(0x10000, 0x20000, 3, 0, 0, "anon", 0, 0, 0, batches=[
        PageBatch(array("Q", [0x10000, 0x11000, 0x13000]), 1000),
        PageBatch(array("Q", [0x14000, 0x15000]), 1000 + 3 * PAGE),   # image-adjacent
        PageBatch(array("Q", [0x16000]), 90000)])
    assert held_runs(v) == [(0x10000, 1000, 2 * PAGE), (0x13000, 1000 + 2 * PAGE, 3 * PAGE),
                            (0x16000, 90000, PAGE)]


def test_pages_outside_their_vma_are_invalid():
    from array import array
    from imgtools.errors import ImageError
    v = Vma(0x1000, 0x2000, 3, 0, 0, "anon", 0, 0, 0,
            batches=[PageBatch(array("Q", [0x2000]), 0)])
    with pytest.raises(ImageError, match="outside"):
        held_runs(v)


def test_pn_xnum_for_65535_segments_or_more(tmp_path):
    vmas = [Vma(0x10000000 + i * 2 * PAGE, 0x10000000 + i * 2 * PAGE + PAGE, 1, 0, 0, "anon",
                0, 0, 0) for i in range(PN_XNUM)]
    img = _model(vmas)
    plan = plan_core(img, lambda o, n: b"")
    out = tmp_path / "x.core"
    with open(out, "wb") as f, open(os.devnull, "rb") as src:
        write_core(plan, src, f)
    elf = ELFFile(open(out, "rb"))
    assert elf.header["e_phnum"] == PN_XNUM and elf.header["e_shnum"] == 1
    assert elf.num_segments() == PN_XNUM + 1
    assert elf.get_section(0)["sh_info"] == PN_XNUM + 1


# -- XSAVE -------------------------------------------------------------------------------
def _amd_xsave() -> bytes:
    """An XSAVE area as an AMD Zen4 kernel gives it: XCR0 0xe7, no MPX gap, 2432 bytes."""
    raw = bytearray(2432)
    raw[0:2] = b"\x7f\x03"                                 # fcw
    raw[160:176] = b"X" * 16                               # xmm0
    struct.pack_into("<Q", raw, 464, XCR0_AMD)
    struct.pack_into("<QQ", raw, 512, 0xE7, 0)
    for i, (off, n) in {2: (576, 256), 5: (832, 64), 6: (896, 512), 7: (1408, 1024)}.items():
        raw[off:off + n] = bytes([i]) * n
    return bytes(raw)


def test_xsave_amd_layout_is_rewritten_for_gdb():
    xs = N.parse_xsave(_amd_xsave())
    assert (xs.layout, xs.xcr0) == ("packed", XCR0_AMD)
    desc, ents = N.xstate_note(xs)
    assert len(desc) == 2688 == N.gdb_xstate_size(XCR0_AMD)
    assert struct.unpack_from("<Q", desc, 464)[0] == XCR0_AMD
    assert struct.unpack_from("<QQ", desc, 512) == (0xE7, 0)
    for i, off, n in ((2, 576, 256), (5, 1088, 64), (6, 1152, 512), (7, 1664, 1024)):
        assert desc[off:off + n] == bytes([i]) * n
    assert desc[160:176] == b"X" * 16
    assert ents == [(2, 256, 576), (5, 64, 1088), (6, 512, 1152), (7, 1024, 1664)]
    native, nents = N.xstate_note(xs, "native")
    assert native == _amd_xsave()
    assert nents == [(2, 256, 576), (5, 64, 832), (6, 512, 896), (7, 1024, 1408)]
    assert N.xsave_layout_note(nents)[:16] == struct.pack("<4I", 2, 256, 576, 0)


def test_xsave_intel_layout_is_kept():
    raw = bytearray(2696)
    struct.pack_into("<Q", raw, 464, 0x2FF)
    raw[2688:2696] = b"PKRUPKRU"
    xs = N.parse_xsave(bytes(raw))
    assert (xs.layout, xs.xcr0) == ("intel", 0x2FF)
    desc, _ = N.xstate_note(xs)
    assert len(desc) == 2696 and desc[2688:] == b"PKRUPKRU"


def test_xsave_without_saved_xcr0_is_inferred_from_size():
    """2.6-era kernels dumped the in-kernel area, whose byte 464 is not XCR0."""
    xs = N.parse_xsave(bytes(832))
    assert (xs.xcr0, xs.layout) == (0x7, "intel")
    desc, ents = N.xstate_note(xs)
    assert len(desc) == 832 and struct.unpack_from("<Q", desc, 464)[0] == 7
    assert N.parse_xsave(bytes(512)) is None


def test_fpregset_init_state():
    raw = bytearray(832)
    raw[0:2] = b"\xff\xff"
    raw[160:176] = b"x" * 16
    struct.pack_into("<Q", raw, 512, 0)                    # nothing in use
    fp = N.fpregset(bytes(raw))
    assert len(fp) == 512 and fp[0:2] == b"\x7f\x03" and fp[160:176] == bytes(16)
    struct.pack_into("<Q", raw, 512, 3)
    assert N.fpregset(bytes(raw))[160:176] == b"x" * 16


def test_amd_xstate_in_a_core(tmp_path):
    spec = tree_spec("v23")
    spec.xstate_size = 2432
    for t in spec.tasks:
        t.fpu = _amd_xsave()
    core, _ = make_core(image_file(tmp_path, spec))
    ns = notes_of(core)
    xs = [d for t, _, _, d, _ in ns if t == N.NT_X86_XSTATE]
    assert [len(d) for d in xs] == [2688, 2688]
    layout = next(d for t, _, _, d, _ in ns if t == N.NT_X86_XSAVE_LAYOUT)
    assert [struct.unpack_from("<4I", layout, i)[:3] for i in range(0, len(layout), 16)] == \
        [(2, 256, 576), (5, 64, 1088), (6, 512, 1152), (7, 1024, 1664)]
    fp = next(d for t, _, _, d, _ in ns if t == "NT_FPREGSET")
    assert fp == _amd_xsave()[:512]


def test_fxsave_only_image_has_no_xstate_note(tmp_path):
    spec = tree_spec("v23")
    spec.xstate_size = 512
    core, _ = make_core(image_file(tmp_path, spec))
    types = [t for t, *_ in notes_of(core)]
    assert types.count("NT_FPREGSET") == 2
    assert N.NT_X86_XSTATE not in types and N.NT_X86_XSAVE_LAYOUT not in types


def test_segment_selectors():
    assert [N.selector(e) for e in (0, 1, 2, 3, 4)] == [0, 0x23, 0x2B, 0x33, 0x2B]
    assert N.selector(0x4000 | 1) == (13 << 3) | 3            # TLS entry 1
    assert N.selector(0x8000 | 2) == (2 << 3) | 7              # LDT entry 2


# -- command line ------------------------------------------------------------------------
@pytest.fixture
def cli():
    app = typer.Typer()
    core_cli.register(app)
    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(app, [str(a) for a in args], **kw)


def test_cli_to_core_file_and_stdout(cli, tmp_path, tree_cores):
    path = image_file(tmp_path, tree_spec("v19"), "v19")
    out = tmp_path / "core"
    r = cli("to-core", path, "-o", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == tree_cores["v23"][0]
    r = cli("to-core", path)
    assert r.exit_code == 0 and r.stdout_bytes == tree_cores["v23"][0]
    # an image on stdin is spooled first
    r = cli("to-core", "-", input=open(path, "rb").read())
    assert r.exit_code == 0 and r.stdout_bytes == tree_cores["v23"][0]
    # -o DIR writes DIR/core.PID
    r = cli("to-core", path, "--pid", "102", "-o", tmp_path)
    assert r.exit_code == 0 and (tmp_path / "core.102").exists()


def test_cli_all(cli, tmp_path):
    path = image_file(tmp_path, tree_spec("v23"))
    d = tmp_path / "cores"
    r = cli("to-core", path, "--all", "-o", d)
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(d)) == ["core.100", "core.102"]
    for name in os.listdir(d):
        assert ELFFile(open(d / name, "rb")).header["e_type"] == "ET_CORE"


def test_cli_errors(cli, tmp_path):
    path = image_file(tmp_path, tree_spec("v23"))
    assert cli("to-core", path, "--all").exit_code == 2
    assert cli("to-core", path, "--all", "--pid", "100", "-o", tmp_path).exit_code == 2
    r = cli("to-core", path, "--pid", "4242", "-o", tmp_path / "x")
    assert r.exit_code == 2 and "no task with pid 4242" in r.stderr
    assert not (tmp_path / "x").exists()
    assert cli("to-core", path, "--xstate-layout", "odd", "-o", tmp_path / "x").exit_code == 2
    i386 = tmp_path / "i386.img"
    i386.write_bytes(compose_bytes(tree_spec("v23"), "v23", "i386"))
    r = cli("to-core", i386, "-o", tmp_path / "y")
    assert r.exit_code == 3 and "i386" in r.stderr
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"\x01\x00\x00\x00\x48\x00\x00\x00" + bytes(10))
    assert cli("to-core", bad, "-o", tmp_path / "z").exit_code == 3


def test_cli_truncated_image_warns(cli, tmp_path):
    spec = tree_spec("v23")
    spec.tail = False
    path = image_file(tmp_path, spec)
    r = cli("to-core", path, "-o", tmp_path / "c")
    assert r.exit_code == 0 and "without its TAIL" in r.stderr


def test_cli_refuses_terminal(cli, tmp_path, monkeypatch):
    path = image_file(tmp_path, tree_spec("v23"))
    monkeypatch.setattr(core_cli, "_stdout_is_terminal", lambda: True)
    r = cli("to-core", path)
    assert r.exit_code == 2 and "terminal" in r.stderr


def test_cli_help_mentions_pipes(cli):
    r = cli("to-core", "--help")
    text = " ".join(r.output.split())
    assert "cannot read a core from a pipe" in text and "imgtools debug" in text
    assert "to-core IMG | gdb" in text


def test_cli_debug_runs_gdb_on_a_temporary_core(cli, tmp_path):
    """A stand-in gdb records its arguments and checks the core it was given."""
    fake = tmp_path / "gdb"
    log = tmp_path / "gdb.log"
    fake.write_text(f"""#!{sys.executable}
import sys
from elftools.elf.elffile import ELFFile
args = sys.argv[1:]
core = args[args.index("-c") + 1]
ok = ELFFile(open(core, "rb")).header["e_type"] == "ET_CORE"
open({str(log)!r}, "w").write(repr((args, ok)))
sys.exit(7)
""")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    exe = tmp_path / "prog"
    exe.write_bytes(b"")
    path = image_file(tmp_path, tree_spec("v23"))
    r = cli("debug", path, "--gdb", fake, "--exe", exe, "--batch", "-ex", "bt", "--", "-nx")
    assert r.exit_code == 7, r.output
    args, ok = eval(log.read_text())
    assert ok
    core = args[args.index("-c") + 1]
    assert not os.path.exists(core)                        # removed afterwards
    assert args[0] == "-batch" and args[1:3] == ["-iex", "set sysroot /"]
    # the user's gdb arguments, then the executable alone after '--' (never an option)
    assert args[-5:] == ["-ex", "bt", "-nx", "--", str(exe)]
    # without --exe: the image's executable does not exist here -> a warning, gdb still runs
    r = cli("debug", path, "--gdb", fake, "--batch")
    assert r.exit_code == 7 and "/usr/bin/prog not found" in r.stderr
    assert cli("debug", path, "--gdb", tmp_path / "nogdb").exit_code == 2
