"""A lean model's tables (build_model's ``keep``): its tasks, its objref table and its
descriptors held in columns of arrays, not as an object each.

Issue 11: info, ps, maps and files of 100,000 tasks or 400,000 fds in bounded memory. A
task was ~450 bytes with its comm and numbers, an objref table entry ~190 (its Obj, the
dict's entry, its ref and offset ints), a file ~250 more, an fd ~60: here a task takes
~160 bytes, an entry 17, a file 41 and its path, an fd 17. The tables read as the whole
model's list and dict do, each item made when it is read (so a listing that reads every
task once makes each once, and holds none of them). What does not fit a column (a
number too large, a file with sub fields or a pipe, a task with records held, an objref
far from the others) stays the object it was. A table is built in one pass, its last
items still changed by the builder: ``freeze()`` ends that.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from types import MappingProxyType

from .model import NOT_KEPT, Fd, File, Held, Obj, Signal, Task

# One read-only empty mapping for every objs and sub a lean model holds no fields of.
EMPTY = MappingProxyType({})
_NO = -1        # in a column of offsets or indexes: None


class _Strings:
    """Strings (or None) appended to one buffer of their UTF-8 bytes: ``add`` gives the
    (start, end) to keep, ``at`` the string back (start _NO: None)."""
    __slots__ = ("data",)

    def __init__(self):
        self.data = bytearray()

    def add(self, s: str | None) -> tuple[int, int]:
        if s is None:
            return _NO, _NO
        start = len(self.data)
        self.data += s.encode("utf-8", "surrogatepass")     # (any str comes back as it was)
        return start, len(self.data)

    def at(self, start: int, end: int) -> str | None:
        if start == _NO:
            return None
        return self.data[start:end].decode("utf-8", "surrogatepass")


class _Blobs:
    """Byte strings appended to one buffer: ``add`` gives the row, ``at`` the bytes back."""
    __slots__ = ("data", "ends")

    def __init__(self):
        self.data = bytearray()
        self.ends = array("q")

    def __len__(self) -> int:
        return len(self.ends)

    def add(self, b: bytes) -> int:
        self.data += b
        self.ends.append(len(self.data))
        return len(self.ends) - 1

    def at(self, row: int) -> bytes:
        return bytes(self.data[self.ends[row - 1] if row else 0:self.ends[row]])


class Codes:
    """Names (a kind, a file type) as one byte each: 1..255, 0 for none; None for a 256th."""
    __slots__ = ("names", "code_of")

    def __init__(self):
        self.names: list[str | None] = [None]
        self.code_of: dict[str, int] = {}

    def code(self, name: str) -> int | None:
        c = self.code_of.get(name)
        if c is None and type(name) is str and len(self.names) < 256:
            c = self.code_of[name] = len(self.names)
            self.names.append(name)
        return c


class _Files:
    """The files packed in an :class:`Objects`: those without sub fields or a pipe (the
    regular files, devices, most of an image's), a row each."""
    __slots__ = ("types", "type", "ints", "paths", "path_at")

    def __init__(self):
        self.types = Codes()
        self.type = bytearray()
        self.ints = array("q")          # 4 a row: f_flags, f_mode, f_pos, cred_ref
        self.paths = _Strings()
        self.path_at = array("q")       # 2 a row: start, end

    def add(self, f: File) -> int | None:
        """The row of the file, None where it does not fit."""
        code = self.types.code(f.f_type)
        if code is None or not (f.path is None or type(f.path) is str):
            return None
        try:
            ints = array("q", (f.f_flags, f.f_mode, f.f_pos, f.cred_ref))
        except (OverflowError, TypeError):
            return None
        row = len(self.type)
        self.type.append(code)
        self.ints += ints
        self.path_at.extend(self.paths.add(f.path))
        return row

    def file(self, ref: int, row: int) -> File:
        i = 4 * row
        flags, mode, pos, cred = self.ints[i:i + 4]
        return File(ref, self.types.names[self.type[row]], flags, mode, pos, cred,
                    path=self.paths.at(self.path_at[2 * row], self.path_at[2 * row + 1]),
                    sub=EMPTY)


# Up to these many tasks, or files, or fds in one table, a lean model holds them as the
# objects the whole model holds (32,768 Tasks are about 25 MB, 65,536 Fds about 30 MB):
# each is read several times by a command, and one made from the columns at each read
# costs time (show of 10,000 tasks: 2.2 -> 3.5 s).  Beyond, they go into the columns, so
# that memory stays bounded whatever the image's size. A table built with ``read_once``
# holds none: for a command that reads each item once (diff), holding them saves no
# time, and was most of its memory (100,000 tasks: 30 MB an image).
HOLD_TASKS = 32768
HOLD_FILES = HOLD_FDS = 65536


def _pack_live(table) -> None:
    """The part of ``table`` (Objects, Tasks) read last into the columns once the table
    is lean, and every part it holds when it becomes so (at ``table.hold`` held)."""
    if table.live is None:
        return
    if table.lean:
        table._pack(table.live)
    elif len(table.held) >= table.hold:
        table.lean = True
        for held in list(table.held):
            table._pack(held)


class Objects:
    """A lean model's objref table: objref -> :class:`Obj`, read as the whole model's dict.

    Columns indexed by objref - base (base: the first objref put in them; objrefs are
    numbered as the dumper meets the objects, so they are dense): the kind (one byte,
    0: none), the offset of the defining record, the defining task's index, the row of
    a packed file or signal, or of a value held as bytes (model.Held: a SIGHAND). Objects
    with a value (other than these: such files, signals of which only the shared mask is
    held, held bytes), and objrefs below base or far above the others, are held as their
    Obj. While the model is built, reading a packed file moves it back to an Obj (the
    builder may change what it reads: an epoll adds items to its file); once frozen,
    reading makes one each time."""
    __slots__ = ("held", "kinds", "base", "kind", "offset", "task", "row", "count",
                 "files", "masks", "blobs", "parse_of", "live", "frozen", "lean", "hold")

    def __init__(self, read_once: bool = False):
        self.held: dict[int, Obj] = {}
        self.kinds = Codes()
        self.base: int | None = None
        self.kind = bytearray()
        self.offset = array("q")
        self.task = array("i")
        self.row = array("i")
        self.count = 0                  # objects in the columns
        self.files = _Files()
        self.masks = array("Q")         # a packed signal's row: its shared mask
        self.blobs = _Blobs()           # a held value's row: its bytes
        self.parse_of: dict[str, object] = {}   # kind -> the Held parse of its values
        self.live: int | None = None    # the file or signal defined last: packed at the
                                        # next (a signal's SIGPENDING comes after it)
        self.frozen = False
        self.lean = False               # files are packed (more than HOLD_FILES held)
        self.hold = 0 if read_once else HOLD_FILES

    # -- reading, as a dict ------------------------------------------------------------
    def _at(self, ref) -> int:
        """The column index of an objref in the columns, else -1."""
        if self.base is None or type(ref) is not int:
            return -1
        i = ref - self.base
        return i if 0 <= i < len(self.kind) and self.kind[i] else -1

    def __contains__(self, ref) -> bool:
        return ref in self.held or self._at(ref) >= 0

    def __len__(self) -> int:
        return len(self.held) + self.count

    def kind_of(self, ref) -> str | None:
        """The kind of the object, None for no object (nothing is made to tell it)."""
        o = self.held.get(ref)
        if o is not None:
            return o.kind
        i = self._at(ref)
        return self.kinds.names[self.kind[i]] if i >= 0 else None

    def get(self, ref, default=None):
        o = self.held.get(ref)
        if o is not None:
            return o
        i = self._at(ref)
        if i < 0:
            return default
        row, task, kind = self.row[i], self.task[i], self.kinds.names[self.kind[i]]
        if row == _NO:
            value = None
        elif kind == "signal":
            value = Signal(ref, NOT_KEPT, (), self.masks[row])
        elif kind in self.parse_of:
            value = Held(self.blobs.at(row), self.parse_of[kind])
        else:
            value = self.files.file(ref, row)
        o = Obj(ref, kind, value, self.offset[i], None if task == _NO else task)
        if type(value) is File and not self.frozen:
            self.kind[i] = 0            # (its row is left unused; a signal is packed once
                                        # the builder is done with it: task_done reads it)
            self.count -= 1
            self.held[ref] = o
        return o

    def __getitem__(self, ref) -> Obj:
        o = self.get(ref)
        if o is None:
            raise KeyError(ref)
        return o

    def keys(self):
        yield from self.held
        if self.base is not None:
            base, kind = self.base, self.kind
            yield from (base + i for i in range(len(kind)) if kind[i])

    __iter__ = keys

    def values(self):
        return (self.get(ref) for ref in list(self.keys()))

    def items(self):
        return ((o.ref, o) for o in self.values())

    def of_kind(self, kind: str):
        """The objects of one kind, in the order of ``values()`` (only those are made)."""
        yield from [o for o in self.held.values() if o.kind == kind]
        code = self.kinds.code_of.get(kind)
        if code is None or self.base is None:
            return
        mark = bytes((code,))
        i = self.kind.find(mark)
        while i >= 0:
            yield self.get(self.base + i)
            i = self.kind.find(mark, i + 1)

    # -- building ----------------------------------------------------------------------
    def __setitem__(self, ref: int, o: Obj) -> None:
        self.define(ref, o.kind, o.value, o.offset, o.task)

    def define(self, ref: int, kind: str, value, offset: int, task: int | None) -> None:
        """A new objref (not in the table yet)."""
        if type(value) is File or type(value) is Signal:
            _pack_live(self)
            self.live = ref
        elif value is None and self._column(ref, kind, offset, task, _NO):
            return
        elif type(value) is Held and type(value.payload) is bytes and \
                self.parse_of.setdefault(kind, value.parse) is value.parse and \
                self._column(ref, kind, offset, task, len(self.blobs)):
            self.blobs.add(value.payload)
            return
        self.held[ref] = Obj(ref, kind, value, offset, task)

    def freeze(self) -> None:
        """The table as the model holds it: nothing of it changes any more."""
        if self.live is not None and self.lean:
            self._pack(self.live)
        self.live = None
        self.frozen = True

    def _pack(self, ref: int) -> None:
        o = self.held.get(ref)
        if o is not None and type(o.value) is Signal:
            self._pack_signal(ref, o)
        if o is None or type(o.value) is not File:
            return
        f = o.value
        if f.sub or f.pipe_ref or f.ref != ref:
            return
        row = self.files.add(f)
        if row is not None and self._column(ref, o.kind, o.offset, o.task, row):
            del self.held[ref]

    def _pack_signal(self, ref: int, o: Obj) -> None:
        """A signal of which a lean model holds only the shared mask into the columns."""
        s = o.value
        if s._fields is not NOT_KEPT or s.shared_pending or s.ref != ref or \
                type(s.shared_mask) is not int or not 0 <= s.shared_mask < 1 << 64:
            return
        self.masks.append(s.shared_mask)
        if self._column(ref, o.kind, o.offset, o.task, len(self.masks) - 1):
            del self.held[ref]
        else:
            self.masks.pop()

    def _column(self, ref, kind, offset, task, row) -> bool:
        """The object put in the columns; False where it does not fit them."""
        code = self.kinds.code(kind)
        if code is None or type(ref) is not int or type(offset) is not int:
            return False
        if self.base is None:
            self.base = ref
        i = ref - self.base
        if i < 0 or i >= 2 * len(self) + 65536:     # (far from the others: held)
            return False
        if i >= len(self.kind):
            grow = max(i + 1 - len(self.kind), len(self.kind) // 2 + 1024)
            self.kind.extend(bytes(grow))
            self.offset.frombytes(bytes(8 * grow))
            self.task.frombytes(bytes(4 * grow))
            self.row.frombytes(bytes(4 * grow))
        try:
            self.offset[i], self.task[i] = offset, _NO if task is None else task
        except OverflowError:
            return False
        self.kind[i], self.row[i] = code, row
        self.count += 1
        return True


class Fds:
    """A lean model's FileTable.fds: fd, file objref and close-on-exec of each, in three
    columns; an Fd is made for each as it is read. (Once a number does not fit the
    columns, a list of Fds for the whole table.)"""
    __slots__ = ("fd", "ref", "cloexec", "spilt", "small", "hold")

    def __init__(self, read_once: bool = False):
        self.fd, self.ref, self.cloexec = array("q"), array("q"), bytearray()
        self.spilt: list[Fd] | None = []    # (the Fds while there are few, see HOLD_FDS)
        self.small = True
        self.hold = 0 if read_once else HOLD_FDS

    def append(self, fd: Fd) -> None:
        if self.small:
            self.spilt.append(fd)
            if len(self.spilt) > self.hold:
                self.small = False
                held, self.spilt = self.spilt, None
                for f in held:
                    self.append(f)
            return
        if self.spilt is None:
            try:
                self.fd.append(fd.fd)
                try:
                    self.ref.append(fd.file_ref)
                except (OverflowError, TypeError):
                    self.fd.pop()
                    raise
            except (OverflowError, TypeError):
                self.spilt = list(self)
            else:
                self.cloexec.append(bool(fd.close_on_exec))
                return
        self.spilt.append(fd)

    def __len__(self) -> int:
        return len(self.cloexec) if self.spilt is None else len(self.spilt)

    def __iter__(self):
        if self.spilt is not None:
            return iter(self.spilt)
        return map(Fd, self.fd, self.ref, map(bool, self.cloexec))

    def __getitem__(self, i):
        return list(self)[i]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    __hash__ = None


# Task.flags bits: what a packed task holds where it holds no value.
_FIELDS_NOT_KEPT, _REGS_NOT_KEPT, _THREAD_NOT_KEPT, _RESTART_NOT_KEPT = 1, 2, 4, 8
_BLOCKED_NONE, _OBJS_HELD, _REGS_HELD = 16, 32, 64
_NOT_KEPT_BITS = (("_fields", _FIELDS_NOT_KEPT), ("_regs", _REGS_NOT_KEPT),
                  ("_thread", _THREAD_NOT_KEPT), ("_restart_block", _RESTART_NOT_KEPT))


class Tasks:
    """A lean model's tasks, read as the whole model's list: per task its tree numbers,
    record offset, state, comm, creds and namespace objrefs, signal masks and (where the
    model keeps them) its objs, in columns. The task whose records are being read is a
    Task until the next TASK record (``take``); tasks that do not fit the columns (their
    records held, a number too large, an rseq) stay Tasks."""
    __slots__ = ("ids", "offset", "states", "refs", "masks", "flags", "comms", "comm_at",
                 "objs_keys", "objs", "held", "live", "keep_objs", "_empty_args", "cpu", "cpu_at",
                 "cpu_parse", "lean", "hold", "frozen", "by_id")

    def __init__(self, keep_objs: bool, read_once: bool = False):
        self.ids = array("i")           # 6 a task: pid, ppid, tgid, pgid, sid, depth
        self.offset = array("q")
        self.states = array("q")        # 2 a task: state, exit_state
        self.refs = array("q")          # 3 a task: cred_ref, ecred_ref, ns_ref
        self.masks = array("Q")         # 2 a task: blocked, pending_mask
        self.flags = bytearray()
        self.comms = _Strings()
        self.comm_at = array("q")       # 2 a task: start, end
        self.keep_objs = keep_objs
        self._empty_args: dict | None = None
        self.objs_keys: tuple | None = None     # the TASK_OBJS fields (the same for all)
        self.objs = array("q")          # len(objs_keys) a task (once one has objs)
        self.held: dict[int, Task] = {}
        self.live: int | None = None
        self.cpu = bytearray()          # the CPU records held (build's "regs"), one after
        self.cpu_at = array("q")        # another; 2 a task: start, end
        self.cpu_parse = None           # what reads them (the same for all)
        self.lean = False               # tasks are packed (more than HOLD_TASKS held)
        self.hold = 0 if read_once else HOLD_TASKS
        self.frozen = False
        self.by_id: tuple | None = None     # (see with_id)

    def add(self, ids, depth: int) -> None:
        """The next task of the tree (no record of it read yet)."""
        i = len(self.flags)
        try:
            self.ids.extend(array("i", (*ids, depth)))
        except (OverflowError, TypeError):
            self.ids.frombytes(bytes(4 * 6))
            self.held[i] = Task(i, *ids, depth=depth, **self._empty())
        self._blank()

    def append(self, t: Task) -> None:
        """A task beyond the tree's (a Task, packed when its records are read)."""
        self.ids.frombytes(bytes(4 * 6))
        self.held[len(self.flags)] = t
        self._blank()

    def _blank(self) -> None:
        self.offset.append(_NO)
        self.states.frombytes(bytes(8 * 2))
        self.refs.frombytes(bytes(8 * 3))
        self.masks.frombytes(bytes(8 * 2))
        self.flags.append(_BLOCKED_NONE)
        self.comm_at.extend((_NO, _NO))
        self.cpu_at.extend((_NO, _NO))
        if self.objs_keys is not None:
            self.objs.frombytes(bytes(8 * len(self.objs_keys)))

    def _empty(self) -> dict:
        """What Task holds of a task no record of which was read (build's lean defaults)."""
        empty = self._empty_args
        if empty is None:
            empty = self._empty_args = {"pending": ()} | \
                ({} if self.keep_objs else {"objs": EMPTY})
        return empty

    def take(self, i: int) -> Task:
        """Task i, whose records come now: a Task until the next is taken (the one
        before packed)."""
        _pack_live(self)
        t = self.held.get(i)
        if t is None:
            if self.flags[i] == _BLOCKED_NONE and self.offset[i] == _NO:    # (as _blank
                t = Task(i, *self.ids[6 * i:6 * i + 6], **self._empty())   # left it)
            else:
                t = self._made(i)
            self.held[i] = t
        self.live = i
        return t

    def freeze(self) -> None:
        if self.live is not None and self.lean:
            self._pack(self.live)
        self.live = None
        self.frozen = True

    def __len__(self) -> int:
        return len(self.flags)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        t = self.held.get(i)
        return t if t is not None else self._made(i)

    def __iter__(self):
        held, made = self.held, self._made
        for i in range(len(self.flags)):
            t = held.get(i)
            yield t if t is not None else made(i)

    def ref_rows(self):
        """(index, pid, offset, cred_ref, ecred_ref, ns_ref, objs) of each task, in order,
        those in the columns read from them (build's check of the references: a Task
        made for each was a third of the checks' time, 100,000 tasks)."""
        held, ids, refs, flags, offsets = self.held, self.ids, self.refs, self.flags, self.offset
        keys = self.objs_keys
        n = len(keys) if keys is not None else 0
        no_objs = {} if self.keep_objs else EMPTY
        for i in range(len(flags)):
            t = held.get(i)
            if t is not None:
                yield t.index, t.pid, t.offset, t.cred_ref, t.ecred_ref, t.ns_ref, t.objs
                continue
            objs = dict(zip(keys, self.objs[n * i:n * i + n])) if flags[i] & _OBJS_HELD \
                else no_objs
            offset = offsets[i]
            yield (i, ids[6 * i], None if offset == _NO else offset, refs[3 * i],
                   refs[3 * i + 1], refs[3 * i + 2], objs)

    def with_id(self, n: int) -> list[Task]:
        """The tasks whose pid or tgid is ``n``, in order (only those are made). Once the
        table is frozen, found in an index of both made at the first call (to-core --all
        asks for each process: a scan of every task for each made 10,000 cores take 322 s)."""
        if self.frozen and self.by_id is None:
            self.by_id = self._id_index()
        if self.by_id:
            ids, rows = self.by_id
            lo = bisect_left(ids, n)
            return [self[i] for i in sorted(set(rows[lo:bisect_right(ids, n, lo)]))]
        found = {i for i, t in self.held.items() if t.pid == n or t.tgid == n}
        for col in (0, 2):              # (pid, tgid)
            column = self.ids[col::6]
            i = -1
            while True:
                try:
                    i = column.index(n, i + 1)
                except (ValueError, OverflowError):
                    break
                if i not in self.held:
                    found.add(i)
        return [self[i] for i in sorted(found)]

    def _id_index(self) -> tuple:
        """(every task's pid and tgid, sorted; the index of the task of each), or () where
        a number does not fit (with_id then scans)."""
        n = len(self.flags)
        try:
            ids = array("q", self.ids[0::6].tolist() + self.ids[2::6].tolist())
            for i, t in self.held.items():      # (their numbers, which the columns may lack)
                ids[i], ids[n + i] = t.pid, t.tgid
        except (OverflowError, TypeError):
            return ()
        order = sorted(range(2 * n), key=ids.__getitem__)
        return array("q", (ids[j] for j in order)), array("i", (j % n for j in order))

    def _made(self, i: int) -> Task:
        flags = self.flags[i]
        objs = EMPTY if not self.keep_objs else {}
        if flags & _OBJS_HELD:
            n = len(self.objs_keys)
            objs = dict(zip(self.objs_keys, self.objs[n * i:n * i + n]))
        offset = self.offset[i]
        regs = NOT_KEPT if flags & _REGS_NOT_KEPT else None
        if flags & _REGS_HELD:
            start, end = self.cpu_at[2 * i:2 * i + 2]
            regs = Held(bytes(self.cpu[start:end]), self.cpu_parse)
        t = Task(i, *self.ids[6 * i:6 * i + 6],
                 self.comms.at(*self.comm_at[2 * i:2 * i + 2]),
                 None if offset == _NO else offset, None, *self.refs[3 * i:3 * i + 3],
                 objs=objs, pending=(), pending_mask=self.masks[2 * i + 1],
                 blocked=None if flags & _BLOCKED_NONE else self.masks[2 * i],
                 regs=regs,
                 thread=NOT_KEPT if flags & _THREAD_NOT_KEPT else None,
                 restart_block=NOT_KEPT if flags & _RESTART_NOT_KEPT else None)
        if flags & _FIELDS_NOT_KEPT:
            t.hold_fields(NOT_KEPT, *self.states[2 * i:2 * i + 2])
        return t

    def _pack(self, i: int) -> None:
        """Task i into the columns, where all it holds fits them."""
        t = self.held[i]
        flags = 0
        cpu = None
        for slot, bit in _NOT_KEPT_BITS:
            v = getattr(t, slot)
            if v is NOT_KEPT:
                flags |= bit
            elif slot == "_regs" and type(v) is Held and type(v.payload) is bytes \
                    and self.cpu_parse in (None, v.parse):
                flags |= _REGS_HELD
                cpu = v
            elif v is not None and not (slot == "_fields" and v == {}):
                return
        if t.pending or t.rseq is not None or t.fpu_size or t.fpu_offset is not None \
                or t.index != i or not (t.comm is None or type(t.comm) is str):
            return
        if not flags & _FIELDS_NOT_KEPT and (t.state or t.exit_state):
            return
        objs = t.objs
        if objs is not EMPTY:
            if not self.keep_objs or type(objs) is not dict:
                return
            if objs:
                keys = tuple(objs)
                if self.objs_keys is None:
                    self.objs_keys = keys
                    self.objs.frombytes(bytes(8 * len(keys) * len(self)))
                if keys != self.objs_keys:
                    return
                flags |= _OBJS_HELD
        elif self.keep_objs:
            return
        if t.blocked is None:
            flags |= _BLOCKED_NONE
        try:
            ids = array("i", (t.pid, t.ppid, t.tgid, t.pgid, t.sid, t.depth))
            offset = _NO if t.offset is None else t.offset
            if offset < 0 and t.offset is not None:
                return
            states = array("q", (t.state, t.exit_state))
            refs = array("q", (t.cred_ref, t.ecred_ref, t.ns_ref))
            masks = array("Q", (t.blocked or 0, t.pending_mask))
            values = array("q", objs.values()) if flags & _OBJS_HELD else None
            self.offset[i] = offset
        except (OverflowError, TypeError):
            return
        self.ids[6 * i:6 * i + 6] = ids
        self.states[2 * i:2 * i + 2] = states
        self.refs[3 * i:3 * i + 3] = refs
        self.masks[2 * i:2 * i + 2] = masks
        if values is not None:
            n = len(values)
            self.objs[n * i:n * i + n] = values
        self.comm_at[2 * i:2 * i + 2] = array("q", self.comms.add(t.comm))
        if cpu is not None:
            self.cpu_parse = cpu.parse
            self.cpu_at[2 * i:2 * i + 2] = array("q", (len(self.cpu),
                                                       len(self.cpu) + len(cpu.payload)))
            self.cpu += cpu.payload
        self.flags[i] = flags
        del self.held[i]
