"""The model a core is made from: what ``elf.plan_core`` reads, and the task records of
the dumped process only (issue 11: to-core of 100,000 tasks or 400,000 fds in bounded
memory; the whole model held every task's records and every descriptor).

The TREE record, which comes before any task's records, names the tasks: the leader is
known (as ``elf.select_process`` will pick it) before the first TASK record, so the
builder holds the records of the tasks of that process as it meets them, and reads the
others' as the lean model does (checked, not held).
"""
from __future__ import annotations

from ..model import Task
from ..vmatable import CompactBuilder
from .elf import leader_pid, tasks_with_id

# What plan_core reads besides the dumped process's task records (build_model's keep):
# every address space with its VMAs (a shared mapping may borrow another's pages), each
# task's objs (which mm is whose), the files the VMAs and the mm's exe name, the memfd and
# deleted-file inodes their contents are in, the leader's creds.
CORE_READS = frozenset(("vmas", "task_objs", "mm", "file", "inode", "cred"))


class ProcessBuilder(CompactBuilder):
    """The model builder that holds the task records of one process only (the image's
    first process, or the one whose task ``pid`` names), or of every task (``every``:
    to-core --all). Without ``keep`` it builds the whole model."""

    def __init__(self, reader, on_record=None, keep: frozenset[str] | None = None,
                 pid: int | None = None, every: bool = False):
        if keep is None:
            super().__init__(reader, on_record)
        else:
            super().__init__(reader, on_record, keep=keep | {"task_records"})
        self.want = pid
        self.every = every or keep is None
        self._leader: int | None = None
        self._known = False                     # (_leader is known)
        self._indexes: set[int] | None = None   # of the tree's tasks of that process
        self.dumped = False     # the current task belongs to the process the core is of

    def on_task(self, rec, v, ref):
        n = self.tasks_seen
        if not self.every:      # (a task beyond the tree's: more TASK records than it
            # announced; select_process may pick it, its records are held)
            self.keeps["task_records"] = n >= len(self.img.tasks) or n in self._of_process()
        super().on_task(rec, v, ref)
        self.dumped = self._in_process(self.task)

    def _in_process(self, t: Task) -> bool:
        """Whether a task belongs to the process the core is made of."""
        leader = self._leader_pid()
        return leader is not None and (t.tgid == leader or t.pid == leader)

    def _leader_pid(self) -> int | None:
        if not self._known:
            self._leader, self._known = leader_pid(self.img.tasks, self.want), True
        return self._leader

    def _of_process(self) -> set[int]:
        """The indexes of the tree's tasks that belong to that process (found once)."""
        if self._indexes is None:
            leader = self._leader_pid()
            self._indexes = set() if leader is None else \
                {t.index for t in tasks_with_id(self.img.tasks, leader)}
        return self._indexes
