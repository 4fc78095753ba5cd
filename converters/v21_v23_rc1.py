"""v21 <-> v23-rc1: sysv semaphore undo lists, sigaltstack, wider siginfo.

* TASK_SEM_UNDO_LIST/TASK_SEM_UNDO 506/507 and object SEM_UNDO=22 exist only in
  v23-rc1; ``task_objs`` gains ``sem_undo_objref`` (the padding goes).
* ``task`` += ``sas_ss_sp``, ``sas_ss_size`` (64 -> 80); ``thread`` +=
  ``sysenter_return`` (16 -> 24); FS += ``umask``.
* ``ckpt_siginfo`` grows from 48 to 88 bytes: the common fields keep their
  names (``csi_sigval_int`` <-> ``csi_int``, ``csi_sigval_ptr`` <-> ``csi_ptr``),
  fd/tid/band/overrun/trapno/status/addr/sys_private are new.
* a272e68: tty termios sized by NCCS (72 -> 96) and ``ckpt_const``
  ``tty_termios_ncc`` (CKPT_TTY_NCC = 8) becomes ``tty_termios_nccs`` (NCCS =
  19); socket += has_buffers.  imgtools has no struct for the new termios or
  for sockets: TTY and SOCKET records cannot be converted (a loss either way).

Upgrade assumes no alternate signal stack, sysenter_return 0 and umask 022
(notes); downgrade loses any other value, and semaphore undo lists.
"""
from __future__ import annotations

from . import _base
from ._base import New, s32, u32

# v21 name -> v23-rc1 name, for the siginfo fields both have.
_SIGINFO_COMMON = {"csi_signo": "csi_signo", "csi_errno": "csi_errno", "csi_code": "csi_code",
                   "csi_pid": "csi_pid", "csi_uid": "csi_uid", "csi_sigval_int": "csi_int",
                   "csi_sigval_ptr": "csi_ptr", "csi_utime": "csi_utime",
                   "csi_stime": "csi_stime"}
_SIGINFO_NEW = ("csi_fd", "csi_tid", "csi_band", "csi_overrun", "csi_trapno", "csi_status",
                "csi_addr", "csi_sys_private")
_SIGNED = {"csi_uid"}        # s32 in both; the other 32-bit fields are u32 in v21
UMASK = 0o22
TTY_NCC, NCCS = 8, 19


class Step(_base.Step):
    OLD, NEW = "v21", "v23-rc1"
    NEW_FIELDS = {
        "task": {"sas_ss_sp": New(0, "assumed: no alternate signal stack"),
                 "sas_ss_size": New(0, "assumed: no alternate signal stack")},
        "task_objs": {"sem_undo_objref": New(0)},
        "thread": {"sysenter_return": New(0, "assumed 0 (not saved by the source version)")},
        "fs": {"umask": New(UMASK, "assumed umask 022 (not saved by the source version)")},
    }
    OPAQUE_CHANGED = frozenset({"tty", "socket"})

    def fix_header(self, rec, v) -> None:
        c = v["constants"]
        if self.up:
            ncc = c.pop("tty_termios_ncc")
            if ncc != TTY_NCC:
                self.lose(rec, "constants.tty_termios_ncc", ncc, f"expected {TTY_NCC}")
            c["tty_termios_nccs"] = NCCS
        else:
            nccs = c.pop("tty_termios_nccs")
            if nccs != NCCS:
                self.lose(rec, "constants.tty_termios_nccs", nccs, f"expected {NCCS}")
            c["tty_termios_ncc"] = TTY_NCC

    def fix_sigpending(self, rec, v) -> None:
        out = []
        for i, si in enumerate(v["siginfo"]):
            if self.up:
                new = {b: (s32(si[a]) if a not in _SIGNED and isinstance(si[a], int)
                           and a not in ("csi_sigval_ptr", "csi_utime", "csi_stime")
                           else si[a])
                       for a, b in _SIGINFO_COMMON.items()}
                new.update({f: 0 for f in _SIGINFO_NEW})
            else:
                for f in _SIGINFO_NEW:
                    if si.get(f):
                        self.lose(rec, f"siginfo[{i}].{f}", si[f],
                                  f"{self.dst.name}'s 48-byte siginfo cannot hold it")
                new = {a: (u32(si[b]) if a not in _SIGNED and b not in
                           ("csi_ptr", "csi_utime", "csi_stime") else si[b])
                       for a, b in _SIGINFO_COMMON.items()}
            out.append(new)
        v["siginfo"] = out
