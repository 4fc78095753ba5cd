"""The task tree: the pids arrays that end the head (PIDS + its pid BUFFER in v23, TREE + its
pids BUFFER, v21/v23-rc1's vpids BUFFER), the tree they describe (pids, parents, thread group,
process group and session leaders, DFS order), the number of TASK sections, and what threads
share with their leader."""
from __future__ import annotations

import struct
from array import array

from formats import pids

from ._pass import ERROR, MAX_TASKS, NOTE, WARNING, Expect, Pass
from .objrefs import DONE

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "head.pids": (ERROR, "pids array inconsistent", "The BUFFER after TREE holds exactly "
                  "nr_tasks entries (and after PIDS exactly nr_pids variable entries)."),
    "head.vpids": (ERROR, "vpids buffer inconsistent", "v21/v23-rc1: when any task has depth > 0 "
                   "a BUFFER of Σdepth s32 pids follows the pids array."),
    "tree.count": (ERROR, "TASK records do not match nr_tasks", "The image holds one TASK "
                   "section per entry of the pids array (TREE.nr_tasks)."),
    "tree.pid": (ERROR, "invalid or duplicate pid", "Each task of the pids array has a "
                 "positive pid of its own."),
    "tree.pid-tag": (ERROR, "pid tag names no PIDS entry", "v23: ckpt_task_pids hold tags "
                     "(objrefs of pid objects, offset .. offset+nr_pids-1), 0 or "
                     "CKPT_PID_ROOT."),
    "tree.parent": (ERROR, "parent not in the image", "Every task but the root has its parent "
                    "among the image's tasks (orphans are reparented inside the tree)."),
    "tree.outside": (NOTE, "root ids outside the image", "The root task's parent, group or "
                     "session is outside the checkpointed tree (0 or not a task of the "
                     "image): restart supplies it."),
    "tree.outside-ids": (WARNING, "group or session outside the image", "A non-root task's "
                         "pgid/sid names no task of the image and is not the root's "
                         "(inherited) one; restart needs a ghost placeholder for it."),
    "tree.tgid": (ERROR, "thread group leader missing", "A thread's tgid must name a task of "
                  "the image that leads its thread group (pid == tgid)."),
    "tree.session": (ERROR, "session leader inconsistent", "A sid naming a task of the image "
                     "names a session leader (its sid is its pid); a session leader leads "
                     "its own process group."),
    "tree.group": (ERROR, "process group leader inconsistent", "A pgid naming a task of the "
                   "image names a group leader (pgid == pid) of the same session."),
    "tree.thread-ids": (ERROR, "thread ids differ from its leader's", "Threads share the "
                        "leader's process group, session and parent."),
    "tree.order": (ERROR, "pids array not in DFS order", "The pids array is a depth-first walk "
                   "from the root: a parent before its children, the threads right after "
                   "their leader; restart creates tasks in that order."),
    "tree.thread-shares": (ERROR, "thread does not share its leader's state", "Threads "
                           "(CLONE_THREAD|CLONE_SIGHAND|CLONE_VM) share the leader's mm, "
                           "sighand and signal objects."),
    "tree.thread-files": (WARNING, "thread has its own files or fs", "The thread does not share "
                          "the leader's file table / fs (possible without CLONE_FILES/CLONE_FS, "
                          "rare)."),
    "tree.signal-shared": (ERROR, "signal object shared across thread groups", "signal_struct "
                           "is per thread group: two processes cannot name the same one."),
}

EXPECT = {
    "pid_entries": Expect(("buffer",), "head.pids", "the pid BUFFER after PIDS"),
    "task_pids": Expect(("buffer",), "head.pids", "the pids BUFFER after TREE"),
    "vpids": Expect(("buffer",), "head.vpids", "the vpids BUFFER"),
}

# head of a v23 pid entry: depth and the first pid; `depth` more s32 pids follow


# What a thread shares with its leader, by the finding that names a difference.
THREAD_SHARES = (("tree.thread-shares", ("mm", "sighand", "signal")),
                 ("tree.thread-files", ("files", "fs")))
THREAD_SHARED = tuple(k for _, keys in THREAD_SHARES for k in keys)
# None in a Rows array (the values are s32 pids or u32 tags)
_NONE = 1 << 40


class Rows:
    """Int-or-None tuples of ``width`` values in one array('q') (a tuple of five ints was
    over 200 bytes a task of 100,000); reading one makes its tuple."""

    def __init__(self, width: int, n: int = 0):
        self.width = width
        self.a = array("q", [_NONE]) * (width * n)

    def __len__(self) -> int:
        return len(self.a) // self.width

    def append(self, values) -> None:
        self.a.extend(_NONE if x is None else x for x in values)

    def __setitem__(self, i: int, values) -> None:
        w = self.width
        self.a[i * w:(i + 1) * w] = array("q", (_NONE if x is None else x for x in values))

    def __getitem__(self, i: int) -> tuple:
        w = self.width
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return tuple(None if x == _NONE else x for x in self.a[i * w:(i + 1) * w])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class Tree(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.rows = Rows(5)                     # (pid, ppid, tgid, pgid, sid) per task
        self.pid_index: dict[int, int] = {}     # pid -> its row
        self.ntree: int | None = None           # TREE.nr_tasks
        self.pid_entries = array("q")           # v23: the first pid of each PIDS entry
        self.pids_offset = 1                    # v23: PIDS.offset, objref of the first entry
        self.zombies: set[int] = set()
        # leader pid -> the objrefs of THREAD_SHARED its TASK_OBJS names: by its row
        # (``leader_row``, made at the first leader), else (a pid of no row) in the dict
        self.leader_row: Rows | None = None
        self.leader_held = bytearray()          # per row: 1 when leader_row holds it
        self.leader_objs: dict[int, tuple] = {}
        self.signal_tgid: dict[int, int] = {}   # signal objref -> the first tgid naming it
        self.pid_null = self.traits.get("pid_null", -1)
        self.pid_root = getattr(self.abi.module, "CKPT_PID_ROOT", None) \
            if self.traits["pids_model"] == "pids" else None

    # -- the pids arrays --------------------------------------------------------
    def on_pids(self, rec, v, matched):
        self.head_step("pids")
        self.pids_offset = v.offset
        self.expect.append(("pid_entries", v.nr_pids, rec.offset))

    def buffer_pid_entries(self, rec, count):
        if rec.size > 64 << 20:
            self.add("head.pids", f"pid BUFFER of {rec.size} bytes is too large to check")
            return
        data = rec.data()
        pos, entries = 0, array("q")
        n = len(data)
        for i in range(count):
            if pos + 8 > n:
                self.add("head.pids", f"PIDS announces {count} pid entries, the BUFFER holds "
                         f"{i}")
                break
            depth, first = pids.ENTRY_HEAD.unpack_from(data, pos)
            if pos + 8 + 4 * depth > n:
                self.add("head.pids", f"pid entry {i} (depth {depth}) runs past the BUFFER")
                break
            entries.append(first)
            pos += 8 + 4 * depth
            if len(entries) >= MAX_TASKS:
                break
        else:
            if pos != n:
                self.add("head.pids", f"{n - pos} bytes after the {count} pid entries")
        self.pid_entries = entries
        # pid objects take objrefs offset .. offset+nr_pids-1
        off = self.pids_offset
        if off <= 0 and entries:
            self.add("head.pids", f"PIDS.offset {off}: pid objrefs must be positive")
            return
        for i in range(len(entries)):
            if off + i in self.objs:
                self.add("objref.duplicate", f"pid objref {off + i} already defined")
            elif self.define(off + i, "pid", DONE, "pids", rec.offset) is None:
                break

    def on_tree(self, rec, v, matched):
        self.head_step("tree")
        n = v.nr_tasks
        if n < 0:
            self.add("head.pids", f"TREE.nr_tasks is {n}")
            n = 0
        self.ntree = n
        self.expect.append(("task_pids", n, rec.offset))

    def buffer_task_pids(self, rec, count):
        model = self.traits["pids_model"]
        st = self.abi.struct(pids.row_struct(self.abi))
        size = st.sizeof()
        if rec.size != count * size:
            self.add("head.pids", f"pids BUFFER of {rec.size} bytes for {count} tasks of "
                     f"{size} bytes ({count * size})")
        rows_n = min(count, rec.size // size, MAX_TASKS)
        if rec.size > 64 << 20:
            rows_n = 0
        data = rec.data() if rows_n else b""
        fmt = struct.Struct("<5i" + ("I" if model == "pids" else "i"))
        nvpids = 0
        rows = Rows(5)
        for i in range(rows_n):
            vals = fmt.unpack_from(data, i * size)
            ids = list(vals[:5])
            if model == "pids":
                ids = [self.pid_of_tag(t, i) for t in ids]
            if model == "tree_depth":
                nvpids += max(vals[5], 0)
            rows.append(ids)
        self.rows = rows
        if nvpids:
            self.expect.insert(0, ("vpids", nvpids, rec.offset))
        self.check_tree()

    def buffer_vpids(self, rec, count):
        if rec.size != 4 * count:
            self.add("head.vpids", f"vpids BUFFER of {rec.size} bytes for Σdepth = {count} "
                     f"({4 * count} bytes)")

    def pid_of_tag(self, tag: int, i: int):
        if tag == 0:
            return 0
        if tag < 0:
            return tag              # CKPT_PID_ROOT / CKPT_PID_NULL: markers
        j = tag - self.pids_offset
        if 0 <= j < len(self.pid_entries):
            o = self.objs.get(tag)
            if o is not None:
                o.used = True
            return self.pid_entries[j]
        self.add("tree.pid-tag", f"task {i}: tag {tag} names no pid entry (offset "
                 f"{self.pids_offset}, {len(self.pid_entries)} entries)", task=None)
        return None

    # -- the tree they describe ---------------------------------------------------
    def check_tree(self) -> None:
        rows = self.rows
        index = self.pid_index
        for i, (pid, *_) in enumerate(rows):
            if pid is None:
                continue
            if pid <= 0:
                self.add("tree.pid", f"task {i} has pid {pid}", task=pid)
            elif pid in index:
                self.add("tree.pid", f"pid {pid} appears twice (tasks {index[pid]} and {i})",
                         task=pid)
            else:
                index[pid] = i
        if not rows:
            return
        markers = {0, self.pid_null, self.pid_root, None}
        self.check_leaders(rows, index, markers)
        self.check_dfs_order(rows, index, markers)

    def check_leaders(self, rows, index, markers) -> None:
        """Parents, thread group, process group and session leaders."""
        root = rows[0]

        def inside(x):
            return x in index

        for i, (pid, ppid, tgid, pgid, sid) in enumerate(rows):
            if pid is None:
                continue
            thread = tgid is not None and tgid != pid and tgid not in markers
            if i == 0:
                outs = [f"{k} {x}" for k, x in (("ppid", ppid), ("pgid", pgid), ("sid", sid))
                        if not inside(x)]
                if outs:
                    self.add("tree.outside", f"root task: {', '.join(outs)} outside the image",
                             task=pid)
            if thread:
                li = index.get(tgid)
                if li is None:
                    self.add("tree.tgid", f"thread {pid}: tgid {tgid} is no task of the image",
                             task=pid)
                else:
                    lp, lpp, ltg, lpg, lsid = rows[li]
                    if ltg != lp:
                        self.add("tree.tgid", f"thread {pid}: its leader {tgid} is itself a "
                                 f"thread of {ltg}", task=pid)
                    diff = [f"{k} {a} vs {b}" for k, a, b in (("pgid", pgid, lpg),
                                                                ("sid", sid, lsid)) if a != b]
                    if ppid not in (lpp, lp):
                        diff.append(f"ppid {ppid} vs {lpp}")
                    if diff:
                        self.add("tree.thread-ids", f"thread {pid} of {tgid}: "
                                 f"{'; '.join(diff)}", task=pid)
            elif i > 0 and not inside(ppid):
                self.add("tree.parent", f"task {pid}: parent {ppid} is no task of the image",
                         task=pid)
            elif tgid in markers and tgid is not None:
                self.add("tree.tgid", f"task {pid}: tgid {tgid}", task=pid)
            if i > 0:
                for k, x, rx in (("pgid", pgid, root[3]), ("sid", sid, root[4])):
                    if not inside(x) and x not in markers and x != rx:
                        self.add("tree.outside-ids", f"task {pid}: {k} {x} is neither a task "
                                 f"of the image nor the root's {k} {rx}", task=pid)
            if inside(sid):
                sl = rows[index[sid]]
                if sl[4] != sl[0]:
                    self.add("tree.session", f"task {pid}: sid {sid} names a task whose own "
                             f"sid is {sl[4]} (not a session leader)", task=pid)
            if sid == pid and pgid != pid and not thread:
                self.add("tree.session", f"session leader {pid} is in process group {pgid}, "
                         f"not its own", task=pid)
            if inside(pgid):
                gl = rows[index[pgid]]
                if gl[3] != gl[0]:
                    self.add("tree.group", f"task {pid}: pgid {pgid} names a task whose own "
                             f"pgid is {gl[3]} (not a group leader)", task=pid)
                elif gl[4] != sid:
                    self.add("tree.group", f"task {pid} (sid {sid}) is in group {pgid} of "
                             f"session {gl[4]}", task=pid)

    def check_dfs_order(self, rows, index, markers) -> None:
        """A stack of the ancestors of the current task: each parent must be on it."""
        stack: list[int] = []
        on_stack: set[int] = set()
        for i, (pid, ppid, tgid, _, _) in enumerate(rows):
            if pid is None:
                continue
            if i == 0:
                stack, on_stack = [pid], {pid}
                continue
            thread = tgid is not None and tgid != pid and tgid not in markers
            if thread:
                prev = rows[i - 1]
                if tgid in index and prev[0] != tgid and prev[2] != tgid:
                    self.add("tree.order", f"thread {pid} does not come right after its "
                             f"leader {tgid} (after task {prev[0]})", task=pid)
                continue
            if ppid not in index:
                continue
            if ppid in on_stack:
                while stack[-1] != ppid:
                    on_stack.discard(stack.pop())
                stack.append(pid)
                on_stack.add(pid)
            else:
                self.add("tree.order", f"task {pid} comes after tasks outside its parent "
                         f"{ppid}'s subtree (parent at index {index[ppid]})", task=pid)

    # -- what threads share -----------------------------------------------------
    def check_thread_objs(self, t, objs: dict) -> None:
        """A live task's TASK_OBJS objrefs against its thread group's."""
        sig = objs.get("signal")
        if sig and t.tgid in self.pid_index:
            first = self.signal_tgid.setdefault(sig, t.tgid)
            if first != t.tgid:
                self.add("tree.signal-shared", f"signal objref {sig} is named by thread groups "
                         f"{first} and {t.tgid}")
        if t.pid is None:
            return
        if t.tgid == t.pid:
            row = self.pid_index.get(t.pid)
            if row is not None:
                if row >= len(self.leader_held):     # the first leader (or a second TREE)
                    n = max(row + 1, len(self.rows))
                    if self.leader_row is None:
                        self.leader_row = Rows(len(THREAD_SHARED))
                    self.leader_row.a.extend(array("q", [_NONE]) * (
                        len(THREAD_SHARED) * (n - len(self.leader_held))))
                    self.leader_held.extend(bytes(n - len(self.leader_held)))
                self.leader_row[row] = [objs.get(k) for k in THREAD_SHARED]
                self.leader_held[row] = 1
            elif len(self.leader_objs) < MAX_TASKS:
                self.leader_objs[t.pid] = tuple(objs.get(k) for k in THREAD_SHARED)
        elif t.tgid is not None and t.tgid not in self.zombies:
            row = self.pid_index.get(t.tgid)
            if row is not None:
                held = self.leader_row[row] if row < len(self.leader_held) and \
                    self.leader_held[row] else None
            else:
                held = self.leader_objs.get(t.tgid)
            if held is None:
                return
            lo = dict(zip(THREAD_SHARED, held))
            for code, shared in THREAD_SHARES:
                own = [k for k in shared if objs.get(k) != lo.get(k)]
                if own:
                    self.add(code, f"thread of {t.tgid}: " + ", ".join(
                        f"{k} {objs.get(k)} vs leader's {lo.get(k)}" for k in own))

    # -- end ----------------------------------------------------------------
    def count_tasks(self) -> None:
        if self.ntree is not None and self.ntasks != self.ntree:
            self.add("tree.count", f"TREE announces {self.ntree} tasks, the image holds "
                     f"{self.ntasks} TASK records", offset=None, record="TREE", task=None)
