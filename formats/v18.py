"""ckpt-v18 = v17 + signals, ttys, sockets and framed pipe data.

v18 20/80 (rev 2), 46/80 (PIPE_BUF), 47/80 (FIFO), 65/80 (signals), 72/80 (tty).
"""
from __future__ import annotations

import functools

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
N_TTY_BUF_SIZE = 4096


def const():
    """rlimit and tty sizes fill v17's padding (the size stays 24)."""
    from construct import Int16ul
    return replace(v17.const(), "_pad",
                   "rlimit_nlimits" / Int16ul, "n_tty_buf_size" / Int16ul,
                   "tty_termios_ncc" / Int16ul)


def siginfo():
    """ckpt_siginfo, 48 bytes, union-like packing per si_code class."""
    from construct import Int32sl, Int32ul, Int64ul, Struct
    return Struct("csi_signo" / Int32ul, "csi_errno" / Int32ul, "csi_code" / Int32ul,
                  "csi_pid" / Int32ul, "csi_uid" / Int32sl, "csi_sigval_int" / Int32ul,
                  "csi_sigval_ptr" / Int64ul, "csi_utime" / Int64ul, "csi_stime" / Int64ul)


def sigpending(siginfo_struct):
    from construct import Array, Int32ul, Int64ul, Struct, this
    return Struct("nr_pending" / Int32ul, pad(4), "signal" / Int64ul,
                  "siginfo" / Array(this.nr_pending, siginfo_struct))


def tty(ncc: int):
    """ckpt_hdr_tty; the termios area is padded to 8 bytes."""
    from construct import Bytes, Int16ul, Int32sl, Int32ul, Int64ul, Int8ul, Struct
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


def sockaddr_un():
    """struct sockaddr_un as the kernel stores it: family and a 108-byte path."""
    from construct import Bytes, Int16ul, Struct
    return Struct("sun_family" / Int16ul, "sun_path" / Bytes(108))


def socket():
    """ckpt_hdr_socket (112 bytes up to v21): struct socket, sock_common and sock."""
    from construct import Int16sl, Int16ul, Int32sl, Int32ul, Int64sl, Int64ul, Int8ul, Struct
    return Struct(
        "socket" / Struct("flags" / Int64ul, "state" / Int8ul, pad(7)),
        "sock_common" / Struct("bound_dev_if" / Int32ul, "reuse" / Int32ul,
                               "family" / Int16ul, "state" / Int8ul, pad(5)),
        "sock" / Struct(
            "rcvlowat" / Int64sl, "flags" / Int64ul, "rcvtimeo" / Int64sl,
            "sndtimeo" / Int64sl, "err" / Int32ul, "err_soft" / Int32ul,
            "priority" / Int32ul, "rcvbuf" / Int32sl, "sndbuf" / Int32sl, "type" / Int16ul,
            "backlog" / Int16sl, "protocol" / Int8ul, "state" / Int8ul, "shutdown" / Int8ul,
            "userlocks" / Int8ul, "no_check" / Int8ul, pad(3),
            "linger_onoff" / Int32sl, "linger_linger" / Int32sl),
    )


def tty_ldisc():
    """ckpt_hdr_ldisc_n_tty (560 bytes, all versions); a BUFFER of datalen bytes follows."""
    from construct import Bytes, Int16ul, Int32ul, Int8ul, Struct
    return Struct(
        *(f / Int32ul for f in ("column", "datalen", "canon_column", "canon_datalen",
                                "canon_data")),
        "minimum_to_wake" / Int16ul,
        *(f / Int8ul for f in ("stopped", "hw_stopped", "flow_stopped", "packet",
                               "ctrl_status", "lnext", "erasing", "raw", "real_raw",
                               "icanon", "closing")),
        pad(3), "read_flags" / Bytes(N_TTY_BUF_SIZE // 8), pad(4, "_pad2"))


def file_subtypes() -> dict:
    from construct import Int32sl, Struct
    ref = lambda name: Struct(name / Int32sl, pad(4))  # noqa: E731
    pipe = ref("pipe_objref")
    return v17.file_subtypes() | {
        FILE_TYPES["fifo"]: pipe, FILE_TYPES["socket"]: ref("sock_objref"),
        FILE_TYPES["tty"]: ref("tty_objref")}


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Array, Int32sl, Int32ul, Int64ul, Struct
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
    r["tty_ldisc"] = tty_ldisc()
    r["socket"] = socket()
    r["socket_queue"] = Struct("skb_count" / Int32ul, "total_bytes" / Int32ul)
    # v18/C: the two objrefs; a BUFFER with the skb's data follows
    r["socket_buffer"] = Struct("sk_objref" / Int32sl, "pr_objref" / Int32sl)
    r["socket_unix"] = Struct(
        "this" / Int32sl, "peer" / Int32sl, "peercred_uid" / Int32ul,
        "peercred_gid" / Int32ul, "flags" / Int32ul, "laddr_len" / Int32ul,
        "raddr_len" / Int32ul, "laddr" / sockaddr_un(), "raddr" / sockaddr_un())
    return r

