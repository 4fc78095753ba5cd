"""ckpt-v19 (user-cr c97c03d + 67cfee9) = v19-rc2 + mount namespaces and fs_struct.

MNT_NS and the FS object shift record and object numbers; arch ids are
renumbered; the x86 CPU record loses the debug registers; the task record
is repacked identically for i386 and x86_64; saved_auxv becomes u64[]; and
TASK_OBJS moves after the CPU state (docs/format-choices.md).
"""
from __future__ import annotations

import functools

from . import v17, v18, v19_rc1, v19_rc2
from ._delta import insert_after, pad, remove, renumber, replace

BASE = v19_rc2
NAME = "v19"
REV = 5
KERNEL = (2, 6, 33)
ARCH_IDS = {"i386": 1, "x86_64": 2}
TRAITS = v19_rc1.TRAITS | {"task_order": "cpu_first", "auxv_u64": True}

TYPES = renumber(v19_rc2.TYPES, 111, 116, +1) | {"mnt_ns": 111, "fs": 451}
OBJS = renumber(renumber(v19_rc2.OBJS, 5, 99, +1), 11, 99, +1) | {"fs": 5, "mnt_ns": 11}
OBJ_RECORDS = v19_rc2.OBJ_RECORDS | {"fs": "fs", "mnt_ns": "mnt_ns"}


def const():
    from construct import Int16ul
    return replace(v18.const(), "mm_saved_auxv_len", "at_vector_size" / Int16ul)


def task(arch: str):
    """67cfee9: one packing for both ABIs, 64 bytes."""
    from construct import Int32ul, Int64ul, Struct
    return Struct(
        "state" / Int32ul, "exit_state" / Int32ul, "exit_code" / Int32ul,
        "exit_signal" / Int32ul, "pdeath_signal" / Int32ul,
        "compat_robust_futex_head_len" / Int32ul, "compat_robust_futex_list" / Int32ul,
        "robust_futex_head_len" / Int32ul, "robust_futex_list" / Int64ul,
        "set_child_tid" / Int64ul, "clear_child_tid" / Int64ul,
    )


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Int32sl, Int32ul, Int64sl, Struct
    r = dict(v19_rc2.records(arch))
    r["header"] = v17.header(const())
    r["task"] = task(arch)
    r["task_objs"] = insert_after(r["task_objs"], "mm_objref", "fs_objref" / Int32sl)
    r["task_objs"] = insert_after(r["task_objs"], "signal_objref", pad(4))
    r["ns"] = replace(r["ns"], "ipc_objref", "ipc_objref" / Int32sl)
    r["ipc_msg_msg"] = Struct("m_type" / Int64sl, "m_ts" / Int32ul, "sec_ref" / Int32sl)
    r["fs"] = Struct()
    if "cpu" in r:
        r["cpu"] = remove(r["cpu"], *(f"debugreg{i}" for i in (0, 1, 2, 3, 6, 7)))
    return r
