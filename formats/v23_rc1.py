"""ckpt-v23-rc1 (user-cr f0fdd38 + a272e68) = v21 + sysv semaphore undo lists.

The task record gains the signal alternate stack, the thread record
sysenter_return, ckpt_siginfo grows to 88 bytes, FS carries the umask, and
ttys store NCCS control characters.
"""
from __future__ import annotations

import functools

from . import v17, v18, v19, v21
from ._delta import append, insert_after, pad, remove, replace

BASE = v21
NAME = "v23-rc1"
REV = 6
KERNEL = (2, 6, 37)

TYPES = v21.TYPES | {"task_sem_undo_list": 506, "task_sem_undo": 507}
OBJS = v21.OBJS | {"sem_undo": 22}
OBJ_RECORDS = v21.OBJ_RECORDS | {"sem_undo": "task_sem_undo_list"}

NCCS = 19
SIGINFO_INTS = ("csi_signo", "csi_errno", "csi_code", "csi_pid", "csi_uid", "csi_fd",
                "csi_tid", "csi_band", "csi_overrun", "csi_trapno", "csi_status", "csi_int")


def const():
    from construct import Int16ul
    return replace(v19.const(), "tty_termios_ncc", "tty_termios_nccs" / Int16ul)


def siginfo():
    from construct import Int32sl, Int64ul, Struct
    return Struct(*(f / Int32sl for f in SIGINFO_INTS),
                  *(f / Int64ul for f in ("csi_ptr", "csi_utime", "csi_stime", "csi_addr")),
                  "csi_sys_private" / Int32sl, pad(4))


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Bytes, Int16ul, Int32sl, Int32ul, Int64ul, Int8ul, Struct, this
    r = dict(v21.records(arch))
    r["header"] = v17.header(const())
    r["task"] = append(r["task"], "sas_ss_sp" / Int64ul, "sas_ss_size" / Int32ul, pad(4))
    r["task_objs"] = insert_after(replace(r["task_objs"], "_pad"), "fs_objref",
                                  "sem_undo_objref" / Int32sl)
    r["thread"] = Struct("sysenter_return" / Int64ul, "thread_info_flags" / Int32ul,
                         "gdt_entry_tls_entries" / Int16ul, "sizeof_tls_array" / Int16ul,
                         "tls_array" / Bytes(this.sizeof_tls_array))
    r["sigpending"] = v18.sigpending(siginfo())
    r["fs"] = Struct("umask" / Int32ul, pad(4))
    # a272e68: termios with u32 flags, the speeds and NCCS control characters (the
    # packing is 1fd8e6e's, the first snapshot that shows it; the size, 48, is a272e68's)
    r["tty"] = replace(r["tty"], "termios", "termios" / Struct(
        *(f / Int32ul for f in ("c_iflag", "c_oflag", "c_cflag", "c_lflag", "c_ispeed",
                                "c_ospeed")),
        "c_line" / Int8ul, "c_cc" / Bytes(NCCS), pad(4)))
    r["socket"] = insert_after(r["socket"], None, "has_buffers" / Int8ul,
                               pad(7, "_padding0"))
    # the peer's credentials become a CRED objref
    r["socket_unix"] = append(remove(replace(r["socket_unix"], "peercred_uid",
                                             "peercred" / Int32sl), "peercred_gid"),
                              pad(4, "_padding"))
    r["task_sem_undo_list"] = Struct("count" / Int32ul, pad(4))
    # semadj_count s16 adjustments follow in a BUFFER
    r["task_sem_undo"] = Struct("semid" / Int32ul, "semadj_count" / Int32ul)
    return r

