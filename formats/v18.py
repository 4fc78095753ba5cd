"""ckpt-v18 = v17 + signals, ttys, sockets and framed pipe data.

v18 20/80 (rev 2), 46/80 (PIPE_BUF), 47/80 (FIFO), 65/80 (signals), 72/80 (tty).
"""
from __future__ import annotations

from construct import Array, Bytes, Int8ul, Int16ul, Int32sl, Int32ul, Int64ul, Struct, this

from . import v17
from ._delta import pad, replace

BASE = v17
NAME = "v18"
REV = 2
TRAITS = v17.TRAITS | {"pipe_framing": "pipe_buf", "has_signal": True}

_types = {k: v for k, v in v17.TYPES.items() if k != "file_pipe"}
TYPES = _types | {
    "pipe_buf": 305, "tty": 306, "tty_ldisc": 307,
    "signal": 602, "signal_task": 603, "sigpending": 604,
    "socket": 701, "socket_queue": 702, "socket_buffer": 703, "socket_unix": 704,
}

# CKPT_OBJ_SIGNAL inserted at 6: NS..GROUPINFO move up by one.
OBJS = {k: (v + 1 if v >= 6 else v) for k, v in v17.OBJS.items()} | {
    "signal": 6, "sock": 14, "tty": 15}
OBJ_RECORDS = v17.OBJ_RECORDS | {"sock": "socket", "tty": "tty"}

FILE_TYPES = v17.FILE_TYPES | {"fifo": 3, "socket": 4, "tty": 5}
TTY_NCC = 8


def const():
    """rlimit and tty sizes fill v17's padding (the size stays 24)."""
    return replace(v17.const(), "_pad",
                   "rlimit_nlimits" / Int16ul, "n_tty_buf_size" / Int16ul,
                   "tty_termios_ncc" / Int16ul)


def siginfo():
    """ckpt_siginfo, 48 bytes, union-like packing per si_code class."""
    return Struct("csi_signo" / Int32ul, "csi_errno" / Int32ul, "csi_code" / Int32ul,
                  "csi_pid" / Int32ul, "csi_uid" / Int32sl, "csi_sigval_int" / Int32ul,
                  "csi_sigval_ptr" / Int64ul, "csi_utime" / Int64ul, "csi_stime" / Int64ul)


def sigpending(siginfo_struct):
    return Struct("nr_pending" / Int32ul, pad(4), "signal" / Int64ul,
                  "siginfo" / Array(this.nr_pending, siginfo_struct))


def tty(ncc: int):
    """ckpt_hdr_tty; the termios area is padded to 8 bytes."""
    termios_size = 8 + 1 + ncc
    return Struct(
        "driver_type" / Int16ul, "driver_subtype" / Int16ul,
        "link_objref" / Int32sl, "file_objref" / Int32sl, pad(4),
        "index" / Int32ul, "ldisc" / Int32ul, "flags" / Int64ul,
        "termios" / Struct("c_iflag" / Int16ul, "c_oflag" / Int16ul, "c_cflag" / Int16ul,
                           "c_lflag" / Int16ul, "c_line" / Int8ul, "c_cc" / Bytes(ncc),
                           pad(-termios_size % 8)),
        "winsize" / Struct("ws_row" / Int16ul, "ws_col" / Int16ul,
                           "ws_xpixel" / Int16ul, "ws_ypixel" / Int16ul),
    )


def file_subtypes() -> dict:
    ref = lambda name: Struct(name / Int32sl, pad(4))  # noqa: E731
    pipe = ref("pipe_objref")
    return v17.file_subtypes() | {
        FILE_TYPES["fifo"]: pipe, FILE_TYPES["socket"]: ref("sock_objref"),
        FILE_TYPES["tty"]: ref("tty_objref")}


def records(arch: str) -> dict:
    r = dict(v17.records(arch))
    del r["file_pipe"]
    r["header"] = v17.header(const())
    r["file"] = v17.file_record(v17.file_common(), file_subtypes())
    r["task_objs"] = replace(r["task_objs"], "_pad", "signal_objref" / Int32sl)
    r["signal"] = Struct(
        "rlim" / Array(16, Struct("rlim_cur" / Int64ul, "rlim_max" / Int64ul)),
        *(f / Int64ul for f in ("it_real_value", "it_real_incr", "it_virt_value",
                                "it_virt_incr", "it_prof_value", "it_prof_incr")),
        "tty_objref" / Int32sl, "tty_pgrp" / Int32sl, "tty_old_pgrp" / Int32sl, pad(4))
    r["signal_task"] = Struct("blocked" / Int64ul)
    r["sigpending"] = sigpending(siginfo())
    r["tty"] = tty(TTY_NCC)
    return r

