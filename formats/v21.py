"""ckpt-v21 (C/R v20/v21, user-cr 82822cf) = v19 + network namespaces and nested pids.

``ckpt_pids`` gains ``depth``; when any task lives in a nested pid namespace a
second BUFFER of s32 vpids (Σdepth entries) follows the pids array.
"""
from __future__ import annotations

import functools

from . import v17, v19
from ._delta import append, pad, replace

BASE = v19
NAME = "v21"
REV = 6
KERNEL = (2, 6, 34)
TRAITS = v19.TRAITS | {"pids_model": "tree_depth"}
CHECKPOINT_NETNS = 0x2

TYPES = v19.TYPES | {"net_ns": 707, "netdev": 708, "netdev_addr": 709}
OBJS = v19.OBJS | {"net_ns": 20, "netdev": 21}
OBJ_RECORDS = v19.OBJ_RECORDS | {"net_ns": "net_ns", "netdev": "netdev"}


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Int32sl
    r = dict(v19.records(arch))
    r["ns"] = append(r["ns"], "net_objref" / Int32sl, pad(4))
    r["ckpt_pids"] = replace(v17.records(arch)["ckpt_pids"], "_pad", "depth" / Int32sl)
    return r
