"""v17 <-> v18: signals, ttys, sockets, FIFOs and framed pipe data.

* CKPT_OBJ_SIGNAL is inserted at 6 (NS..GROUPINFO move up; renumbered by name).
* v17 writes pipe contents as ``FILE_PIPE {pipe_len}`` followed by ``pipe_len``
  unframed bytes; v18 as ``PIPE_BUF`` (len = 8 + data).  The bytes are streamed.
* ``task_objs`` gains ``signal_objref``; the SIGNAL record and the shared
  SIGPENDING follow the TASK_OBJS that first names a signal_struct; a live
  task's section ends with its private SIGPENDING and SIGNAL_TASK.
* ``ckpt_const`` gains rlimit/tty sizes (kernel constants).
* FIFOs, ttys and sockets exist only in v18.

Upgrade: one signal_struct per thread group (the tree's tgid), holding what an
untouched process has: unlimited rlimits, no interval timers, no controlling
tty, nothing pending, nothing blocked (v17 did not save signal state: a note).
The new signal objects get objrefs in order of first use, so the others are
renumbered (canonical numbering, see ``_base.RefMap``).

Downgrade: SIGNAL, SIGPENDING and SIGNAL_TASK are dropped; any value other
than the upgrade's default is a loss.  A FIFO becomes an anonymous pipe (loss:
its type and path); tty and socket records are losses.
"""
from __future__ import annotations

from . import _base
from ._base import New, Sharing, group_of

RLIM_INFINITY = 2**64 - 1
NLIMITS = 16
ITIMERS = ("it_real_value", "it_real_incr", "it_virt_value", "it_virt_incr", "it_prof_value",
           "it_prof_incr")


def default_signal() -> dict:
    """The SIGNAL record an upgrade assumes (an untouched process)."""
    return {"rlim": [{"rlim_cur": RLIM_INFINITY, "rlim_max": RLIM_INFINITY}] * NLIMITS,
            **{f: 0 for f in ITIMERS}, "tty_objref": 0, "tty_pgrp": 0, "tty_old_pgrp": 0}


class Step(_base.Step):
    OLD, NEW = "v17", "v18"
    REFS = "canonical"
    KEPT_FILE_TYPES = frozenset({"fifo"})       # becomes an anonymous pipe
    NEW_FIELDS = {"header": {"constants.rlimit_nlimits": New(16),
                             "constants.n_tty_buf_size": New(4096),
                             "constants.tty_termios_ncc": New(8)}}

    def __init__(self, ctx, up, arch):
        super().__init__(ctx, up, arch)
        self.signal_of: dict = {}       # upgrade: thread group -> signal objref
        self.sharing = Sharing()        # downgrade
        self.new_signal = False
        self.fifo_name = False

    # -- upgrade ---------------------------------------------------------------------------
    def upward(self, recs):
        end_due = None          # the live task still owed SIGPENDING + SIGNAL_TASK
        held = []               # ERROR records (with their STRING) met while it is owed
        for rec in recs:
            n = rec.name
            # An ERROR record does not end the section (the engine goes on after one): it
            # is held until the next record says where the section ends. Before the next
            # task or the TAIL it is the last thing of the task, so it follows the records
            # the task is owed; before a record of the task it stays where it was.
            if end_due is not None and (n == "error" or (held and n == "string")):
                out = self.generic(rec)
                if out is not None:
                    held.append(out)
                continue
            if end_due is not None and n in ("task", "tail"):
                yield from self._task_end(end_due)
                end_due = None
            yield from held
            held.clear()
            if n == "file_pipe":
                if self.parse(rec)["pipe_len"] == 0:
                    yield rec.derive("pipe_buf", b"")
                continue            # otherwise the pipe_data pseudo-record follows
            if n == "pipe_data":
                yield rec.renamed("pipe_buf")
                continue
            out = self.generic(rec)
            if out is None:
                continue
            yield out
            if n == "task_objs":
                end_due = rec
                if self.new_signal:
                    self.note(rec, "signal", None, "v17 saved no signal_struct: assumed "
                              "unlimited rlimits, no itimers, no tty, nothing pending",
                              record="SIGNAL")
                    yield self.small(rec, "signal", default_signal())
                    yield self.small(rec, "sigpending", {"nr_pending": 0, "signal": 0,
                                                         "siginfo": []})
        if end_due is not None:
            yield from self._task_end(end_due)
        yield from held

    def _task_end(self, rec):
        self.note(rec, "blocked", 0, "v17 saved no signal mask or pending signals: assumed "
                  "none", record="SIGNAL_TASK")
        yield self.small(rec, "sigpending", {"nr_pending": 0, "signal": 0, "siginfo": []})
        yield self.small(rec, "signal_task", {"blocked": 0})

    # -- downgrade -------------------------------------------------------------------------
    def downward(self, recs):
        for rec in recs:
            n = rec.name
            if n == "signal":
                self._check_signal(rec)
                continue
            if n == "sigpending":
                v = self.parse(rec)
                if v["nr_pending"]:
                    self.lose(rec, "siginfo", [s["csi_signo"] for s in v["siginfo"]],
                              "v17 cannot hold pending signals")
                if v["signal"]:
                    self.lose(rec, "signal", v["signal"], "v17 cannot hold pending signals")
                continue
            if n == "signal_task":
                blocked = self.parse(rec)["blocked"]
                if blocked:
                    self.lose(rec, "blocked", blocked, "v17 cannot hold the signal mask")
                continue
            if n == "pipe_buf":
                yield self.small(rec, "file_pipe", {"pipe_len": rec.size})
                if rec.size:
                    yield rec.renamed("pipe_data")
                continue
            if n == "file_name" and self.fifo_name:
                self.fifo_name = False
                self.lose(rec, "path", rec.data().split(b"\0", 1)[0].decode("utf-8", "replace"),
                          "the FIFO's path is dropped with it")
                continue
            self.fifo_name = False
            out = self.generic(rec)
            if out is not None:
                yield out

    def _check_signal(self, rec) -> None:
        v = self.parse(rec)
        d = default_signal()
        for i, r in enumerate(v["rlim"]):
            if (r["rlim_cur"], r["rlim_max"]) != (RLIM_INFINITY, RLIM_INFINITY):
                self.lose(rec, f"rlim[{i}]", (r["rlim_cur"], r["rlim_max"]),
                          "v17 cannot hold resource limits")
        for f in (*ITIMERS, "tty_objref", "tty_pgrp", "tty_old_pgrp"):
            if v[f] != d[f]:
                self.lose(rec, f, v[f], "v17 cannot hold it")

    # -- record hooks (both directions) ------------------------------------------------------
    def pre_task_objs(self, rec, v) -> None:
        if self.up:
            return
        ref = v.pop("signal_objref", 0)
        if not self.sharing.check(group_of(self.ctx, rec), ref):
            self.lose(rec, "signal_objref", ref, "signal_struct not shared exactly by one "
                      "thread group; v17 cannot tell")

    def fix_task_objs(self, rec, v) -> None:
        if not self.up:
            return
        group = group_of(self.ctx, rec)
        ref = self.signal_of.get(group)
        self.new_signal = ref is None
        if ref is None:
            ref = self.signal_of[group] = self.refs.synth()
        v["signal_objref"] = ref

    def pre_file(self, rec, v) -> None:
        if not self.up and v["f_type"] == self.old_fifo():
            self.lose(rec, "f_type", "fifo", "v17 has no FIFOs: it becomes an anonymous pipe")
            v["f_type"] = self.dst.file_types["pipe"]
            self.fifo_name = True

    def old_fifo(self) -> int:
        return self.new.file_types["fifo"]
