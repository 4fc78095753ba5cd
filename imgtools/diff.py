"""What changed between two checkpoints: tasks, registers, credentials, signal state,
descriptors, VMAs and pages.

Everything but the pages is compared on the version-independent model (so two versions
of one image differ only where a conversion lost something).  Pages are compared by a
64-bit BLAKE2b hash per page, computed while the page data goes by (``mem``'s reader:
pread on files, one pass on pipes); only the hashes and addresses are kept, 16 bytes a
page, never the pages.
"""
from __future__ import annotations

import re

import hashlib
from array import array
from typing import Iterator

from formats import NATIVE

from . import views
from .mem import PAGE, Consumer, Region
from .model import Image, Task

# Task fields that are comparable between versions and dumps (pointers into the task's
# own memory are compared like any register would be).
_SIGNAL_FIELDS = ("it_real_value", "it_real_incr", "it_virt_value", "it_virt_incr",
                  "it_prof_value", "it_prof_incr", "tty_pgrp")


class PageHashes(Consumer):
    """Per process: the address and hash of every page the image holds."""

    def __init__(self):
        self.pages: dict[int, tuple[array, array]] = {}

    def data(self, r: Region, addr: int, chunk, start: int, end: int, offset: int) -> None:
        data = memoryview(chunk)[start:end]
        addrs, hashes = self.pages.setdefault(r.pid, (array("Q"), array("Q")))
        blake = hashlib.blake2b
        frombytes = int.from_bytes
        for i in range(0, len(data), PAGE):
            addrs.append(addr + i)
            hashes.append(frombytes(blake(data[i:i + PAGE], digest_size=8).digest(),
                                    "little"))

    def sorted_pages(self, pid: int) -> Iterator[tuple[int, int]]:
        addrs, hashes = self.pages.get(pid, (array("Q"), array("Q")))
        if all(addrs[i] < addrs[i + 1] for i in range(len(addrs) - 1)):
            return zip(addrs, hashes)
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        return ((addrs[i], hashes[i]) for i in order)


def _ranges(addrs: list[int]) -> list[list[int]]:
    """Page addresses (ascending) -> [start, end) ranges of consecutive pages."""
    out: list[list[int]] = []
    for a in addrs:
        if out and out[-1][1] == a:
            out[-1][1] = a + PAGE
        else:
            out.append([a, a + PAGE])
    return out


def page_changes(a: PageHashes, b: PageHashes, pid: int) -> dict | None:
    """Pages changed / added / gone for one process (a merge of two sorted lists)."""
    changed, added, gone = [], [], []
    ia, ib = iter(a.sorted_pages(pid)), iter(b.sorted_pages(pid))
    x, y = next(ia, None), next(ib, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            gone.append(x[0])
            x = next(ia, None)
        elif x is None or y[0] < x[0]:
            added.append(y[0])
            y = next(ib, None)
        else:
            if x[1] != y[1]:
                changed.append(x[0])
            x, y = next(ia, None), next(ib, None)
    if not (changed or added or gone):
        return None
    return {"changed": len(changed), "added": len(added), "gone": len(gone),
            "ranges": {"changed": _ranges(changed), "added": _ranges(added),
                       "gone": _ranges(gone)}}


def _dict_changes(a: dict | None, b: dict | None) -> dict:
    """{key: [old, new]} for every key whose value differs (missing = None)."""
    a, b = a or {}, b or {}
    return {k: [a.get(k), b.get(k)] for k in {**a, **b} if a.get(k) != b.get(k)}


def _common_changes(a: dict | None, b: dict | None) -> dict:
    """As _dict_changes, over the keys both have (records whose layout is per version)."""
    a, b = a or {}, b or {}
    return {k: [a[k], b[k]] for k in a if k in b and a[k] != b[k]}


def _ext_changes(ia: Image, ib: Image):
    """How to compare what extension records hold: when both images are of the version
    that has them, one that is missing on one side is a change (a conversion lost it, or
    one dump was --strict); otherwise only what both hold is compared."""
    return _dict_changes if ia.version == ib.version == NATIVE else _common_changes


def _task_changes(ia: Image, ib: Image, ta: Task, tb: Task) -> dict:
    ch: dict = {}
    fields = _common_changes(ta.fields, tb.fields)
    if fields:
        ch["fields"] = fields
    if views.state(ta) != views.state(tb):
        ch["state"] = [views.state(ta), views.state(tb)]
    if (ta.comm or "") != (tb.comm or ""):
        ch["renamed"] = [ta.comm, tb.comm]
    regs = _common_changes(ta.regs, tb.regs)
    if regs:
        ch["regs"] = regs
    rseq = _ext_changes(ia, ib)(ta.rseq, tb.rseq)   # EXT_RSEQ (v23 with extensions)
    if rseq:
        ch["rseq"] = rseq
    creds = _dict_changes(views.creds(ia, ta), views.creds(ib, tb))
    if creds:
        ch["creds"] = creds
    if not (ta.zombie or tb.zombie):
        sig = _dict_changes(views.signals(ia, ta), views.signals(ib, tb))
        sa, sb = ia.get(ta.obj("signal"), "signal"), ib.get(tb.obj("signal"), "signal")
        sig |= _dict_changes({k: sa.fields.get(k) for k in _SIGNAL_FIELDS} if sa else {},
                             {k: sb.fields.get(k) for k in _SIGNAL_FIELDS} if sb else {})
        if sig:
            ch["signals"] = sig
    return ch


_FD_KEYS = ("type", "path", "flags", "cloexec", "pipe_bytes")


def _fd_changes(ia: Image, ib: Image, pid: int) -> dict:
    fa = {r["fd"]: r for r in views.files(ia, pid)}
    fb = {r["fd"]: r for r in views.files(ib, pid)}
    out: dict = {}
    opened = [_fd_row(fb[n]) for n in sorted(fb.keys() - fa.keys())]
    closed = [_fd_row(fa[n]) for n in sorted(fa.keys() - fb.keys())]
    moved, changed = [], []
    for n in sorted(fa.keys() & fb.keys()):
        x, y = fa[n], fb[n]
        d = {k: [x[k], y[k]] for k in _FD_KEYS if _same(k, x[k]) != _same(k, y[k])}
        # EXT_FILE_STAT: what restore compares with the file it reopens
        d |= {f"stat.{k}": v for k, v in _ext_changes(ia, ib)(_stat(ia, x), _stat(ib, y)).items()}
        if d:
            changed.append({"fd": n, **d})
        elif x["pos"] != y["pos"]:
            moved.append({"fd": n, "pos": [x["pos"], y["pos"]], "path": y["path"]})
    for k, v in (("opened", opened), ("closed", closed), ("moved", moved),
                 ("changed", changed)):
        if v:
            out[k] = v
    return out


_OBJREF_IN_PATH = re.compile(r"=#\d+")


def _same(key: str, value):
    """What of a descriptor's field is compared: objrefs a description names (a socket's
    peer=#N) are numbers of one image, renumbered by a conversion, so not compared."""
    if key == "path" and isinstance(value, str):
        return _OBJREF_IN_PATH.sub("=#", value)
    return value


def _stat(img: Image, row: dict) -> dict | None:
    return _stat_of(img, row["objref"])


def _fd_row(r: dict) -> dict:
    return {"fd": r["fd"], "type": r["type"], "path": r["path"], "pos": r["pos"]}


class _VmaKeys:
    """One process's VMAs as ``maps`` lists them, by (start, end), in arrays (the rows of
    200,000 VMAs were 130 MB an image): what the comparison reads of each, the rows
    themselves fetched again only for the VMAs that differ (``rows``)."""

    def __init__(self, img: Image, pid: int):
        self.img, self.pid = img, pid
        self.start, self.end = array("Q"), array("Q")
        self.vm_flags, self.pgoff, self.file_ref = array("Q"), array("Q"), array("i")
        self.path, self.type = array("I"), array("I")    # indices into self.names
        self.names: list = []
        ids: dict = {}
        t = img.task_by_pid(pid)
        mm = views.mm_of(img, t) if t is not None else None
        vmas = iter(mm.vmas) if mm is not None else iter(())
        for m in views.iter_maps(img, pid):     # task_maps: a row per mm.vmas, in order
            v = next(vmas)
            self.start.append(m["start"])
            self.end.append(m["end"])
            self.vm_flags.append(m["vm_flags"])
            self.pgoff.append(m["pgoff"])
            self.file_ref.append(v.file_ref)
            for names, key in ((self.path, m["path"]), (self.type, m["type"])):
                k = ids.get(key)
                if k is None:
                    k = ids[key] = len(self.names)
                    self.names.append(key)
                names.append(k)
        n = len(self.start)
        s, e = self.start, self.end
        if all((s[i], e[i]) <= (s[i + 1], e[i + 1]) for i in range(n - 1)):
            order = range(n)
        else:
            order = sorted(range(n), key=lambda i: (s[i], e[i]))
        # one index per key (as a dict of the rows: the last row of a key), sorted, and
        # the file the key's VMAs map (as a dict of the mapped VMAs: the last one's)
        self.keys = array("I")
        self.files = array("i")
        for i in order:
            if self.keys and (s[self.keys[-1]], e[self.keys[-1]]) == (s[i], e[i]):
                self.keys[-1] = i               # (a run of one key: ascending indices)
                if self.file_ref[i]:
                    self.files[-1] = self.file_ref[i]
                continue
            self.keys.append(i)
            self.files.append(self.file_ref[i])

    def key(self, i: int) -> tuple[int, int]:
        return self.start[i], self.end[i]

    def path_of(self, i: int):
        return self.names[self.path[i]]

    def rows(self, wanted) -> dict[int, dict]:
        """The ``maps`` rows of the VMAs at the indices ``wanted``."""
        wanted = set(wanted)
        if not wanted:
            return {}
        return {i: m for i, m in enumerate(views.iter_maps(self.img, self.pid)) if i in wanted}


def _vma_changes(ia: Image, ib: Image, pid: int) -> dict:
    ka, kb = _VmaKeys(ia, pid), _VmaKeys(ib, pid)
    changes = _ext_changes(ia, ib)
    # one merge of the sorted keys; the VMAs of a key both have are compared as it goes
    only_a, only_b = array("I"), array("I")         # indices of the rows
    reprot_ix, retyped_ix, restat_ix = [], [], []
    x = y = 0
    while x < len(ka.keys) or y < len(kb.keys):
        i = ka.keys[x] if x < len(ka.keys) else None
        j = kb.keys[y] if y < len(kb.keys) else None
        if j is None or (i is not None and ka.key(i) < kb.key(j)):
            only_a.append(i)
            x += 1
            continue
        if i is None or kb.key(j) < ka.key(i):
            only_b.append(j)
            y += 1
            continue
        if ka.vm_flags[i] != kb.vm_flags[j]:
            reprot_ix.append((i, j))
        if (ka.path_of(i), ka.names[ka.type[i]], ka.pgoff[i]) != \
                (kb.path_of(j), kb.names[kb.type[j]], kb.pgoff[j]):
            retyped_ix.append((i, j))
        # EXT_FILE_STAT of the mapped files (what restore compares with the file it maps)
        d = changes(_stat_of(ia, ka.files[x]), _stat_of(ib, kb.files[y]))
        if d:
            restat_ix.append((j, d))
        x, y = x + 1, y + 1
    # same start or same end: the VMA grew or shrank
    resized_ix = []
    for i in list(only_a):
        for j in only_b:
            if (ka.start[i] == kb.start[j] or ka.end[i] == kb.end[j]) and \
                    ka.path_of(i) == kb.path_of(j):
                resized_ix.append((i, j))
                only_a.remove(i)
                only_b.remove(j)
                break
    ra = ka.rows([*only_a, *(i for i, _ in resized_ix)] + [i for i, _ in reprot_ix] +
                 [i for i, _ in retyped_ix])
    rb = kb.rows([*only_b, *(j for _, j in resized_ix)] + [j for _, j in reprot_ix] +
                 [j for _, j in retyped_ix] + [j for j, _ in restat_ix])
    resized = [{"from": _vma_row(ra[i]), "to": _vma_row(rb[j])} for i, j in resized_ix]
    reprotected = [{"vma": _vma_row(rb[j]), "perms": [ra[i]["perms"], rb[j]["perms"]],
                    "vm_flags": [ra[i]["vm_flags"], rb[j]["vm_flags"]]} for i, j in reprot_ix]
    retyped = [{"vma": _vma_row(rb[j]), "path": [ra[i]["path"], rb[j]["path"]],
                "type": [ra[i]["type"], rb[j]["type"]]} for i, j in retyped_ix]
    restat = [{"vma": _vma_row(rb[j]), **{f"stat.{n}": v for n, v in d.items()}}
              for j, d in restat_ix]
    out: dict = {}
    for k, v in (("added", [_vma_row(rb[j]) for j in only_b]),
                 ("removed", [_vma_row(ra[i]) for i in only_a]), ("resized", resized),
                 ("reprotected", reprotected), ("replaced", retyped), ("restat", restat)):
        if v:
            out[k] = v
    return out


def _stat_of(img: Image, ref: int | None) -> dict | None:
    f = img.get(ref, "file") if ref else None
    return f.sub.get("stat") if f is not None else None


def _vma_row(m: dict) -> dict:
    return {"start": m["start"], "end": m["end"], "perms": m["perms"], "path": m["path"]}


def _fs(img: Image, t: Task) -> dict:
    fs = img.get(t.obj("fs"), "fs")
    return {"cwd": fs.cwd, "root": fs.root, "umask": fs.umask} if fs is not None else {}


def _task_row(t: Task) -> dict:
    return {"pid": t.pid, "tgid": t.tgid, "comm": t.comm}


def diff(ia: Image, ib: Image, pa: PageHashes, pb: PageHashes) -> dict:
    """The differences between two image models (and their page hashes), as plain data."""
    ta = {t.pid: t for t in ia.tasks}
    tb = {t.pid: t for t in ib.tasks}
    result: dict = {
        "a": {"version": ia.version, "arch": ia.arch, "tasks": len(ia.tasks),
              "pages": ia.pages},
        "b": {"version": ib.version, "arch": ib.arch, "tasks": len(ib.tasks),
              "pages": ib.pages},
        "appeared": [_task_row(tb[p]) for p in tb if p not in ta],
        "exited": [_task_row(ta[p]) for p in ta if p not in tb],
        "tasks": [],
    }
    for pid, t in ta.items():
        u = tb.get(pid)
        if u is None:
            continue
        ch = _task_changes(ia, ib, t, u)
        if t.ppid != u.ppid:
            ch["ppid"] = [t.ppid, u.ppid]
        if not t.is_thread and not (t.zombie or u.zombie):
            fs = _common_changes(_fs(ia, t), _fs(ib, u))    # v17..v19-rc2 save no fs
            if fs:
                ch["fs"] = fs
            fds = _fd_changes(ia, ib, pid)
            if fds:
                ch["fds"] = fds
            vmas = _vma_changes(ia, ib, pid)
            if vmas:
                ch["vmas"] = vmas
            pages = page_changes(pa, pb, pid)
            if pages:
                ch["pages"] = pages
        if ch:
            result["tasks"].append({"pid": pid, "comm": u.comm, **ch})
    result["equal"] = not (result["appeared"] or result["exited"] or result["tasks"])
    return result
