"""ckpt-v23 (user-cr b6cdf01 + 1fd8e6e "ckpt-v23-rc2") = v23-rc1 + pid objects and hugetlb.

PIDS=101 is inserted before TREE (every type 101..118 moves up by one) and
OBJ_PID=1 before every object type.  Pids become objects: PIDS and its BUFFER
list pid numbers per namespace level, and the tree names them by tag.  HPAGE
arrives, MM_CONTEXT moves to 405, the VMA gains hugetlb_shift, the task
record gains ``flags`` and is repacked.  This is the native ABI of the engine, and the
only version with imgtools' extension records (``ext``).
"""
from __future__ import annotations

import functools

from . import ext, v17, v19_rc2, v21, v23_rc1
from ._delta import append, pad, renumber, replace

BASE = v23_rc1
NAME = "v23"
REV = 6
KERNEL = (2, 6, 38)
TRAITS = v21.TRAITS | {"pids_model": "pids", "pid_null": -4096}
CKPT_PID_ROOT = -4097
CKPT_PF = {"forknoexec": 1, "superpriv": 2}

TYPES = renumber(renumber(v23_rc1.TYPES, 101, 118, +1), 404, 404, +1) | {
    "pids": 101, "hpage": 404} | ext.TYPES
EXTRA_OBJ_RECORDS = ext.OBJECT_RECORDS
STREAMED = ext.STREAMED
OBJS = renumber(v23_rc1.OBJS, 1, 99, +1) | {"pid": 1}
VMA_TYPES = v17.VMA_TYPES | {"hugetlb": 9, "hugetlb_skip": 10}


def task(arch: str):
    from construct import Int32ul, Int64ul, Struct
    return Struct(
        "flags" / Int32ul, "state" / Int32ul, "exit_state" / Int32ul, "exit_code" / Int32ul,
        "exit_signal" / Int32ul, "pdeath_signal" / Int32ul,
        "set_child_tid" / Int64ul, "clear_child_tid" / Int64ul,
        "sas_ss_sp" / Int64ul, "sas_ss_size" / Int32ul,
        "compat_robust_futex_head_len" / Int32ul, "compat_robust_futex_list" / Int32ul,
        "robust_futex_head_len" / Int32ul, "robust_futex_list" / Int64ul,
    )


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Int16ul, Int32sl, Int32ul, Struct
    r = dict(v23_rc1.records(arch))
    r["task"] = task(arch)
    r["tree"] = Struct("nr_tasks" / Int32ul, pad(4))
    r["pids"] = Struct("nr_pids" / Int32ul, "nr_vpids" / Int32ul, "offset" / Int32ul, pad(4))
    r["vma"] = append(r["vma"], "hugetlb_shift" / Int16ul, pad(6, "_pad2"))
    r["ipc_shm"] = replace(r["ipc_shm"], "_pad", "shm_shift" / Int32ul)
    # Not records: the BUFFER after TREE holds ckpt_task_pids (tags, not numbers).
    del r["ckpt_pids"]
    r |= ext.records(v19_rc2.file_common())
    r["ckpt_task_pids"] = Struct(*(f / Int32sl for f in ("vpid", "vppid", "vtgid", "vpgid",
                                                        "vsid")), "depth" / Int32ul)
    return r
