"""v21 <-> v23-rc1: sysv semaphore undo lists, sigaltstack, wider siginfo.

* TASK_SEM_UNDO_LIST/TASK_SEM_UNDO 506/507 and object SEM_UNDO=22 exist only in
  v23-rc1; ``task_objs`` gains ``sem_undo_objref`` (the padding goes).
* ``task`` += ``sas_ss_sp``, ``sas_ss_size`` (64 -> 80); ``thread`` +=
  ``sysenter_return`` (16 -> 24); FS += ``umask``.
* ``ckpt_siginfo`` grows from 48 to 88 bytes: the common fields keep their
  names (``csi_sigval_int`` <-> ``csi_int``, ``csi_sigval_ptr`` <-> ``csi_ptr``),
  fd/tid/band/overrun/trapno/status/addr/sys_private are new.
* a272e68: tty termios sized by NCCS (72 -> 96): u16 flags become u32, the speeds
  are new (an upgrade derives them from c_cflag's CBAUD), c_cc grows from NCC = 8
  to NCCS = 19 (the first 8 are the same); ``ckpt_const`` ``tty_termios_ncc``
  becomes ``tty_termios_nccs``.
* SOCKET += has_buffers (112 -> 120): an upgrade sets it where v21 wrote the
  queues (a socket neither listening nor dead, a note); SOCKET_UNIX names the
  peer's credentials by a CRED objref instead of a uid/gid pair: the downgrade
  takes euid/egid of that CRED (read earlier in the stream), the upgrade cannot
  make a CRED object and loses a pair other than "none" (-1, -1).

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
NO_CRED = 0xFFFFFFFF            # sk_peercred of a socket without a peer: uid = gid = -1
TCP_LISTEN, SOCK_DEAD = 10, 1 << 0
CBAUD, CBAUDEX = 0o10017, 0o10000
# termios speed of each CBAUD code (B0 .. B38400, then the CBAUDEX ones)
BAUD = (0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400)
BAUDEX = (0, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
          2000000, 2500000, 3000000, 3500000, 4000000)
TERMIOS_FLAGS = ("c_iflag", "c_oflag", "c_cflag", "c_lflag")


def speed(cflag: int) -> int:
    code = cflag & CBAUD
    return BAUDEX[code & 0o17] if code & CBAUDEX else BAUD[code]


class Step(_base.Step):
    OLD, NEW = "v21", "v23-rc1"
    NEW_FIELDS = {
        "task": {"sas_ss_sp": New(0, "assumed: no alternate signal stack"),
                 "sas_ss_size": New(0, "assumed: no alternate signal stack")},
        "task_objs": {"sem_undo_objref": New(0)},
        "thread": {"sysenter_return": New(0, "assumed 0 (not saved by the source version)")},
        "fs": {"umask": New(UMASK, "assumed umask 022 (not saved by the source version)")},
    }

    def __init__(self, ctx, up, arch):
        super().__init__(ctx, up, arch)
        self.creds: dict[int, tuple[int, int]] = {}     # CRED objref -> (euid, egid)
        self.cred_ref = 0

    def downward(self, recs):
        for rec in recs:
            if rec.name == "objref":
                v = self.parse(rec)
                self.cred_ref = v["objref"] if self.src.obj_names.get(v["objtype"]) == "cred" \
                    else self.cred_ref
            elif rec.name == "cred":
                v = self.parse(rec)
                self.creds[self.cred_ref] = (v["euid"], v["egid"])
            out = self.generic(rec)
            if out is not None:
                yield out

    def fix_socket(self, rec, v) -> None:
        if self.up:
            sock = v["sock"]
            v["has_buffers"] = int(sock["state"] != TCP_LISTEN and not sock["flags"] & SOCK_DEAD)
            self.note(rec, "has_buffers", None, "set where v21 wrote the socket's queues "
                      "(not listening, not dead)")
        else:
            v.pop("has_buffers", None)

    def fix_socket_unix(self, rec, v) -> None:
        if self.up:
            pair = (v.pop("peercred_uid"), v.pop("peercred_gid"))
            if pair != (NO_CRED, NO_CRED):
                self.lose(rec, "peercred", pair, "v23-rc1 names the peer's credentials by a "
                          "CRED object, which the upgrade cannot make")
            v["peercred"] = 0
            return
        ref = v.pop("peercred")
        pair = (NO_CRED, NO_CRED) if ref == 0 else self.creds.get(ref)
        if pair is None:
            self.lose(rec, "peercred", ref, "names no CRED read before it")
            pair = (NO_CRED, NO_CRED)
        v["peercred_uid"], v["peercred_gid"] = pair

    def fix_tty(self, rec, v) -> None:
        t = v["termios"]
        if self.up:
            t["c_ispeed"] = t["c_ospeed"] = speed(t["c_cflag"])
            t["c_cc"] = bytes(t["c_cc"]).ljust(NCCS, b"\0")
            self.note(rec, "termios.c_cc", None, "the control characters v21 did not save "
                      "(VSTART and after) assumed 0")
            return
        for f in TERMIOS_FLAGS:
            if t[f] > 0xFFFF:
                self.lose(rec, f"termios.{f}", t[f], "v21 holds 16-bit termios flags")
                t[f] &= 0xFFFF
        for f in ("c_ispeed", "c_ospeed"):
            x = t.pop(f)
            if x != speed(t["c_cflag"]):
                self.lose(rec, f"termios.{f}", x, "v21 keeps only c_cflag's CBAUD speed")
        cc = bytes(t["c_cc"])
        if any(cc[TTY_NCC:]):
            self.lose(rec, "termios.c_cc", cc[TTY_NCC:].hex(), "v21 holds NCC = 8 control "
                      "characters")
        t["c_cc"] = cc[:TTY_NCC]

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
