"""An address space's VMAs held compactly, for the commands that read every VMA of an image
of hundreds of thousands (to-core, diff; issue 11: peak RSS <= 100 MB at every size).

A model VMA with its list of page batches, the batch and the ints they hold is some 350
bytes; :class:`VmaTable` keeps the same values in arrays, about 80 bytes a VMA and 24 a
page batch (a batch whose pages are one run of addresses is its first address and count).
It stands in an Mm's ``vmas``: the builder appends its Vma objects as it reads them
(:class:`CompactBuilder`), the table takes the values of each when the next one comes, and
iterating or indexing it makes each Vma again, with its batches, one at a time. The tables
of one builder are ranges of one set of arrays (an image of 10,000 processes, each with an
address space of its own, has 10,000 tables).
"""
from __future__ import annotations

from array import array
from typing import Iterator

from .build import Builder
from .model import PageBatch, Vma

PAGE = 4096


class _Columns:
    """The VMAs of every address space a builder reads, in one set of arrays: a VmaTable is
    a range of them. (An address space's VMAs follow its MM record, so each range is
    contiguous; a set of arrays each took 2 KB an address space, 20 MB of 10,000.)"""

    def __init__(self):
        self.start, self.end = array("Q"), array("Q")
        self.vm_flags, self.prot, self.pgoff = array("Q"), array("Q"), array("Q")
        self.file_ref, self.ino_ref = array("q"), array("q")
        self.offset, self.hugetlb = array("Q"), array("Q")
        self.vtype = bytearray()
        self.types: list[str] = []
        self.type_idx: dict[str, int] = {}
        self.first_batch = array("Q")           # per VMA: index of its first batch
        self.b_offset, self.b_first, self.b_n = array("Q"), array("Q"), array("Q")
        self.b_addrs: dict[int, array] = {}    # batch -> its addresses, when not one run
        self.open: Vma | None = None            # the last VMA: its batches may still come
        self.last: VmaTable | None = None       # the table VMAs are appended to

    def append(self, v: Vma) -> None:
        self.close()
        k = self.type_idx.get(v.vma_type)
        if k is None:
            k = self.type_idx[v.vma_type] = len(self.types)
            self.types.append(v.vma_type)
        self.start.append(v.start)
        self.end.append(v.end)
        self.vm_flags.append(v.vm_flags)
        self.prot.append(v.vm_page_prot)
        self.pgoff.append(v.pgoff)
        self.file_ref.append(v.file_ref)
        self.ino_ref.append(v.ino_ref)
        self.offset.append(v.offset)
        self.hugetlb.append(v.hugetlb_shift)
        self.vtype.append(k)
        self.first_batch.append(len(self.b_offset))
        self.open = v

    def close(self) -> None:
        """The batches of the last VMA into the arrays."""
        v, self.open = self.open, None
        if v is None:
            return
        for b in v.batches:
            n = len(b.addrs)
            first = b.addrs[0] if n else 0
            if n and b.addrs != array("Q", range(first, first + n * PAGE, PAGE)):
                self.b_addrs[len(self.b_offset)] = b.addrs
            self.b_offset.append(b.data_offset)
            self.b_first.append(first)
            self.b_n.append(n)

    def vma(self, g: int) -> Vma:
        """VMA number ``g`` of all, made."""
        self.close()
        return Vma(self.start[g], self.end[g], self.vm_flags[g], self.prot[g], self.pgoff[g],
                   self.types[self.vtype[g]], self.file_ref[g], self.ino_ref[g],
                   self.offset[g], self.hugetlb[g], self._batches(g))

    def _batches(self, g: int) -> list[PageBatch]:
        lo = self.first_batch[g]
        hi = self.first_batch[g + 1] if g + 1 < len(self.start) else len(self.b_offset)
        out = []
        for b in range(lo, hi):
            addrs = self.b_addrs.get(b)
            if addrs is None:
                first = self.b_first[b]
                addrs = array("Q", range(first, first + self.b_n[b] * PAGE, PAGE))
            out.append(PageBatch(addrs, self.b_offset[b]))
        return out


class VmaTable:
    """An Mm's VMAs, in the order of the image: ``append(vma)`` as the builder reads them,
    ``len``, ``[i]`` and iteration give Vma objects (made on each read). The tables of one
    builder share their columns (``columns``); VMAs go to the one made last."""
    __slots__ = ("c", "lo", "hi")

    def __init__(self, columns: _Columns | None = None):
        c = self.c = columns if columns is not None else _Columns()
        if c.last is not None:
            c.last.hi = len(c.start)
        c.last = self
        self.lo, self.hi = len(c.start), None

    # -- as the image is read -------------------------------------------------------------
    def append(self, v: Vma) -> None:
        if self.c.last is not self:
            raise RuntimeError("a VMA for an address space read before the last")
        self.c.append(v)

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return (len(self.c.start) if self.hi is None else self.hi) - self.lo

    def __getitem__(self, i: int) -> Vma:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self.c.vma(self.lo + i)

    def __iter__(self) -> Iterator[Vma]:
        for i in range(len(self)):
            yield self[i]

    def by_start(self) -> Iterator[Vma]:
        """The VMAs in address order (the image's order, unless it is not sorted)."""
        s, lo, hi = self.c.start, self.lo, self.lo + len(self)
        if all(s[g] <= s[g + 1] for g in range(lo, hi - 1)):
            return iter(self)
        return (self.c.vma(g) for g in sorted(range(lo, hi), key=s.__getitem__))

    def of_type(self, vma_type: str) -> Iterator[Vma]:
        """The VMAs of one type (only those are made)."""
        c = self.c
        k = c.type_idx.get(vma_type)
        if k is None:
            return iter(())
        kinds = c.vtype
        return (c.vma(g) for g in range(self.lo, self.lo + len(self)) if kinds[g] == k)


class CompactBuilder(Builder):
    """The model builder whose address spaces hold their VMAs in a VmaTable."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.vma_columns = _Columns()

    def on_mm(self, rec, v, ref):
        super().on_mm(rec, v, ref)
        self.mm.vmas = VmaTable(self.vma_columns)

