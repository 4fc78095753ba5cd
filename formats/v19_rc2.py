"""ckpt-v19-rc2 (user-cr db94f5e, 76fcfe5 for x86_64) = v19-rc1 + LSM, epoll, eventfd.

Security references grow CRED, FILE, ipc_perms and msg_msg; SOCKET_FRAG is
inserted before SOCKET_UNIX.
"""
from __future__ import annotations

from construct import Int32sl, Int32ul, Int64ul, Int8ul, Struct

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
    return insert_after(st, after, name / Int32sl, pad(4, "_pad_sec"))


def file_subtypes() -> dict:
    return v18.file_subtypes() | {FILE_TYPES["eventfd"]: Struct(
        "count" / Int64ul, "flags" / Int32ul, pad(4))}


def ipc_perms():
    return append_secref(v17.ipc_perms(), "seq", "sec_ref")


def records(arch: str) -> dict:
    r = dict(v18.records(arch))
    perms = ipc_perms()
    r["cred"] = insert_after(r["cred"], "groupinfo_ref", "sec_ref" / Int32sl, pad(4))
    r["file"] = v17.file_record(file_common(), file_subtypes())
    for name in ("ipc_shm", "ipc_msg", "ipc_sem"):
        r[name] = replace(r[name], "perms", "perms" / perms)
    r["ipc_msg_msg"] = Struct("m_type" / Int32sl, "m_ts" / Int32ul, "sec_ref" / Int32sl,
                              pad(4))
    r["security"] = Struct("ptrref" / Int32sl, "sectype" / Int8ul, pad(3))
    return r
