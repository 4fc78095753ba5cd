"""Task sections: TASK and its comm STRING, then the per-task records in the version's order
(creds, namespaces, objects, thread, restart block, CPU [+ FPU], signal state); a zombie's
section is TASK + comm only."""
from __future__ import annotations

import functools

from formats.v17 import SEGMENTS

from ..core.notes import selector
from ..errors import ImageError
from ._pass import ERROR, TEXT_MAX, Expect, Pass
from .objrefs import IMPLICIT, REQ

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "task.comm": (ERROR, "task comm missing or oversized", "TASK is followed by a STRING of at "
                  "most task_comm_len (16) bytes, NUL included."),
    "task.zombie-mm": (ERROR, "zombie with an mm", "A zombie has released its memory: its "
                       "section is TASK + comm only."),
    "task.zombie-records": (ERROR, "zombie with task state", "A zombie's section is TASK + "
                            "comm; restart reads nothing more for it."),
    "task.incomplete": (ERROR, "task section incomplete", "A live task has creds, namespaces, "
                        "objects, thread, restart block and CPU records (and SIGNAL_TASK from "
                        "v18)."),
    "task.order": (ERROR, "task records out of order", "Restart reads a task's records in the "
                   "version's order (docs/format-choices.md: objs-first until v19-rc2, "
                   "cpu-first from v19)."),
    "task.cpu-segment": (ERROR, "unknown segment encoding", "CPU holds each segment register "
                         "encoded (CKPT_X86_SEG_*: NULL, USER32_CS, USER_DS, USER_CS, TLS|n, "
                         "LDT|n); another value has no selector to restore."),
    "task.fpu": (ERROR, "CPU_FPU inconsistent", "CPU.used_math announces a CPU_FPU record of "
                 "HEADER_ARCH.xstate_size bytes right after CPU; without used_math there is "
                 "none."),
}

EXPECT = {
    "comm": Expect(("string",), "task.comm", "the comm STRING after TASK"),
    "fpu": Expect(("cpu_fpu",), "task.fpu", "CPU_FPU after a CPU with used_math"),
}

# the records every live task has, in the order of the version's traits["task_order"]
MILESTONES = {
    "objs_first": ("task_creds", "task_ns", "task_objs", "thread", "restart_block", "cpu",
                   "signal_task"),
    "cpu_first": ("thread", "restart_block", "cpu", "task_creds", "task_ns", "task_objs",
                  "signal_task"),
}
# TASK_OBJS field (less "_objref") -> the kind of object it names
TASK_OBJ_KINDS = {"files": "file_table", "mm": "mm", "fs": "fs", "sem_undo": "sem_undo",
                  "sighand": "sighand", "signal": "signal"}


class _Task:
    __slots__ = ("pid", "tgid", "zombie", "offset", "milestones", "last", "zombie_noted")

    def __init__(self, pid, tgid, zombie, offset):
        self.pid, self.tgid, self.zombie, self.offset = pid, tgid, zombie, offset
        self.milestones: set[str] = set()
        self.last = -1
        self.zombie_noted = False


class Tasks(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.ntasks = 0
        self.task: _Task | None = None

    def start_task(self, rec, v) -> None:
        self.close_task()
        self.head_done("the first TASK")
        i = self.ntasks
        self.ntasks += 1
        pid = tgid = None
        if i < len(self.rows):
            pid, _, tgid, _, _ = self.rows[i]
        zombie = bool(v.get("exit_state")) if v is not None else False
        self.task = _Task(pid, tgid, zombie, rec.offset)
        if zombie and pid is not None:
            self.zombies.add(pid)
        self.expect.append(("comm", None, rec.offset))

    def close_task(self, at_end: bool = False) -> None:
        t = self.task
        if t is None or t.zombie or (at_end and (self.aborted or self.broken)):
            return
        want = [m for m in MILESTONES[self.traits["task_order"]]
                if m != "signal_task" or self.traits["has_signal"]]
        missing = [m.upper() for m in want if m not in t.milestones]
        if missing:
            self.add("task.incomplete", f"task section at byte {t.offset} lacks "
                     f"{', '.join(missing)}", offset=t.offset, record="TASK", task=t.pid)

    def on_task(self, rec, v, matched):
        self.start_task(rec, v)

    def on_string(self, rec, v, matched):
        if matched is None or matched[0] != "comm":
            return
        data = rec.read(TEXT_MAX)
        limit = self.consts.get("task_comm_len") or 16
        if rec.size > limit:
            self.add("task.comm", f"comm STRING of {rec.size} bytes, task_comm_len is {limit}")
        elif b"\0" not in data:
            self.add("task.comm", "comm STRING without a terminating NUL")

    def task_record(self, name: str) -> bool:
        """Bookkeeping for a per-task state record; False if it has no place."""
        t = self.task
        if t is None:
            self.add("record.stray", f"{name.upper()} before the first TASK")
            return False
        if t.zombie:
            if name == "task_objs":
                return True
            if not t.zombie_noted:
                t.zombie_noted = True
                self.add("task.zombie-records", f"zombie task (section at byte {t.offset}) "
                         f"followed by {name.upper()}")
            return False
        order = MILESTONES[self.traits["task_order"]]
        if name in order:
            idx = order.index(name)
            if name in t.milestones:
                self.add("task.order", f"a second {name.upper()} in one task section")
            elif idx < t.last:
                self.add("task.order", f"{name.upper()} after {order[t.last].upper()}: "
                         f"{self.abi.name} writes {' '.join(o.upper() for o in order)}")
            t.milestones.add(name)
            t.last = max(t.last, idx)
        return True

    def on_task_creds(self, rec, v, matched):
        if self.task_record("task_creds"):
            self.refs_of("task_creds", v, None)

    def on_task_ns(self, rec, v, matched):
        if self.task_record("task_ns"):
            self.refs_of("task_ns", v, None)

    def on_task_objs(self, rec, v, matched):
        if not self.task_record("task_objs"):
            return
        t = self.task
        objs = {_kind_key(k): x for k, x in v.items() if k.endswith("_objref")}
        if t.zombie:
            if objs.get("mm"):
                self.add("task.zombie-mm", f"zombie task names mm objref {objs['mm']}")
            elif not t.zombie_noted:
                t.zombie_noted = True
                self.add("task.zombie-records", "zombie task followed by TASK_OBJS")
            return
        for key, ref in objs.items():
            # a user task always has its sighand and its address space (to-core, restart)
            flags = REQ if key in ("sighand", "mm") else 0
            if key == "signal":
                flags = REQ | IMPLICIT
                self.announce_signal(ref, rec)
            self.ref(TASK_OBJ_KINDS.get(key, key), ref, f"{key}_objref", flags)
        self.check_thread_objs(t, objs)

    def on_thread(self, rec, v, matched):
        self.task_record("thread")

    def on_restart_block(self, rec, v, matched):
        self.task_record("restart_block")

    def on_cpu(self, rec, v, matched):
        if not self.task_record("cpu"):
            return
        for seg in SEGMENTS if v is not None else ():
            try:
                selector(v[seg], seg)
            except ImageError as e:
                self.add("task.cpu-segment", str(e))
        if v is not None and v.get("used_math"):
            self.expect.append(("fpu", self.xstate_size, rec.offset))

    def on_cpu_fpu(self, rec, v, matched):
        if not self.task_record("cpu_fpu"):
            return
        if matched is None:
            if self.abi.struct("cpu") is not None:
                self.add("task.fpu", "CPU_FPU without a CPU with used_math before it")
            return
        want = matched[1]
        if want is not None and rec.size != want:
            self.add("task.fpu", f"CPU_FPU of {rec.size} bytes, HEADER_ARCH.xstate_size is "
                     f"{want}")

    def on_signal_task(self, rec, v, matched):
        self.task_record("signal_task")


@functools.cache
def _kind_key(field: str) -> str:
    """"mm_objref" -> "mm": one string for every task's TASK_OBJS (the checker keeps a
    thread group's, 100,000 of them for as many processes)."""
    return field[:-len("_objref")]
