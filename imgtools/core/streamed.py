"""A core written while the image streams in (``to-core -`` into a regular file).

The kernel's layout (``elf``) puts the notes before the page data, but an image gives the
registers and the FPU state of a thread only with its task, and the model (which pages a
VMA holds, which thread leads) only once it is all read; a pipe cannot be read twice.  So
a core made from a pipe is laid out the other way round, as the pages arrive:

* the first page of the file holds only the ELF header (written last);
* each page batch of the dumped process goes straight to its place in the output: an
  anonymous VMA gets a region as large as the VMA when its first page arrives (the pages
  land at their address offsets, what it never holds stays a hole, i.e. zeros); the
  pages of a file-backed VMA are packed one after the other (its segments hold only
  those, see ``elf``);
* at the end the plan is made from the model as for a file, each segment points at the
  bytes already in place (a segment whose bytes are not laid out as it needs, e.g. a
  shared mapping that borrows another VMA's pages, is copied to the end of the data);
* the program headers and the notes follow the data; the ELF header names where.

ELF allows PT_NOTE and the program header table anywhere; gdb, readelf and eu-readelf
read such cores.  What must be seen twice is kept in a sparse temporary file at the
image's own offsets (the spool): the FPU/XSAVE areas, memfd and deleted-file contents,
and the pages of other processes (a shared mapping may borrow them).  For an image of
one process it holds a few KiB.
"""
from __future__ import annotations

import bisect
import errno
import os
import tempfile
from array import array
from typing import Callable

from ..errors import FramingError
from ..model import Vma
from ..stream import CHUNK, Record, page_buffer
from .build import ProcessBuilder
from .elf import PAGE, PHDR, PN_XNUM, SHDR, CorePlan, Segment, is_file_like

COPY_MAX = 8 << 20


class Layout:
    """Where the bytes of the image went: page data into the output at the offsets chosen
    for them, everything else the core may read into the spool."""

    def __init__(self, out_fd: int, base: int):
        self.out = out_fd               # write end (O_WRONLY is enough)
        self.base = base                # file offset of the core's first byte
        self.out_rd = os.open(f"/proc/self/fd/{out_fd}", os.O_RDONLY | os.O_CLOEXEC)
        self.cursor = PAGE              # core offset of the next free byte of data
        # the region of the anonymous VMA whose pages come (the last VMA: pages follow
        # their VMA), as (its record's offset, core offset)
        self.region: tuple[int, int] | None = None
        # [start, end) of every region, in core order
        self._region_starts, self._region_ends = array("Q"), array("Q")
        # (image offset, length, fd, file offset) of every byte range kept, in image
        # order, in four arrays (a tuple each was 100 bytes a page batch)
        self.k_img, self.k_len = array("Q"), array("Q")
        self.k_fd, self.k_off = array("i"), array("Q")
        self.spool_fd: int | None = None
        self.placed = 0                 # page bytes written in place
        self._buf = None

    def close(self) -> None:
        os.close(self.out_rd)
        if self.spool_fd is not None:
            os.close(self.spool_fd)

    @property
    def kept(self):
        """(image offset, length, fd, file offset) of every byte range kept."""
        return zip(self.k_img, self.k_len, self.k_fd, self.k_off)

    # -- as the image is read -------------------------------------------------------
    def _keep(self, img_off: int, n: int, fd: int, off: int) -> None:
        if self.k_img and self.k_img[-1] + self.k_len[-1] == img_off and \
                self.k_fd[-1] == fd and self.k_off[-1] + self.k_len[-1] == off:
            self.k_len[-1] += n
            return
        self.k_img.append(img_off)
        self.k_len.append(n)
        self.k_fd.append(fd)
        self.k_off.append(off)

    def _chunks(self, rec: Record):
        """(image offset, bytes view) of the unread rest of a record's payload."""
        if self._buf is None:
            self._buf = page_buffer(CHUNK)
        pos = rec.read_offset
        for buf, s, e in rec.chunks_into(self._buf):
            yield pos, memoryview(buf)[s:e]
            pos += e - s

    def spool(self, rec: Record) -> None:
        """The unread rest of a record, kept at its image offsets in the spool."""
        if self.spool_fd is None:
            self.spool_fd, name = tempfile.mkstemp(prefix="imgtools-spool-")
            os.unlink(name)
        off, left = rec.read_offset, rec.offset + rec.len - rec.read_offset
        if rec.splice_to(self.spool_fd, left, off):
            self._keep(off, left, self.spool_fd, off)
            return
        for off, view in self._chunks(rec):
            _pwrite_all(self.spool_fd, view, off)
            self._keep(off, len(view), self.spool_fd, off)

    def pages(self, v: Vma, addrs, rec: Record) -> None:
        """A page batch of the dumped process (its page images are the unread rest of
        ``rec``): to its place in the output, one write per run of pages that is
        contiguous there."""
        runs = self._runs(v, addrs)
        if runs is None:
            self.spool(rec)
            return
        start = rec.read_offset
        r = 0
        while r < len(runs) and rec.splice_to(self.out, runs[r][1],
                                              self.base + runs[r][2]):
            at, n, dest = runs[r]               # moved by the kernel, pipe to file
            self._keep(start + at, n, self.out_rd, self.base + dest)
            self.placed += n
            r += 1
        for off, view in self._chunks(rec):
            lo, hi = off - start, off - start + len(view)
            while lo < hi:
                at, n, dest = runs[r]          # (batch byte offset, length, core offset)
                k = min(hi, at + n) - lo
                to = self.base + dest + lo - at
                piece = view[lo - (off - start):lo - (off - start) + k]
                _pwrite_all(self.out, piece, to)
                self._keep(start + lo, k, self.out_rd, to)
                self.placed += k
                lo += k
                if lo >= at + n:
                    r += 1

    def _runs(self, v: Vma, addrs) -> list[tuple[int, int, int]] | None:
        """(offset in the batch's page images, length, core offset) of the runs of a
        batch that are contiguous in the core, or None when the batch does not fit its
        VMA (the plan then reports it)."""
        n = len(addrs)
        if not n:
            return []
        first = addrs[0]
        contiguous = addrs == array("Q", range(first, first + n * PAGE, PAGE))
        if not contiguous and any(a % PAGE or not v.start <= a < v.end for a in addrs):
            return None
        if contiguous and (first % PAGE or first < v.start or first + n * PAGE > v.end):
            return None
        if is_file_like(v):             # packed, in the order they come
            start = self.cursor
            self.cursor += n * PAGE
            return [(0, n * PAGE, start)]
        if self.region is not None and self.region[0] == v.offset:
            region = self.region[1]
        else:
            region = self.cursor
            self.region = (v.offset, region)
            self.cursor += v.end - v.start
            self._region_starts.append(region)
            self._region_ends.append(self.cursor)
        if contiguous:
            return [(0, n * PAGE, region + first - v.start)]
        runs: list[tuple[int, int, int]] = []
        for i, a in enumerate(addrs):
            dest = region + a - v.start
            if runs and runs[-1][0] + runs[-1][1] == i * PAGE and \
                    runs[-1][2] + runs[-1][1] == dest:
                runs[-1] = (runs[-1][0], runs[-1][1] + PAGE, runs[-1][2])
            else:
                runs.append((i * PAGE, PAGE, dest))
        return runs

    # -- at the end -------------------------------------------------------------------
    def _pieces(self, img_off: int, n: int):
        """(image offset, length, fd, file offset) of the kept bytes of a range."""
        end = img_off + n
        i = bisect.bisect_right(self.k_img, img_off) - 1
        pos = img_off
        while pos < end:
            if i < 0 or i >= len(self.k_img) or not \
                    self.k_img[i] <= pos < self.k_img[i] + self.k_len[i]:
                raise RuntimeError(f"image bytes at offset {pos} were not kept from the "
                                   f"stream")
            k_off, k_n, fd, f_off = self.k_img[i], self.k_len[i], self.k_fd[i], self.k_off[i]
            take = min(end, k_off + k_n) - pos
            yield pos, take, fd, f_off + pos - k_off
            pos += take
            i += 1

    def read_at(self, img_off: int, n: int) -> bytes:
        """``n`` bytes of the image at ``img_off`` (the plan's ReadAt)."""
        return b"".join(os.pread(fd, k, off) for _, k, fd, off in self._pieces(img_off, n))

    def _in_place(self, s: Segment) -> int | None:
        """The core offset where a segment's bytes already lie as it needs them, if so."""
        base = None
        for r in s.runs:
            for pos, _, fd, off in self._pieces(r.src, r.length):
                if fd != self.out_rd:
                    return None
                b = off - self.base - r.seg_off - (pos - r.src)
                if base is None:
                    base = b
                elif b != base:
                    return None
        if base is None or base + s.filesz > self.cursor:
            return None
        if sum(r.length for r in s.runs) < s.filesz:
            # zeros between the runs: only inside one anonymous region, whose bytes are
            # the pages of its VMA (the runs) and holes
            i = bisect.bisect_right(self._region_starts, base) - 1
            if i < 0 or base + s.filesz > self._region_ends[i]:
                return None
        return base

    def _copy(self, s: Segment, at: int, advance) -> None:
        """Write a segment's runs at core offset ``at`` (the rest stays zeros)."""
        for r in s.runs:
            for pos, k, fd, off in self._pieces(r.src, r.length):
                _copy_range(fd, off, self.out, self.base + at + r.seg_off + pos - r.src, k)
                if advance:
                    advance(k)

    def finish(self, plan: CorePlan, advance: Callable[[int], object] | None = None) -> int:
        """Lay the plan's segments over the bytes in place, then write the program
        headers and notes after the data and the ELF header in front; returns the
        core's size."""
        end = self.cursor
        for s in plan.segments:
            if not s.filesz:
                continue
            at = self._in_place(s)
            if at is None:
                at = _roundup(end, PAGE)
                self._copy(s, at, advance)
                end = at + s.filesz
            s.offset = at
        phoff = _roundup(end, 8)
        offsets, filesz = plan.segments.offset, plan.segments.filesz
        for i in range(len(offsets)):
            if not filesz[i]:
                offsets[i] = phoff      # (no bytes: any offset inside the file)
        plan.note_offset = phoff + plan.phnum * PHDR.size
        plan.data_offset = PAGE
        plan.size = plan.note_offset + len(plan.notes) + \
            (SHDR.size if plan.phnum >= PN_XNUM else 0)
        at = self.base + phoff
        for part in (*plan.program_header_parts(), plan.notes, plan.tail()):
            _pwrite_all(self.out, part, at)
            at += len(part)
        _pwrite_all(self.out, plan.elf_header(phoff), self.base)
        os.lseek(self.out, self.base + plan.size, os.SEEK_SET)
        return plan.size


class StreamingBuilder(ProcessBuilder):
    """The model builder, placing page data as it passes (see the module's docstring)."""

    def __init__(self, reader, on_record, layout: Layout, pid: int | None,
                 keep: frozenset[str] | None = None):
        super().__init__(reader, on_record, keep, pid)
        self.layout = layout

    def buffer_pages(self, rec, arg):
        super().buffer_pages(rec, arg)
        vma = arg[0]
        if vma is None:
            return                  # (SysV shm segments: no core holds them)
        if self.dumped:
            self.layout.pages(vma, vma.batches[-1].addrs, rec)
        else:
            self.layout.spool(rec)  # a shared mapping of the dumped process may borrow them

    def on_cpu_fpu(self, rec, v, ref):
        super().on_cpu_fpu(rec, v, ref)
        if self.dumped:
            self.layout.spool(rec)

    def on_ext_extent(self, rec, v, ref):
        super().on_ext_extent(rec, v, ref)
        self.layout.spool(rec)      # memfd and deleted-file contents a mapping may show


def _roundup(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pwrite_all(fd: int, data, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n


def _copy_range(src: int, src_off: int, dst: int, dst_off: int, n: int) -> None:
    """copy_file_range, else pread/pwrite (another filesystem, an old kernel)."""
    while n:
        try:
            got = os.copy_file_range(src, dst, min(n, COPY_MAX), src_off, dst_off)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            got = 0
        if not got:
            data = os.pread(src, min(n, COPY_MAX), src_off)
            if not data:
                raise FramingError(f"kept bytes end early ({n} missing)", offset=src_off)
            _pwrite_all(dst, data, dst_off)
            got = len(data)
        src_off += got
        dst_off += got
        n -= got
