"""ELF core layout and writer: one process of an image model -> an x86_64 ELF core.

The layout follows the kernel's ``elf_core_dump`` (fs/binfmt_elf.c): ELF header,
PT_NOTE first, one PT_LOAD per VMA in address order, notes right after the
program headers, segment data from the next page boundary on, every offset
computed before anything is written, then one sequential pass.  Page data is
copied from the image file by sendfile or through one 256 KiB buffer, so memory
stays bounded whatever the image size.

How much of each VMA is written (``vma_dump_size`` in the kernel, as far as the
model can tell it):

* anonymous, shared-anonymous, vDSO, hugetlb: the whole VMA when the image holds
  any page of it, zeros where it holds none (the kernel's "written to" rule);
  nothing (``p_filesz`` 0) when it holds none at all.  A shared-anonymous VMA
  whose pages the image keeps under another VMA of the same inode borrows them.
* file-backed (private or shared): pages the image holds are written; a page it
  does not hold was never modified, so its bytes are the file's.  The kernel would
  copy them from the page cache; the converter cannot (it works from the image
  only), so those ranges get ``p_filesz`` 0 and gdb reads them from the file named
  in NT_FILE.  When only part of such a VMA is held it is described by several
  adjacent PT_LOADs (held runs and file runs) instead of one with zeros that would
  hide the file's bytes.
* VM_IO mappings: nothing unless the image holds pages.
* the vDSO: linux-cr images never hold its pages (restart maps the new kernel's), so
  it gets no PT_LOAD at all and its memory reads as unavailable rather than as zeros.
  gdb says so once, "Can't read pathname for load map" (ld.so's link_map entry for
  the vDSO names it by a string inside it); a zero-filled segment would instead make
  gdb parse zeros as the vDSO's ELF image ("Failed to read a valid object file image
  from memory").  AT_SYSINFO_EHDR in NT_AUXV still says where it was.
"""
from __future__ import annotations

import struct
from array import array
from typing import BinaryIO, Callable, Iterator

import formats.v23

from .._record import dataclass, field
from ..errors import FramingError, ImageError, UsageError
from ..model import Image, Mm, Task, Vma
from ..writer import SequentialOut
from . import notes as N

PAGE = 4096

VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_IO = 0x1, 0x2, 0x4, 0x8, 0x4000
PF_X, PF_W, PF_R = 1, 2, 4
PT_LOAD, PT_NOTE = 1, 4
ET_CORE, EM_X86_64 = 4, 62
PN_XNUM = 0xFFFF

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")

ANON_TYPES = {"anon", "shm_anon", "vdso", "hugetlb"}
FILE_TYPES = {"file", "shm_file"}
# task->flags bits the image keeps (CKPT_PF_*) -> the kernel's PF_*
_KERNEL_PF = {"forknoexec": 0x40, "superpriv": 0x100}
_PF = {formats.v23.CKPT_PF[name]: pf for name, pf in _KERNEL_PF.items()}


class UnsupportedImage(ImageError):
    """The image is valid but cannot be turned into a core (e.g. i386)."""


@dataclass(slots=True)          # (one per held run of pages, one segment per VMA)
class Run:
    """Bytes of a segment that come from the image: ``length`` bytes at image offset
    ``src`` go to segment offset ``seg_off``; everything else in ``filesz`` is zero."""
    seg_off: int
    src: int
    length: int


@dataclass(slots=True)
class Segment:
    vaddr: int
    memsz: int
    filesz: int
    flags: int
    runs: list[Run] = field(default_factory=list)
    offset: int = 0


class Segments:
    """The plan's segments in arrays: 41 bytes a segment and 24 a run (a Segment with its
    list of Runs and their ints was some 300 bytes a VMA: issue 11, to-core of 200,000
    VMAs in bounded memory).  ``append``/``extend`` take Segments; ``[i]`` and iteration
    give a view of one with Segment's attributes (``offset`` can be set)."""

    def __init__(self, segments=()):
        self.vaddr, self.memsz, self.filesz = array("Q"), array("Q"), array("Q")
        self.offset = array("Q")
        self.flags = bytearray()
        self.first_run = array("Q", [0])        # runs of segment i: first_run[i:i + 2]
        self.run_seg_off, self.run_src, self.run_len = array("Q"), array("Q"), array("Q")
        self.extend(segments)

    def append(self, s: Segment) -> None:
        self.vaddr.append(s.vaddr)
        self.memsz.append(s.memsz)
        self.filesz.append(s.filesz)
        self.offset.append(s.offset)
        self.flags.append(s.flags)
        for r in s.runs:
            self.run_seg_off.append(r.seg_off)
            self.run_src.append(r.src)
            self.run_len.append(r.length)
        self.first_run.append(len(self.run_src))

    def extend(self, segments) -> None:
        for s in segments:
            self.append(s)

    def __len__(self) -> int:
        return len(self.vaddr)

    def __getitem__(self, i: int) -> "_SegmentView":
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return _SegmentView(self, i)

    def __iter__(self):
        for i in range(len(self)):
            yield _SegmentView(self, i)

    def runs(self, i: int) -> list[Run]:
        lo, hi = self.first_run[i], self.first_run[i + 1]
        return [Run(self.run_seg_off[j], self.run_src[j], self.run_len[j])
                for j in range(lo, hi)]

    def held(self, i: int) -> int:
        """The bytes of segment i that come from the image (the rest of filesz: zeros)."""
        lo, hi = self.first_run[i], self.first_run[i + 1]
        return sum(self.run_len[lo:hi])


class _SegmentView:
    """Segment ``i`` of a Segments table."""
    __slots__ = ("t", "i")

    def __init__(self, table: Segments, i: int):
        self.t, self.i = table, i

    vaddr = property(lambda self: self.t.vaddr[self.i])
    memsz = property(lambda self: self.t.memsz[self.i])
    filesz = property(lambda self: self.t.filesz[self.i])
    flags = property(lambda self: self.t.flags[self.i])
    runs = property(lambda self: self.t.runs(self.i))

    @property
    def offset(self) -> int:
        return self.t.offset[self.i]

    @offset.setter
    def offset(self, value: int) -> None:
        self.t.offset[self.i] = value


@dataclass
class CorePlan:
    pid: int
    tids: list[int]
    notes: bytes
    segments: Segments
    note_offset: int
    data_offset: int
    size: int
    warnings: list[str] = field(default_factory=list)
    exe: str | None = None
    files: list[str] = field(default_factory=list)

    @property
    def phnum(self) -> int:
        return len(self.segments) + 1

    @property
    def data_bytes(self) -> int:
        return sum(self.segments.filesz)

    def head_parts(self):
        """ELF header, program headers and notes (everything before the first page), in
        pieces (the program headers of 200,000 VMAs are 11 MB)."""
        n = EHDR.size
        yield self.elf_header(EHDR.size)
        for part in self.program_header_parts():
            n += len(part)
            yield part
        yield self.notes
        yield bytes(self.data_offset - n - len(self.notes))

    def head(self) -> bytes:
        return b"".join(self.head_parts())

    def elf_header(self, phoff: int) -> bytes:
        """The ELF header, its program headers at file offset ``phoff``."""
        n = self.phnum
        extnum = n >= PN_XNUM
        shoff = self.size - SHDR.size if extnum else 0
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        return EHDR.pack(ident, ET_CORE, EM_X86_64, 1, 0, phoff, shoff, 0, EHDR.size,
                         PHDR.size, PN_XNUM if extnum else n, SHDR.size if extnum else 0,
                         1 if extnum else 0, 0)

    def program_header_parts(self, per: int = 4096):
        """PT_NOTE, then one PT_LOAD per segment in address order, ``per`` at a time."""
        yield PHDR.pack(PT_NOTE, 0, self.note_offset, 0, 0, len(self.notes), 0, 4)
        t = self.segments
        for lo in range(0, len(t), per):
            hi = min(lo + per, len(t))
            buf = bytearray(PHDR.size * (hi - lo))
            for k, i in enumerate(range(lo, hi)):
                PHDR.pack_into(buf, k * PHDR.size, PT_LOAD, t.flags[i], t.offset[i],
                               t.vaddr[i], 0, t.filesz[i], t.memsz[i], PAGE)
            yield bytes(buf)

    def program_headers(self) -> bytes:
        return b"".join(self.program_header_parts())

    def tail(self) -> bytes:
        """The section header that holds the real segment count when there are 0xffff
        or more (fill_extnum_info)."""
        if self.phnum < PN_XNUM:
            return b""
        return SHDR.pack(0, 0, 0, 0, 0, 1, 0, self.phnum, 0, 0)


# -- choosing the process -------------------------------------------------------
def check_arch(img: Image) -> None:
    if img.arch != "x86_64":
        raise UnsupportedImage(f"{img.arch} images cannot be turned into cores yet (only "
                               f"x86_64: the 32-bit ELF core is not implemented)")


def processes(img: Image) -> list[Task]:
    """Thread-group leaders with an address space, in image (tree) order."""
    return list(_processes(img))


def _processes(img: Image) -> Iterator[Task]:
    """``processes``, one at a time: two passes over the tasks (the mm objrefs of each
    thread group's live tasks, then its leader), not one per process (an image of
    100,000 processes)."""
    mms: dict[int, list[int]] = {}          # tgid -> the mm objref of each live task
    for t in img.tasks:
        if _live(t):
            mms.setdefault(t.tgid, []).append(t.obj("mm"))
    for t in img.tasks:
        if not t.is_thread and t.pid in mms and \
                any(img.get(ref, "mm") is not None for ref in (t.obj("mm"), *mms[t.pid])):
            yield t


def select_process(img: Image, pid: int | None = None) -> Task:
    """The leader of the process to dump: the image's root by default; a thread id
    names its process."""
    if pid is None:
        leader = next((t for t in img.tasks if not t.is_thread), None)
        if leader is None:
            raise UnsupportedImage("the image holds no process")
    else:
        t = _task_by_pid(img.tasks, pid)
        if t is None:
            known = ", ".join(str(p.pid) for p in _processes(img)) or "none"
            raise UsageError(f"no task with pid {pid} in the image (processes: {known})")
        leader = _task_by_pid(img.tasks, t.tgid) or t
    if not _live_threads(img, leader):
        raise UnsupportedImage(f"process {leader.pid} is a zombie: it has no registers or "
                               f"memory to dump")
    if _mm_of(img, leader) is None:
        raise UnsupportedImage(f"process {leader.pid} has no address space in the image")
    return leader


def leader_pid(tasks: list[Task], pid: int | None) -> int | None:
    """The pid of the leader ``select_process`` picks, from the task list alone (none of
    the tasks' records read yet: core.build)."""
    if pid is None:
        return next((t.pid for t in tasks if not t.is_thread), None)
    t = _task_by_pid(tasks, pid)
    if t is None:
        return None
    return t.tgid if _task_by_pid(tasks, t.tgid) is not None else t.pid


def tasks_with_id(tasks: list[Task], n: int) -> list[Task]:
    """The tasks whose pid or tgid is ``n``, in image order (a lean model's table finds
    them in its columns, and makes only those)."""
    find = getattr(tasks, "with_id", None)
    return find(n) if find is not None else [t for t in tasks if t.pid == n or t.tgid == n]


def _task_by_pid(tasks: list[Task], pid: int) -> Task | None:
    """The first task of that pid (as ``Image.task_by_pid``)."""
    return next((t for t in tasks_with_id(tasks, pid) if t.pid == pid), None)


def _live(t: Task) -> bool:
    return not t.zombie and t.has_regs


def _live_threads(img: Image, leader: Task) -> list[Task]:
    ts = [t for t in tasks_with_id(img.tasks, leader.pid)
          if (t.tgid == leader.pid or t.index == leader.index) and _live(t)]
    ts.sort(key=lambda t: t.index != leader.index)  # the leader first (stable otherwise)
    return ts


def _mm_of(img: Image, leader: Task) -> Mm | None:
    for t in [leader, *_live_threads(img, leader)]:
        mm = img.get(t.obj("mm"), "mm")
        if mm is not None:
            return mm
    return None


# -- planning -------------------------------------------------------------------
ReadAt = Callable[[int, int], bytes]


def plan_core(img: Image, read_at: ReadAt, pid: int | None = None,
              xstate_layout: str = "gdb") -> CorePlan:
    """Everything about the core but the page bytes: notes, segments, offsets.

    ``read_at(offset, n)`` reads the image file (FPU areas, the command line)."""
    check_arch(img)
    leader = select_process(img, pid)
    threads = _live_threads(img, leader)
    mm = _mm_of(img, leader)
    warnings: list[str] = []
    for t in threads:
        if "raw" in t.regs:
            raise UnsupportedImage(f"task {t.pid}: the CPU record could not be decoded")
    segments = Segments()
    shared = _shared_pages(img)
    maps: list[N.FileMap] = []      # NT_FILE
    files: set[str] = set()
    for v in _by_start(mm.vmas):    # one pass: a VmaTable makes each Vma as it goes
        segments.extend(_vma_segments(img, v, shared, warnings))
        if v.file_ref:
            fo = img.get(v.file_ref, "file")
            path = fo.path if fo is not None and fo.path else f"<objref {v.file_ref}>"
            maps.append(N.FileMap(v.start, v.end, v.pgoff, path))
            if fo is not None and fo.path:
                files.add(fo.path)
    notes, layout_warn = _notes(img, leader, threads, mm, maps, read_at, xstate_layout)
    warnings += layout_warn
    phnum = len(segments) + 1
    note_offset = EHDR.size + phnum * PHDR.size
    data_offset = _roundup(note_offset + len(notes), PAGE)
    off = data_offset
    offsets, filesz = segments.offset, segments.filesz
    for i in range(len(segments)):
        offsets[i] = off
        off += filesz[i]
    size = off + (SHDR.size if phnum >= PN_XNUM else 0)
    exe = img.get(mm.exe_ref, "file")
    return CorePlan(leader.pid, [t.pid for t in threads], notes, segments, note_offset,
                    data_offset, size, warnings, exe.path if exe is not None else None,
                    sorted(files))


def _by_start(vmas) -> Iterator[Vma]:
    """An Mm's VMAs in address order: a list of Vma, or a VmaTable (imgtools.vmatable,
    not imported here: check reads this package for the segment selectors)."""
    ordered = getattr(vmas, "by_start", None)
    return ordered() if ordered is not None else iter(sorted(vmas, key=lambda v: v.start))


def _of_type(vmas, vma_type: str) -> Iterator[Vma]:
    of_type = getattr(vmas, "of_type", None)
    return of_type(vma_type) if of_type is not None else \
        (v for v in vmas if v.vma_type == vma_type)


def _roundup(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pflags(vm_flags: int) -> int:
    return ((PF_R if vm_flags & VM_READ else 0) | (PF_W if vm_flags & VM_WRITE else 0)
            | (PF_X if vm_flags & VM_EXEC else 0))


def held_runs(v: Vma) -> list[tuple[int, int, int]]:
    """(address, image offset, length) of the pages the image holds for a VMA, in
    address order, adjacent pages that are adjacent in the image merged."""
    runs: list[list[int]] = []
    for b in v.batches:
        off = b.data_offset
        n = len(b.addrs)
        if n and b.addrs == array("Q", range(b.addrs[0], b.addrs[0] + n * PAGE, PAGE)):
            if runs and runs[-1][0] + runs[-1][2] == b.addrs[0] and \
                    runs[-1][1] + runs[-1][2] == off:
                runs[-1][2] += n * PAGE
            else:
                runs.append([b.addrs[0], off, n * PAGE])     # the usual batch: one run
            continue
        last = None
        for a in b.addrs:
            if last is not None and a == last[0] + last[2] and off == last[1] + last[2]:
                last[2] += PAGE
            else:
                last = [a, off, PAGE]
                runs.append(last)
            off += PAGE
    runs.sort(key=lambda r: r[0])
    end = v.start
    for a, _, n in runs:
        if a % PAGE or a < v.start or a + n > v.end:
            raise ImageError(f"page {a:#x} lies outside its VMA {v.start:#x}-{v.end:#x}",
                             offset=v.offset, record="VMA")
        if a < end:
            raise ImageError(f"page {a:#x} is held twice by VMA {v.start:#x}-{v.end:#x}",
                             offset=v.offset, record="VMA")
        end = a + n
    return [tuple(r) for r in runs]


def _shared_pages(img: Image) -> dict[int, list[Vma]]:
    """Shared-anonymous inode objref -> the VMAs that hold its pages (the first VMA of
    the inode, and later ones that map parts of it no earlier VMA covered)."""
    out: dict[int, list[Vma]] = {}
    for o in img.objects_of_kind("mm"):
        for v in _of_type(o.value.vmas, "shm_anon"):
            if v.ino_ref and v.batches:
                out.setdefault(v.ino_ref, []).append(v)
    return out


def is_file_like(v: Vma) -> bool:
    """Whether a VMA's core segments hold only the pages the image holds (the rest is
    the file's, read from NT_FILE), rather than the whole VMA with zeros between."""
    return v.vma_type in FILE_TYPES or bool(v.vma_type not in ANON_TYPES and v.file_ref)


def _vma_segments(img: Image, v: Vma, shared: dict[int, list[Vma]],
                  warnings: list[str]) -> list[Segment]:
    flags = _pflags(v.vm_flags)
    size = v.end - v.start
    if size <= 0 or v.start % PAGE or v.end % PAGE:
        raise ImageError(f"VMA {v.start:#x}-{v.end:#x} is not a page-aligned range",
                         offset=v.offset, record="VMA")
    if v.end > formats.USER_TOP["x86_64"]:
        raise ImageError(f"VMA {v.start:#x}-{v.end:#x} ends above the user address space",
                         offset=v.offset, record="VMA")
    runs = held_runs(v) or _extent_runs(img, v, warnings)
    holders = shared.get(v.ino_ref, []) if v.vma_type == "shm_anon" else []
    if holders and holders != [v]:
        runs = _borrowed(v, [v, *holders] if runs else holders)
    file_like = is_file_like(v)
    if not runs:
        if v.vma_type == "vdso":
            return []       # never saved: a segment would make gdb parse zeros as the vDSO
        return [Segment(v.start, size, 0, flags)]
    if not file_like:
        return [Segment(v.start, size, size, flags,
                        [Run(a - v.start, src, n) for a, src, n in runs])]
    # file-backed: held runs carry data, the ranges between them are the file's
    segs = []
    pos = v.start
    for a, src, n in runs:
        if a > pos:
            segs.append(Segment(pos, a - pos, 0, flags))
        if segs and segs[-1].filesz and segs[-1].vaddr + segs[-1].memsz == a:
            s = segs[-1]            # image-adjacent runs that are split in the image
            s.runs.append(Run(s.memsz, src, n))
            s.memsz += n
            s.filesz += n
        else:
            segs.append(Segment(a, n, n, flags, [Run(0, src, n)]))
        pos = a + n
    if pos < v.end:
        segs.append(Segment(pos, v.end - pos, 0, flags))
    return segs


def _extent_runs(img: Image, v: Vma, warnings: list[str]) -> list[tuple[int, int, int]]:
    """A mapping of a memfd or deleted file: its contents are the EXT_EXTENTs of the
    file's inode; the whole pages they hold, as runs (a page an extent holds only in
    part, a hole or the end of a short file stays zeros in the core)."""
    f = img.get(v.file_ref, "file") if v.file_ref else None
    if f is None or f.f_type not in ("memfd", "ghost"):
        return []
    inode = img.get(f.sub.get("ino_objref", 0), "inode")
    if inode is None:
        return []
    base = v.pgoff * PAGE                   # the file offset of v.start
    runs, partial = [], 0
    for e in inode.extents:
        lo = max(e.offset, base)
        hi = min(e.offset + e.size, base + v.end - v.start)
        first = _roundup(lo - base, PAGE) + base
        last = (hi - base) // PAGE * PAGE + base
        if hi > lo and (first != lo or last != hi):
            partial += 1
        if last > first:
            runs.append((v.start + first - base, e.data_offset + first - e.offset,
                         last - first))
    if partial:
        warnings.append(f"{f.f_type} mapping {v.start:#x}-{v.end:#x}: {partial} page(s) "
                        f"its contents hold only in part are zeros in the core")
    return runs


def _borrowed(v: Vma, owners: list[Vma]) -> list[tuple[int, int, int]]:
    """Pages of a shared-anonymous inode held under the owner VMAs (v itself may be one),
    mapped into v by file page; an earlier owner's copy of a page wins."""
    src_of: dict[int, int] = {}
    for owner in owners:
        for a, src, n in held_runs(owner):
            for i in range(0, n, PAGE):
                page = owner.pgoff + (a + i - owner.start) // PAGE
                addr = v.start + (page - v.pgoff) * PAGE
                if v.start <= addr < v.end:
                    src_of.setdefault(addr, src + i)
    out: list[tuple[int, int, int]] = []
    for addr in sorted(src_of):
        src = src_of[addr]
        if out and out[-1][0] + out[-1][2] == addr and out[-1][1] + out[-1][2] == src:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + PAGE)
        else:
            out.append((addr, src, PAGE))
    return out


# -- notes ------------------------------------------------------------------------
def _pid(n: int) -> int:
    """Pid numbers as a core holds them: markers (negative) and 'outside' become 0."""
    return n if n > 0 else 0


def _notes(img: Image, leader: Task, threads: list[Task], mm: Mm, maps: list[N.FileMap],
           read_at: ReadAt, xstate_layout: str) -> tuple[bytes, list[str]]:
    warnings: list[str] = []
    fpu = {}
    xsaves = {}
    for t in threads:
        raw = _fpu(img, t, read_at)
        if raw is not None:
            fpu[t.pid] = raw
            xsaves[t.pid] = N.parse_xsave(raw) if img.header_arch.get("has_xsave", 1) else None

    layouts: list[list] = []

    def thread_regsets(t: Task) -> list[bytes]:
        raw = fpu.get(t.pid)
        if raw is None:
            return []
        out = [N.note(N.CORE, N.NT_PRFPREG, N.fpregset(raw))]
        xs = xsaves.get(t.pid)
        if xs is not None:
            desc, ents = N.xstate_note(xs, xstate_layout)
            out.append(N.note(N.LINUX, N.NT_X86_XSTATE, desc))
            layouts.append(ents)
        return out

    parts = []
    for i, t in enumerate(threads):
        parts.append(N.note(N.CORE, N.NT_PRSTATUS, N.prstatus(
            _pid(t.pid), _pid(t.ppid), _pid(t.pgid), _pid(t.sid), t.regs,
            signo=0, sigpend=t.pending_mask, sighold=t.blocked or 0,
            fpvalid=t.pid in fpu)))
        if i == 0:
            parts += _process_notes(img, leader, mm, maps, read_at)
        parts += thread_regsets(t)
    if layouts:
        if any(ents != layouts[0] for ents in layouts):
            warnings.append("threads have XSAVE areas of different layouts; "
                            "NT_X86_XSAVE_LAYOUT describes the first one")
        if layouts[0]:
            parts.append(N.note(N.LINUX, N.NT_X86_XSAVE_LAYOUT,
                                N.xsave_layout_note(layouts[0])))
    return b"".join(parts), warnings


def _fpu(img: Image, t: Task, read_at: ReadAt) -> bytes | None:
    if not t.regs.get("used_math") or t.fpu_offset is None or t.fpu_size <= 0:
        return None
    raw = read_at(t.fpu_offset, t.fpu_size)
    if len(raw) != t.fpu_size:
        raise FramingError(f"task {t.pid}: FPU state truncated", offset=t.fpu_offset)
    return raw


def _process_notes(img: Image, leader: Task, mm: Mm, maps: list[N.FileMap],
                   read_at: ReadAt) -> list[bytes]:
    cred = img.get(leader.cred_ref, "cred") or {}
    f = mm.fields
    args = _read_user(mm, read_at, f.get("arg_start", 0),
                      min(max(f.get("arg_end", 0) - f.get("arg_start", 0), 0),
                          N.ELF_PRARGSZ - 1))
    if not args:
        args = (leader.comm or "").encode()
    flags = 0
    for bit, pf in _PF.items():
        if leader.fields.get("flags", 0) & bit:
            flags |= pf
    out = [N.note(N.CORE, N.NT_PRPSINFO, N.prpsinfo(
               _pid(leader.pid), _pid(leader.ppid), _pid(leader.pgid), _pid(leader.sid),
               state=leader.fields.get("state", 0), flags=flags, uid=cred.get("uid", 0),
               gid=cred.get("gid", 0), comm=leader.comm or "", args=args)),
           N.note(N.CORE, N.NT_SIGINFO, N.siginfo(N.SIGSTOP)),
           N.note(N.CORE, N.NT_AUXV, N.auxv(mm.auxv))]
    if maps:
        out.append(N.note(N.CORE, N.NT_FILE, N.file_note(maps)))
    return out


def _read_user(mm: Mm, read_at: ReadAt, addr: int, n: int) -> bytes:
    """``n`` bytes of process memory at ``addr`` from the pages the image holds
    (b"" when any of them is missing)."""
    if n <= 0 or not addr:
        return b""
    out = b""
    while len(out) < n:
        a = addr + len(out)
        page = a - a % PAGE
        src = _page_src(mm, page)
        if src is None:
            return b""
        take = min(n - len(out), page + PAGE - a)
        out += read_at(src + a - page, take)
    return out


def _page_src(mm: Mm, page: int) -> int | None:
    for v in mm.vmas:
        if v.start <= page < v.end:
            for a, off in v.page_offsets():
                if a == page:
                    return off
            return None
    return None


# -- writing ------------------------------------------------------------------------
def write_core(plan: CorePlan, src: BinaryIO | int, out: BinaryIO | int,
               advance: Callable[[int], object] | None = None) -> int:
    """Write the core sequentially; returns the number of bytes written."""
    src_fd = src if isinstance(src, int) else src.fileno()
    w = SequentialOut(out, src_fd)
    start = w.pos
    for part in plan.head_parts():
        w.write(part)
    t = plan.segments
    for i in range(len(t)):
        at = 0
        for r in t.runs(i):
            w.zeros(r.seg_off - at)
            w.copy(r.src, r.length, advance)
            at = r.seg_off + r.length
        w.zeros(t.filesz[i] - at)
        zeros = t.filesz[i] - t.held(i)
        if advance and zeros:
            advance(zeros)
    w.write(plan.tail())
    w.finish()
    return w.pos - start
