"""Memory: MM and its saved_auxv BUFFER, VMAs, the PGARR page batches of each VMA's contents,
MM_CONTEXT [+ LDT]; and the SysV IPC records that carry memory (shm segments' pages, message
texts)."""
from __future__ import annotations

import operator
import struct
from itertools import islice

from formats import USER_TOP

from ._pass import ADDR_CHUNK, ERROR, Expect, Pass
from .objrefs import IMPLICIT, REQ

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "mm.vma-type": (ERROR, "unknown VMA type", "VMA.vma_type is no CKPT_VMA_* of this "
                    "version."),
    "mm.vma-range": (ERROR, "bad VMA range", "vm_start < vm_end, both page aligned, "
                     "the end within the user address space (x86_64: 47 bits)."),
    "mm.vma-order": (ERROR, "VMAs unsorted or overlapping", "An mm's VMAs are written in "
                     "address order and do not overlap."),
    "mm.map-count": (ERROR, "map_count differs from the VMAs", "MM.map_count announces the "
                     "number of VMA records that follow."),
    "mm.page-align": (ERROR, "page address not page aligned", "Page buffers list page "
                      "addresses; each is a multiple of the page size."),
    "mm.page-outside": (ERROR, "page outside its VMA", "Every page address of a VMA's contents "
                        "lies in [vm_start, vm_end)."),
    "mm.page-order": (ERROR, "page addresses repeat or go backwards", "Pages are dumped in one "
                      "ascending walk of the VMA: each address is above the previous one."),
    "mm.page-kind": (ERROR, "pages for a VMA that holds none", "Shared file mappings and "
                     "*_SKIP VMAs carry no page list (a vdso may: the kernel saved none, "
                     "imgtools-engine saves its pages)."),
    "mm.page-batch": (ERROR, "page batch does not match its PGARR", "PGARR{nr_pages=n} is "
                      "followed by one BUFFER of n addresses + n page images (n·(W+4096) "
                      "bytes, W = 4 on i386, 8 on x86_64)."),
    "mm.pgarr-terminator": (ERROR, "page list not terminated", "A VMA's contents are PGARR "
                            "batches ended by PGARR{nr_pages=0}."),
    "mm.auxv": (ERROR, "saved_auxv buffer wrong", "MM is followed by a BUFFER of saved_auxv "
                "sized by the header constant (at_vector_size u64s from v19, "
                "mm_saved_auxv_len bytes before)."),
    "mm.context": (ERROR, "MM_CONTEXT missing", "An mm ends with MM_CONTEXT (x86) after its "
                   "VMAs."),
    "mm.ldt": (ERROR, "LDT record inconsistent", "MM_CONTEXT.nldt entries of ldt_entry_size "
               "bytes follow in MM_CONTEXT_LDT."),
}

EXPECT = {
    "auxv": Expect(("buffer",), "mm.auxv", "the saved_auxv BUFFER after MM"),
    "pages": Expect(("buffer",), "mm.page-batch", "the page BUFFER after PGARR"),
    "shm_pages": Expect(("buffer",), "mm.page-batch", "the page BUFFER after PGARR"),
    "ldt": Expect(("mm_context_ldt",), "mm.ldt", "MM_CONTEXT_LDT after MM_CONTEXT"),
    "ipc_bytes": Expect(("buffer",), None, ""),
}

PAGE = 4096
# VMA kind -> its page list: "yes" follows; "first" follows the first VMA naming its inode;
# "maybe" may follow; "opaque" is not checked; other kinds hold none ("no")
VMA_PAGES = {"anon": "yes", "file": "yes", "shm_anon": "first", "shm_ipc": "maybe",
             "hugetlb": "opaque", "vdso": "maybe"}   # vdso: the kernel saved none, our engine does
# Records that end an open mm (they never nest inside one).
MM_CLOSERS = {"task", "task_objs", "task_creds", "task_ns", "file_table", "mm", "sighand",
              "fs", "tail", "thread", "cpu", "restart_block", "signal_task", "signal",
              "file_desc"}


class _Mm:
    __slots__ = ("ref", "map_count", "nvma", "prev_end", "offset", "context", "ldt")

    def __init__(self, ref, map_count, offset):
        self.ref, self.map_count, self.offset = ref, map_count, offset
        self.nvma, self.prev_end, self.context, self.ldt = 0, None, False, None


class _Vma:
    __slots__ = ("start", "end", "kind", "holds", "loop", "last_addr", "offset")

    def __init__(self, start, end, kind, holds, offset):
        self.start, self.end, self.kind, self.holds, self.offset = start, end, kind, holds, offset
        self.loop = "expected" if holds == "yes" else "none"
        self.last_addr = -1


class Memory(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.mm: _Mm | None = None
        self.vma: _Vma | None = None
        self.shm_pages = False          # an IPC_SHM's page list is open

    # -- contexts -----------------------------------------------------------
    def gate_page_list(self, name: str, matched) -> None:
        # an open page list takes only PGARR and its BUFFERs
        v = self.vma
        if v is not None and v.loop in ("expected", "open") and not (
                name == "pgarr" or (name == "buffer" and matched is not None) or
                (v.holds == "opaque")):
            if v.loop == "expected":
                self.add("mm.pgarr-terminator", f"the VMA at byte {v.offset} "
                         f"({v.start:#x}-{v.end:#x}, {v.kind}) has no PGARR list; found "
                         f"{name.upper()}")
            else:
                self.add("mm.pgarr-terminator", f"the page list of the VMA at byte {v.offset} "
                         f"ends without PGARR{{nr_pages=0}}; found {name.upper()}")
            v.loop = "closed"
        if v is not None and v.holds == "opaque" and (name in MM_CLOSERS or
                                                      name in ("vma", "mm_context")):
            v.loop = "closed"
        if self.shm_pages and name not in ("pgarr", "buffer"):
            self.shm_pages = False

    def gate_mm(self, name: str) -> None:
        if name in MM_CLOSERS:
            self.close_mm()

    def close_vma(self) -> None:
        v = self.vma
        if v is not None and v.loop in ("expected", "open") and v.holds != "opaque":
            self.add("mm.pgarr-terminator", f"the page list of the VMA at byte {v.offset} is "
                     f"not terminated", offset=v.offset, record="VMA")
        self.vma = None

    def close_mm(self, at_end: bool = False) -> None:
        m, self.mm = self.mm, None
        self.vma = None
        if m is None or (at_end and (self.aborted or self.broken)):
            return
        if not m.context:
            self.check_map_count(m)
            self.add("mm.context", f"the MM at byte {m.offset} ends without MM_CONTEXT",
                     offset=m.offset, record="MM")
        elif m.ldt is not None and m.ldt > 0:
            self.add("mm.ldt", f"MM_CONTEXT announces {m.ldt} LDT entries but no "
                     f"MM_CONTEXT_LDT follows", offset=m.offset, record="MM")

    def check_map_count(self, m: _Mm) -> None:
        if m.nvma != m.map_count:
            self.add("mm.map-count", f"MM at byte {m.offset} has map_count {m.map_count}, "
                     f"{m.nvma} VMAs follow", offset=m.offset, record="MM")

    # -- records ------------------------------------------------------------
    def on_mm(self, rec, v, matched):
        ref = self.object_record("mm", rec, v)
        self.mm = _Mm(ref, v.map_count, rec.offset)
        self.vma = None
        self.expect.insert(0, ("auxv", None, rec.offset))

    def buffer_auxv(self, rec, _):
        w = self.abi.auxv_word
        c = self.consts
        if "at_vector_size" in c:
            want = c["at_vector_size"] * 8
        else:
            want = c.get("mm_saved_auxv_len")
        if want and rec.size != want:
            self.add("mm.auxv", f"saved_auxv BUFFER of {rec.size} bytes, the header constant "
                     f"says {want}")
        elif rec.size % (2 * w):
            self.add("mm.auxv", f"saved_auxv BUFFER of {rec.size} bytes is not a whole number "
                     f"of {w}-byte pairs")

    def on_vma(self, rec, v, matched):
        m = self.mm
        self.vma = None
        if m is None or m.context:
            self.add("record.stray", "VMA outside an MM")
            src = None
        else:
            m.nvma += 1
            src = m.ref
        self.ref("file", v.vma_objref, "vma_objref", 0, src)
        kind = self.abi.vma_type_names.get(v.vma_type, f"type_{v.vma_type}")
        if kind in ("file", "shm_file") and v.vma_objref == 0:
            self.add("objref.null", f"a {kind} VMA without vma_objref")
        holds = VMA_PAGES.get(kind, "no")
        if v.vma_type not in self.abi.vma_type_names:
            self.add("mm.vma-type", f"vma_type {v.vma_type} is no VMA type of {self.abi.name}")
            holds = "opaque"
        if kind in ("shm_anon", "shm_ipc") or v.ino_objref:
            ino = v.ino_objref
            first = ino > 0 and ino not in self.objs
            if self.ref("inode", ino, "ino_objref", IMPLICIT | (REQ if kind == "shm_anon"
                                                                else 0), src) is not None:
                self.inode_used_as(ino, "shm", "shared memory")
            if holds == "first":
                holds = "yes" if first else "maybe"
        elif holds == "first":
            holds = "yes"
        s, e = v.vm_start, v.vm_end
        if s >= e or s % PAGE or e % PAGE:
            self.add("mm.vma-range", f"VMA {s:#x}-{e:#x}")
        elif e > USER_TOP[self.abi.arch]:
            self.add("mm.vma-range", f"VMA {s:#x}-{e:#x} ends above the user address space "
                     f"({USER_TOP[self.abi.arch]:#x})")
        elif m is not None:
            if m.prev_end is not None and s < m.prev_end:
                self.add("mm.vma-order", f"VMA {s:#x}-{e:#x} starts below the end "
                         f"{m.prev_end:#x} of the previous one")
            m.prev_end = max(e, m.prev_end or 0)
        self.vma = _Vma(s, e, kind, holds, rec.offset)

    def on_pgarr(self, rec, v, matched):
        n = v.nr_pages
        if self.shm_pages:
            if n:
                self.expect.insert(0, ("shm_pages", n, rec.offset))
            else:
                self.shm_pages = False
            return
        vma = self.vma
        if vma is None:
            self.add("record.stray", "PGARR outside a VMA's page list")
            return
        if vma.holds == "no":
            self.add("mm.page-kind", f"PGARR after a {vma.kind} VMA ({vma.start:#x}-"
                     f"{vma.end:#x}), which holds no pages")
            vma.holds = "maybe"
        if vma.loop == "closed":
            self.add("record.stray", "PGARR after the page list's terminator")
            return
        if n == 0:
            vma.loop = "closed"
        else:
            vma.loop = "open"
            self.expect.insert(0, ("pages", n, rec.offset))

    def unannounced_buffer(self) -> None:
        """A BUFFER no record announced."""
        if not self.in_tasks:           # the head's records come in a fixed shape
            self.add("head.sequence", "a BUFFER in the head that no record announced")
            return
        v = self.vma
        if v is not None and v.holds != "opaque" and v.loop in ("open", "expected"):
            self.add("mm.page-batch", "a BUFFER in a page list without its PGARR")

    def buffer_shm_pages(self, rec, n):
        w = self.abi.word
        if rec.size != n * (w + PAGE):
            self.add("mm.page-batch", f"page BUFFER of {rec.size} bytes for {n} pages "
                     f"({n * (w + PAGE)} bytes)")

    def buffer_pages(self, rec, n):
        """Page addresses: aligned, inside the VMA, strictly increasing."""
        w = self.abi.word
        vma = self.vma
        if rec.size != n * (w + PAGE):
            self.add("mm.page-batch", f"page BUFFER of {rec.size} bytes does not hold the {n} "
                     f"pages its PGARR announced ({n * (w + PAGE)} bytes)")
            return
        if vma is None:
            return
        fmt = "Q" if w == 8 else "I"
        last = vma.last_addr
        bad_align = bad_out = bad_order = 0
        first_bad = {}
        left = n
        while left:
            k = min(left, ADDR_CHUNK)
            left -= k
            data = rec.read(k * w)
            addrs = struct.unpack(f"<{k}{fmt}", data)
            if _sound_run(addrs, data, w, last, vma.start, vma.end):
                last = addrs[-1]            # the common case, checked at C speed
                continue
            for a in addrs:
                if a % PAGE:
                    bad_align += 1
                    first_bad.setdefault("align", a)
                if not vma.start <= a < vma.end:
                    bad_out += 1
                    first_bad.setdefault("out", a)
                if a <= last:
                    bad_order += 1
                    first_bad.setdefault("order", (a, last))
                last = a
        vma.last_addr = last
        where = f"VMA {vma.start:#x}-{vma.end:#x}"
        if bad_align:
            self.add("mm.page-align", f"{bad_align} page address(es) in the {where} are not "
                     f"page aligned (first {first_bad['align']:#x})")
        if bad_out:
            self.add("mm.page-outside", f"{bad_out} page address(es) lie outside the {where} "
                     f"(first {first_bad['out']:#x})")
        if bad_order:
            a, b = first_bad["order"]
            self.add("mm.page-order", f"{bad_order} page address(es) in the {where} repeat or "
                     f"go backwards (first {a:#x} after {b:#x})")

    def on_mm_context(self, rec, v, matched):
        m = self.mm
        self.close_vma()
        if m is None or m.context:
            self.add("record.stray", "MM_CONTEXT outside an MM")
            return
        m.context = True
        self.check_map_count(m)
        m.ldt = v.nldt
        if v.nldt:
            self.expect.insert(0, ("ldt", (v.nldt, v.ldt_entry_size), rec.offset))

    def on_mm_context_ldt(self, rec, v, matched):
        m = self.mm
        if m is None or not m.context:
            self.add("record.stray", "MM_CONTEXT_LDT without MM_CONTEXT")
            return
        nldt, size = (m.ldt or 0), 8
        if matched is not None:
            nldt, size = matched[1]
        if rec.size != nldt * size:
            self.add("mm.ldt", f"MM_CONTEXT_LDT of {rec.size} bytes for {nldt} entries of "
                     f"{size} bytes")
        m.ldt = None
        self.mm = None

    # -- SysV IPC -------------------------------------------------------------
    def on_ipc_shm(self, rec, v, matched):
        self.ref("inode", v.objref, "objref", IMPLICIT)
        self.shm_pages = True

    def on_ipc_msg_msg(self, rec, v, matched):
        if v.m_ts > 0:
            self.expect.insert(0, ("ipc_bytes", v.m_ts, rec.offset))

    def buffer_ipc_bytes(self, rec, left):
        left -= rec.size
        if left > 0:
            self.expect.insert(0, ("ipc_bytes", left, rec.offset))


_LOW_NIBBLE = bytes(b & 0x0F for b in range(256))


def _sound_run(addrs: tuple, data: bytes, w: int, last: int, start: int, end: int) -> bool:
    """Whether every address of a chunk is page aligned (the low 12 bits, in the first
    two little-endian bytes of each word, are zero), strictly increasing from ``last``
    and inside [start, end): without a Python step per page."""
    k = len(addrs)
    return (k > 0 and last < addrs[0] and start <= addrs[0] and addrs[-1] < end
            and data[0::w].count(0) == k and data[1::w].translate(_LOW_NIBBLE).count(0) == k
            and all(map(operator.lt, addrs, islice(addrs, 1, None))))
