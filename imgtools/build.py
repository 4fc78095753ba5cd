"""One pass over the records of an image -> :class:`model.Image`.

The builder does not depend on the per-task record order (which changed
between versions): a record belongs to the task whose TASK record came last,
an object record is bound to the innermost pending OBJREF of its object type,
and a BUFFER or STRING means what the record before it announced.
"""
from __future__ import annotations

import functools
import gc
import struct
import sys
import zlib
from array import array
from typing import Callable

from formats import PayloadError, ext, pids

from .errors import RefError, SchemaError
from .lean import EMPTY, Fds, Objects, Tasks
from .model import (NOT_KEPT, ErrorRecord, Extent, Fd, File, FileTable, Fs, Held, Image, Mm,
                    Obj, PageBatch, Pipe, Signal, Task, Vma)
from .reader import ImageReader
from .stream import Record

# More tasks than this in one image is refused rather than modelled (memory stays bounded
# for a hostile nr_tasks); it is far above what a process tree holds in practice.
MAX_TASKS = 1 << 18
# The record that must come next after one that announces it (default: a BUFFER).
_ANNOUNCED = {"comm": "string", "error": "string", "file_name": "file_name",
              "fs_name": "file_name", "memfd_name": "string", "watch_name": "file_name"}


# Records the builder reads as a few named fields, one unpack each through formats'
# getters (no Container): the records every task, descriptor and VMA brings. A handler
# of one of them gets the tuple of these fields as its value.
FIELDS = {
    "objref": ("objtype", "objref"),
    "task_creds": ("cred_ref", "ecred_ref"),
    "task_ns": ("ns_objref",),
    "signal_task": ("blocked",),
    "file_table": ("fdt_nfds",),
    "file_desc": ("fd_descriptor", "fd_objref", "fd_close_on_exec"),
    "vma": ("vm_start", "vm_end", "vm_flags", "vm_page_prot", "vm_pgoff", "vma_type",
            "vma_objref", "ino_objref", "hugetlb_shift"),
    "pgarr": ("nr_pages",),
    "tree": ("nr_tasks",),
}
FIELDS_MISSING = {"vma": {"hugetlb_shift": 0}}     # fields older versions lack: the value
# Records a handler gets as a plain dict of their public fields (formats' plain).
PLAIN = frozenset(("task_objs", "fs", "file", "sigpending", "mm", "ext_rseq"))
# The objects the model holds as their records (_kept): a kernel's image can hold one of
# each for every process (a fork copies its parent's creds and handlers), so they are
# held as their bytes, and parsed when read. kind -> whether the bytes are compressed
# (_packed): SIGHAND's 64 actions are 2 KB, 17 KB parsed, 100 bytes compressed (most are
# the default: zeros); 10,000 processes with handlers of their own took 150 MB parsed.
KEPT = {"cred": False, "user": False, "user_ns": False, "groupinfo": False, "ns": False,
        "ipc_ns": False, "mnt_ns": False, "sighand": True, "security": False}
# Records a handler gets as their bytes (it holds them: model.Held, parsed when read).
RAW = frozenset(("task", "thread", "restart_block", "cpu", "signal", *KEPT))
# What a lean model holds for a task's objs, a file's sub fields when it has none: one
# read-only empty mapping for all.
_NONE = EMPTY
_ROW_FIELDS = (*pids.PID_FIELDS, "depth")     # of each TREE row
_NO_BATCHES = ()
# What a model may be built without (build_model's ``keep`` names what a command reads;
# the rest is read and checked as always, but not held: issue 11, ps or info of 100,000
# tasks, 200,000 VMAs or 400,000 fds in bounded memory). Besides these, ``keep`` names
# the kinds of objects whose values are held; the others are in ``objects`` with the
# value None.
PARTS = frozenset((
    "vmas",             # Mm.vmas and their page batches
    "fds",              # FileTable.fds
    "task_records",     # Task.fields, regs, thread, restart_block (NOT_KEPT), pending,
                        # fpu_size/offset; Signal.fields (NOT_KEPT), shared_pending (())
    "task_objs",        # Task.objs
    "regs",             # Task.regs (the CPU record) without the other task records
))


def cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def plain(value) -> dict:
    """A parsed construct container -> a plain dict without private fields."""
    return {k: v for k, v in value.items() if not k.startswith("_")}


def _kept(kind: str):
    """A handler that defines the object as its record (compressed where KEPT says so),
    parsed when read (_record_value)."""
    packed = KEPT[kind]

    def handler(self, rec, v, ref):
        value = {} if v is None else Held(_packed(v) if packed else v, self.held[kind])
        self._define(ref, kind, value, rec)
    return handler


class Builder:
    def __init__(self, reader: ImageReader, on_record: Callable[[Record], None] | None = None,
                 keep: frozenset[str] | None = None,
                 task_done: Callable[[Image, Task], None] | None = None,
                 done_reads: frozenset[str] = frozenset(("task_records",)),
                 read_once: bool = False):
        self.r = reader
        self.keep = keep                                # None: everything (PARTS)
        self.keeps = {part: keep is None or part in keep for part in PARTS}
        # task_done: called with each task once its records are read (see build_model);
        # the parts of done_reads keep lacks are held until it returns (``forget``)
        self.task_done = task_done
        self.forget = frozenset(p for p in done_reads if not self.keeps[p]) \
            if task_done is not None else frozenset()
        self.keep_signal_fields = self.keeps["task_records"]
        self.regs_kept = self.keeps["task_records"] or self.keeps["regs"]
        for part in self.forget:
            self.keeps[part] = True
        # references checked when they were read, still undefined then: checked again
        # at the end (the task's objs or the table's fds are not all held)
        self.undefined_objs: dict[int, list[tuple[str, int]]] = {}    # task index ->
        self.undefined_fds: list[tuple[int, int, int]] = []    # (fd, objref, table offset)
        self.table_defined = False      # the FILE_TABLE of the fds that come is an object
        self.shared_refs: dict[int, int] = {}     # numbers many records repeat
        # a lean model's VMAs without pages share one empty tuple of batches (a list
        # each is 56 bytes a VMA; the whole model's VMAs keep theirs, for its users)
        self.no_batches = () if keep is None else (_NO_BATCHES,)
        self.abi = reader.abi
        h = plain(reader.header)
        h["constants"] = plain(h["constants"])
        self.img = Image(version=reader.version, arch=reader.arch, kernel=reader.kernel,
                         rev=reader.rev, header=h)
        self.lean = keep is not None
        self.read_once = read_once      # (lean.py's tables: no item held as an object)
        objects = self.img.objects
        if self.lean:               # (its tasks and objref table in columns: lean.py)
            objects = self.img.objects = Objects(read_once)
            self.img.tasks = Tasks(self.keeps["task_objs"], read_once)
            self.kind_of = objects.kind_of
        else:
            self.kind_of = lambda ref: getattr(objects.get(ref), "kind", None)
        self.on_record = on_record
        self.pending: dict[str, list[int]] = {}          # obj kind -> objrefs, innermost last
        self.expect: list[tuple[str, object]] = []        # what coming BUFFER/STRINGs mean
        self.task: Task | None = None
        self.done = -1                  # the index of the task last given to task_done
        self.tasks_seen = 0
        self.pid_entries = array("i")                    # numbers[0] of each PIDS entry
        self.pids_offset = 1
        self.mm: Mm | None = None
        self.vma: Vma | None = None
        self.file: File | None = None
        self.table: FileTable | None = None
        self.fs: Fs | None = None
        self.last: str | None = None
        self.signal: Signal | None = None
        self.obj_kind_of_record = self.abi.record_kinds
        self.expect_signal = 0      # SIGNAL objref named by TASK_OBJS, defined by SIGNAL
        self.socks: list[dict] = []         # sockets whose family record is still due
        self.tty: dict | None = None
        self.ext_inode: Pipe | None = None  # the memfd/ghost inode EXT_EXTENTs fill
        self.ext_known = self.abi.has("ext_clocks")
        abi = self.abi
        self.task_state = abi.getter("task", ("state", "exit_state")) \
            if "task" in abi.structs else None
        self.held = {name: functools.partial(abi.plain, name) for name in RAW
                     if name in abi.structs}
        if "signal" in self.held:
            self.held["signal"] = functools.partial(_signal_fields, abi)
        for kind in KEPT:
            if kind in self.held:
                self.held[kind] = _record_value(abi, kind, KEPT[kind])

    # -- driving ------------------------------------------------------------
    def run(self) -> Image:
        """The model; the cyclic collector paused meanwhile (the model holds no cycles;
        its passes over the growing model were 5-9 % of the build of 10,000 tasks or
        40,000 fds, measured with gc.callbacks)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()

    def _run(self) -> Image:
        img = self.img
        reader, on_record = self.r, self.on_record
        expect, pending = self.expect, self.pending     # (changed in place only)
        by_type: dict[int, tuple] = {}      # record type -> (name, handler, kind, value of)
        records = 0
        rec = None
        for rec in reader.records():
            how = by_type.get(rec.type)
            if how is None:
                how = by_type[rec.type] = self._how(rec)
            name, handler, kind, value_of = how
            records += 1
            if expect:
                self._announced(rec, name)
            if handler is None:
                img.opaque[name] = img.opaque.get(name, 0) + 1
            else:
                value = value_of(rec) if value_of is not None else None
                ref = None
                if kind:                # the innermost pending OBJREF of its kind
                    refs = pending.get(kind)
                    if refs:
                        ref = refs.pop()
                handler(rec, value, ref)
            if on_record is not None:
                on_record(rec)
            self.last = name
        img.records = records
        if rec is not None:
            img.size = rec.offset + rec.len
        self._task_done()
        if self.lean:
            img.objects.freeze()
            img.tasks.freeze()
        self._resolve_refs()
        return img

    def _how(self, rec: Record) -> tuple:
        """How the records of one type are handled: (name, handler, kind of the object it
        defines, the function that makes the value its handler gets)."""
        reader, abi = self.r, self.abi
        name = reader.name_of(rec)
        handler = getattr(self, "on_" + name, None)
        if handler is None and self.ext_known and ext.is_ext(rec.type):
            handler = self.on_unknown_ext
        value_of = None
        if name in abi.structs and name not in abi.streamed:
            if name in FIELDS:
                value_of = _checked(name, abi.getter(name, FIELDS[name],
                                                     FIELDS_MISSING.get(name)))
            elif name in PLAIN:
                value_of = _checked(name, functools.partial(abi.plain, name),
                                    abi.fast_plain(name))
            elif name in RAW:
                value_of = _checked_raw(name, abi.checker(name), abi.fixed_size(name))
            else:
                def value_of(rec, name=name):
                    return reader.parse(rec, name)
        return name, handler, self.obj_kind_of_record.get(name), value_of

    def _announced(self, rec: Record, name: str) -> None:
        """A BUFFER, STRING or FILE_NAME announced by the record before must come now."""
        kind = self.expect[0][0]
        want = _ANNOUNCED.get(kind, "buffer")
        if name == want:
            return
        if name == "error":         # a failed checkpoint may stop anywhere
            self.expect.clear()
            return
        raise SchemaError(f"expected the {want.upper()} ({kind.replace('_', ' ')}) that the "
                          f"{(self.last or '?').upper()} record announced, found "
                          f"{name.upper()}", offset=rec.offset, record=name.upper())

    def _resolve_refs(self) -> None:
        """Every reference a task or descriptor holds must name a defined object (a
        descriptor's was checked when it was read, and is again if it named none yet)."""
        objs, tasks = self.img.objects, self.img.tasks
        has_signal = self.abi.traits["has_signal"]
        keep_objs = self.keeps["task_objs"]
        rows = getattr(tasks, "ref_rows", None)     # (a lean model's: no Task made)
        rows = rows() if rows is not None else \
            ((t.index, t.pid, t.offset, t.cred_ref, t.ecred_ref, t.ns_ref, t.objs) for t in tasks)
        defined: set[int] = set()   # the first refs found defined (most tasks share them)
        for index, pid, offset, cred_ref, ecred_ref, ns_ref, task_objs in rows:
            later = task_objs.items() if keep_objs else self.undefined_objs.get(index, ())
            refs = [("cred_ref", cred_ref), ("ecred_ref", ecred_ref), ("ns_objref", ns_ref),
                    *((k, v) for k, v in later if k != "signal_objref" or has_signal)]
            for field_name, ref in refs:
                if not ref or ref in defined:
                    continue
                if ref not in objs:
                    raise RefError(f"task {pid}: {field_name} {ref} names no object",
                                   offset=offset, record="TASK")
                if len(defined) < 4096:
                    defined.add(ref)
        for fd, ref, offset in self.undefined_fds:
            if self.kind_of(ref) != "file":
                raise RefError(f"fd {fd}: fd_objref {ref} names no file", offset=offset,
                               record="FILE_TABLE")

    def _define(self, ref: int | None, kind: str, value, rec: Record) -> bool:
        """Whether the object was defined (an objref is defined once)."""
        if ref is None or ref in self.img.objects:
            return False
        task = self.task.index if self.task else None
        if self.lean:
            self.img.objects.define(ref, kind, value if kind in self.keep else None,
                                    rec.offset, task)
        else:
            self.img.objects[ref] = Obj(ref, kind, value, rec.offset, task)
        return True

    def _expect_next(self) -> tuple[str, object] | None:
        return self.expect.pop(0) if self.expect else None

    # -- head ---------------------------------------------------------------
    def on_header(self, rec, v, ref):
        self.expect[:] = [("uts", None)] * 3

    def on_header_arch(self, rec, v, ref):
        self.img.header_arch = plain(v)

    def on_buffer(self, rec: Record, v, ref):
        what = self._expect_next()
        if what is not None:
            kind, arg = what
            getattr(self, "buffer_" + kind)(rec, arg)

    def buffer_uts(self, rec, _):
        self.img.uts.append(cstr(rec.data()))

    def on_pids(self, rec, v, ref):
        self.pids_offset = v.offset
        self.expect.append(("pid_entries", v.nr_pids))

    def buffer_pid_entries(self, rec, count):
        # only the root-namespace number of each entry is modelled
        try:
            self.pid_entries = array("i", (e[0] for e in pids.iter_entries(rec.data(), count)))
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record="BUFFER") from None

    def on_tree(self, rec, v, ref):
        (nr_tasks,) = v
        self.expect.append(("task_pids", nr_tasks))

    def buffer_task_pids(self, rec, count):
        model = self.abi.traits["pids_model"]
        if count > MAX_TASKS:
            raise SchemaError(f"{count} tasks: more than the {MAX_TASKS} imgtools models",
                              offset=rec.offset, record="BUFFER")
        # one int object per number (a task's pid is its children's ppid, its threads'
        # tgid, often its pgid and sid: 4 of 5 ints of 32 bytes shared per task)
        numbers: dict[int, int] = {}
        tasks = self.img.tasks
        nvpids = 0
        try:
            for i, row in enumerate(pids.iter_row_fields(self.abi, rec.data(), count,
                                                         _ROW_FIELDS)):
                ids, depth = row[:-1], row[-1] or 0
                if model == "pids":
                    ids = [self._pid_of_tag(t, rec) for t in ids]
                nvpids += depth if model == "tree_depth" else 0
                if self.lean:
                    tasks.add(ids, depth)
                else:
                    ids = [numbers.setdefault(n, n) for n in ids]
                    tasks.append(Task(i, *ids, depth=depth))
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record="BUFFER") from None
        if nvpids > 0:
            self.expect.insert(0, ("vpids", nvpids))

    def buffer_vpids(self, rec, count):
        pass  # nested pid-namespace numbers: kept in the record stream only

    def _pid_of_tag(self, tag: int, rec: Record) -> int:
        if tag == 0:
            return 0
        if tag < 0:
            return tag          # CKPT_PID_ROOT and friends: kept as the marker
        i = tag - self.pids_offset
        if 0 <= i < len(self.pid_entries):
            return self.pid_entries[i]
        raise SchemaError(f"pid tag {tag} names no PIDS entry (offset {self.pids_offset}, "
                          f"{len(self.pid_entries)} entries)", offset=rec.offset,
                          record="BUFFER")

    # -- objects ------------------------------------------------------------
    def on_objref(self, rec, v, ref):
        objtype, objref = v
        kind = self.abi.obj_names.get(objtype)
        if kind in self.abi.obj_records:    # kinds without a record of their own bind nothing
            self.pending.setdefault(kind, []).append(objref)

    def on_task(self, rec, v, ref):
        self._task_done()
        if self.task is not None and self.task.index in self.undefined_objs:
            self._recheck_objs(self.task.index)
        n = self.tasks_seen
        self.tasks_seen += 1
        tasks = self.img.tasks
        if n >= len(tasks):         # more TASK records than the tree announced
            tasks.append(Task(n, 0, 0, 0, 0, 0))
        t = tasks.take(n) if self.lean else tasks[n]
        t.offset = rec.offset
        t.hold_fields(Held(v, self.held["task"]) if self.keeps["task_records"] else NOT_KEPT,
                      *self.task_state(v))
        self.task = t
        self.expect.append(("comm", t))

    def _task_done(self) -> None:
        """The task whose records were read last, to task_done (once)."""
        t = self.task
        if self.task_done is None or t is None or t.index == self.done:
            return
        self.done = t.index
        self.task_done(self.img, t)
        if not self.forget:
            return
        # as a model without them holds it (None stays None: without a CPU record a task
        # is a zombie)
        records = ("regs",) if not self.regs_kept else ()
        if "task_records" in self.forget:
            t.hold_fields(NOT_KEPT, t.state, t.exit_state)
            t.pending, t.fpu_size, t.fpu_offset = (), 0, None
            records += ("thread", "restart_block")
        for record in records:
            if getattr(t, "_" + record) is not None:
                setattr(t, record, NOT_KEPT)

    def _recheck_objs(self, index: int) -> None:
        """A task's references still undefined when its records end: those defined by
        now are dropped (a task's SIGNAL is defined after its TASK_OBJS names it: a list
        each took 11 MB of 100,000 tasks)."""
        objs = self.img.objects
        missing = [(k, r) for k, r in self.undefined_objs[index] if r not in objs]
        if missing:
            self.undefined_objs[index] = missing
        else:
            del self.undefined_objs[index]

    def on_string(self, rec, v, ref):
        what = self._expect_next()
        if what is None:
            return
        kind, arg = what
        if kind == "comm":
            arg.comm = cstr(rec.data())
        elif kind == "memfd_name":
            arg.path = cstr(rec.data(4096))
        else:
            data = rec.data()
            # '\0' + message + '\0' (the leading NUL is a kernel quirk)
            arg.message = cstr(data[1:] if data[:1] == b"\0" else data)

    def on_error(self, rec, v, ref):
        e = ErrorRecord(rec.offset, None)
        self.img.errors.append(e)
        self.expect.insert(0, ("error", e))

    def on_tail(self, rec, v, ref):
        self.img.tail = v.magic == self.abi.magic_tail

    # creds, namespaces and handlers: kept as their records (KEPT)
    on_cred = _kept("cred")
    on_user = _kept("user")
    on_user_ns = _kept("user_ns")
    on_groupinfo = _kept("groupinfo")
    on_ns = _kept("ns")
    on_ipc_ns = _kept("ipc_ns")
    on_mnt_ns = _kept("mnt_ns")
    on_sighand = _kept("sighand")
    on_security = _kept("security")

    def on_uts_ns(self, rec, v, ref):
        self._define(ref, "uts_ns", {k: cstr(x) for k, x in plain(v).items()}, rec)

    def on_task_creds(self, rec, v, ref):
        if self.task:
            shared = self.shared_refs       # (tasks share their creds: one int for all)
            self.task.cred_ref, self.task.ecred_ref = (shared.setdefault(r, r) for r in v)

    def on_task_ns(self, rec, v, ref):
        if self.task:
            self.task.ns_ref = self.shared_refs.setdefault(v[0], v[0])

    def on_task_objs(self, rec, v, ref):
        if self.task:
            if self.keeps["task_objs"]:
                self.task.objs = v
            else:
                objs = self.img.objects
                missing = [(k, r) for k, r in v.items() if r and r not in objs]
                if missing:
                    self.undefined_objs[self.task.index] = missing
                else:                   # (a second TASK_OBJS replaces the first)
                    self.undefined_objs.pop(self.task.index, None)
            sig = v.get("signal_objref", 0)
            if sig and sig not in self.img.objects:
                self.signal = Signal(sig, {})
                self.expect_signal = sig

    # -- task state ---------------------------------------------------------
    def on_thread(self, rec, v, ref):
        if self.task:
            self.task.thread = Held(v, self.held["thread"]) if self.keeps["task_records"] \
                else NOT_KEPT

    def on_restart_block(self, rec, v, ref):
        if self.task:
            self.task.restart_block = Held(v, self.held["restart_block"]) \
                if self.keeps["task_records"] else NOT_KEPT

    def on_cpu(self, rec, v, ref):
        if self.task:
            if not self.keeps["task_records"] and not self.keeps["regs"]:
                if v is None:
                    rec.data()                  # (read as the whole model reads it)
                self.task.regs = NOT_KEPT       # (a task with a CPU record is no zombie)
                return
            self.task.regs = Held(v, self.held["cpu"]) if v is not None \
                else {"raw": rec.data()}

    def on_cpu_fpu(self, rec, v, ref):
        if self.task and self.keeps["task_records"]:
            self.task.fpu_size, self.task.fpu_offset = rec.size, rec.payload_offset

    # -- signals ------------------------------------------------------------
    def on_signal(self, rec, v, ref):
        sig = getattr(self, "expect_signal", 0)
        s = Signal(sig, Held(v, self.held["signal"])) if self.keep_signal_fields \
            else Signal(sig, NOT_KEPT, ())
        self.signal = s
        self.expect_signal = 0
        if sig:
            self._define(sig, "signal", s, rec)

    def on_sigpending(self, rec, v, ref):
        pending = [plain(x) for x in v["siginfo"]]
        if self.last == "signal" and self.signal is not None:
            if not self.keep_signal_fields:
                pending = ()                # (what a lean model holds of a Signal: its mask)
            self.signal.shared_pending, self.signal.shared_mask = pending, v["signal"]
        elif self.task:
            self.task.pending_mask = v["signal"]
            if self.keeps["task_records"]:
                self.task.pending = pending

    def on_signal_task(self, rec, v, ref):
        if self.task:
            (self.task.blocked,) = v

    # -- files --------------------------------------------------------------
    def on_file_table(self, rec, v, ref):
        self.table = FileTable(ref or 0, v[0],
                               *((Fds(self.read_once),) if self.lean and self.keeps["fds"]
                                 else ()))
        self.table_defined = self._define(ref, "file_table", self.table, rec)
        self.table_offset = rec.offset

    def on_file_desc(self, rec, v, ref):
        if self.table is not None:
            fd, objref, cloexec = v
            if self.lean:
                kind = self.kind_of(objref)
            else:
                o = self.img.objects.get(objref)
                kind = None if o is None else o.kind
                if o is not None:
                    objref = o.ref      # (the one int of the objref, not one more per fd)
            # the fds of a table that is an object must name files (checked again at the
            # end where they named none yet)
            if self.table_defined and kind != "file":
                self.undefined_fds.append((fd, objref, self.table_offset))
            if self.keeps["fds"]:
                self.table.fds.append(Fd(fd, objref, bool(cloexec)))

    def on_file(self, rec, v, ref):
        ftype = self.abi.file_type_names.get(v["f_type"], f"type_{v['f_type']}")
        sub = plain(v["sub"]) if v["sub"] is not None else {}
        if not sub and self.lean:
            sub = _NONE
        shared = self.shared_refs.setdefault    # (few flags, modes and creds: one int each)
        f = File(ref or 0, ftype, shared(v["f_flags"], v["f_flags"]),
                 shared(v["f_mode"], v["f_mode"]), v["f_pos"],
                 shared(v["f_credref"], v["f_credref"]), pipe_ref=sub.get("pipe_objref", 0),
                 sub=sub)
        self.file = f
        self._define(ref, "file", f, rec)
        if f.pipe_ref and f.pipe_ref not in self.img.objects:
            self._define(f.pipe_ref, "inode", Pipe(f.pipe_ref), rec)
        if ftype in ("generic", "fifo"):
            self.expect.insert(0, ("file_name", f))

    def on_file_name(self, rec, v, ref):
        what = self._expect_next()
        if what is None:
            return
        kind, arg = what
        path = cstr(rec.data())
        if kind == "file_name":
            arg.path = path
        elif kind == "watch_name":
            arg["path"] = path
        else:
            setattr(arg[0], arg[1], path)

    def _pipe_data(self, rec):
        if self.file is not None and self.file.pipe_ref:
            p = self.img.get(self.file.pipe_ref, "inode")
            if p is not None:
                p.data_len, p.data_offset = rec.size, rec.payload_offset

    def on_pipe_buf(self, rec, v, ref):
        self._pipe_data(rec)

    def on_pipe_data(self, rec, v, ref):
        self._pipe_data(rec)

    def on_file_pipe(self, rec, v, ref):
        pass    # v17: the unframed bytes follow as a pipe_data pseudo-record

    def on_fs(self, rec, v, ref):
        fs = Fs(ref or 0, umask=(v or {}).get("umask"))
        self.fs = fs
        self._define(ref, "fs", fs, rec)
        self.expect[:0] = [("fs_name", (fs, "cwd")), ("fs_name", (fs, "root"))]

    # -- memory -------------------------------------------------------------
    def on_mm(self, rec, v, ref):
        mm = Mm(ref or 0, v, v["exe_objref"])
        self.mm = mm
        self.vma = None
        self._define(ref, "mm", mm, rec)
        self.expect.insert(0, ("auxv", mm))

    def buffer_auxv(self, rec, mm):
        data = rec.data()
        w = self.abi.auxv_word
        n = len(data) // w
        vals = struct.unpack_from(f"<{n}{'Q' if w == 8 else 'I'}", data)
        pairs = []
        for i in range(0, n - 1, 2):
            pairs.append((vals[i], vals[i + 1]))
            if vals[i] == 0:
                break
        mm.auxv = pairs

    def on_vma(self, rec, v, ref):
        start, end, flags, prot, pgoff, vtype, file_ref, ino_ref, hugetlb_shift = v
        vtype = self.abi.vma_type_names.get(vtype, f"type_{vtype}")
        shared = self.shared_refs.setdefault    # (few flags, protections and files: one
        vma = Vma(start, end, shared(flags, flags), shared(prot, prot), pgoff, vtype,
                  shared(file_ref, file_ref), shared(ino_ref, ino_ref), rec.offset,
                  hugetlb_shift, *self.no_batches)  # int each for all VMAs, not one each)
        self.vma = vma
        if self.mm is not None and self.keeps["vmas"]:
            self.mm.vmas.append(vma)

    def on_pgarr(self, rec, v, ref):
        (nr_pages,) = v
        if nr_pages:
            self.expect.insert(0, ("pages", (self.vma, nr_pages)))

    def buffer_pages(self, rec, arg):
        vma, n = arg
        w = self.abi.word
        if n * (w + 4096) != rec.size:
            raise SchemaError(f"page buffer of {rec.size} bytes does not hold the {n} pages "
                              f"its PGARR announced ({n * (w + 4096)} bytes)",
                              offset=rec.offset, record="BUFFER")
        addrs = array("Q")
        if w == 8 and sys.byteorder == "little":
            addrs.frombytes(rec.read(n * w))        # the image's words, as they are
        else:
            addrs.extend(struct.unpack(f"<{n}{'Q' if w == 8 else 'I'}", rec.read(n * w)))
        self.img.pages += n
        if vma is not None and self.keeps["vmas"]:
            batch = PageBatch(addrs, rec.payload_offset + n * w)
            if vma.batches is _NO_BATCHES:
                vma.batches = [batch]
            else:
                vma.batches.append(batch)

    def on_mm_context(self, rec, v, ref):
        if self.mm is not None:
            self.mm.vdso, self.mm.nldt = v.vdso, v.nldt

    # IPC sections: the BUFFERs they carry are consumed without interpretation.
    def on_ipc_shm(self, rec, v, ref):
        self.vma = None

    def on_ipc_msg_msg(self, rec, v, ref):
        if v.m_ts > 0:
            self.expect.insert(0, ("skip_bytes", v.m_ts))

    def buffer_skip_bytes(self, rec, left):
        left -= rec.size
        if left > 0:
            self.expect.insert(0, ("skip_bytes", left))

    def on_ipc_sem(self, rec, v, ref):
        if v.sem_nsems:
            self.expect.insert(0, ("skip_bytes", 1))

    def on_tty(self, rec, v, ref):
        self.tty = plain(v)
        self._define(ref, "tty", self.tty, rec)

    def on_tty_ldisc(self, rec, v, ref):
        if self.tty is not None:
            self.tty["datalen"] = v.datalen
        if v.datalen:
            self.expect.insert(0, ("skip_bytes", 1))

    # -- sockets --------------------------------------------------------------
    def on_socket(self, rec, v, ref):
        sock = {"socket": plain(v.socket), "sock_common": plain(v.sock_common),
                "sock": plain(v.sock), "queued": 0}
        self.socks.append(sock)
        self._define(ref, "sock", sock, rec)

    def _family(self, v, key: str, sock: dict | None) -> None:
        """A family record: for the socket it names (``this``), else the innermost one
        still due (a pair's peer is written nested in the first end)."""
        if sock is None and self.socks:
            sock = self.socks[-1]
        if sock is None:
            return
        if sock in self.socks:
            self.socks.remove(sock)
        sock[key] = {k: (plain(x) if isinstance(x, dict) else x) for k, x in plain(v).items()}

    def on_socket_unix(self, rec, v, ref):
        self._family(v, "unix", self.img.get(v.this, "sock") if v.this else None)

    def on_socket_inet(self, rec, v, ref):
        self._family(v, "inet", None)

    def on_socket_buffer(self, rec, v, ref):
        owner = self.img.get(v.pr_objref or v.sk_objref, "sock")
        self.expect.insert(0, ("skb", owner))

    def buffer_skb(self, rec, owner):
        if owner is not None:
            owner["queued"] += rec.size

    def on_socket_frag(self, rec, v, ref):
        self.expect.insert(0, ("skip_bytes", 1))

    # -- epoll, sem undo --------------------------------------------------------
    def on_epoll_items(self, rec, v, ref):
        f = self.img.get(v.epfile_objref, "file")
        if f is not None:
            self._sub_of(f)["items"] = []
        if v.num_items:                 # no BUFFER for no items
            self.expect.insert(0, ("epoll_items", (f, v.num_items)))

    def buffer_epoll_items(self, rec, arg):
        f, n = arg
        st = self.abi.structs["ckpt_eventpoll_item"]
        size = st.sizeof()
        data = rec.data()
        if f is None:
            return
        for i in range(min(n, len(data) // size)):
            item = plain(self.abi.parse("ckpt_eventpoll_item", data[i * size:(i + 1) * size]))
            f.sub["items"].append(item)

    def on_task_sem_undo_list(self, rec, v, ref):
        self._define(ref, "sem_undo", plain(v) if v is not None else {}, rec)

    def on_task_sem_undo(self, rec, v, ref):
        if v.semadj_count:
            self.expect.insert(0, ("skip_bytes", 1))

    # -- extension records ------------------------------------------------------
    def on_unknown_ext(self, rec, v, ref):
        """A newer imgtools' extension record: skipped, but right after OBJREF(FILE) it
        is that file's object record (a file of a kind this version cannot show)."""
        self.img.opaque[f"type_{rec.type}"] = self.img.opaque.get(f"type_{rec.type}", 0) + 1
        if self.last == "objref" and self.pending.get("file"):
            ref = self.pending["file"].pop()
            self.file = File(ref, f"ext_{rec.type}", 0, 0, 0, 0)
            self._define(ref, "file", self.file, rec)

    def on_ext_clocks(self, rec, v, ref):
        self.img.clocks = plain(v)

    def on_ext_rseq(self, rec, v, ref):
        if self.task:
            self.task.rseq = v

    def on_ext_file_stat(self, rec, v, ref):
        if self.file is not None:
            self._sub_of(self.file)["stat"] = plain(v)

    @staticmethod
    def _sub_of(f: File) -> dict:
        """The file's sub fields, to add to (a lean model's files without any share one
        read-only empty mapping)."""
        if f.sub is _NONE:
            f.sub = {}
        return f.sub

    def _ext_file(self, rec, v, ref, name: str) -> File:
        fields = plain(v)
        sub = {k: fields[k] for k in fields if k not in _FILE_COMMON}
        f = File(ref or 0, ext.FILE_KINDS[name], v.f_flags, v.f_mode, v.f_pos, v.f_credref,
                 sub=sub)
        self.file = f
        self._define(ref, "file", f, rec)
        ino = sub.get("ino_objref", 0)
        self.ext_inode = None
        if ino and ino not in self.img.objects:
            self.ext_inode = Pipe(ino)
            self._define(ino, "inode", self.ext_inode, rec)
        return f

    def on_ext_file_signalfd(self, rec, v, ref):
        self._ext_file(rec, v, ref, "ext_file_signalfd")

    def on_ext_file_timerfd(self, rec, v, ref):
        self._ext_file(rec, v, ref, "ext_file_timerfd")

    def on_ext_file_inotify(self, rec, v, ref):
        f = self._ext_file(rec, v, ref, "ext_file_inotify")
        f.sub["watches"] = []

    def on_ext_inotify_watch(self, rec, v, ref):
        watch = plain(v)
        if self.file is not None and "watches" in self.file.sub:
            self.file.sub["watches"].append(watch)
        self.expect.insert(0, ("watch_name", watch))

    def on_ext_file_memfd(self, rec, v, ref):
        f = self._ext_file(rec, v, ref, "ext_file_memfd")
        self.expect.insert(0, ("memfd_name", f))

    def on_ext_file_ghost(self, rec, v, ref):
        f = self._ext_file(rec, v, ref, "ext_file_ghost")
        self.expect.insert(0, ("file_name", f))

    def on_ext_extent(self, rec, v, ref):
        head = rec.read(8)
        if len(head) < 8:
            raise SchemaError(f"EXT_EXTENT payload of {rec.size} bytes has no offset",
                              offset=rec.offset, record="EXT_EXTENT")
        if self.ext_inode is not None and rec.size > 8:
            (off,) = struct.unpack("<Q", head)
            self.ext_inode.extents.append(Extent(off, rec.size - 8, rec.payload_offset + 8))


def _checked(name: str, value_of, fast=None):
    """``value_of(payload)`` as a function of the record, its errors said as
    ``reader.parse`` says them (which record, at which offset). ``fast``: what
    ``value_of`` tries first (formats' fast_plain), called here, one call a record
    fewer: the builder makes a value for each of 17 records a task."""
    record = name.upper()

    def of(rec: Record):
        payload = rec.payload if rec.payload is not None else rec.data()
        if fast is not None:
            try:
                return fast(payload)
            except Exception:   # noqa: BLE001 - value_of says what is wrong
                pass
        try:
            return value_of(payload)
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record=record) from None
    return of


def _checked_raw(name: str, checker, size: int | None):
    """The payload itself, checked as ``_checked(name, checker)`` checks it; one of at
    least ``size`` bytes (a struct of fixed size) by its length alone, here."""
    slow = _checked(name, checker)
    if size is None:
        return slow

    def of(rec: Record):
        payload = rec.payload
        if payload is not None and len(payload) >= size:
            return payload
        return slow(rec)
    return of


def _packed(payload: bytes) -> bytes:
    """A payload that is mostly zeros as the model holds it (see _record_value)."""
    z = zlib.compressobj(1, zlib.DEFLATED, -9, 1)   # (a raw stream, a small state: 9 us,
    return z.compress(payload) + z.flush()          # where zlib.compress takes 19)


def _record_value(abi, name: str, packed: bool):
    """``held bytes -> the record's value`` (its parsed fields, for Held; ``packed``: the
    bytes are _packed's). The last value is kept: the tasks that share an object, or hold
    equal ones, read it in turn."""
    last: list = [None, None]

    def value(held: bytes):
        if held != last[0]:
            last[1] = plain(abi.parse(name, zlib.decompress(held, -9) if packed else held))
            last[0] = held
        return last[1]
    return value


def _signal_fields(abi, payload: bytes) -> dict:
    """SIGNAL's fields, its 16 rlimits as (cur, max) pairs."""
    fields = abi.plain("signal", payload)
    if "rlim" in fields:
        fields["rlim"] = tuple((r["rlim_cur"], r["rlim_max"]) for r in fields["rlim"])
    return fields


# FILE common fields (what an extension object record shares with FILE)
_FILE_COMMON = frozenset(("f_type", "f_mode", "f_flags", "f_credref", "f_pos", "f_version",
                          "f_secref"))


def build_model(reader: ImageReader, on_record=None, builder=Builder,
                keep: frozenset[str] | None = None,
                task_done: Callable[[Image, Task], None] | None = None,
                done_reads: frozenset[str] = frozenset(("task_records",)),
                read_once: bool = False) -> Image:
    """``builder``: Builder or a subclass that also acts on the records as they pass;
    ``keep``: what of the model the caller reads (PARTS and object kinds; None: all);
    ``task_done(model, task)``: called for each task, in order, once its records are read
    (at the next TASK record, or at the image's end) and the objects they name are
    defined (a task without records is not: the tree announced it, no TASK came). The
    parts ``done_reads`` names that ``keep`` lacks (task_records, regs) the task holds
    until it returns, no longer: a command that reads each task's records once reads
    them there (show of 100,000 tasks). ``read_once``: the caller reads each task, file
    and fd of a lean model once (its tables hold none of them as objects: lean.HOLD_*)."""
    options = {} if keep is None else {"keep": keep}
    if read_once and keep is not None:
        options["read_once"] = True
    if task_done is not None:
        options.update(task_done=task_done, done_reads=done_reads)
    try:
        return builder(reader, on_record, **options).run()
    except PayloadError as e:   # parse errors are wrapped in reader.parse; belt and braces
        raise SchemaError(str(e)) from None
