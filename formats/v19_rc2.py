"""ckpt-v19-rc2 (user-cr db94f5e, 76fcfe5 for x86_64) = v19-rc1 + LSM, epoll, eventfd.

Security references grow CRED, FILE, ipc_perms and msg_msg; SOCKET_FRAG is
inserted before SOCKET_UNIX.
"""
from __future__ import annotations

import functools

from . import v17, v18, v19_rc1
from ._delta import insert_after, pad, renumber, replace

BASE = v19_rc1
NAME = "v19-rc2"
REV = 4
KERNEL = (2, 6, 32)

TYPES = renumber(v19_rc1.TYPES, 704, 705, +1) | {
    "lsm_info": 7, "security": 8, "epoll_items": 308, "socket_frag": 704}
OBJS = v18.OBJS | {"security_ptr": 16, "security": 17}
OBJ_RECORDS = v18.OBJ_RECORDS | {"security": "security"}
FILE_TYPES = v18.FILE_TYPES | {"epoll": 6, "eventfd": 7}


def file_common():
    return append_secref(v17.file_common(), "f_version", "f_secref")


def append_secref(st, after, name):
    from construct import Int32sl
    return insert_after(st, after, name / Int32sl, pad(4, "_pad_sec"))


def file_subtypes() -> dict:
    from construct import Int32ul, Int64ul, Struct
    return v18.file_subtypes() | {FILE_TYPES["eventfd"]: Struct(
        "count" / Int64ul, "flags" / Int32ul, pad(4))}


def ipc_perms():
    return append_secref(v17.ipc_perms(), "seq", "sec_ref")


TCP_FIELDS = (
    "rcv_nxt", "copied_seq", "rcv_wup", "snd_nxt", "snd_una", "snd_sml", "rcv_tstamp",
    "lsndtime", "snd_wl1", "snd_wnd", "max_window", "mss_cache", "window_clamp",
    "rcv_ssthresh", "frto_highmark", "srtt", "mdev", "mdev_max", "rttvar", "rtt_seq",
    "packets_out", "retrans_out", "snd_up", "rcv_wnd", "write_seq", "pushed_seq", "lost_out",
    "sacked_out", "fackets_out", "tso_deferred", "bytes_acked", "lost_cnt_hint",
    "retransmit_high", "lost_retrans_low", "prior_ssthresh", "high_seq", "retrans_stamp",
    "undo_marker", "undo_retrans", "total_retrans", "urg_seq", "keepalive_time",
    "keepalive_intvl")
TCP_SIGNED = ("lost_cnt_hint", "undo_retrans")


def socket_inet():
    """ckpt_hdr_socket_inet, 328 bytes: addresses, the ack and TCP state, IPv6 addresses,
    and C's two sockaddr_in at the end."""
    from construct import Bytes, Int16sl, Int16ul, Int32sl, Int32ul, Int64ul, Int8ul, Struct
    return Struct(
        "daddr" / Int32ul, "rcv_saddr" / Int32ul, "saddr" / Int32ul, "dport" / Int16ul,
        "num" / Int16ul, "sport" / Int16ul, "uc_ttl" / Int16sl, "cmsg_flags" / Int16ul,
        pad(2, "_padding0"),
        "icsk_ack" / Struct("timeout" / Int64ul, "ato" / Int32ul, "lrcvtime" / Int32ul,
                            "last_seg_size" / Int16ul, "rcv_mss" / Int16ul,
                            *(f / Int8ul for f in ("pending", "quick", "pingpong",
                                                   "blocked"))),
        "tcp" / Struct(*(f / (Int32sl if f in TCP_SIGNED else Int32ul) for f in TCP_FIELDS),
                       "urg_data" / Int16ul, "advmss" / Int16ul,
                       *(f / Int8ul for f in ("frto_counter", "nonagle", "ecn_flags",
                                              "reordering", "keepalive_probes")), pad(3)),
        "inet6" / Struct("saddr" / Bytes(16), "rcv_saddr" / Bytes(16), "daddr" / Bytes(16)),
        *v19_rc1.inet_addrs())


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Bytes, Int16ul, Int32sl, Int32ul, Int64ul, Int8ul, Struct
    r = dict(v18.records(arch))
    perms = ipc_perms()
    r["cred"] = insert_after(r["cred"], "groupinfo_ref", "sec_ref" / Int32sl, pad(4))
    r["file"] = v17.file_record(file_common(), file_subtypes())
    for name in ("ipc_shm", "ipc_msg", "ipc_sem"):
        r[name] = replace(r[name], "perms", "perms" / perms)
    r["ipc_msg_msg"] = Struct("m_type" / Int32sl, "m_ts" / Int32ul, "sec_ref" / Int32sl,
                              pad(4))
    r["security"] = Struct("ptrref" / Int32sl, "sectype" / Int8ul, pad(3))
    r["socket_inet"] = socket_inet()
    # the skb's layout; a BUFFER of lin_len bytes, then nr_frags x (SOCKET_FRAG BUFFER)
    r["socket_buffer"] = Struct(
        *(f / Int32ul for f in ("transport_header", "network_header", "mac_header",
                                "lin_len", "frg_len", "skb_len", "hdr_len", "mac_len",
                                "data_offset")),
        "sk_objref" / Int32sl, "pr_objref" / Int32sl, "protocol" / Int16ul,
        "nr_frags" / Int16ul, "cb" / Bytes(48))
    r["socket_frag"] = Struct("size" / Int32ul, "offset" / Int32ul)
    r["epoll_items"] = Struct("epfile_objref" / Int32sl, "num_items" / Int32ul)
    # Not a record: the elements of the BUFFER that follows EPOLL_ITEMS.
    r["ckpt_eventpoll_item"] = Struct("data" / Int64ul, "fd" / Int32ul,
                                      "file_objref" / Int32sl, "events" / Int32ul, pad(4))
    return r
