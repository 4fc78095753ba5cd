"""Plumbing shared by the conversion steps: records in flight, spooling, losses, objrefs.

A step sees records, never the model.  A record in flight is a :class:`Rec`:
its name in the step's *source* version (numbers only matter when the image is
read and written), a small payload as bytes or a large one as a :class:`Body`
that is copied in 1 MiB chunks, the byte offset it had in the input image and
the index of the task it belongs to (for loss reports).

Every step is a generator over records.  A streamed body is only valid until
the next input record is pulled, so a step that holds records back puts them
in a :class:`Spool` (memory up to a small budget, then an anonymous temporary
file).
"""
from __future__ import annotations

import functools
import os
import struct
import tempfile
from typing import Any, Callable, Iterable, Iterator

import formats
from formats import Abi, PayloadError, ext, pids
from imgtools._record import dataclass
from imgtools.errors import SchemaError
from imgtools.stream import CHUNK, DATA_MAX, INLINE_MAX, Record

# -- records in flight ------------------------------------------------------------------


class Body:
    """A payload too large to hold: read once, in chunks."""
    size: int

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def region(self) -> tuple[int, int] | None:
        """(fd, offset) where the payload lies in a regular file, to be copied by the
        kernel instead of read (the body then counts as read); None if it does not."""
        return None


class SourceBody(Body):
    """The payload of a streamed input record; valid until the input moves on.
    When the input is a regular file (``fd``), the payload can also be re-read
    later from where it lies (:meth:`reference`), without copying it now."""

    def __init__(self, rec: Record, fd: int | None = None):
        self.rec = rec
        self.size = rec.size
        self.used = False
        self.fd = fd

    def chunks(self) -> Iterator[bytes]:
        if self.used:
            raise RuntimeError(f"payload of record at {self.rec.offset} read twice")
        self.used = True
        n = 0
        for c in self.rec.chunks():
            n += len(c)
            yield c
            # Drop the chunk before the next read: two 1 MiB chunks alive at once make
            # glibc trim and re-fault its heap on every chunk (a 5x slowdown).
            del c
        if n != self.size:
            raise RuntimeError(f"payload of record at {self.rec.offset} was skipped before it "
                               f"was copied ({n} of {self.size} bytes)")

    def splice_to(self, fd: int) -> bool:
        """Move the whole payload into ``fd`` by splice(2) when it is read from a pipe
        (it then counts as read); False, with nothing read, otherwise."""
        if self.used or self.fd is not None or not self.rec.splice_to(fd, self.size):
            return False
        self.used = True
        return True

    def reference(self) -> FileBody | None:
        """The payload as a region of the input file (None on a pipe)."""
        if self.fd is None or self.used:
            return None
        self.used = True            # the reader skips it; it is read back with pread
        return FileBody(self.fd, self.rec.payload_offset, self.size, stable=True)

    def region(self) -> tuple[int, int] | None:
        ref = self.reference()
        return None if ref is None else (ref.fd, ref.offset)


class FileBody(Body):
    """A region of a file, read with pread (independent of any file position).
    ``stable``: the file (the input image) outlives the conversion."""

    def __init__(self, fd: int, offset: int, size: int, stable: bool = False):
        self.fd, self.offset, self.size, self.stable = fd, offset, size, stable

    def region(self) -> tuple[int, int] | None:
        return self.fd, self.offset

    def chunks(self) -> Iterator[bytes]:
        pos, end = self.offset, self.offset + self.size
        while pos < end:
            c = os.pread(self.fd, min(CHUNK, end - pos), pos)
            if not c:
                raise RuntimeError("file shorter than expected")
            pos += len(c)
            yield c
            del c                   # (see SourceBody.chunks)


class Rec:
    __slots__ = ("name", "payload", "body", "offset", "task")

    def __init__(self, name: str, payload: bytes | None = b"", body: Body | None = None,
                 offset: int | None = None, task: int | None = None):
        self.name = name
        self.payload = payload if body is None else None
        self.body = body
        self.offset = offset
        self.task = task

    @property
    def size(self) -> int:
        return len(self.payload) if self.payload is not None else self.body.size

    def data(self, limit: int = DATA_MAX) -> bytes:
        """The whole payload as bytes (a streamed one is read now, up to ``limit``)."""
        if self.payload is None:
            if self.body.size > limit:
                raise SchemaError(f"record payload of {self.body.size} bytes is too large to "
                                  f"convert (limit {limit})", offset=self.offset,
                                  record=self.name.upper())
            self.payload = b"".join(self.body.chunks())
            self.body = None
        return self.payload

    def chunks(self) -> Iterator[bytes]:
        if self.payload is not None:
            if self.payload:
                yield self.payload
        else:
            yield from self.body.chunks()

    def derive(self, name: str, payload: bytes | None = None, body: Body | None = None) -> Rec:
        """A record born of this one (same offset and task)."""
        return Rec(name, payload if body is None else None, body, self.offset, self.task)

    def renamed(self, name: str) -> Rec:
        return Rec(name, self.payload, self.body, self.offset, self.task)

    def __repr__(self) -> str:
        return f"<Rec {self.name} size={self.size} @{self.offset}>"


# -- holding records back ------------------------------------------------------------------

_SPOOL_HEAD = struct.Struct("<HqqQiQ")    # name length, offset, task, size, ref fd, ref offset


class Spool:
    """Records held back, replayed in order.  Small payloads stay in memory while
    the budget lasts; after that every record goes to an anonymous temporary
    file, so memory stays bounded however big the section.  A large payload of
    a regular input file is not copied at all: it is kept as a reference and
    read back from the input when replayed."""

    def __init__(self, budget: int = 4 << 20):
        self.budget = budget
        self.used = 0
        self.mem: list[Rec] = []
        self.f = None
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, rec: Rec) -> None:
        self.count += 1
        if isinstance(rec.body, SourceBody):
            ref = rec.body.reference()
            if ref is not None:
                rec = Rec(rec.name, None, ref, rec.offset, rec.task)
        stable = isinstance(rec.body, FileBody) and rec.body.stable
        if self.f is None and (rec.payload is not None or stable):
            cost = (len(rec.payload) if rec.payload is not None else 0) + 128
            if self.used + cost <= self.budget:
                self.mem.append(rec)
                self.used += cost
                return
        if self.f is None:
            self.f = tempfile.TemporaryFile(prefix="imgtools-spool-")
        name = rec.name.encode()
        ref_fd, ref_off = (rec.body.fd, rec.body.offset) if stable else (-1, 0)
        self.f.write(_SPOOL_HEAD.pack(len(name), -1 if rec.offset is None else rec.offset,
                                      -1 if rec.task is None else rec.task, rec.size,
                                      ref_fd, ref_off))
        self.f.write(name)
        if not stable:
            for c in rec.chunks():
                self.f.write(c)

    def replay(self) -> Iterator[Rec]:
        """Everything added, in order; the spool is empty afterwards.  A replayed
        record's payload must be read before the next one is asked for."""
        mem, f = self.mem, self.f
        self.mem, self.f, self.used, self.count = [], None, 0, 0
        yield from mem
        if f is None:
            return
        try:
            f.flush()
            end = f.tell()
            f.seek(0)
            fd = f.fileno()
            pos = 0
            while pos < end:
                n, off, task, size, ref_fd, ref_off = _SPOOL_HEAD.unpack(
                    f.read(_SPOOL_HEAD.size))
                name = f.read(n).decode()
                pos += _SPOOL_HEAD.size + n
                off = None if off < 0 else off
                task = None if task < 0 else task
                if ref_fd >= 0:
                    yield Rec(name, None, FileBody(ref_fd, ref_off, size, stable=True), off,
                              task)
                    continue
                if size <= INLINE_MAX:
                    yield Rec(name, f.read(size), None, off, task)
                else:
                    yield Rec(name, None, FileBody(fd, pos, size), off, task)
                    f.seek(pos + size)
                pos += size
        finally:
            f.close()


# -- losses and notes ----------------------------------------------------------------------


@dataclass
class Loss:
    """Information a step had to drop."""
    step: str
    record: str
    offset: int | None
    pid: int | None
    field: str
    value: Any
    message: str = ""

    def to_dict(self) -> dict:
        return {"step": self.step, "record": self.record, "offset": self.offset,
                "pid": self.pid, "field": self.field, "value": _plain(self.value),
                "message": self.message}

    def __str__(self) -> str:
        where = f"{self.record}"
        if self.offset is not None:
            where += f" @{self.offset}"
        if self.pid is not None:
            where += f" pid {self.pid}"
        value = "" if self.value is None else f" = {_show(self.value)}"
        return f"[{self.step}] {where}: {self.field}{value}" + \
            (f" ({self.message})" if self.message else "")


@dataclass
class Note:
    """A value an upgrade had to assume (or a harmless change); counted per kind."""
    step: str
    record: str
    field: str
    value: Any
    message: str
    offset: int | None = None          # of the first occurrence
    pid: int | None = None
    count: int = 1

    def to_dict(self) -> dict:
        return {"step": self.step, "record": self.record, "field": self.field,
                "value": _plain(self.value), "message": self.message, "offset": self.offset,
                "pid": self.pid, "count": self.count}

    def __str__(self) -> str:
        n = f" (x{self.count})" if self.count > 1 else ""
        value = "" if self.value is None else f" = {_show(self.value)}"
        return f"[{self.step}] {self.record}: {self.field}{value}: {self.message}{n}"


def _plain(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _show(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 4096:
        return f"{v:#x}"
    if isinstance(v, (bytes, bytearray)):
        return v.hex() if len(v) <= 32 else v[:32].hex() + "…"
    return repr(_plain(v))


class Context:
    """What all steps of one conversion share: the source's task list and the report."""

    MAX_LISTED = 10000

    def __init__(self, on_loss: Callable[[Loss], None] | None = None):
        self.on_loss = on_loss
        self.losses: list[Loss] = []
        self.loss_count = 0
        self.notes: dict[tuple, Note] = {}
        # (pid, ppid, tgid, pgid, sid) of every task, from the source image's head.
        self.tasks: list[tuple[int, int, int, int, int]] = []

    def pid_of(self, task: int | None) -> int | None:
        if task is None or not 0 <= task < len(self.tasks):
            return None
        return self.tasks[task][0]

    def tgid_of(self, task: int | None) -> int | None:
        if task is None or not 0 <= task < len(self.tasks):
            return None
        return self.tasks[task][2]

    def loss(self, step: str, rec: Rec | None, field: str, value, message: str = "",
             record: str | None = None) -> None:
        record = record or (rec.name.upper() if rec is not None else "?")
        lo = Loss(step, record, rec.offset if rec else None, self.pid_of(rec.task if rec else None),
                  field, value, message)
        self.loss_count += 1
        if len(self.losses) < self.MAX_LISTED:
            self.losses.append(lo)
        if self.on_loss is not None:
            self.on_loss(lo)

    def note(self, step: str, rec: Rec | None, field: str, value, message: str,
             record: str | None = None) -> None:
        record = record or (rec.name.upper() if rec is not None else "?")
        key = (step, record, field, message)
        n = self.notes.get(key)
        if n is None:
            self.notes[key] = Note(step, record, field, value, message,
                                   rec.offset if rec else None,
                                   self.pid_of(rec.task if rec else None))
        else:
            n.count += 1


# -- objrefs ---------------------------------------------------------------------------------

# Every place a record stores an objref (dotted paths into the parsed payload).
REF_FIELDS: dict[str, tuple[str, ...]] = {
    "task_creds": ("cred_ref", "ecred_ref"),
    "task_ns": ("ns_objref",),
    "task_objs": ("files_objref", "mm_objref", "fs_objref", "sem_undo_objref",
                  "sighand_objref", "signal_objref"),
    "ns": ("uts_objref", "ipc_objref", "net_objref"),
    "user_ns": ("creator_ref",),
    "cred": ("user_ref", "groupinfo_ref", "sec_ref"),
    "user": ("userns_ref",),
    "file": ("f_credref", "f_secref", "sub.pipe_objref", "sub.sock_objref", "sub.tty_objref"),
    "file_desc": ("fd_objref",),
    "mm": ("exe_objref",),
    "vma": ("vma_objref", "ino_objref"),
    "ipc_shm": ("perms.sec_ref", "objref"),
    "ipc_msg": ("perms.sec_ref",),
    "ipc_sem": ("perms.sec_ref",),
    "ipc_msg_msg": ("sec_ref",),
    "signal": ("tty_objref",),
    "tty": ("link_objref", "file_objref"),
    "security": ("ptrref",),
    "socket_unix": ("this", "peer", "peercred"),
    "socket_buffer": ("sk_objref", "pr_objref"),
    "epoll_items": ("epfile_objref",),
    **{name: ("f_credref", "f_secref", "ino_objref") for name in ext.OBJECT_RECORDS},
}
# Opaque records (no struct in formats/) that may hold objrefs a step cannot reach.
OPAQUE_REFS = frozenset({"net_ns", "netdev", "netdev_addr", "mnt_ns"})
INET = (2, 10)                  # AF_INET, AF_INET6
VM_SHARED, VM_MAYSHARE = 0x8, 0x80
# Records whose BUFFERs follow them: dropped with them.
BUFFERED = frozenset({"socket_buffer", "socket_frag", "epoll_items", "tty_ldisc",
                      "task_sem_undo", "ipc_msg_msg", "ipc_sem"})


class RefMap:
    """How a step renumbers objrefs.

    ``identity``: numbers pass unchanged (objects a step drops leave a hole).
    ``canonical``: numbers are given in order of first use (OBJREF or a field
    naming an object first), so objects a step adds or drops do not collide
    with or leave holes among the others; an image already numbered in order of
    first use keeps its numbers apart from the shift the change causes.
    ``shift``: a block of ``k`` objrefs is inserted at ``at`` (``k`` < 0 removes
    ``[at, at-k)``), e.g. v23 pid objects.
    """

    def __init__(self, mode: str = "identity"):
        self.mode = mode
        self.map: dict[int, int] = {}
        self.next = 1
        self.last_old = 0
        self.in_order = True
        self.changed = False
        self.at = 1
        self.k = 0

    def set_shift(self, at: int, k: int) -> None:
        self.mode, self.at, self.k = "shift", at, k

    @property
    def renumbering(self) -> bool:
        return self.mode == "canonical" or (self.mode == "shift" and self.k != 0)

    def removed(self, ref: int) -> bool:
        """In a removing shift: does ``ref`` name one of the removed objects?"""
        return self.mode == "shift" and self.k < 0 and self.at <= ref < self.at - self.k

    def __call__(self, ref: int) -> int:
        if ref <= 0 or self.mode == "identity":
            return ref
        if self.mode == "shift":
            if self.k >= 0:
                new = ref + self.k if ref >= self.at else ref
            elif ref >= self.at - self.k:
                new = ref + self.k
            else:
                new = ref
        else:
            new = self.map.get(ref)
            if new is None:
                new = self.map[ref] = self.next
                self.next += 1
                if ref < self.last_old:
                    self.in_order = False
                self.last_old = max(self.last_old, ref)
        if new != ref:
            self.changed = True
        return new

    def synth(self) -> int:
        """A fresh objref for an object the step adds (canonical mode)."""
        assert self.mode == "canonical"
        new = self.next
        self.next += 1
        self.changed = True
        return new


class Sharing:
    """Which objects a task group uses, for objects an upgrade assumes are shared by
    exactly one thread group (signal_struct, fs_struct): ``check`` is False when an
    image shares them otherwise (which the older version cannot tell)."""

    def __init__(self):
        self.of_group: dict = {}
        self.group_of: dict = {}

    def check(self, group, ref: int) -> bool:
        return self.of_group.setdefault(group, ref) == ref and \
            self.group_of.setdefault(ref, group) == group


def group_of(ctx: "Context", rec: "Rec"):
    """The thread group of a record's task (its tgid from the tree)."""
    tgid = ctx.tgid_of(rec.task)
    return ("tgid", tgid) if tgid is not None else ("task", rec.task)


# -- nested field access ------------------------------------------------------------------


def get_path(v: dict, path: str, default=None):
    for part in path.split("."):
        if v is None or not isinstance(v, dict) or part not in v:
            return default
        v = v[part]
    return v


def set_path(v: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        v = v[part]
    v[last] = value


def pop_path(v: dict, path: str, default=None):
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(v, dict) or part not in v:
            return default
        v = v[part]
    if not isinstance(v, dict):
        return default
    return v.pop(last, default)


def strip(v, pads: bool):
    """A parsed container -> plain dicts/lists, without ``_io`` (and pads if asked)."""
    if isinstance(v, dict):
        if pads:
            return {k: strip(x, pads) if isinstance(x, (dict, list)) else x
                    for k, x in v.items() if k[0] != "_" or k == "_tail"}
        return {k: strip(x, pads) if isinstance(x, (dict, list)) else x
                for k, x in v.items() if k != "_io"}
    if isinstance(v, list):
        return [strip(x, pads) if isinstance(x, (dict, list)) else x for x in v]
    return v


@functools.cache
def changed_structs(src: Abi, dst: Abi) -> frozenset[str]:
    """Records both ABIs have a struct for, laid out differently."""
    theirs = dst.tables["signatures"]
    return frozenset(n for n, sig in src.tables["signatures"].items()
                     if n in theirs and sig != theirs[n])


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def u32(v: int) -> int:
    return v & 0xFFFFFFFF


# -- epoll items -----------------------------------------------------------------------------


def parse_items(abi: Abi, rec: Rec) -> list[dict]:
    """The ckpt_eventpoll_items of the BUFFER after EPOLL_ITEMS."""
    size = abi.sizeof("ckpt_eventpoll_item")
    data = rec.data()
    if len(data) % size:
        raise SchemaError(f"epoll items BUFFER of {len(data)} bytes is no whole number of "
                          f"{size}-byte items", offset=rec.offset, record="BUFFER")
    return [strip(abi.parse("ckpt_eventpoll_item", data[i:i + size]), pads=False)
            for i in range(0, len(data), size)]


def build_items(abi: Abi, items: list[dict]) -> bytes:
    return b"".join(abi.build("ckpt_eventpoll_item", item) for item in items)


# -- pid arrays ------------------------------------------------------------------------------

# The layouts and their parsing live in formats.pids; these add the record position.

def parse_pid_entries(data: bytes, count: int, rec: Rec) -> list[list[int]]:
    try:
        return [list(e) for e in pids.iter_entries(data, count)]
    except PayloadError as e:
        raise SchemaError(str(e), offset=rec.offset, record="BUFFER") from None


class Rows:
    """The per-task rows of a TREE buffer, each a new dict (pads included) made as it is
    iterated: 100,000 tasks hold the buffer's bytes, not 100,000 dicts."""

    def __init__(self, abi: Abi, data: bytes, count: int, rec: Rec):
        self.abi, self.data, self.count = abi, data, count
        try:
            pids.iter_rows(abi, data, count)        # (the length is checked at once)
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record="BUFFER") from None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict]:
        return pids.iter_rows(self.abi, self.data, self.count)


def parse_rows(abi: Abi, data: bytes, count: int, rec: Rec) -> Rows:
    return Rows(abi, data, count, rec)


build_pid_entries, PID_FIELDS = pids.build_entries, pids.PID_FIELDS


# -- the step ----------------------------------------------------------------------------------


@dataclass
class New:
    """A field only the newer version has: an upgrade fills ``default`` (a note
    when ``assumed``: a value the newer kernel may well have written otherwise);
    a downgrade loses any other value."""
    default: Any
    assumed: str | None = None


@dataclass
class Old:
    """A field only the older version has: a downgrade fills ``default``; an
    upgrade loses any other value (``up="note"``: it is no loss, just noted)."""
    default: Any
    up: str = "loss"
    message: str = ""


class Step:
    """One adjacent pair of versions, both directions.

    Subclasses declare what changed (``NEW``/``OLD`` field tables, records
    whose opaque layout changed) and override ``upward``/``downward`` for
    what needs more than a field table; the generic part renames record and
    object types, rebuilds records whose layout changed and renumbers objrefs.
    """

    OLD: str = ""
    NEW: str = ""
    NEW_FIELDS: dict[str, dict[str, New]] = {}
    OLD_FIELDS: dict[str, dict[str, Old]] = {}
    # Same record name, different layout, no struct to convert it with.
    OPAQUE_CHANGED: frozenset[str] = frozenset()
    # File types the target lacks that the step converts (rather than drops).
    KEPT_FILE_TYPES: frozenset[str] = frozenset()
    REFS = "identity"

    def __init__(self, ctx: Context, up: bool, arch: str):
        self.ctx = ctx
        self.up = up
        self.arch = arch
        self.old = formats.abi(self.OLD, arch)
        self.new = formats.abi(self.NEW, arch)
        self.src, self.dst = (self.old, self.new) if up else (self.new, self.old)
        self.label = f"{self.src.name}->{self.dst.name}"
        self.refs = RefMap(self.REFS)
        self.changed = changed_structs(self.src, self.dst)
        self.dropping = False       # the record before was dropped: its BUFFERs go too
        self.epoll_due = False      # the BUFFER of epoll items comes next

    # -- reporting
    def lose(self, rec: Rec | None, field: str, value, message: str = "",
             record: str | None = None) -> None:
        self.ctx.loss(self.label, rec, field, value, message, record)

    def note(self, rec: Rec | None, field: str, value, message: str,
             record: str | None = None) -> None:
        self.ctx.note(self.label, rec, field, value, message, record)

    # -- driving
    def run(self, recs: Iterator[Rec]) -> Iterator[Rec]:
        if not self.up and self.drops_objects:
            recs = ObjectDrop(self).run(recs)
        yield from (self.upward(recs) if self.up else self.downward(recs))
        if self.refs.mode == "canonical" and not self.refs.in_order:
            self.note(None, "objref", None, "objrefs were not numbered in order of first use; "
                      "renumbered", record="OBJREF")

    def upward(self, recs: Iterator[Rec]) -> Iterator[Rec]:
        return self.each(recs)

    def dropped_object(self, rec: Rec, nested: list[Rec]) -> tuple[str, bool] | None:
        """Downgrade: why the FILE object record ``rec`` (after its OBJREF and the objects
        ``nested`` in it) cannot exist in the target, and whether the nested objects go
        with it; None: it can.  FILE objects of a type the target lacks, inet sockets
        where the target has no SOCKET_INET, and the extension records' FILE objects."""
        if rec.name in ext.OBJECT_RECORDS and rec.name not in self.dst.types:
            return f"{self.dst.name} has no {ext.FILE_KINDS[rec.name]} files", False
        if rec.name != "file":
            return None
        (f_type,) = struct.unpack_from("<I", rec.data())
        name = self.src.file_type_names.get(f_type)
        if name in self.drop_file_types:
            return f"{self.dst.name} has no {name} files", False
        if name == "socket" and not self.dst.has("socket_inet"):
            for r in nested:
                if r.name == "socket" and self.parse(r)["sock_common"]["family"] in INET:
                    return f"{self.dst.name} has no inet sockets", True
        return None

    @functools.cached_property
    def drops_objects(self) -> bool:
        """A downgrade that may drop FILE objects (so ObjectDrop runs)."""
        return bool(self.drop_file_types) or (self.src.has("socket_inet") and
                                              not self.dst.has("socket_inet")) or \
            any(n not in self.dst.types for n in ext.OBJECT_RECORDS if n in self.src.types)

    @functools.cached_property
    def drop_file_types(self) -> frozenset[str]:
        return frozenset(self.src.file_types) - frozenset(self.dst.file_types) - \
            self.KEPT_FILE_TYPES

    def downward(self, recs: Iterator[Rec]) -> Iterator[Rec]:
        return self.each(recs)

    def each(self, recs: Iterable[Rec]) -> Iterator[Rec]:
        for rec in recs:
            out = self.generic(rec)
            if out is not None:
                yield out

    # -- the generic conversion of one record
    def generic(self, rec: Rec) -> Rec | None:
        name = rec.name
        if name == "pipe_data":
            return rec
        if name == "buffer":
            if self.dropping:       # the data of the record dropped before it
                return None
            if self.epoll_due:
                self.epoll_due = False
                return self.epoll_buffer(rec)
        else:
            self.dropping = self.epoll_due = False
        if name not in self.dst.types:
            self.lose(rec, "record", name.upper(), f"{self.dst.name} has no such record")
            self.dropping = name in BUFFERED
            return None
        if name in self.OPAQUE_CHANGED:
            self.lose(rec, "record", name.upper(), f"layout differs in {self.dst.name} and is "
                      f"not known well enough to convert")
            self.dropping = name in BUFFERED
            return None
        if name == "epoll_items" and self.refs.renumbering:
            self.epoll_due = True
        if name == "objref":
            return self.objref(rec)
        if name in self.changed or name == "header" or \
                (self.refs.renumbering and name in REF_FIELDS) or \
                hasattr(self, "fix_" + name) or hasattr(self, "pre_" + name):
            v = self.parse(rec)
            v = self.reshape(rec, v)
            if v is None:
                return None
            return rec.derive(name, self.build(rec, name, v))
        if self.refs.renumbering and self.refs.changed and name in OPAQUE_REFS:
            self.lose(rec, "objrefs", None, "opaque record may hold objrefs that could not be "
                      "renumbered")
        return rec

    def parse(self, rec: Rec, name: str | None = None, abi: Abi | None = None) -> dict:
        name = name or rec.name
        abi = abi or self.src
        try:
            v = abi.parse(name, rec.data())
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record=name.upper()) from None
        return strip(v, pads=False)

    def build(self, rec: Rec, name: str, v: dict, abi: Abi | None = None) -> bytes:
        try:
            return (abi or self.dst).build(name, v)
        except PayloadError as e:
            raise SchemaError(f"{e} (converting {self.label})", offset=rec.offset,
                              record=name.upper()) from None

    def reshape(self, rec: Rec, v: dict) -> dict | None:
        name = rec.name
        if name in self.changed or name == "header":
            v = strip(v, pads=True)
        pre = getattr(self, "pre_" + name, None)
        if pre is not None and pre(rec, v) is False:
            return None
        if name == "header":
            self.header(rec, v)
        self.tables(rec, v)
        for path in REF_FIELDS.get(name, ()):
            ref = get_path(v, path)
            if ref is not None:
                set_path(v, path, self.ref(rec, path, ref))
        if name == "file":
            self.file_sub(rec, v)
        fix = getattr(self, "fix_" + name, None)
        if fix is not None and fix(rec, v) is False:
            return None
        return v

    def ref(self, rec: Rec, path: str, ref: int) -> int:
        if self.refs.removed(ref):
            self.lose(rec, path, ref, "refers to a pid object, which the target cannot hold")
            return 0
        return self.refs(ref)

    def tables(self, rec: Rec, v: dict) -> None:
        name = rec.name
        for path, f in self.NEW_FIELDS.get(name, {}).items():
            if self.up:
                set_path(v, path, f.default)
                if f.assumed:
                    self.note(rec, path, f.default, f.assumed)
            else:
                old = pop_path(v, path)
                if old is not None and old != f.default:
                    self.lose(rec, path, old, f"{self.dst.name} cannot hold it")
        for path, f in self.OLD_FIELDS.get(name, {}).items():
            if self.up:
                old = pop_path(v, path)
                if old is not None and old != f.default:
                    if f.up == "note":
                        self.note(rec, path, old, f.message or f"dropped: {self.dst.name} "
                                  f"does not save it")
                    else:
                        self.lose(rec, path, old, f.message or f"{self.dst.name} cannot hold it")
            else:
                set_path(v, path, f.default)

    def objref(self, rec: Rec) -> Rec | None:
        v = self.parse(rec)
        kind = self.src.obj_names.get(v["objtype"])
        if kind is None or kind not in self.dst.objs:
            self.lose(rec, "objtype", kind or v["objtype"],
                      f"{self.dst.name} has no such object type (objref {v['objref']})")
            return None
        v["objtype"] = self.dst.objs[kind]
        v["objref"] = self.ref(rec, "objref", v["objref"])
        return rec.derive("objref", self.build(rec, "objref", v))

    def epoll_buffer(self, rec: Rec) -> Rec:
        """The ckpt_eventpoll_items after EPOLL_ITEMS, their file objrefs renumbered."""
        items = parse_items(self.src, rec)
        for i, item in enumerate(items):
            item["file_objref"] = self.ref(rec, f"items[{i}].file_objref", item["file_objref"])
        return rec.derive("buffer", build_items(self.dst, items))

    def fix_ipc(self, rec: Rec, v: dict) -> None:
        """IPC section heads name the record type of their objects (IPC_SHM/MSG/SEM)."""
        name = self.src.type_names.get(v["ipc_type"])
        if name in self.dst.types:
            v["ipc_type"] = self.dst.types[name]

    def header(self, rec: Rec, v: dict) -> None:
        v["rev"] = self.dst.rev
        v["arch_id"] = self.dst.arch_id
        kernel = (v["major"], v["minor"], v["patch"])
        if kernel != self.src.kernel:
            self.note(rec, "kernel", "%d.%d.%d" % kernel,
                      "not the default of %s; replaced by %s's %d.%d.%d"
                      % ((self.src.name, self.dst.name) + self.dst.kernel))
        v["major"], v["minor"], v["patch"] = self.dst.kernel

    def file_sub(self, rec: Rec, v: dict) -> None:
        """FILE subtypes the target does not know keep their bytes in the tail (and
        are a loss); subtypes the source did not know are parsed from the tail."""
        ftype = v["f_type"]
        in_src, in_dst = ftype in self.src.switch_keys("file"), \
            ftype in self.dst.switch_keys("file")
        if ftype not in self.dst.file_type_names:
            self.lose(rec, "f_type", self.src.file_type_names.get(ftype, ftype),
                      f"{self.dst.name} has no such file type")
        if in_src and not in_dst:
            src_case = self.src.structs["file"].subcons[-1].subcon.cases[ftype]
            tail = src_case.build(v.get("sub") or {}) + v.get("_tail", b"")
            v["sub"] = None
            if tail:
                v["_tail"] = tail
        elif in_dst and not in_src:
            dst_case = self.dst.structs["file"].subcons[-1].subcon.cases[ftype]
            tail = v.pop("_tail", b"")
            size = dst_case.sizeof()
            sub = tail[:size].ljust(size, b"\0")
            v["sub"] = strip(dst_case.parse(sub), pads=False)
            if tail[size:]:
                v["_tail"] = tail[size:]

    def small(self, rec: Rec, name: str, value: dict) -> Rec:
        """A new record of the target version built from field values."""
        return rec.derive(name, self.build(rec, name, value))


# -- objects the target cannot hold ------------------------------------------------------------

# What belongs to an extension object record (and goes with it).
_PARTS = {"ext_file_memfd": ("string", "ext_extent"),
          "ext_file_ghost": ("file_name", "ext_extent"),
          "ext_file_inotify": ("ext_inotify_watch", "file_name")}
# Records that end a held file table or mm section.
_SECTION_END = {"task", "task_objs", "task_creds", "task_ns", "thread", "cpu",
                "restart_block", "signal_task", "tail", "error", "file_table", "sighand", "fs"}


def _unknown_ext(name: str) -> bool:
    """A record of the extension range that formats/ext.py does not know ("type_8123")."""
    return name.startswith("type_") and name[5:].isdigit() and ext.is_ext(int(name[5:]))


class ObjectDrop:
    """A downgrade's first pass (over source records): drops the FILE objects the target
    cannot hold (``Step.dropped_object``) with their OBJREF and the records that belong to
    them (a memfd's name, a deleted file's path, inotify watches, EXT_EXTENTs), and every
    reference to their objrefs: FILE_DESCs (the FILE_TABLE's fdt_nfds shrinks) and epoll
    items (EPOLL_ITEMS.num_items shrinks) go; a VMA mapping one becomes private anonymous
    memory; any other field naming one becomes 0; each a loss.  A file table is held
    (spooled) until it ends, so that its count can be fixed; nothing else is held."""

    def __init__(self, step: Step):
        self.step = step
        self.dropped: set[int] = set()      # objrefs of dropped FILE objects
        self.parts: tuple[str, ...] = ()    # records that go with the dropped object
        self.held: list[Rec] = []           # OBJREF(FILE) and the objects nested in it
        self.file_obj = step.src.objs.get("file")
        self.it: Iterator[Rec] = iter(())

    def run(self, recs):
        self.it = iter(recs)
        for rec in self.it:
            for out in self.one(rec):
                if out is not None:         # None: a dropped descriptor or VMA
                    yield out
        yield from self.held

    def one(self, rec):
        n = rec.name
        if self.parts:
            if n in self.parts:
                return              # part of the dropped object (its loss is reported)
            self.parts = ()
        if self.held and len(self.held) == 1 and _unknown_ext(n):
            ref = self.step.parse(self.held[0])["objref"]
            self.dropped.add(ref)
            self.step.lose(rec, "record", n.upper(), f"an extension record this imgtools does "
                           f"not know, taken for the object of file {ref}")
            self.held = []
            return
        if self.held and (n in self.step.src.record_kinds or n == "objref"):
            if n == "objref" and self.is_file_objref(rec):
                yield from self.flush()
            elif self.step.src.record_kinds.get(n) == "file":
                why = self.step.dropped_object(rec, self.held[1:])
                if why is None:
                    yield from self.flush()
                else:
                    ref = self.step.parse(self.held[0])["objref"]
                    self.dropped.add(ref)
                    self.step.lose(rec, "record", n.upper(), f"{why[0]} (objref {ref})")
                    self.parts = _PARTS.get(n, ())
                    held, self.held = self.held[1:], []
                    if why[1]:          # the objects nested in it go too
                        self.drop_nested(held)
                    else:
                        for r in held:
                            yield from self.one(r)
                    return
        if self.held:
            self.held.append(rec.derive(n, rec.data()) if rec.body is not None else rec)
            return
        if n == "objref" and self.is_file_objref(rec):
            self.held = [rec.derive("objref", rec.data())]
        elif n == "file_table":
            yield from self.section(rec, "file_desc", "fdt_nfds")
        elif n == "epoll_items" and self.dropped:
            yield from self.epoll(rec)
        else:
            yield from self.refs(rec)

    def drop_nested(self, held: list[Rec]) -> None:
        """The objects only a dropped file held (its socket): dropped with it."""
        obj_names = self.step.src.obj_names
        for r in held:
            if r.name == "objref":
                v = self.step.parse(r)
                self.dropped.add(v["objref"])
                self.step.lose(r, "objref", v["objref"], f"the {obj_names.get(v['objtype'])} "
                               f"of a dropped file")

    def is_file_objref(self, rec) -> bool:
        return struct.unpack_from("<I", rec.data())[0] == self.file_obj

    def flush(self):
        held, self.held = self.held, []
        yield held[0]
        for rec in held[1:]:
            yield from self.one(rec)

    def refs(self, rec):
        """A record naming a dropped object: a FILE_DESC is dropped (None is yielded for
        it), a VMA made anonymous, another reference cleared."""
        n = rec.name
        if not self.dropped or n not in REF_FIELDS:
            yield rec
            return
        step = self.step
        v = step.parse(rec)
        if n == "file_desc" and v["fd_objref"] in self.dropped:
            step.lose(rec, "fd", v["fd_descriptor"], f"its file (objref {v['fd_objref']}) is "
                      f"dropped")
            yield None
            return
        if n == "vma" and v["vma_objref"] in self.dropped:
            yield from self.vma(rec, v)
            return
        changed = False
        for path in REF_FIELDS[n]:
            if get_path(v, path) in self.dropped:
                step.lose(rec, path, get_path(v, path), "names a dropped object")
                set_path(v, path, 0)
                changed = True
        yield rec.derive(n, step.build(rec, n, v, abi=step.src)) if changed else rec

    def vma(self, rec, v):
        """A mapping of a dropped file stays, as private anonymous memory (the layout of
        the address space holds; the pages it has go on, a file mapping without any gets
        an empty page list)."""
        step = self.step
        step.lose(rec, "vma_objref", v["vma_objref"], f"the mapping "
                  f"{v['vm_start']:#x}-{v['vm_end']:#x} of a dropped file is kept as private "
                  f"anonymous memory, without the file's contents")
        had_pages = step.src.vma_type_names.get(v["vma_type"]) in ("anon", "file")
        v.update(vma_type=step.src.vma_types["anon"], vma_objref=0, ino_objref=0,
                 vm_flags=v["vm_flags"] & ~(VM_SHARED | VM_MAYSHARE))
        yield rec.derive("vma", step.build(rec, "vma", v, abi=step.src))
        if not had_pages:
            yield rec.derive("pgarr", step.build(rec, "pgarr", {"nr_pages": 0},
                                                 abi=step.src))

    def epoll(self, rec):
        """EPOLL_ITEMS and its BUFFER without the items that watch a dropped file."""
        step = self.step
        buf = next(self.it, None)
        if buf is None or buf.name != "buffer":
            yield rec
            if buf is not None:
                yield from self.one(buf)
            return
        items = parse_items(step.src, buf)
        kept = [i for i in items if i["file_objref"] not in self.dropped]
        for i in items:
            if i["file_objref"] in self.dropped:
                step.lose(buf, "epoll item", i["fd"], f"watches a dropped file (objref "
                          f"{i['file_objref']})", record="EPOLL_ITEMS")
        v = step.parse(rec)
        v["num_items"] = len(kept)
        yield rec.derive(rec.name, step.build(rec, rec.name, v, abi=step.src))
        yield buf.derive("buffer", build_items(step.src, kept))

    def section(self, head, child: str, count: str):
        """Hold a FILE_TABLE and what follows it until the section ends; the FILE_DESCs
        naming dropped files go and fdt_nfds counts the others."""
        step = self.step
        head = head.derive(head.name, head.data())
        spool = Spool()
        gone = 0
        end = None
        for rec in self.it:
            n = rec.name
            if n in _SECTION_END or n == "mm":
                end = rec
                break
            for out in self.one(rec):
                if out is None:
                    gone += 1
                else:
                    spool.add(out)
        for rec in self.held:           # an OBJREF of the next section's object
            spool.add(rec)
        self.held = []
        if gone:
            v = step.parse(head)
            v[count] -= gone
            head = head.derive(head.name, step.build(head, head.name, v, abi=step.src))
        yield head
        yield from spool.replay()
        if end is not None:
            yield from self.one(end)
