"""The version-independent image model: tasks, objects, memory, files, signals.

Built in one pass over the records (``build.py``).  Objects are kept in an
objref table; references stay integers and are resolved through it (the
builder refuses an image whose tasks or descriptors name no object; ``check``
reports every such reference instead).  Page data is never held: a VMA keeps,
per page batch, the page addresses and where the batch's page images start in
the stream.
"""
from __future__ import annotations

from array import array
from ._record import dataclass, field     # dataclasses', lighter to import
from typing import Any


def task_state(state: int) -> tuple[int, str]:
    """As the kernel's fill_psinfo: index of the lowest set state bit + 1, and its letter
    from "RSDTZW" (0 = running)."""
    i = (state & -state).bit_length() if state else 0
    return i, ("RSDTZW"[i] if i <= 5 else ".")


@dataclass(slots=True)
class Obj:
    """An entry of the objref table."""
    ref: int
    kind: str                 # CKPT_OBJ_* name: "file", "mm", "cred", ...
    value: Any                # the model object (File, Mm, ...) or a parsed record
    offset: int               # byte offset of the record that defined it
    task: int | None = None   # index of the task whose section defined it


@dataclass(slots=True)
class PageBatch:
    addrs: array              # page addresses ('Q')
    data_offset: int          # stream offset of the first page image


@dataclass(slots=True)
class Vma:
    start: int
    end: int
    vm_flags: int
    vm_page_prot: int
    pgoff: int                # in pages
    vma_type: str
    file_ref: int
    ino_ref: int
    offset: int
    hugetlb_shift: int = 0
    batches: list[PageBatch] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return sum(len(b.addrs) for b in self.batches)

    def page_offsets(self):
        """(address, stream offset of its page image) for every page held."""
        for b in self.batches:
            for i, a in enumerate(b.addrs):
                yield a, b.data_offset + i * 4096


@dataclass
class Mm:
    ref: int
    fields: dict
    exe_ref: int
    auxv: list[tuple[int, int]] = field(default_factory=list)
    vmas: list[Vma] = field(default_factory=list)
    vdso: int = 0
    nldt: int = 0


@dataclass(slots=True)
class File:
    ref: int
    f_type: str
    f_flags: int
    f_mode: int
    f_pos: int
    cred_ref: int
    path: str | None = None
    pipe_ref: int = 0         # inode objref for pipes and FIFOs
    sub: dict = field(default_factory=dict)


@dataclass(slots=True)
class Extent:
    """A run of file contents an extension record holds (memfd, deleted file)."""
    offset: int               # in the file
    size: int
    data_offset: int          # stream offset of the bytes


@dataclass(slots=True)
class Pipe:
    """An inode object: a pipe's buffered data, or the contents of a memfd or deleted file."""
    ref: int
    data_len: int = 0
    data_offset: int | None = None
    extents: list[Extent] = field(default_factory=list)


@dataclass(slots=True)
class Fd:
    fd: int
    file_ref: int
    close_on_exec: bool


@dataclass
class FileTable:
    ref: int
    nfds: int
    fds: list[Fd] = field(default_factory=list)


@dataclass(slots=True)
class Fs:
    ref: int
    umask: int | None = None
    cwd: str | None = None
    root: str | None = None


class Held:
    """A record payload kept as its bytes and parsed on each read: a task's CPU record
    held so is 184 bytes, over 2 KB as a dict, and most commands never read it (issue
    11: the model of 10,000 tasks in bounded memory). ``parse(payload)`` is the value."""
    __slots__ = ("payload", "parse")

    def __init__(self, payload: bytes, parse):
        self.payload, self.parse = payload, parse


def _not_kept(payload: bytes):
    raise RuntimeError("read a record this model was built without (build_model's keep)")


# What a model built without its task records (build_model's ``keep``) holds in their
# place: there is a record (a zombie has no CPU record), nothing of it can be read.
NOT_KEPT = Held(b"", _not_kept)


class _Parsed:
    """An attribute whose value may be :class:`Held`: read, it is the parsed value (not
    cached, so reading the details of every task holds none of them)."""

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        v = getattr(obj, self.slot)
        return v.parse(v.payload) if type(v) is Held else v

    def __set__(self, obj, value):
        setattr(obj, self.slot, value)


class Signal:
    __slots__ = ("ref", "_fields", "shared_pending", "shared_mask")
    fields = _Parsed()

    def __init__(self, ref: int, fields, shared_pending: list | None = None,
                 shared_mask: int = 0):
        self.ref, self.fields = ref, fields
        self.shared_pending = [] if shared_pending is None else shared_pending
        self.shared_mask = shared_mask


class Task:
    """One task: its tree entry, and its records (the big ones :class:`Held`)."""
    __slots__ = ("index", "pid", "ppid", "tgid", "pgid", "sid", "depth", "comm", "offset",
                 "_fields", "state", "exit_state", "cred_ref", "ecred_ref", "ns_ref", "objs",
                 "_regs", "fpu_size", "fpu_offset", "_thread", "_restart_block", "pending",
                 "pending_mask", "blocked", "rseq")
    regs = _Parsed()            # dict | None: the CPU record
    thread = _Parsed()          # dict | None
    restart_block = _Parsed()   # dict | None

    def __init__(self, index: int, pid: int, ppid: int, tgid: int, pgid: int, sid: int,
                 depth: int = 0, comm: str | None = None, offset: int | None = None,
                 fields: dict | None = None, cred_ref: int = 0, ecred_ref: int = 0,
                 ns_ref: int = 0, objs: dict | None = None, regs: dict | None = None,
                 fpu_size: int = 0, fpu_offset: int | None = None,
                 thread: dict | None = None, restart_block: dict | None = None,
                 pending: list | None = None, pending_mask: int = 0,
                 blocked: int | None = None, rseq: dict | None = None):
        self.index, self.pid, self.ppid, self.tgid = index, pid, ppid, tgid
        self.pgid, self.sid, self.depth, self.comm, self.offset = pgid, sid, depth, comm, offset
        if fields is None:      # (the setter's work, written out: a Task is made for each
            self._fields, self.state, self.exit_state = {}, 0, 0    # task a model reads)
        else:
            self.fields = fields
        self.cred_ref, self.ecred_ref, self.ns_ref = cred_ref, ecred_ref, ns_ref
        self.objs = {} if objs is None else objs
        self._regs, self.fpu_size, self.fpu_offset = regs, fpu_size, fpu_offset  # XSAVE area
        self._thread, self._restart_block = thread, restart_block   # (see _Parsed)
        self.pending = [] if pending is None else pending
        self.pending_mask, self.blocked, self.rseq = pending_mask, blocked, rseq   # EXT_RSEQ

    @property
    def fields(self) -> dict:
        """The TASK record, normalised."""
        v = self._fields
        return v.parse(v.payload) if type(v) is Held else v

    @fields.setter
    def fields(self, value: dict) -> None:
        self._fields = value
        self.state, self.exit_state = value.get("state", 0), value.get("exit_state", 0)

    def hold_fields(self, held: Held, state: int, exit_state: int) -> None:
        """The TASK record held as bytes, with the two fields every listing reads."""
        self._fields, self.state, self.exit_state = held, state, exit_state

    @property
    def zombie(self) -> bool:
        return bool(self.exit_state) and self._regs is None

    @property
    def has_regs(self) -> bool:
        """Whether the task has a CPU record (held or not: a lean model may not hold it)."""
        return self._regs is not None

    @property
    def is_thread(self) -> bool:
        return self.tgid != self.pid

    def obj(self, name: str) -> int:
        return self.objs.get(f"{name}_objref", 0)

    def __repr__(self) -> str:
        return f"<Task {self.index} pid {self.pid} {self.comm!r}>"


@dataclass(slots=True)
class ErrorRecord:
    offset: int
    message: str | None


@dataclass
class Image:
    version: str
    arch: str
    kernel: tuple[int, int, int]
    rev: int
    header: dict
    uts: list[str] = field(default_factory=list)
    header_arch: dict = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)
    objects: dict[int, Obj] = field(default_factory=dict)
    errors: list[ErrorRecord] = field(default_factory=list)
    records: int = 0
    size: int = 0
    pages: int = 0
    opaque: dict[str, int] = field(default_factory=dict)   # record name -> count
    tail: bool = False
    clocks: dict | None = None                              # EXT_CLOCKS

    def get(self, ref: int, kind: str | None = None):
        """The model object behind an objref (None if undefined or of another kind)."""
        o = self.objects.get(ref)
        if o is None or (kind is not None and o.kind != kind):
            return None
        v = o.value
        return v.parse(v.payload) if type(v) is Held else v

    def objects_of_kind(self, kind: str):
        """The objects of one kind, in the order of ``objects.values()`` (a lean model's
        table makes only those: all of 400,000 files were 3 s and a list of every objref
        14 MB)."""
        of_kind = getattr(self.objects, "of_kind", None)
        if of_kind is not None:
            return of_kind(kind)
        return (o for o in self.objects.values() if o.kind == kind)

    def task_by_pid(self, pid: int) -> Task | None:
        for t in self.tasks:
            if t.pid == pid:
                return t
        return None

    def processes(self) -> list[Task]:
        return [t for t in self.tasks if not t.is_thread]

    def threads_of(self, leader: Task) -> list[Task]:
        return [t for t in self.tasks if t.tgid == leader.pid]

    def thread_counts(self) -> dict[int, int]:
        """tgid -> number of tasks in that thread group (one pass)."""
        counts: dict[int, int] = {}
        for t in self.tasks:
            counts[t.tgid] = counts.get(t.tgid, 0) + 1
        return counts
