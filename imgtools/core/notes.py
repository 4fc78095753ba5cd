"""ELF core notes for x86_64 Linux, packed with ``struct`` from the image model.

Layouts are the kernel's x86_64 user ABI (glibc ``<sys/procfs.h>``, ``<sys/user.h>``):
``elf_prstatus`` 336 bytes, ``elf_prpsinfo`` 136, ``siginfo_t`` 128,
``user_fpregs_struct`` 512.  See shared/reference/elf-core-and-python.md §1.2-1.4.

The XSAVE area needs care: gdb 13 assumes Intel's fixed component offsets for
whatever XCR0 says, while the kernel writes the area with the offsets of the
CPU it ran on (AMD parts have no MPX gap).  :func:`xstate_note` finds the
layout the image's area really has and rewrites it into the Intel standard
layout gdb 13 reads, and :func:`xsave_layout_note` describes the result the way
recent kernels do (NT_X86_XSAVE_LAYOUT), so newer gdbs agree.
"""
from __future__ import annotations

import struct

from .._record import dataclass
from ..errors import ImageError
from ..model import task_state

# note types (include/uapi/linux/elf.h)
NT_PRSTATUS = 1
NT_PRFPREG = 2              # NT_FPREGSET
NT_PRPSINFO = 3
NT_AUXV = 6
NT_X86_XSTATE = 0x202
NT_X86_XSAVE_LAYOUT = 0x205
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45

CORE = b"CORE"
LINUX = b"LINUX"

PRSTATUS = struct.Struct("<3ih2xQQ4i8q27Qi4x")
PRPSINFO = struct.Struct("<BcBb4xQII4i16s80s")
SIGINFO = struct.Struct("<4iiI104x")
NHDR = struct.Struct("<III")
XFEAT = struct.Struct("<IIII")

assert PRSTATUS.size == 336 and PRPSINFO.size == 136 and SIGINFO.size == 128

ELF_PRARGSZ = 80
FXSAVE_SIZE = 512
XSAVE_HDR_SIZE = 64
XCR0_OFFSET = 464           # in the FXSAVE sw_reserved bytes (gdb: I386_LINUX_XSAVE_XCR0_OFFSET)
XSTATE_BV_OFFSET = 512
XCOMP_BV_OFFSET = 520

SIGSTOP = 19
SI_USER = 0


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """One note as the kernel writes it: 12-byte header, name and desc each padded to 4."""
    n = name + b"\0"
    return NHDR.pack(len(n), len(desc), ntype) + _pad4(n) + _pad4(desc)


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


# -- registers ---------------------------------------------------------------
# x86_64 GDT selectors with RPL 3 (arch/x86/include/asm/segment.h)
USER32_CS, USER_DS, USER_CS = 0x23, 0x2B, 0x33
GDT_ENTRY_TLS_MIN = 12
_SEG_FIXED = {0: 0, 1: USER32_CS, 2: USER_DS, 3: USER_CS, 4: USER_DS}
_SEG_TLS, _SEG_LDT = 0x4000, 0x8000


def selector(enc: int, name: str = "segment") -> int:
    """A linux-cr encoded segment register (NULL, USER32/64_CS/DS, TLS|idx, LDT|idx)
    back to the selector value the CPU held."""
    if enc in _SEG_FIXED:
        return _SEG_FIXED[enc]
    if enc & _SEG_LDT:
        return ((enc & 0x7FFF) << 3) | 7            # TI=1 (LDT), RPL 3
    if enc & _SEG_TLS:
        return ((GDT_ENTRY_TLS_MIN + (enc & 0x3FFF)) << 3) | 3
    raise ImageError(f"{name} has the unknown segment encoding {enc:#x}", record="CPU")


# user_regs_struct order; the names are the CPU record's
_PR_REG = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
           "dx", "si", "di", "orig_ax", "ip", "@cs", "flags", "sp", "@ss", "fs", "gs",
           "@ds", "@es", "@fsindex", "@gsindex")


def user_regs(regs: dict) -> tuple[int, ...]:
    """The 27 words of ``user_regs_struct`` (= ``pr_reg``) from a CPU record."""
    out = []
    for name in _PR_REG:
        if name[0] == "@":
            out.append(selector(regs.get(name[1:], 0), name[1:]))
        else:
            out.append(regs.get(name, 0) & 0xFFFFFFFFFFFFFFFF)
    return tuple(out)


def prstatus(pid: int, ppid: int, pgrp: int, sid: int, regs: dict, *, signo: int = 0,
             sigpend: int = 0, sighold: int = 0, fpvalid: bool = False) -> bytes:
    return PRSTATUS.pack(signo, 0, 0, signo, sigpend & (2**64 - 1), sighold & (2**64 - 1),
                         pid, ppid, pgrp, sid, *(0,) * 8, *user_regs(regs), int(fpvalid))


def psargs(raw: bytes) -> bytes:
    """Command line bytes as fill_psinfo keeps them: at most 79, NULs turned into spaces."""
    raw = raw[:ELF_PRARGSZ - 1]
    return raw.replace(b"\0", b" ")


def prpsinfo(pid: int, ppid: int, pgrp: int, sid: int, *, state: int, flags: int, uid: int,
             gid: int, comm: str, args: bytes) -> bytes:
    i, letter = task_state(state)
    sname = letter.encode()
    return PRPSINFO.pack(i, sname, int(sname == b"Z"), 0, flags, uid & 0xFFFFFFFF,
                         gid & 0xFFFFFFFF, pid, ppid, pgrp, sid,
                         comm.encode("utf-8", "replace")[:15], psargs(args))


def siginfo(signo: int, code: int = SI_USER, pid: int = 0, uid: int = 0) -> bytes:
    return SIGINFO.pack(signo, 0, code, 0, pid, uid & 0xFFFFFFFF)


def auxv(pairs: list[tuple[int, int]]) -> bytes:
    """The saved auxiliary vector up to and including AT_NULL."""
    words = []
    for k, v in pairs:
        words += (k, v)
        if k == 0:
            break
    else:
        words += (0, 0)
    return struct.pack(f"<{len(words)}Q", *words)


@dataclass
class FileMap:
    start: int
    end: int
    pgoff: int          # in pages
    path: str


def file_note(maps: list[FileMap], page_size: int = 4096) -> bytes:
    head = struct.pack("<QQ", len(maps), page_size)
    ents = b"".join(struct.pack("<QQQ", m.start, m.end, m.pgoff * 4096 // page_size)
                    for m in maps)
    names = b"".join(m.path.encode("utf-8", "surrogateescape") + b"\0" for m in maps)
    return head + ents + names


# -- FPU / XSAVE --------------------------------------------------------------
# Extended components: index -> (size, offset in Intel's standard format).  Offsets are
# the ones gdb 13 hard-codes (gdbsupport/x86-xstate.h); sizes are architectural.
XFEATURES = {2: (256, 576), 3: (64, 960), 4: (64, 1024), 5: (64, 1088), 6: (512, 1152),
             7: (1024, 1664), 9: (8, 2688)}
USER_MASK = 0x3 | sum(1 << i for i in XFEATURES)     # what we can lay out: x87..PKRU
# The size gdb 13 expects for an XCR0 (x86_xstate_size): the end of the last component.
_GDB_SIZE_STEPS = ((1 << 9, 2696), (0xE0, 2688), (0x18, 1088), (0x4, 832))


def gdb_xstate_size(xcr0: int) -> int:
    for bits, size in _GDB_SIZE_STEPS:
        if xcr0 & bits:
            return size
    return 576


def _end(xcr0: int, offsets: dict[int, int]) -> int:
    return max([576] + [offsets[i] + XFEATURES[i][0] for i in offsets if xcr0 >> i & 1])


def _intel(xcr0: int) -> dict[int, int]:
    return {i: XFEATURES[i][1] for i in XFEATURES if xcr0 >> i & 1}


def _packed(xcr0: int) -> dict[int, int]:
    """Components back to back in index order from 576: AMD's standard format (no MPX
    gap) and, for an area without supervisor state, the compacted one."""
    off, out = 576, {}
    for i in sorted(XFEATURES):
        if xcr0 >> i & 1:
            out[i] = off
            off += XFEATURES[i][0]
    return out


_XCR0_BY_SIZE = {576: 0x3, 832: 0x7, 1088: 0x1F, 2688: 0xFF, 2696: 0x2FF,
                 2432: 0xE7, 2440: 0x2E7}


@dataclass
class Xsave:
    """An XSAVE area from an image, with the layout it was found to have."""
    raw: bytes
    xcr0: int                   # user features the area holds (as far as we can place them)
    offsets: dict[int, int]     # component -> offset in ``raw``
    xcr0_saved: int             # XCR0 as stored at byte 464 (0 on kernels that left it out)
    layout: str                 # "intel", "packed" or "compacted"

    @property
    def xstate_bv(self) -> int:
        return struct.unpack_from("<Q", self.raw, XSTATE_BV_OFFSET)[0] & self.xcr0


def parse_xsave(raw: bytes) -> Xsave | None:
    """Work out the layout of an XSAVE area (None for a bare 512-byte FXSAVE area).

    XCR0 is the word at 464 when the kernel put it there (ptrace and signal frames do;
    a raw in-kernel ``thread_xstate`` of a 2.6 kernel may not), else it is inferred
    from the size and XSTATE_BV.  The component offsets are Intel's when the size fits
    them, else the packed ones when the size fits those; a size that fits neither
    keeps only the components both agree on (x87, SSE, AVX)."""
    size = len(raw)
    if size < FXSAVE_SIZE + XSAVE_HDR_SIZE:
        return None
    saved, = struct.unpack_from("<Q", raw, XCR0_OFFSET)
    bv, comp = struct.unpack_from("<QQ", raw, XSTATE_BV_OFFSET)
    xcr0 = saved if saved & 1 else (_XCR0_BY_SIZE.get(size, 0x7 if size >= 832 else 0x3)
                                   | (bv & USER_MASK))
    xcr0 &= USER_MASK
    if comp >> 63:                                  # compacted format (XSAVES)
        xcr0 &= comp
        cand = [("compacted", _packed(xcr0))]
    else:
        cand = [("intel", _intel(xcr0)), ("packed", _packed(xcr0))]
    for name, offs in cand:
        if _end(xcr0, offs) == size:
            return Xsave(raw, xcr0, offs, saved, name)
    name, offs = cand[0]
    if _end(xcr0, offs) <= size:             # larger than needed (e.g. AMX state we drop)
        return Xsave(raw, xcr0, offs, saved, name)
    xcr0 &= 0x7 if size >= 832 else 0x3
    return Xsave(raw, xcr0, _intel(xcr0), saved, "intel")


def fpregset(raw: bytes) -> bytes:
    """NT_PRFPREG: the 512-byte FXSAVE part.  Components XSTATE_BV marks as in their
    init state are given init values (as the kernel's regset code does)."""
    fx = bytearray(raw[:FXSAVE_SIZE].ljust(FXSAVE_SIZE, b"\0"))
    if len(raw) >= FXSAVE_SIZE + XSAVE_HDR_SIZE:
        bv, = struct.unpack_from("<Q", raw, XSTATE_BV_OFFSET)
        if not bv & 1:              # x87 in init state
            fx[0:24] = struct.pack("<HHHHQQ", 0x37F, 0, 0, 0, 0, 0)
            fx[32:160] = bytes(128)
        if not bv & 2:              # SSE in init state
            fx[160:416] = bytes(256)
    return bytes(fx)


def xstate_note(xs: Xsave, layout: str = "gdb") -> tuple[bytes, list[tuple[int, int, int]]]:
    """NT_X86_XSTATE desc and its layout [(feature, size, offset)].

    ``layout="gdb"``: Intel's standard format, of the size gdb 13 expects for XCR0,
    XCR0 stored at 464, XCOMP_BV 0.  ``layout="native"``: the area as the image holds
    it (only XCR0 filled in when it was missing)."""
    if layout == "native":
        out = bytearray(xs.raw)
        struct.pack_into("<Q", out, XCR0_OFFSET, xs.xcr0 if not xs.xcr0_saved & 1
                         else xs.xcr0_saved)
        return bytes(out), [(i, XFEATURES[i][0], o) for i, o in sorted(xs.offsets.items())]
    size = gdb_xstate_size(xs.xcr0)
    out = bytearray(size)
    out[:FXSAVE_SIZE] = xs.raw[:FXSAVE_SIZE]
    struct.pack_into("<Q", out, XCR0_OFFSET, xs.xcr0)
    struct.pack_into("<QQ", out, XSTATE_BV_OFFSET, xs.xstate_bv, 0)
    ents = []
    for i, src in sorted(xs.offsets.items()):
        n, dst = XFEATURES[i]
        if dst + n <= size:
            out[dst:dst + n] = xs.raw[src:src + n]
            ents.append((i, n, dst))
    return bytes(out), ents


def xsave_layout_note(ents: list[tuple[int, int, int]]) -> bytes:
    """NT_X86_XSAVE_LAYOUT desc: struct x86_xfeat_component {type, size, offset, flags}."""
    return b"".join(XFEAT.pack(i, n, off, 0) for i, n, off in ents)
