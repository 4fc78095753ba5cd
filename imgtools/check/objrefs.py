"""The objref table, as restart builds it: OBJREF records (and implicit first uses) define
objects, reference fields name them.  Undefined, duplicate, forward, wrongly typed and unused
objrefs; OBJREFs without their object record and object records without their OBJREF; and
loops: references into an object still being written, the user_ns creator chain, and any
other cycle closed through a forward reference."""
from __future__ import annotations

from array import array

from ._pass import (CYCLE_BUDGET, ERROR, MAX_EDGES, MAX_NEST, MAX_OBJECTS, MAX_PENDING,
                    WARNING, Pass)

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "objref.undefined": (ERROR, "reference to an undefined objref", "A field names an objref "
                         "that no OBJREF (or implicit first use) ever defines; restart fails "
                         "with -EINVAL."),
    "objref.forward": (ERROR, "forward reference", "A field names an objref defined only later "
                       "in the stream. The writer always dumps an object before any reference "
                       "to it, and restart resolves references as it reads."),
    "objref.duplicate": (ERROR, "objref defined twice", "An OBJREF re-defines an objref already "
                         "in the table (restart: duplicate objref -> -EINVAL)."),
    "objref.type": (ERROR, "reference to an object of the wrong type", "The objref exists but "
                    "holds another kind of object (e.g. fd_objref naming an mm); restart: "
                    "-ENOMSG."),
    "objref.unused": (WARNING, "object defined but never used", "An object was written (OBJREF "
                      "+ record) but nothing in the image refers to it."),
    "objref.bad-type": (ERROR, "OBJREF of an unknown object type", "OBJREF.objtype is no "
                        "CKPT_OBJ_* of this version (or is OBJ_IGNORE)."),
    "objref.bad-number": (ERROR, "invalid objref number", "Objrefs are positive integers "
                          "(0 = none where a field allows it) below 2^30: the kernel numbers "
                          "objects from 1 as it meets them, and converting to v23 makes "
                          "room for the pid objects below the others."),
    "objref.unbound": (ERROR, "OBJREF without its object record", "An OBJREF announces an "
                       "object whose record never follows before the section ends."),
    "objref.missing": (ERROR, "object record without OBJREF", "An object record (CRED, FILE, "
                       "MM …) must be introduced by an OBJREF of its type."),
    "objref.null": (ERROR, "required reference is 0", "This field must name an object (a task "
                    "always has creds, a namespace set, a sighand …)."),
    "loop.userns": (ERROR, "user / user_ns / creator chain loops", "user -> user_ns -> creator "
                    "(a user of the parent namespace) must end at the root namespace "
                    "(creator_ref 0) without coming back."),
    "loop.creator-order": (ERROR, "user_ns creator defined after the namespace", "The writer "
                           "saves the creator chain top-down: a USER_NS's creator user is "
                           "always defined before it."),
    "loop.open": (ERROR, "reference to an object still being written", "A record refers to an "
                  "object whose OBJREF came but whose own record has not: the object would "
                  "depend on itself, which no writer can produce."),
    "loop.cycle": (ERROR, "reference cycle", "Objects refer to each other in a circle through "
                   "a forward reference: this order could not have been written."),
}

# object states
OPEN, DONE, RESERVED = 0, 1, 2
# reference flags
REQ, IMPLICIT, FWD_OK, RESERVE, NEG_NONE, CREATOR = 1, 2, 4, 8, 16, 32
# No image numbers 2^30 objects (16 GiB of OBJREFs alone); above it an objref leaves the
# converters no room to renumber within the s32 fields (v23 puts the pids below).
OBJREF_MAX = (1 << 30) - 1

# record -> [(field, object kind(s), flags)]
REFS: dict[str, list[tuple[str, object, int]]] = {
    "task_creds": [("cred_ref", "cred", REQ), ("ecred_ref", "cred", REQ)],
    "task_ns": [("ns_objref", "ns", REQ)],
    "cred": [("user_ref", "user", REQ), ("groupinfo_ref", "groupinfo", REQ),
             ("sec_ref", ("security", "security_ptr"), NEG_NONE)],
    "user": [("userns_ref", "user_ns", REQ)],
    "user_ns": [("creator_ref", "user", CREATOR)],
    "ns": [("uts_objref", "uts_ns", REQ), ("ipc_objref", "ipc_ns", REQ),
           ("net_objref", "net_ns", 0)],
    "file_desc": [("fd_objref", "file", REQ)],
    "file": [("f_credref", "cred", NEG_NONE), ("f_secref", ("security", "security_ptr"),
                                               NEG_NONE)],
    "mm": [("exe_objref", "file", 0)],
    "signal": [("tty_objref", "tty", 0)],
    "tty": [("link_objref", "tty", FWD_OK), ("file_objref", "file", RESERVE)],
    # a unix socket names itself, its peer (written after it) and the peer's credentials
    "socket_unix": [("this", "sock", FWD_OK), ("peer", "sock", FWD_OK),
                    ("peercred", "cred", FWD_OK)],
    "socket_buffer": [("sk_objref", "sock", FWD_OK), ("pr_objref", "sock", FWD_OK)],
}
# Kinds whose every referrer is parsed, so an unused one is worth a warning.
USE_TRACKED = {"cred", "user", "user_ns", "groupinfo", "ns", "uts_ns", "ipc_ns", "file_table",
               "file", "mm", "fs", "sighand"}
# Records an open OBJREF's object record cannot come after.
OBJREF_CLOSERS = ("task", "tail", "task_creds", "task_ns", "task_objs", "thread", "cpu",
                  "restart_block", "signal_task")


class _Obj:
    """An object of the table (the test of the cycle search builds a table of these)."""
    __slots__ = ("kind", "state", "offset", "used", "how")

    def __init__(self, kind, state, offset, how):
        self.kind, self.state, self.offset, self.used, self.how = kind, state, offset, False, how


# How an object was defined (ObjTable keeps the index of the name).
HOWS = ("objref", "implicit", "reserved", "pids")
_STATE, _USED, _HOW_SHIFT = 3, 4, 3


class ObjTable:
    """The objref table in 14 bytes an object (an _Obj with its dict entry and ints was
    over 200: issue 11, 300,000 objects of 100,000 tasks): per object, in the order of
    definition, its objref, kind (an index into ``kinds``), state, used bit and how in
    one byte, and offset; objref -> slot by an array over the dense numbers writers give
    (1, 2, ...), a dict for the few far beyond them.  ``get`` gives an _Entry, which
    reads and writes the slot."""

    DENSE_MIN = 1 << 16

    def __init__(self):
        self.refs = array("q")
        self.kind = bytearray()
        self.meta = bytearray()
        self.off = array("q")
        self.kinds: list = []
        self.kind_idx: dict = {}
        self.slot_of = array("i")       # objref -> slot, -1: none
        self.far: dict[int, int] = {}   # objref -> slot, beyond slot_of

    def __len__(self) -> int:
        return len(self.refs)

    def slot(self, ref: int) -> int:
        if 0 <= ref < len(self.slot_of):
            return self.slot_of[ref]
        return self.far.get(ref, -1)

    def __contains__(self, ref) -> bool:
        return self.slot(ref) >= 0

    def get(self, ref: int) -> "_Entry | None":
        i = self.slot(ref)
        return _Entry(self, i) if i >= 0 else None

    def add(self, ref: int, kind, state: int, offset: int, how: str) -> "_Entry":
        i = len(self.refs)
        k = self.kind_idx.get(kind)
        if k is None:
            k = self.kind_idx[kind] = len(self.kinds)
            self.kinds.append(kind)
        self.refs.append(ref)
        self.kind.append(k)
        self.meta.append(state | HOWS.index(how) << _HOW_SHIFT)
        self.off.append(offset)
        n = len(self.slot_of)
        if ref >= n and ref < 4 * (i + 1) + self.DENSE_MIN:
            self.slot_of.extend(array("i", [-1]) * (max(ref + 1, 2 * n) - n))
        if ref < len(self.slot_of):
            self.slot_of[ref] = i
        else:
            self.far[ref] = i
        return _Entry(self, i)

    def items(self):
        """(objref, _Entry) in the order of definition."""
        for i, ref in enumerate(self.refs):
            yield ref, _Entry(self, i)


class _Entry:
    """One object of an ObjTable, with _Obj's attributes."""
    __slots__ = ("t", "i")

    def __init__(self, table: ObjTable, i: int):
        self.t, self.i = table, i

    @property
    def kind(self):
        return self.t.kinds[self.t.kind[self.i]]

    @property
    def state(self) -> int:
        return self.t.meta[self.i] & _STATE

    @state.setter
    def state(self, value: int) -> None:
        self.t.meta[self.i] = self.t.meta[self.i] & ~_STATE | value

    @property
    def used(self) -> bool:
        return bool(self.t.meta[self.i] & _USED)

    @used.setter
    def used(self, value: bool) -> None:
        m = self.t.meta[self.i]
        self.t.meta[self.i] = m | _USED if value else m & ~_USED

    @property
    def how(self) -> str:
        return HOWS[self.t.meta[self.i] >> _HOW_SHIFT]

    @how.setter
    def how(self, value: str) -> None:
        m = self.t.meta[self.i] & (_STATE | _USED)
        self.t.meta[self.i] = m | HOWS.index(value) << _HOW_SHIFT

    @property
    def offset(self) -> int:
        return self.t.off[self.i]

    @offset.setter
    def offset(self, value: int) -> None:
        self.t.off[self.i] = value


def with_article(kind) -> str:
    kind = str(kind)
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def kind_names(want) -> str:
    return want if isinstance(want, str) else " or ".join(want)


class Objrefs(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.obj_kind_of_record = self.abi.record_kinds
        self.objs = ObjTable()
        self.objs_full = False
        self.pending: list[list] = []          # [kind, ref, offset, defines(bool)]
        self.fwd: dict[int, list[tuple]] = {}  # ref -> [(kind, offset, record, task, code)]
        self.nfwd = 0
        # object -> object references, as two arrays (src, dst): made a dict of lists
        # only for the cycle search, only when a forward reference calls for one
        self.edge_src, self.edge_dst = array("i"), array("i")
        self.edges: dict[int, list[int]] | None = None
        self.fwd_edges: list[tuple] = []
        self.creators: dict[int, tuple[int, int]] = {}   # user_ns ref -> (creator, offset)
        self.user_ns_of: dict[int, int] = {}              # user ref -> user_ns ref

    def gate_objrefs(self, name: str) -> None:
        if name in OBJREF_CLOSERS:
            self.unbound_all()

    # -- the table ------------------------------------------------------------
    def define(self, ref: int, kind: str, state: int, how: str, offset: int):
        if len(self.objs) >= MAX_OBJECTS:
            if not self.objs_full:
                self.objs_full = True
                self.add("check.limit", f"more than {MAX_OBJECTS} objects: later ones are not "
                         f"tracked")
            return None
        o = self.objs.add(ref, kind, state, offset, how)
        waiting = self.fwd.pop(ref, None)
        if waiting:
            for (want, off, record, task, code) in waiting:
                o.used = True
                if code is not None:
                    self.add(code, f"{record} refers to objref {ref} ({kind}), defined only "
                             f"later at byte {offset}", offset=off, record=record, task=task)
                if not self.kind_ok(kind, want):
                    self.add("objref.type", f"objref {ref} is {with_article(kind)}, {record} "
                             f"wants {kind_names(want)}", offset=off, record=record, task=task)
        return o

    @staticmethod
    def kind_ok(kind, want) -> bool:
        return kind == want if isinstance(want, str) else kind in want

    def ref(self, want, ref: int, field: str, flags: int = 0, src: int | None = None):
        """Check a reference; returns the object (or None)."""
        rname = self.name.upper()
        if ref == 0 or (flags & NEG_NONE and ref < 0):
            if flags & REQ:
                self.add("objref.null", f"{rname}.{field} is 0 but must name "
                         f"{with_article(kind_names(want))}")
            return None
        if ref < 0 or ref > OBJREF_MAX:
            self.add("objref.bad-number", f"{rname}.{field} = {ref}")
            return None
        o = self.objs.get(ref)
        if o is None:
            if flags & IMPLICIT:
                return self.define(ref, want, DONE, "implicit", self.rec.offset)
            if flags & RESERVE:
                return self.define(ref, want, RESERVED, "reserved", self.rec.offset)
            if self.objs_full:
                return None
            if self.nfwd < MAX_PENDING:
                self.nfwd += 1
                code = "loop.creator-order" if flags & CREATOR else "objref.forward"
                if flags & FWD_OK:
                    code = None
                task = self.task.pid if self.task else None
                self.fwd.setdefault(ref, []).append((want, self.rec.offset, rname, task, code))
                if src is not None and not flags & FWD_OK:
                    self.edge(src, ref, forward=True)
            return None
        o.used = True
        if not self.kind_ok(o.kind, want):
            self.add("objref.type", f"{rname}.{field} = {ref} is {with_article(o.kind)} "
                     f"(defined at byte {o.offset}), not {with_article(kind_names(want))}")
            return None
        if o.state == OPEN and not flags & FWD_OK:
            code = "loop.userns" if flags & CREATOR else "loop.open"
            self.add(code, f"{rname}.{field} = {ref} names the {o.kind} whose definition "
                     f"(OBJREF at byte {o.offset}) is still open: it would contain itself")
        if src is not None:
            self.edge(src, ref)
        return o

    def edge(self, src: int, dst: int, forward: bool = False) -> None:
        if forward and len(self.fwd_edges) < MAX_PENDING:
            task = self.task.pid if self.task else None
            self.fwd_edges.append((src, dst, self.rec.offset, self.name.upper(), task))
        if len(self.edge_src) < MAX_EDGES:
            self.edge_src.append(src)
            self.edge_dst.append(dst)

    def refs_of(self, name: str, v, src: int | None) -> None:
        for field, want, flags in REFS.get(name, ()):
            if field in v:
                self.ref(want, v[field], field, flags, src)

    # -- OBJREF and its object record ---------------------------------------------
    def on_objref(self, rec, v, matched):
        kind = self.abi.obj_names.get(v.objtype)
        if kind is None or kind == "ignore":
            self.add("objref.bad-type", f"objtype {v.objtype} is no object type of "
                     f"{self.abi.name}" if kind is None else "OBJREF of type OBJ_IGNORE")
            return
        ref = v.objref
        if ref <= 0 or ref > OBJREF_MAX:
            self.add("objref.bad-number", f"OBJREF defines objref {ref}")
            return
        has_record = kind in self.abi.obj_records
        o = self.objs.get(ref)
        defines = False
        if o is not None:
            if o.state == RESERVED and o.kind == kind:
                o.state, o.how, o.offset = (OPEN if has_record else DONE), "objref", rec.offset
                defines = True
            else:
                self.add("objref.duplicate", f"objref {ref} ({kind}) was already defined as "
                         f"{with_article(o.kind)} at byte {o.offset}")
        else:
            defines = self.define(ref, kind, OPEN if has_record else DONE, "objref",
                                  rec.offset) is not None
        if has_record:
            if len(self.pending) >= MAX_NEST:
                self.unbound(self.pending.pop(0), f" ({MAX_NEST} OBJREFs open)")
            self.pending.append([kind, ref, rec.offset, defines])

    def bind(self, name: str, kind: str | None = None):
        """An object record (of ``kind``, else the one its name says): pair it with its
        OBJREF; returns its objref or None."""
        kind = kind or self.obj_kind_of_record.get(name)
        if kind is None:
            return None
        for i in range(len(self.pending) - 1, -1, -1):
            if self.pending[i][0] == kind:
                for p in self.pending[i + 1:]:
                    self.unbound(p)
                _, ref, _, defines = self.pending[i]
                del self.pending[i:]
                o = self.objs.get(ref)
                if defines and o is not None:
                    o.state = DONE
                return ref
        self.add("objref.missing", f"{name.upper()} record not introduced by an OBJREF of "
                 f"type {kind}")
        return None

    def unbound(self, p, why: str = "") -> None:
        """An OBJREF whose object record did not follow."""
        self.add("objref.unbound", f"OBJREF {p[1]} ({p[0]}) at byte {p[2]} is not followed by "
                 f"its {p[0].upper()} record{why}")
        o = self.objs.get(p[1])
        if p[3] and o is not None and o.state == OPEN:
            o.state = DONE      # reported once; do not report every later reference

    def unbound_all(self) -> None:
        for p in self.pending:
            self.unbound(p)
        self.pending.clear()

    def object_record(self, name, rec, v):
        ref = self.bind(name)
        if self.task is None and not self.in_tasks:
            self.add("head.sequence", f"{name.upper()} object in the image head")
        if v is not None:
            self.refs_of(name, v, ref)
        return ref

    # -- object records with no checks of their own but their references ------------
    def on_user(self, rec, v, matched):
        ref = self.object_record("user", rec, v)
        if ref is not None and v.userns_ref > 0:
            self.user_ns_of[ref] = v.userns_ref

    def on_user_ns(self, rec, v, matched):
        ref = self.object_record("user_ns", rec, v)
        if ref is not None and v.creator_ref > 0:
            self.creators[ref] = (v.creator_ref, rec.offset)

    for _n in ("cred", "groupinfo", "ns", "uts_ns", "ipc_ns", "mnt_ns", "net_ns", "sighand",
               "security", "netdev"):
        def _h(self, rec, v, matched, _n=_n):
            self.object_record(_n, rec, v)
        locals()["on_" + _n] = _h
    del _n, _h

    # -- end ----------------------------------------------------------------
    def undefined_and_unused(self) -> None:
        for ref, waiting in self.fwd.items():
            for (want, off, record, task, _code) in waiting:
                self.add("objref.undefined", f"{record} refers to objref {ref} "
                         f"({kind_names(want)}), which is never defined", offset=off,
                         record=record, task=task)
        for ref, o in self.objs.items():
            if not o.used and o.how == "objref" and o.kind in USE_TRACKED:
                self.add("objref.unused", f"objref {ref} ({o.kind}) is never referred to",
                         offset=o.offset, record="OBJREF", task=None)

    def loops(self) -> None:
        reported: set[int] = set()
        # user_ns -> creator user -> its user_ns -> ...: one successor each, so a
        # walk with three colours finds every cycle in linear time.
        state: dict[int, int] = {}          # 1 on the current walk, 2 finished
        for ns in self.creators:
            walk, cur = [], ns
            while cur is not None and cur not in state:
                state[cur] = 1
                walk.append(cur)
                c = self.creators.get(cur)
                cur = self.user_ns_of.get(c[0]) if c is not None else None
            if cur is not None and state.get(cur) == 1:
                cyc = walk[walk.index(cur):]
                reported.update(cyc)
                self.add("loop.userns", "user_ns chain " + " -> ".join(
                    str(x) for x in cyc + [cur]) + " comes back to itself",
                    offset=self.creators[cur][1], record="USER_NS", task=None)
            for x in walk:
                state[x] = 2
        # any other cycle closes through a forward reference: src -> dst ->* src
        self.budget = CYCLE_BUDGET
        if self.fwd_edges and self.edges is None:
            self.edges = {}
            for src, dst in zip(self.edge_src, self.edge_dst):
                self.edges.setdefault(src, []).append(dst)
        for src, dst, off, record, task in self.fwd_edges:
            if self.budget <= 0:
                self.add("check.limit", "cycle search stopped: budget spent", offset=None,
                         record=None, task=None)
                break
            if src in reported or dst in reported or dst not in self.objs:
                continue
            path = self.path(dst, src)
            if path is not None:
                reported.update(path)
                self.add("loop.cycle", "objects " + " -> ".join(str(x) for x in [src] + path) +
                         " refer to each other in a circle", offset=off, record=record,
                         task=task)

    def path(self, a: int, b: int) -> list[int] | None:
        """A path of references a ->* b (BFS within the remaining budget)."""
        prev = {a: None}
        queue = [a]
        while queue and self.budget > 0:
            nxt = []
            for x in queue:
                self.budget -= 1
                if x == b:
                    out = []
                    while x is not None:
                        out.append(x)
                        x = prev[x]
                    return out[::-1]
                for y in self.edges.get(x, ()):
                    if y not in prev:
                        prev[y] = x
                        nxt.append(y)
            queue = nxt
        return None
