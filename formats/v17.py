"""ckpt-v17: the oldest ABI imgtools reads, written out in full.

Every later version module states only what changed (see ``_delta``).  Field
names are the C header's (``include/linux/checkpoint_hdr.h``); a struct here is
the record *payload*, i.e. what follows the 8-byte ``ckpt_hdr``.  Numbering and
layouts are the reconstruction in the reference notes (v17 30/60, 49/60, 60/60
and user-cr ckptinfo.c@a19d594); choices where the sources are silent are
listed in docs/format-choices.md.
"""
from __future__ import annotations

import functools

from ._delta import pad

BASE = None
NAME = "v17"
REV = 1                      # never archived; docs/format-choices.md
KERNEL = (2, 6, 31)
ARCH_IDS = {"i386": 1, "x86_64": 5}

# How the stream is organised, beyond record layouts.
TRAITS = {
    "pids_model": "tree",           # TREE + BUFFER ckpt_pids[] (no depth)
    "task_order": "objs_first",     # TASK_OBJS before THREAD/CPU
    "pipe_framing": "unframed",     # FILE_PIPE + raw bytes
    "pid_null": -1,
    "auxv_u64": False,              # saved_auxv in native words
    "has_signal": False,            # SIGNAL/SIGPENDING/SIGNAL_TASK arrive in v18
    "container": False,             # CONTAINER section arrives in v19-rc1
}

# CKPT_HDR_* record types.
TYPES = {
    "header": 1, "header_arch": 2, "buffer": 3, "string": 4, "objref": 5,
    "tree": 101, "task": 102, "task_ns": 103, "task_objs": 104,
    "restart_block": 105, "thread": 106, "cpu": 107,
    "ns": 108, "uts_ns": 109, "ipc_ns": 110, "capabilities": 111,
    "user_ns": 112, "cred": 113, "user": 114, "groupinfo": 115, "task_creds": 116,
    "cpu_fpu": 201, "mm_context_ldt": 202,
    "file_table": 301, "file_desc": 302, "file_name": 303, "file": 304,
    "file_pipe": 305,
    "mm": 401, "vma": 402, "pgarr": 403, "mm_context": 404,
    "ipc": 501, "ipc_shm": 502, "ipc_msg": 503, "ipc_msg_msg": 504, "ipc_sem": 505,
    "sighand": 601,
    "tail": 9001, "error": 9999,
}

# CKPT_OBJ_* object types.
OBJS = {
    "ignore": 0, "inode": 1, "file_table": 2, "file": 3, "mm": 4, "sighand": 5,
    "ns": 6, "uts_ns": 7, "ipc_ns": 8, "user_ns": 9, "cred": 10, "user": 11,
    "groupinfo": 12,
}

# Which record defines an object of each type (OBJREF is followed, possibly
# after nested objects, by this record).  Inodes have no record of their own.
OBJ_RECORDS = {
    "file_table": "file_table", "file": "file", "mm": "mm", "sighand": "sighand",
    "ns": "ns", "uts_ns": "uts_ns", "ipc_ns": "ipc_ns", "user_ns": "user_ns",
    "cred": "cred", "user": "user", "groupinfo": "groupinfo",
}

# Records other than OBJ_RECORDS' that define an object (record -> object kind).
EXTRA_OBJ_RECORDS: dict[str, str] = {}
# Records whose payload is a fixed head followed by raw data (read in chunks, never parsed
# whole).
STREAMED: frozenset = frozenset()

FILE_TYPES = {"ignore": 0, "generic": 1, "pipe": 2}
VMA_TYPES = {
    "ignore": 0, "vdso": 1, "anon": 2, "file": 3, "shm_anon": 4, "shm_anon_skip": 5,
    "shm_file": 6, "shm_ipc": 7, "shm_ipc_skip": 8,
}
RESTART_BLOCK_TYPES = {
    "none": 1, "hrtimer_nanosleep": 2, "posix_cpu_nanosleep": 3, "compat_nanosleep": 4,
    "compat_clock_nanosleep": 5, "poll": 6, "futex": 7,
}

MAGIC_HEAD = 0x00FEED0CC0A2D200
MAGIC_TAIL = 0x002D2A0CC0DEEF00
CHECKPOINT_SUBTREE = 0x1
PAGE_SIZE = 4096
ARCH_NSIG = 64


def const():
    """ckpt_const (24 bytes): v17 has the first nine fields."""
    from construct import Int16ul, Struct
    return Struct(
        "task_comm_len" / Int16ul,
        "mm_saved_auxv_len" / Int16ul,
        "signal_nsig" / Int16ul,
        "uts_sysname_len" / Int16ul,
        "uts_nodename_len" / Int16ul,
        "uts_release_len" / Int16ul,
        "uts_version_len" / Int16ul,
        "uts_machine_len" / Int16ul,
        "uts_domainname_len" / Int16ul,
        pad(6),
    )


def header(const_struct):
    from construct import Int16ul, Int64ul, Struct
    return Struct(
        "magic" / Int64ul,
        "arch_id" / Int16ul,
        "major" / Int16ul,
        "minor" / Int16ul,
        "patch" / Int16ul,
        "rev" / Int16ul,
        pad(6),
        "constants" / const_struct,
        "time" / Int64ul,
        "uflags" / Int64ul,
    )


def task(arch: str):
    """ckpt_hdr_task before 67cfee9: the packing differs between i386 and x86_64."""
    from construct import Int32ul, Int64ul, Struct
    if arch == "i386":
        return Struct(
            "state" / Int32ul, "exit_state" / Int32ul, "exit_code" / Int32ul,
            "exit_signal" / Int32ul, "pdeath_signal" / Int32ul,
            "set_child_tid" / Int64ul, "clear_child_tid" / Int64ul,
            "compat_robust_futex_head_len" / Int32ul,
            "compat_robust_futex_list" / Int32ul,
            "robust_futex_head_len" / Int32ul,
            "robust_futex_list" / Int64ul,
        )
    return Struct(
        "state" / Int32ul, "exit_state" / Int32ul, "exit_code" / Int32ul,
        "exit_signal" / Int32ul, "pdeath_signal" / Int32ul, pad(4),
        "set_child_tid" / Int64ul, "clear_child_tid" / Int64ul,
        "compat_robust_futex_head_len" / Int32ul,
        "compat_robust_futex_list" / Int32ul,
        "robust_futex_head_len" / Int32ul, pad(4, "_pad2"),
        "robust_futex_list" / Int64ul,
    )


CPU_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8",
            "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "sp")
SEGMENTS = ("fsindex", "gsindex", "cs", "ss", "ds", "es")


def cpu_x86_64():
    """ckpt_hdr_cpu, x86_64, with the debug registers dropped in v19."""
    from construct import Int16ul, Int32ul, Int64ul, Struct
    return Struct(
        *(r / Int64ul for r in CPU_REGS),
        "flags" / Int64ul, "fs" / Int64ul, "gs" / Int64ul,
        *(s / Int16ul for s in SEGMENTS),
        "used_math" / Int32ul,
        *(f"debugreg{i}" / Int64ul for i in (0, 1, 2, 3, 6, 7)),
    )


def ipc_perms():
    """ckpt_hdr_ipc_perms, embedded with its own (zeroed) ckpt_hdr."""
    from construct import Bytes, Int32sl, Int32ul, Int64ul, Struct
    return Struct(
        "h" / Bytes(8), "id" / Int32sl, "key" / Int32sl, "uid" / Int32ul, "gid" / Int32ul,
        "cuid" / Int32ul, "cgid" / Int32ul, "mode" / Int32ul, pad(4), "seq" / Int64ul,
    )


def capabilities():
    from construct import Int32ul, Struct
    return Struct(*(f / Int32ul for f in (
        "cap_i_0", "cap_i_1", "cap_p_0", "cap_p_1", "cap_e_0", "cap_e_1",
        "cap_b_0", "cap_b_1", "securebits")), pad(4))


def sigaction():
    from construct import Int64ul, Struct
    return Struct("_sa_handler" / Int64ul, "sa_flags" / Int64ul,
                  "sa_restorer" / Int64ul, "sa_mask" / Int64ul)


def file_common():
    from construct import Int32sl, Int32ul, Int64ul, Struct
    return Struct(
        "f_type" / Int32ul, "f_mode" / Int32ul, "f_flags" / Int32ul,
        "f_credref" / Int32sl, "f_pos" / Int64ul, "f_version" / Int64ul,
    )


def file_subtypes() -> dict:
    """Per-f_type fields that follow the common FILE head."""
    from construct import Int32sl, Struct
    ref = lambda name: Struct(name / Int32sl, pad(4))  # noqa: E731
    return {FILE_TYPES["pipe"]: ref("pipe_objref")}


def file_record(common, subtypes: dict):
    from construct import Pass, Struct, Switch, this
    return Struct(*common.subcons, "sub" / Switch(this.f_type, subtypes, default=Pass))


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    """Record name -> payload struct.  Records absent here are opaque bytes."""
    from construct import Array, Bytes, Int16ul, Int32sl, Int32ul, Int64ul, Struct, this
    perms = ipc_perms()
    r = {
        "header": header(const()),
        "header_arch": Struct("has_fxsr" / Int16ul, "has_xsave" / Int16ul,
                              "xstate_size" / Int16ul, pad(2)),
        "objref": Struct("objtype" / Int32ul, "objref" / Int32sl),
        "tree": Struct("nr_tasks" / Int32sl, pad(4)),
        "task": task(arch),
        "task_ns": Struct("ns_objref" / Int32sl, pad(4)),
        "task_objs": Struct("files_objref" / Int32sl, "mm_objref" / Int32sl,
                            "sighand_objref" / Int32sl, pad(4)),
        "restart_block": Struct("function_type" / Int64ul,
                                *(f"arg_{i}" / Int64ul for i in range(5))),
        "thread": Struct("thread_info_flags" / Int32ul,
                         "gdt_entry_tls_entries" / Int16ul,
                         "sizeof_tls_array" / Int16ul,
                         "tls_array" / Bytes(this.sizeof_tls_array)),
        "ns": Struct("uts_objref" / Int32sl, "ipc_objref" / Int32ul),
        "uts_ns": Struct(*(f / Bytes(65) for f in (
            "sysname", "nodename", "release", "version", "machine", "domainname")), pad(2)),
        "ipc_ns": Struct("shm_ctlmax" / Int64ul, "shm_ctlall" / Int64ul,
                         *(f / Int32sl for f in ("shm_ctlmni", "msg_ctlmax", "msg_ctlmnb",
                                                 "msg_ctlmni", "sem_ctl_msl", "sem_ctl_mns",
                                                 "sem_ctl_opm", "sem_ctl_mni"))),
        "user_ns": Struct("creator_ref" / Int32sl, pad(4)),
        "cred": Struct(*(f / Int32ul for f in ("uid", "suid", "euid", "fsuid",
                                              "gid", "sgid", "egid", "fsgid")),
                       "user_ref" / Int32sl, "groupinfo_ref" / Int32sl,
                       "cap_s" / capabilities()),
        "user": Struct("uid" / Int32ul, "userns_ref" / Int32sl),
        # The kernel struct is 16 bytes with groups[] at offset 12 and the
        # record is sizeof + 4n long: four zero bytes trail every GROUPINFO.
        "groupinfo": Struct("ngroups" / Int32ul, "groups" / Array(this.ngroups, Int32ul),
                            pad(4)),
        "task_creds": Struct("cred_ref" / Int32sl, "ecred_ref" / Int32sl),
        "file_table": Struct("fdt_nfds" / Int32sl, pad(4)),
        "file_desc": Struct("fd_objref" / Int32sl, "fd_descriptor" / Int32sl,
                            "fd_close_on_exec" / Int32ul, pad(4)),
        "file": file_record(file_common(), file_subtypes()),
        "file_pipe": Struct("pipe_len" / Int32sl, pad(4)),
        "mm": Struct("map_count" / Int32ul, "exe_objref" / Int32sl,
                     "def_flags" / Int64ul, "flags" / Int64ul,
                     *(f / Int64ul for f in ("start_code", "end_code", "start_data",
                                             "end_data", "start_brk", "brk", "start_stack",
                                             "arg_start", "arg_end", "env_start", "env_end"))),
        "vma": Struct("vma_type" / Int32ul, "vma_objref" / Int32sl, "ino_objref" / Int32sl,
                      pad(4), "ino_size" / Int64ul, "vm_start" / Int64ul, "vm_end" / Int64ul,
                      "vm_page_prot" / Int64ul, "vm_flags" / Int64ul, "vm_pgoff" / Int64ul),
        "pgarr": Struct("nr_pages" / Int64ul),
        "mm_context": Struct("vdso" / Int64ul, "ldt_entry_size" / Int32ul, "nldt" / Int32ul),
        "ipc": Struct("ipc_type" / Int32ul, "ipc_count" / Int32ul),
        "ipc_shm": Struct("perms" / perms, "shm_segsz" / Int64ul, "shm_atim" / Int64ul,
                          "shm_dtim" / Int64ul, "shm_ctim" / Int64ul, "shm_cprid" / Int32sl,
                          "shm_lprid" / Int32sl, "mlock_uid" / Int32ul, "flags" / Int32ul,
                          "objref" / Int32sl, pad(4)),
        "ipc_msg": Struct("perms" / perms, *(f / Int64ul for f in (
            "q_stime", "q_rtime", "q_ctime", "q_cbytes", "q_qnum", "q_qbytes")),
            "q_lspid" / Int32sl, "q_lrpid" / Int32sl),
        "ipc_msg_msg": Struct("m_type" / Int32sl, "m_ts" / Int32ul),
        "ipc_sem": Struct("perms" / perms, "sem_otime" / Int64ul, "sem_ctime" / Int64ul,
                          "sem_nsems" / Int32ul, pad(4)),
        "sighand": Struct("action" / Array(ARCH_NSIG, sigaction())),
        "tail": Struct("magic" / Int64ul),
        # Not records: elements of the BUFFER that follows TREE.
        "ckpt_pids": Struct(*(f / Int32sl for f in ("vpid", "vppid", "vtgid", "vpgid",
                                                    "vsid")), pad(4)),
    }
    if arch == "x86_64":
        r["cpu"] = cpu_x86_64()
    # i386 pt_regs are not in the sources: the i386 CPU record stays opaque.
    return r

