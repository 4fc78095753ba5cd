"""What changed between two checkpoints: tasks, registers, credentials, signal state,
descriptors, VMAs and pages.

Everything but the pages is compared on the version-independent model (so two versions
of one image differ only where a conversion lost something).  Pages are compared by a
64-bit BLAKE2b hash per page, computed while the page data goes by (``mem``'s reader:
pread on files, one pass on pipes); only the hashes and addresses are kept, 16 bytes a
page, never the pages.

Neither model is held (issue 11: two whole models of 100,000 tasks were 560 MB, of
400,000 fds 735 MB): each image is read into its :class:`Facts`, what diff compares of
it, in columns, each task's records as they end (a lean model's task_done), its
descriptors and VMAs from the lean model once it is read; the model is dropped before
the next image is read. A value many tasks or descriptors share (a task's records, its
credentials, handlers, a file's flags and stat) is held once. The second image's
descriptors are compared with the first's as its model is read: of them only those that
differ are held (the rows of 400,000 fds were 17 MB more, while its model was held).
"""
from __future__ import annotations

import re

import hashlib
import json
from array import array
from typing import Iterator

from formats import NATIVE

from . import views
from .lean import _Strings
from .mem import PAGE, Consumer, Region, read_pages
from .model import Held, Image, Task, _Parsed
from .reader import ImageReader

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


def _ext_changes(fa: "Facts", fb: "Facts"):
    """How to compare what extension records hold: when both images are of the version
    that has them, one that is missing on one side is a change (a conversion lost it, or
    one dump was --strict); otherwise only what both hold is compared."""
    return _dict_changes if fa.version == fb.version == NATIVE else _common_changes


# What diff reads of a model once it is built (build_model's keep): the objects its
# descriptors, VMAs, credentials and handlers name. A task's records, its fs and SIGNAL
# are read as they pass (Facts.task_done), not held.
READS = frozenset(("vmas", "fds", "task_objs", "mm", "file", "file_table", "inode", "sock",
                   "tty", "cred", "groupinfo", "sighand"))
_PASSING = ("fs", "signal")     # the kinds of objects _Passing hands to task_done


class _Passing:
    """A model builder that hands diff's task_done the fs and SIGNAL objects it defines,
    with the fields of each SIGNAL diff compares (a lean model holds neither: 100,000 of
    each were 58 MB)."""

    def __init__(self, reader, *args, **options):
        super().__init__(reader, *args, **options)
        passing = self.passing = {}     # objref -> Fs, or (Signal, its fields)
        done = self.task_done           # (not a cycle: the model goes with the builder)
        self.task_done = lambda img, t: done(img, t, passing)

    def _define(self, ref, kind, value, rec) -> bool:
        defined = super()._define(ref, kind, value, rec)
        if defined and kind in _PASSING:
            self.passing[ref] = value
        return defined

    def on_signal(self, rec, v, ref):
        super().on_signal(rec, v, ref)
        s = self.signal
        if self.passing.get(s.ref) is s:
            fields = self.held["signal"](v)
            self.passing[s.ref] = (s, {k: fields.get(k) for k in _SIGNAL_FIELDS})


class _Interned:
    """Values held once each, however many tasks or descriptors have them: ``add`` gives
    the index to keep, ``values[i]`` the value."""

    def __init__(self):
        self.values: list = []
        self.index: dict = {}

    def add(self, value, key=None) -> int:
        """``key``: the value's own (hashable, equal only for equal values), else made."""
        try:
            if key is None:
                key = _frozen(value)
            i = self.index.get(key)
        except TypeError:       # (unhashable: held as it is, once more)
            key = i = None
        if i is None:
            i = len(self.values)
            self.values.append(value)
            if key is not None:
                self.index[key] = i
        return i


def _task_key(facts: tuple):
    """Facts.task_done's facts of a task as their key: each place holds one type (the
    state a str, the records Held or a dict, the rest ints, zombie a bool), so its value
    (a Held's bytes, a dict frozen) is the key without _frozen's type of each (a task's
    key took 700 bytes)."""
    return tuple(x.payload if type(x) is Held else _frozen(x) if type(x) is dict else x
                 for x in facts)


def _frozen(v):
    """A value as a key: equal only to an equal value of the same types (True is not 1)."""
    if type(v) is dict:
        return dict, tuple((k, _frozen(x)) for k, x in v.items())
    if type(v) in (list, tuple):
        return type(v), tuple(_frozen(x) for x in v)
    if type(v) is Held:         # (the parse of one image's records is the same for all)
        return Held, v.payload
    return type(v), v


class _ByRef:
    """objref -> a number (>= 0), in an array indexed by objref - the first one (objrefs
    are numbered as the dumper meets the objects: dense); one far from the others in a
    dict."""

    def __init__(self):
        self.base: int | None = None
        self.at = array("i")
        self.far: dict = {}

    def set(self, ref, n: int) -> None:
        if self.base is None and type(ref) is int:
            self.base = ref
        i = ref - self.base if type(ref) is int else -1
        if 0 <= i < 2 * len(self.at) + 65536:
            if i >= len(self.at):
                self.at.extend([-1] * (i + 1 - len(self.at) + len(self.at) // 2))
            self.at[i] = n
        else:
            self.far[ref] = n

    def get(self, ref) -> int | None:
        i = ref - self.base if type(ref) is int and self.base is not None else -1
        n = self.at[i] if 0 <= i < len(self.at) else -1
        if n < 0:
            n = self.far.get(ref, -1)
        return None if n < 0 else n


_IN_COLUMN = ...        # a descriptor's offset is in the pos column (not in its attrs)


class Facts:
    """What diff compares of one image (``read``), in columns:

    * per task, in the image's order: pid, ppid, tgid, comm, and one index of what else
      is compared (state, TASK and CPU records, rseq, creds, signals, the SIGNAL fields,
      fs, zombie), and one of its fd table's and address space's rows;
    * per descriptor (a row of ``files``): fd, offset, path, and an index of its type,
      flags, close-on-exec, pipe bytes and stat; of the second image (read ``against``
      the first), only the descriptors that differ from the first's, and per task the
      changes of its fd table from the first's: (row of the first's, row of its own)
      pairs, -1 for none;
    * per VMA (a row of ``maps``): start, end, vm_flags, pgoff, and an index of its perms,
      path, type, the stat of its file, and whether it maps one."""

    def __init__(self):
        self.pages = PageHashes()
        self.shared = _Interned()
        self.version = self.arch = None
        self.summary: dict = {}
        self.pid, self.ppid, self.tgid = array("q"), array("q"), array("q")
        self.comms, self.comm_at = _Strings(), array("q")
        self.task = array("I")
        self.tables = array("q")    # 4 a task: its rows of fds (lo, hi), of VMAs (lo, hi)
        self.fd, self.fd_pos, self.fd_attrs = array("q"), array("q"), array("I")
        self.fd_paths, self.fd_path_end = bytearray(), array("Q")  # (each after the last)
        self.vma = array("Q")       # 4 a VMA: start, end, vm_flags, pgoff (in bytes)
        self.vma_attrs = array("I")
        self.fd_pairs = array("q")  # 2 a pair (the second image's): the first's row, its own
        self.compared_with: Facts | None = None     # the first image's (see read)
        # while an image is read: the index in shared of the value of an objref, by kind
        self.of_ref: dict[str, _ByRef] = {}
        self.of_signals: dict[tuple, int] = {}  # (sighand, masks, signal) -> signals
        self.no_signal = self.shared.add((None, {}))
        self.no_fs = self.shared.add({})

    def read(self, reader: ImageReader, on_record=None, against: "Facts | None" = None) -> None:
        """The facts of an image; ``against``: the first image's, when this is the second
        (its descriptors are compared with them: see _fd_pairs)."""
        first_of = _first_task_of(against) if against is not None else None
        img = read_pages(reader, self.pages, on_record, keep=READS, vma_table=True,
                         task_done=self.task_done, mixin=_Passing, read_once=True)
        self.version, self.arch = img.version, img.arch
        self.summary = {"version": img.version, "arch": img.arch, "tasks": len(img.tasks),
                        "pages": img.pages}
        for i in range(len(self.pid), len(img.tasks)):     # announced, no TASK record
            self.task_done(img, img.tasks[i], {})
        self.compared_with = against
        fd_tables: dict = {}    # files objref (and the first's rows) -> rows, or pairs
        vma_tables: dict = {}   # mm objref -> rows
        for t in img.tasks:
            fds = self._fd_table(img, t, against, first_of, fd_tables)
            key = t.obj("mm")
            vmas = vma_tables.get(key)
            if vmas is None:
                vmas = vma_tables[key] = self._vma_rows(img, t)
            self.tables.extend((*fds, *vmas))
        self.of_ref, self.of_signals = {}, {}

    def _of_ref(self, kind: str) -> "_ByRef":
        by = self.of_ref.get(kind)
        if by is None:
            by = self.of_ref[kind] = _ByRef()
        return by

    # -- an image read ------------------------------------------------------------------
    def task_done(self, img: Image, t: Task, passing: dict) -> None:
        shared = self.shared
        of_fs, of_signal, of_cred = (self._of_ref(k) for k in ("fs", "signal", "cred"))
        for ref, o in passing.items():          # (complete now: their records are read)
            if type(o) is tuple:
                sig, fields = o
                of_signal.set(ref, shared.add((sig.shared_mask, fields)))
            else:
                of_fs.set(ref, shared.add({"cwd": o.cwd, "root": o.root, "umask": o.umask}))
        passing.clear()
        creds = of_cred.get(t.cred_ref)
        if creds is None:
            creds = shared.add(views.creds(img, t))
            of_cred.set(t.cred_ref, creds)
        signal = of_signal.get(t.obj("signal"))
        if signal is None:
            signal = self.no_signal
        key = (t.obj("sighand"), t.blocked, t.pending_mask, signal)
        signals = self.of_signals.get(key)
        if signals is None:
            signals = views.signals(img, t)     # (but the model holds no SIGNAL)
            mask = shared.values[signal][0]
            if mask is not None:
                signals["shared_pending"] = views.sigset(mask)
            # as JSON text, its own key (_TaskFacts reads it back): processes have
            # handlers at addresses of their own, and a dict of them and its key took
            # 2 KB a process
            text = json.dumps(signals, separators=(",", ":"))
            signals = self.of_signals[key] = shared.add(text, text)
        fs = of_fs.get(t.obj("fs"))
        # the TASK and CPU records as the task holds them (bytes, parsed when read: one
        # for all the tasks that have the same)
        facts = (views.state(t), t._fields, t._regs, t.rseq, creds, signals, signal,
                 self.no_fs if fs is None else fs, t.zombie)
        self.task.append(shared.add(facts, _task_key(facts)))
        t.rseq = None           # (read: the lean model may pack the task now)
        self.pid.append(t.pid)
        self.ppid.append(t.ppid)
        self.tgid.append(t.tgid)
        self.comm_at.extend(self.comms.add(t.comm))

    def _fd_table(self, img: Image, t: Task, against: "Facts | None",
                  first_of: views.Listed | None, made: dict) -> tuple[int, int]:
        """Task t's rows of descriptors or, read against the first image, of pairs; those
        of one table (against one of the first's) made once (``made``: those made)."""
        if against is None:
            key = t.obj("files")
            rows = made.get(key)
            if rows is None:
                rows = made[key] = self._fd_rows(img, t)
            return rows
        first = first_of.get(t.pid)
        if not first:           # a pid the first has not: its fds are not compared
            return 0, 0
        rows_a = against.fd_range(first[0])     # (of its first task, as diff compares)
        key = (t.obj("files"), rows_a.start, rows_a.stop)
        pairs = made.get(key)
        if pairs is None:
            pairs = made[key] = self._fd_pairs(img, t, against, rows_a)
        return pairs

    def _fd_rows(self, img: Image, t: Task) -> tuple[int, int]:
        lo = len(self.fd)
        table = img.get(t.obj("files"), "file_table")
        for fd in table.fds if table is not None else ():
            self._add_fd_row(_fd_facts(img, t.pid, fd))
        return lo, len(self.fd)

    def _add_fd_row(self, r: dict) -> int:
        """A descriptor's row (as fd_row gives it) into the columns: its index."""
        pos = r["pos"]
        try:
            self.fd_pos.append(pos)
            pos = _IN_COLUMN
        except (OverflowError, TypeError):
            self.fd_pos.append(0)
        self.fd.append(r["fd"])
        path = r["path"]
        self.fd_attrs.append(self.shared.add((r["type"], r["flags"], r["cloexec"],
                                              r["pipe_bytes"], r["stat"], pos,
                                              path is None)))
        if path is not None:
            self.fd_paths += path.encode("utf-8", "surrogatepass")  # (as it was)
        self.fd_path_end.append(len(self.fd_paths))
        return len(self.fd) - 1

    def _fd_pairs(self, img: Image, t: Task, fa: "Facts", rows: range) -> tuple[int, int]:
        """The changes of task t's descriptors from the first image's ``rows`` (one
        merge by fd number, as ``files`` lists them: the last of a number): the pairs
        (row of the first's, row of this one's) of the descriptors that differ, opened
        or closed, in the order of their numbers; this one's rows of them in the
        columns. The others are compared and not held."""
        lo = len(self.fd_pairs) // 2
        fd_a = fa.fd.__getitem__
        changes = _ext_changes(fa, self)
        for ka, fd in _merge(_by_key(rows, fd_a), _fds_by_number(img, t), fd_a, _fd_number):
            if fd is None:
                self.fd_pairs.extend((ka, -1))
                continue
            y = _fd_facts(img, t.pid, fd)
            if ka is None:
                self.fd_pairs.extend((-1, self._add_fd_row(y)))
            elif _fd_change(fa.fd_row(ka), y, changes) is not None:
                self.fd_pairs.extend((ka, self._add_fd_row(y)))
        return lo, len(self.fd_pairs) // 2

    def _vma_rows(self, img: Image, t: Task) -> tuple[int, int]:
        lo = len(self.vma_attrs)
        mm = views.mm_of(img, t)
        vmas = iter(mm.vmas) if mm is not None else iter(())
        shared = self.shared
        for m in views.task_maps(img, t):     # a row per mm.vmas, in order
            v = next(vmas)
            self.vma.extend((m["start"], m["end"], m["vm_flags"], m["pgoff"]))
            self.vma_attrs.append(shared.add((m["perms"], m["path"], m["type"],
                                              _stat_of(img, v.file_ref), bool(v.file_ref))))
        return lo, len(self.vma_attrs)

    # -- reading ------------------------------------------------------------------------
    def by_pid(self) -> tuple[dict[int, int], dict[int, int]]:
        """pid -> the index of its (last) task, in the order of the first (as a dict of
        the tasks by pid reads); and pid -> the first, of the pids more than one task has."""
        last: dict[int, int] = {}
        first: dict[int, int] = {}
        for i, pid in enumerate(self.pid):
            if pid in last:
                first.setdefault(pid, last[pid])
            last[pid] = i
        return last, first

    def comm(self, i: int) -> str | None:
        return self.comms.at(*self.comm_at[2 * i:2 * i + 2])

    def task_row(self, i: int) -> dict:
        return {"pid": self.pid[i], "tgid": self.tgid[i], "comm": self.comm(i)}

    def facts(self, i: int) -> "_TaskFacts":
        return _TaskFacts(self.shared, *self.shared.values[self.task[i]])

    def fd_range(self, i: int) -> range:
        """The rows of task i's descriptors (of the first image)."""
        return range(*self.tables[4 * i:4 * i + 2])

    def fd_changes(self, j: int) -> Iterator[tuple[int, int]]:
        """The (first image's row, this one's row) pairs of task j's descriptors that
        changed (of the second image: see _fd_pairs)."""
        lo, hi = self.tables[4 * j:4 * j + 2]
        pairs = self.fd_pairs
        return ((pairs[2 * n], pairs[2 * n + 1]) for n in range(lo, hi))

    def vma_range(self, i: int) -> range:
        return range(*self.tables[4 * i + 2:4 * i + 4])

    def fd_row(self, k: int) -> dict:
        """The row of descriptor k: as ``files`` gives it, of what diff compares."""
        type_, flags, cloexec, pipe_bytes, stat, pos, no_path = \
            self.shared.values[self.fd_attrs[k]]
        start = self.fd_path_end[k - 1] if k else 0
        path = None if no_path else \
            self.fd_paths[start:self.fd_path_end[k]].decode("utf-8", "surrogatepass")
        return {"fd": self.fd[k], "type": type_, "path": path,
                "flags": flags, "cloexec": cloexec, "pipe_bytes": pipe_bytes,
                "pos": self.fd_pos[k] if pos is _IN_COLUMN else pos, "stat": stat}

    def vma_row(self, k: int) -> dict:
        """The row of VMA k: as ``maps`` gives it, of what diff compares."""
        perms, path, type_, stat, mapped = self.shared.values[self.vma_attrs[k]]
        start, end, vm_flags, pgoff = self.vma[4 * k:4 * k + 4]
        return {"start": start, "end": end, "perms": perms, "path": path, "type": type_,
                "vm_flags": vm_flags, "pgoff": pgoff, "stat": stat, "mapped": mapped}


class _TaskFacts:
    """What diff compares of a task (Facts.task_done)."""
    __slots__ = ("state", "_fields", "_regs", "rseq", "creds", "signals", "signal_fields",
                 "fs", "zombie")
    fields = _Parsed()
    regs = _Parsed()

    def __init__(self, shared: _Interned, *values):
        for name, v in zip(self.__slots__, values):
            setattr(self, name, v)
        values = shared.values
        self.creds, self.signals = values[self.creds], json.loads(values[self.signals])
        self.signal_fields, self.fs = values[self.signal_fields][1], values[self.fs]


def _fd_facts(img: Image, pid: int, fd) -> dict:
    """What diff compares of a descriptor (an Fd of the model): its row of ``files`` and
    its file's stat, as Facts.fd_row gives them."""
    f = img.get(fd.file_ref, "file")
    r = views.file_row(img, pid, fd, f)
    stat = f.sub.get("stat") if f is not None and fd.file_ref else None
    return {"fd": r["fd"], "type": r["type"], "path": r["path"], "flags": r["flags"],
            "cloexec": r["cloexec"], "pipe_bytes": r["pipe_bytes"], "pos": r["pos"],
            "stat": stat}


def _fd_number(fd) -> int:
    return fd.fd


def _fds_by_number(img: Image, t: Task):
    """Task t's descriptors (Fds of the model) sorted by number, one a number (as a dict
    of them: the last of a number): the table itself when it is so (most are: it is read
    as it is, never held as a list)."""
    table = img.get(t.obj("files"), "file_table")
    if table is None:
        return ()
    last = None
    for fd in table.fds:
        if last is not None and not last < fd.fd:
            break
        last = fd.fd
    else:
        return table.fds
    fds = list(table.fds)
    return [fds[n] for n in _by_key(range(len(fds)), lambda n: fds[n].fd)]


def _first_task_of(facts: "Facts") -> views.Listed:
    """pid -> the indexes of its tasks (the first first), of an image's facts."""
    listed = views.Listed()
    listed.pids = array("q", facts.pid)
    listed.indexes = array("q", range(len(facts.pid)))
    listed.sort()
    return listed


def _stat_of(img: Image, ref: int | None) -> dict | None:
    f = img.get(ref, "file") if ref else None
    return f.sub.get("stat") if f is not None else None


def _task_changes(fa: "Facts", fb: "Facts", ta: _TaskFacts, tb: _TaskFacts, i: int,
                  j: int) -> dict:
    ch: dict = {}
    fields = _common_changes(ta.fields, tb.fields)
    if fields:
        ch["fields"] = fields
    if ta.state != tb.state:
        ch["state"] = [ta.state, tb.state]
    ca, cb = fa.comm(i), fb.comm(j)
    if (ca or "") != (cb or ""):
        ch["renamed"] = [ca, cb]
    regs = _common_changes(ta.regs, tb.regs)
    if regs:
        ch["regs"] = regs
    rseq = _ext_changes(fa, fb)(ta.rseq, tb.rseq)   # EXT_RSEQ (v23 with extensions)
    if rseq:
        ch["rseq"] = rseq
    creds = _dict_changes(ta.creds, tb.creds)
    if creds:
        ch["creds"] = creds
    if not (ta.zombie or tb.zombie):
        sig = _dict_changes(ta.signals, tb.signals)
        sig |= _dict_changes(ta.signal_fields, tb.signal_fields)
        if sig:
            ch["signals"] = sig
    return ch


_FD_KEYS = ("type", "path", "flags", "cloexec", "pipe_bytes")


def _by_key(rows: range, key):
    """The rows sorted by ``key(row)``, one a key (as a dict of them: the last row of a
    key)."""
    if all(key(rows[n]) < key(rows[n + 1]) for n in range(len(rows) - 1)):
        return rows
    keys = [key(k) for k in rows]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    out: list[int] = []
    for n in order:
        if out and keys[out[-1]] == keys[n]:
            out[-1] = n                 # (a run of one key: ascending rows)
        else:
            out.append(n)
    return [rows[n] for n in out]


def _merge(a, b, key_a, key_b):
    """One merge of two iterables sorted by key (one item a key): (x, None), (None, y) or
    (x, y), in order."""
    a, b = iter(a), iter(b)
    i, j = next(a, None), next(b, None)
    while i is not None or j is not None:
        if j is None or (i is not None and key_a(i) < key_b(j)):
            yield i, None
            i = next(a, None)
        elif i is None or key_b(j) < key_a(i):
            yield None, j
            j = next(b, None)
        else:
            yield i, j
            i, j = next(a, None), next(b, None)


def _fd_change(x: dict, y: dict, changes) -> tuple[str, dict] | None:
    """How a descriptor of both images changed (rows as Facts.fd_row gives them):
    ("changed", what) or ("moved", its offsets), None if not."""
    d = {k: [x[k], y[k]] for k in _FD_KEYS if _same(k, x[k]) != _same(k, y[k])}
    # EXT_FILE_STAT: what restore compares with the file it reopens
    d |= {f"stat.{k}": v for k, v in changes(x["stat"], y["stat"]).items()}
    if d:
        return "changed", {"fd": x["fd"], **d}
    if x["pos"] != y["pos"]:
        return "moved", {"fd": x["fd"], "pos": [x["pos"], y["pos"]], "path": y["path"]}
    return None


def _fd_changes(fa: "Facts", fb: "Facts", j: int) -> dict:
    """The changes of the second image's task j's descriptors (from those of the first
    image's first task of its pid, see Facts.read)."""
    changes = _ext_changes(fa, fb)
    opened, closed, moved, changed = [], [], [], []
    for ka, kb in fb.fd_changes(j):
        if ka < 0:
            opened.append(_fd_row(fb.fd_row(kb)))
        elif kb < 0:
            closed.append(_fd_row(fa.fd_row(ka)))
        else:
            kind, what = _fd_change(fa.fd_row(ka), fb.fd_row(kb), changes)
            (changed if kind == "changed" else moved).append(what)
    out: dict = {}
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


def _fd_row(r: dict) -> dict:
    return {"fd": r["fd"], "type": r["type"], "path": r["path"], "pos": r["pos"]}


class _VmaKeys:
    """One process's VMAs as ``maps`` lists them, by (start, end): the index of each key
    (as a dict of the rows: the last row of a key), sorted, and the VMA whose file's stat
    is compared (as a dict of the mapped VMAs: the last one's)."""

    def __init__(self, facts: Facts, i: int):
        self.facts = facts
        rows = facts.vma_range(i)
        key = self.key
        if all(key(rows[n]) <= key(rows[n + 1]) for n in range(len(rows) - 1)):
            order = rows
        else:
            order = sorted(rows, key=key)
        self.keys, self.files = array("q"), array("q")     # rows
        for k in order:
            if self.keys and key(k) == key(self.keys[-1]):
                self.keys[-1] = k
                if self.mapped(k):
                    self.files[-1] = k
                continue
            self.keys.append(k)
            self.files.append(k)

    def key(self, k: int) -> tuple[int, int]:
        return self.facts.vma[4 * k], self.facts.vma[4 * k + 1]

    def mapped(self, k: int) -> bool:
        return self.facts.shared.values[self.facts.vma_attrs[k]][4]


def _vma_changes(fa: Facts, fb: Facts, i: int, j: int) -> dict:
    ka, kb = _VmaKeys(fa, i), _VmaKeys(fb, j)
    changes = _ext_changes(fa, fb)
    # one merge of the sorted keys; the VMAs of a key both have are compared as it goes
    only_a, only_b = [], []             # rows
    reprot, retyped, restat = [], [], []
    x = y = 0
    while x < len(ka.keys) or y < len(kb.keys):
        i = ka.keys[x] if x < len(ka.keys) else None
        j = kb.keys[y] if y < len(kb.keys) else None
        if j is None or (i is not None and ka.key(i) < kb.key(j)):
            only_a.append(fa.vma_row(i))
            x += 1
            continue
        if i is None or kb.key(j) < ka.key(i):
            only_b.append(fb.vma_row(j))
            y += 1
            continue
        ra, rb = fa.vma_row(i), fb.vma_row(j)
        if ra["vm_flags"] != rb["vm_flags"]:
            reprot.append({"vma": _vma_row(rb), "perms": [ra["perms"], rb["perms"]],
                           "vm_flags": [ra["vm_flags"], rb["vm_flags"]]})
        if (ra["path"], ra["type"], ra["pgoff"]) != (rb["path"], rb["type"], rb["pgoff"]):
            retyped.append({"vma": _vma_row(rb), "path": [ra["path"], rb["path"]],
                            "type": [ra["type"], rb["type"]]})
        # EXT_FILE_STAT of the mapped files (what restore compares with the file it maps)
        d = changes(fa.vma_row(ka.files[x])["stat"], fb.vma_row(kb.files[y])["stat"])
        if d:
            restat.append({"vma": _vma_row(rb), **{f"stat.{n}": v for n, v in d.items()}})
        x, y = x + 1, y + 1
    # same start or same end: the VMA grew or shrank
    resized = []
    for ra in list(only_a):
        for rb in only_b:
            if (ra["start"] == rb["start"] or ra["end"] == rb["end"]) and \
                    ra["path"] == rb["path"]:
                resized.append({"from": _vma_row(ra), "to": _vma_row(rb)})
                only_a.remove(ra)
                only_b.remove(rb)
                break
    out: dict = {}
    for k, v in (("added", [_vma_row(r) for r in only_b]),
                 ("removed", [_vma_row(r) for r in only_a]), ("resized", resized),
                 ("reprotected", reprot), ("replaced", retyped), ("restat", restat)):
        if v:
            out[k] = v
    return out


def _vma_row(m: dict) -> dict:
    return {"start": m["start"], "end": m["end"], "perms": m["perms"], "path": m["path"]}


def diff(fa: Facts, fb: Facts) -> dict:
    """The differences between two images' facts (and their page hashes), as plain data;
    its "tasks" (those that changed) an iterator, each made as the tasks are compared
    (100,000 changed tasks are not held: the images are equal where it yields none)."""
    if fb.compared_with is not fa:
        raise ValueError("the second image's facts are read against the first's")
    ta, _ = fa.by_pid()
    tb, _ = fb.by_pid()
    return {
        "a": fa.summary, "b": fb.summary,
        "appeared": [fb.task_row(j) for p, j in tb.items() if p not in ta],
        "exited": [fa.task_row(i) for p, i in ta.items() if p not in tb],
        "tasks": _changed_tasks(fa, fb),
    }


def _changed_tasks(fa: Facts, fb: Facts) -> Iterator[dict]:
    ta, first_a = fa.by_pid()
    tb, first_b = fb.by_pid()
    for pid, i in ta.items():
        j = tb.get(pid)
        if j is None:
            continue
        t, u = fa.facts(i), fb.facts(j)
        ch = _task_changes(fa, fb, t, u, i, j)
        if fa.ppid[i] != fb.ppid[j]:
            ch["ppid"] = [fa.ppid[i], fb.ppid[j]]
        if fa.tgid[i] == pid and not (t.zombie or u.zombie):
            fs = _common_changes(t.fs, u.fs)    # v17..v19-rc2 save no fs
            if fs:
                ch["fs"] = fs
            # the descriptors and VMAs of the pid's first task (as ``files`` and ``maps``
            # of the pid list them)
            fi, fj = first_a.get(pid, i), first_b.get(pid, j)
            fds = _fd_changes(fa, fb, fj)   # (against fi: see Facts.read)
            if fds:
                ch["fds"] = fds
            vmas = _vma_changes(fa, fb, fi, fj)
            if vmas:
                ch["vmas"] = vmas
            pages = page_changes(fa.pages, fb.pages, pid)
            if pages:
                ch["pages"] = pages
        if ch:
            yield {"pid": pid, "comm": fb.comm(j), **ch}
