"""An address space's VMAs held compactly, for the commands that read every VMA of an image
of hundreds of thousands (to-core, diff; issue 11: peak RSS <= 100 MB at every size).

A model VMA with its list of page batches, the batch and the ints they hold is some 350
bytes; :class:`VmaTable` keeps the same values in arrays, about 80 bytes a VMA and 24 a
page batch (a batch whose pages are one run of addresses is its first address and count).
It stands in an Mm's ``vmas``: the builder appends its Vma objects as it reads them
(:class:`CompactBuilder`), the table takes the values of each when the next one comes, and
iterating or indexing it makes each Vma again, with its batches, one at a time.
"""
from __future__ import annotations

from array import array
from typing import Iterator

from .build import Builder
from .model import PageBatch, Vma

PAGE = 4096


class VmaTable:
    """An Mm's VMAs, in the order of the image: ``append(vma)`` as the builder reads them,
    ``len``, ``[i]`` and iteration give Vma objects (made on each read)."""

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
        self._open: Vma | None = None           # the last VMA: its batches may still come

    # -- as the image is read -------------------------------------------------------------
    def append(self, v: Vma) -> None:
        self._close()
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
        self._open = v

    def _close(self) -> None:
        """The batches of the last VMA into the arrays."""
        v, self._open = self._open, None
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

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i: int) -> Vma:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        self._close()
        return Vma(self.start[i], self.end[i], self.vm_flags[i], self.prot[i], self.pgoff[i],
                   self.types[self.vtype[i]], self.file_ref[i], self.ino_ref[i],
                   self.offset[i], self.hugetlb[i], self._batches(i))

    def __iter__(self) -> Iterator[Vma]:
        for i in range(len(self)):
            yield self[i]

    def by_start(self) -> Iterator[Vma]:
        """The VMAs in address order (the image's order, unless it is not sorted)."""
        s = self.start
        if all(s[i] <= s[i + 1] for i in range(len(s) - 1)):
            return iter(self)
        return (self[i] for i in sorted(range(len(s)), key=s.__getitem__))

    def of_type(self, vma_type: str) -> Iterator[Vma]:
        """The VMAs of one type (only those are made)."""
        k = self.type_idx.get(vma_type)
        kinds = self.vtype
        return (self[i] for i in range(len(kinds)) if kinds[i] == k) if k is not None \
            else iter(())

    def _batches(self, i: int) -> list[PageBatch]:
        lo = self.first_batch[i]
        hi = self.first_batch[i + 1] if i + 1 < len(self) else len(self.b_offset)
        out = []
        for b in range(lo, hi):
            addrs = self.b_addrs.get(b)
            if addrs is None:
                first = self.b_first[b]
                addrs = array("Q", range(first, first + self.b_n[b] * PAGE, PAGE))
            out.append(PageBatch(addrs, self.b_offset[b]))
        return out


class CompactBuilder(Builder):
    """The model builder whose address spaces hold their VMAs in a VmaTable."""

    def on_mm(self, rec, v, ref):
        super().on_mm(rec, v, ref)
        self.mm.vmas = VmaTable()

