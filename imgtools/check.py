"""Check an image: one streaming pass over its records -> a list of findings.

``check(reader)`` walks the records once, parses each with its version's
(non-compiled) struct and keeps only what later rules need: the objref table,
the task tree, the open MM / VMA / file table, pipe inodes.  Page buffers are
read only as far as their address arrays; the page images are skipped.
Nothing in here raises on a bad image: a framing or schema problem becomes a
finding at its byte offset and the check ends with a verdict.

``CODES`` is the one home of the finding codes: severity, title, explanation.
A code is stable: tools may match on it; the message text may change.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import asdict, dataclass
from typing import BinaryIO, Iterable

import formats

from .errors import FramingError, ImageError
from .reader import ImageReader
from .stream import HDR, PIPE_DATA, Record, open_input

ERROR, WARNING, NOTE = "error", "warning", "note"
SEVERITIES = (ERROR, WARNING, NOTE)

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    # -- framing -------------------------------------------------------------
    "framing.empty": (ERROR, "empty image", "The input holds no record at all, or ends inside "
                      "the first record header."),
    "framing.not-image": (ERROR, "not a checkpoint image", "An image starts with the HEADER "
                          "record: type 1, len 72, in every version."),
    "framing.magic-head": (ERROR, "bad head magic", "HEADER.magic must be CHECKPOINT_MAGIC_HEAD "
                           "0x00feed0cc0a2d200. The check goes on as if it were."),
    "framing.magic-tail": (ERROR, "bad tail magic", "TAIL.magic must be CHECKPOINT_MAGIC_TAIL "
                           "0x002d2a0cc0deef00."),
    "framing.bad-len": (ERROR, "record len below 8", "Every record len counts its own 8-byte "
                        "header, so it is at least 8. Nothing after this record can be framed."),
    "framing.past-eof": (ERROR, "record len past the end of the file", "The record announces "
                         "more bytes than the file holds after its header: a bad len or a "
                         "truncated file."),
    "framing.truncated": (ERROR, "stream ends inside a record", "The input ended before the "
                          "bytes a record announced (a truncated image)."),
    "framing.error": (ERROR, "record stream broken", "The record stream cannot be framed past "
                      "this point."),
    "framing.tail-missing": (ERROR, "no TAIL record", "A complete image ends with TAIL; restart "
                             "reads up to it. The image was cut short or the checkpoint "
                             "failed."),
    "framing.after-tail": (ERROR, "bytes after TAIL", "TAIL is the last record: anything after "
                           "it is garbage or another image glued on."),
    # -- header --------------------------------------------------------------
    "header.rev": (ERROR, "header rev does not match the version", "HEADER.rev names the ABI "
                   "revision (v17=1 … v19=5, v21/v23-rc1/v23=6); the image is checked as a "
                   "version with another rev (--format)."),
    "header.rev-unknown": (ERROR, "unknown header rev", "HEADER.rev is none of the revisions "
                           "imgtools knows, so the version cannot be detected: give --format "
                           "to check the image as a given version."),
    "header.arch": (ERROR, "arch id not of this version", "HEADER.arch_id names the "
                    "architecture in the numbering of the image's version (v17..v19-rc2: "
                    "X86_32=1, X86_64=5; v19 on: X86_32=1, X86_64=2)."),
    "header.arch-anachronism": (NOTE, "architecture no kernel of this version wrote",
                                "x86_64 checkpoints exist only from v19-rc2 (Dec 2009); "
                                "older x86_64 layouts are imgtools' reconstruction."),
    "header.const": (WARNING, "unexpected ckpt_const value", "A HEADER.constants field differs "
                     "from what an x86 kernel of this version writes (or v17's padding is not "
                     "zero). Restart validates each constant against the running kernel."),
    "header.const-mismatch": (ERROR, "ckpt_const contradicts the records", "A constant in the "
                              "header disagrees with the records it sizes (uts strings, task "
                              "comm, signal count)."),
    "header.uflags": (WARNING, "unknown checkpoint flags", "HEADER.uflags has bits this version "
                      "does not define (CHECKPOINT_SUBTREE 0x1, CHECKPOINT_NETNS 0x2 from v21)."),
    # -- head sequence -------------------------------------------------------
    "head.sequence": (ERROR, "image head out of sequence", "The head is HEADER, 3 uts BUFFERs, "
                      "HEADER_ARCH, [CONTAINER [lsm BUFFER, LSM_INFO]], [PIDS BUFFER (v23)], "
                      "TREE BUFFER [vpids BUFFER], then the tasks."),
    "head.pids": (ERROR, "pids array inconsistent", "The BUFFER after TREE holds exactly "
                  "nr_tasks entries (and after PIDS exactly nr_pids variable entries)."),
    "head.vpids": (ERROR, "vpids buffer inconsistent", "v21/v23-rc1: when any task has depth > 0 "
                   "a BUFFER of Σdepth s32 pids follows the pids array."),
    # -- records -------------------------------------------------------------
    "record.unknown": (ERROR, "record type unknown to this version", "The type number is not a "
                       "CKPT_HDR_* of the image's version; restart rejects it."),
    "record.size": (ERROR, "record len does not match its struct", "Fixed records are read with "
                    "an exact size; bytes past the struct (or an absurd len) make restart "
                    "fail."),
    "record.parse": (ERROR, "record payload does not parse", "The payload is too short for its "
                     "struct or holds an impossible count."),
    "record.stray": (ERROR, "record out of context", "The record appears where the format does "
                     "not put it (a FILE_DESC outside a file table, a VMA outside an MM, task "
                     "state before the first TASK …)."),
    # -- objrefs -------------------------------------------------------------
    "objref.undefined": (ERROR, "reference to an undefined objref", "A field names an objref "
                         "that no OBJREF (or implicit first use) ever defines; restart fails "
                         "with -EINVAL."),
    "objref.forward": (ERROR, "forward reference", "A field names an objref defined only later "
                       "in the stream. The writer always dumps an object before any reference "
                       "to it, and restart resolves references as it reads."),
    "objref.duplicate": (ERROR, "objref defined twice", "An OBJREF re-defines an objref already "
                         "in the table (restart: duplicate objref -> -EINVAL)."),
    "objref.type": (ERROR, "reference to an object of the wrong type", "The objref exists but "
                    "holds another kind of object (e.g. fd_objref naming an mm); restart: "
                    "-ENOMSG."),
    "objref.unused": (WARNING, "object defined but never used", "An object was written (OBJREF "
                      "+ record) but nothing in the image refers to it."),
    "objref.bad-type": (ERROR, "OBJREF of an unknown object type", "OBJREF.objtype is no "
                        "CKPT_OBJ_* of this version (or is OBJ_IGNORE)."),
    "objref.bad-number": (ERROR, "invalid objref number", "Objrefs are positive integers "
                          "(0 = none where a field allows it)."),
    "objref.unbound": (ERROR, "OBJREF without its object record", "An OBJREF announces an "
                       "object whose record never follows before the section ends."),
    "objref.missing": (ERROR, "object record without OBJREF", "An object record (CRED, FILE, "
                       "MM …) must be introduced by an OBJREF of its type."),
    "objref.null": (ERROR, "required reference is 0", "This field must name an object (a task "
                    "always has creds, a namespace set, a sighand …)."),
    # -- loops ---------------------------------------------------------------
    "loop.userns": (ERROR, "user / user_ns / creator chain loops", "user -> user_ns -> creator "
                    "(a user of the parent namespace) must end at the root namespace "
                    "(creator_ref 0) without coming back."),
    "loop.creator-order": (ERROR, "user_ns creator defined after the namespace", "The writer "
                           "saves the creator chain top-down: a USER_NS's creator user is "
                           "always defined before it."),
    "loop.open": (ERROR, "reference to an object still being written", "A record refers to an "
                  "object whose OBJREF came but whose own record has not: the object would "
                  "depend on itself, which no writer can produce."),
    "loop.cycle": (ERROR, "reference cycle", "Objects refer to each other in a circle through "
                   "a forward reference: this order could not have been written."),
    # -- pipes ---------------------------------------------------------------
    "pipe.data-missing": (ERROR, "first pipe end without its data", "The first file that names "
                          "a pipe inode carries the pipe's buffered data (PIPE_BUF, v17 "
                          "FILE_PIPE) right after its FILE record."),
    "pipe.data-duplicate": (ERROR, "pipe data carried twice", "Only the first file naming a "
                            "pipe inode carries the data; a later end does not."),
    "pipe.data-stray": (ERROR, "pipe data without a pipe file", "PIPE_BUF / FILE_PIPE follows "
                        "only a pipe or FIFO FILE record."),
    "pipe.single-end": (NOTE, "pipe with one end in the image", "Only one file refers to this "
                        "pipe inode (the other end was closed or is held outside the image)."),
    "pipe.ends": (WARNING, "pipe ends all of one direction", "Several files share the pipe "
                  "inode but none is a read end, or none a write end."),
    "pipe.mixed": (ERROR, "inode objref used for different things", "One inode objref is named "
                   "as a pipe, a FIFO and/or a shared-memory inode."),
    # -- task tree -----------------------------------------------------------
    "tree.count": (ERROR, "TASK records do not match nr_tasks", "The image holds one TASK "
                   "section per entry of the pids array (TREE.nr_tasks)."),
    "tree.pid": (ERROR, "invalid or duplicate pid", "Each task of the pids array has a "
                 "positive pid of its own."),
    "tree.pid-tag": (ERROR, "pid tag names no PIDS entry", "v23: ckpt_task_pids hold tags "
                     "(objrefs of pid objects, offset .. offset+nr_pids-1), 0 or "
                     "CKPT_PID_ROOT."),
    "tree.parent": (ERROR, "parent not in the image", "Every task but the root has its parent "
                    "among the image's tasks (orphans are reparented inside the tree)."),
    "tree.outside": (NOTE, "root ids outside the image", "The root task's parent, group or "
                     "session is outside the checkpointed tree (0 or not a task of the "
                     "image): restart supplies it."),
    "tree.outside-ids": (WARNING, "group or session outside the image", "A non-root task's "
                         "pgid/sid names no task of the image and is not the root's "
                         "(inherited) one; restart needs a ghost placeholder for it."),
    "tree.tgid": (ERROR, "thread group leader missing", "A thread's tgid must name a task of "
                  "the image that leads its thread group (pid == tgid)."),
    "tree.session": (ERROR, "session leader inconsistent", "A sid naming a task of the image "
                     "names a session leader (its sid is its pid); a session leader leads "
                     "its own process group."),
    "tree.group": (ERROR, "process group leader inconsistent", "A pgid naming a task of the "
                   "image names a group leader (pgid == pid) of the same session."),
    "tree.thread-ids": (ERROR, "thread ids differ from its leader's", "Threads share the "
                        "leader's process group, session and parent."),
    "tree.order": (ERROR, "pids array not in DFS order", "The pids array is a depth-first walk "
                   "from the root: a parent before its children, the threads right after "
                   "their leader; restart creates tasks in that order."),
    "tree.thread-shares": (ERROR, "thread does not share its leader's state", "Threads "
                           "(CLONE_THREAD|CLONE_SIGHAND|CLONE_VM) share the leader's mm, "
                           "sighand and signal objects."),
    "tree.thread-files": (WARNING, "thread has its own files or fs", "The thread does not share "
                          "the leader's file table / fs (possible without CLONE_FILES/CLONE_FS, "
                          "rare)."),
    "tree.signal-shared": (ERROR, "signal object shared across thread groups", "signal_struct "
                           "is per thread group: two processes cannot name the same one."),
    # -- tasks ---------------------------------------------------------------
    "task.comm": (ERROR, "task comm missing or oversized", "TASK is followed by a STRING of at "
                  "most task_comm_len (16) bytes, NUL included."),
    "task.zombie-mm": (ERROR, "zombie with an mm", "A zombie has released its memory: its "
                       "section is TASK + comm only."),
    "task.zombie-records": (ERROR, "zombie with task state", "A zombie's section is TASK + "
                            "comm; restart reads nothing more for it."),
    "task.incomplete": (ERROR, "task section incomplete", "A live task has creds, namespaces, "
                        "objects, thread, restart block and CPU records (and SIGNAL_TASK from "
                        "v18)."),
    "task.order": (ERROR, "task records out of order", "Restart reads a task's records in the "
                   "version's order (docs/format-choices.md: objs-first until v19-rc2, "
                   "cpu-first from v19)."),
    "task.fpu": (ERROR, "CPU_FPU inconsistent", "CPU.used_math announces a CPU_FPU record of "
                 "HEADER_ARCH.xstate_size bytes right after CPU; without used_math there is "
                 "none."),
    # -- memory --------------------------------------------------------------
    "mm.vma-type": (ERROR, "unknown VMA type", "VMA.vma_type is no CKPT_VMA_* of this "
                    "version."),
    "mm.vma-range": (ERROR, "bad VMA range", "vm_start < vm_end, both page aligned."),
    "mm.vma-order": (ERROR, "VMAs unsorted or overlapping", "An mm's VMAs are written in "
                     "address order and do not overlap."),
    "mm.map-count": (ERROR, "map_count differs from the VMAs", "MM.map_count announces the "
                     "number of VMA records that follow."),
    "mm.page-align": (ERROR, "page address not page aligned", "Page buffers list page "
                      "addresses; each is a multiple of the page size."),
    "mm.page-outside": (ERROR, "page outside its VMA", "Every page address of a VMA's contents "
                        "lies in [vm_start, vm_end)."),
    "mm.page-order": (ERROR, "page addresses repeat or go backwards", "Pages are dumped in one "
                      "ascending walk of the VMA: each address is above the previous one."),
    "mm.page-kind": (ERROR, "pages for a VMA that holds none", "vdso, shared file mappings and "
                     "*_SKIP VMAs carry no page list."),
    "mm.page-batch": (ERROR, "page batch does not match its PGARR", "PGARR{nr_pages=n} is "
                      "followed by one BUFFER of n addresses + n page images (n·(W+4096) "
                      "bytes, W = 4 on i386, 8 on x86_64)."),
    "mm.pgarr-terminator": (ERROR, "page list not terminated", "A VMA's contents are PGARR "
                            "batches ended by PGARR{nr_pages=0}."),
    "mm.auxv": (ERROR, "saved_auxv buffer wrong", "MM is followed by a BUFFER of saved_auxv "
                "sized by the header constant (at_vector_size u64s from v19, "
                "mm_saved_auxv_len bytes before)."),
    "mm.context": (ERROR, "MM_CONTEXT missing", "An mm ends with MM_CONTEXT (x86) after its "
                   "VMAs."),
    "mm.ldt": (ERROR, "LDT record inconsistent", "MM_CONTEXT.nldt entries of ldt_entry_size "
               "bytes follow in MM_CONTEXT_LDT."),
    # -- files ---------------------------------------------------------------
    "files.count": (ERROR, "file table count mismatch", "FILE_TABLE.fdt_nfds announces the "
                    "number of FILE_DESC records that follow."),
    "files.fd-dup": (ERROR, "descriptor number used twice", "One file table holds each fd "
                     "number once."),
    "files.fd-range": (ERROR, "negative descriptor number", "fd_descriptor is >= 0."),
    "files.type": (ERROR, "unknown file type", "FILE.f_type is no file type of this version."),
    "files.name-missing": (ERROR, "FILE_NAME missing", "Generic files and FIFOs are followed "
                           "by their FILE_NAME; FS by the cwd and root FILE_NAMEs."),
    "files.name-format": (WARNING, "odd FILE_NAME", "FILE_NAME holds a path ending with NUL."),
    # -- signals -------------------------------------------------------------
    "signal.missing": (ERROR, "signal object not written", "The TASK_OBJS that first names a "
                       "signal objref is followed by SIGNAL and the shared SIGPENDING."),
    "signal.stray": (ERROR, "SIGNAL without a new signal objref", "SIGNAL follows only the "
                     "TASK_OBJS that names its objref first."),
    # -- ERROR records -------------------------------------------------------
    "error.record": (ERROR, "checkpoint ERROR record", "The kernel wrote an ERROR record (with "
                     "a STRING message) because the checkpoint failed; restart aborts on it. "
                     "Reported like `ckptinfo -e`."),
    # -- the checker itself --------------------------------------------------
    "check.limit": (NOTE, "check limit reached", "Findings of one code beyond the per-code "
                    "limit are counted, not listed; tables past their size limit stop "
                    "growing."),
    "check.internal": (ERROR, "checker failure", "The checker hit an internal error on this "
                       "record (a bug in imgtools); the record was skipped."),
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    offset: int | None
    record: str | None
    task: int | None
    message: str

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        off = "-" if self.offset is None else str(self.offset)
        task = "-" if self.task is None else str(self.task)
        return (f"{self.severity:<7} @{off:<10} {self.record or '-':<14} pid {task:<7} "
                f"{self.code}: {self.message}")


def explain(code: str) -> str:
    sev, title, text = CODES[code]
    return f"{code} ({sev}): {title}\n{text}"


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


# -- limits: bounded memory for any input -------------------------------------
PER_CODE = 100              # findings listed per code; more are counted
MAX_OBJECTS = 1 << 19       # objref table entries tracked
MAX_TASKS = 1 << 22         # PID_MAX_LIMIT
MAX_PENDING = 1 << 16       # forward references remembered
MAX_EDGES = 1 << 20         # object -> object references remembered (cycle search)
MAX_NEST = 256              # open OBJREFs at once (real nesting is a handful)
CYCLE_BUDGET = 1 << 21      # nodes visited by the cycle search, in all
TEXT_MAX = 4096             # bytes of a STRING / FILE_NAME looked at (PATH_MAX)
PARSE_MAX = 8 << 20         # a struct record larger than this is not parsed
ADDR_CHUNK = 1 << 16        # page addresses read at a time

PAGE = 4096

OPEN, DONE, RESERVED = 0, 1, 2
# reference flags
REQ, IMPLICIT, FWD_OK, RESERVE, NEG_NONE, CREATOR = 1, 2, 4, 8, 16, 32

# record -> [(field, object kind(s), flags)]
REFS: dict[str, list[tuple[str, object, int]]] = {
    "task_creds": [("cred_ref", "cred", REQ), ("ecred_ref", "cred", REQ)],
    "task_ns": [("ns_objref", "ns", REQ)],
    "cred": [("user_ref", "user", REQ), ("groupinfo_ref", "groupinfo", REQ),
             ("sec_ref", ("security", "security_ptr"), NEG_NONE)],
    "user": [("userns_ref", "user_ns", REQ)],
    "user_ns": [("creator_ref", "user", CREATOR)],
    "ns": [("uts_objref", "uts_ns", REQ), ("ipc_objref", "ipc_ns", REQ),
           ("net_objref", "net_ns", 0)],
    "file_desc": [("fd_objref", "file", REQ)],
    "file": [("f_credref", "cred", NEG_NONE), ("f_secref", ("security", "security_ptr"),
                                               NEG_NONE)],
    "mm": [("exe_objref", "file", 0)],
    "signal": [("tty_objref", "tty", 0)],
    "tty": [("link_objref", "tty", FWD_OK), ("file_objref", "file", RESERVE)],
}
# Kinds whose every referrer is parsed, so an unused one is worth a warning.
USE_TRACKED = {"cred", "user", "user_ns", "groupinfo", "ns", "uts_ns", "ipc_ns", "file_table",
               "file", "mm", "fs", "sighand"}
# Records that end an open file table / mm (they never nest inside one).
TABLE_CLOSERS = {"task", "task_objs", "task_creds", "task_ns", "file_table", "mm", "sighand",
                 "fs", "tail", "thread", "cpu", "restart_block", "signal_task", "signal",
                 "vma", "mm_context"}
MM_CLOSERS = {"task", "task_objs", "task_creds", "task_ns", "file_table", "mm", "sighand",
              "fs", "tail", "thread", "cpu", "restart_block", "signal_task", "signal",
              "file_desc"}
MILESTONES = {
    "objs_first": ("task_creds", "task_ns", "task_objs", "thread", "restart_block", "cpu",
                   "signal_task"),
    "cpu_first": ("thread", "restart_block", "cpu", "task_creds", "task_ns", "task_objs",
                  "signal_task"),
}
HEAD_ORDER = ("header", "header_arch", "container", "lsm_info", "pids", "tree")
VMA_PAGES = {"anon": "yes", "file": "yes", "shm_anon": "first", "shm_ipc": "maybe",
             "hugetlb": "opaque"}
# x86 kernel values of ckpt_const.
CONSTS = {"task_comm_len": 16, "signal_nsig": 64, "uts_sysname_len": 65,
          "uts_nodename_len": 65, "uts_release_len": 65, "uts_version_len": 65,
          "uts_machine_len": 65, "uts_domainname_len": 65, "rlimit_nlimits": 16,
          "n_tty_buf_size": 4096, "tty_termios_ncc": 8, "tty_termios_nccs": 19}
_PID_ENTRY = struct.Struct("<Ii")
_HEAD = struct.Struct("<QHHHHH")


class _Sink:
    """Findings, at most PER_CODE per code; the rest counted."""

    def __init__(self, per_code: int = PER_CODE):
        self.items: list[Finding] = []
        self.per_code = per_code
        self.count: dict[str, int] = {}

    def add(self, code: str, offset, record, task, message: str) -> None:
        n = self.count.get(code, 0) + 1
        self.count[code] = n
        if n <= self.per_code:
            self.items.append(Finding(code, CODES[code][0], offset, record, task, message))

    def close(self) -> list[Finding]:
        for code, n in self.count.items():
            if n > self.per_code and code != "check.limit":
                self.items.append(Finding("check.limit", NOTE, None, None, None,
                                          f"{n - self.per_code} more {code} findings not "
                                          f"listed ({n} in all)"))
        return self.items


class _Obj:
    __slots__ = ("kind", "state", "offset", "used", "how")

    def __init__(self, kind, state, offset, how):
        self.kind, self.state, self.offset, self.used, self.how = kind, state, offset, False, how


class _Task:
    __slots__ = ("index", "pid", "tgid", "zombie", "offset", "milestones", "last", "objs",
                 "zombie_noted")

    def __init__(self, index, pid, tgid, zombie, offset):
        self.index, self.pid, self.tgid, self.zombie, self.offset = \
            index, pid, tgid, zombie, offset
        self.milestones: set[str] = set()
        self.last = -1
        self.objs: dict | None = None
        self.zombie_noted = False


class _Mm:
    __slots__ = ("ref", "map_count", "nvma", "prev_end", "offset", "context", "ldt")

    def __init__(self, ref, map_count, offset):
        self.ref, self.map_count, self.offset = ref, map_count, offset
        self.nvma, self.prev_end, self.context, self.ldt = 0, None, False, None


class _Vma:
    __slots__ = ("start", "end", "kind", "holds", "loop", "last_addr", "offset")

    def __init__(self, start, end, kind, holds, offset):
        self.start, self.end, self.kind, self.holds, self.offset = start, end, kind, holds, offset
        self.loop = "expected" if holds == "yes" else "none"
        self.last_addr = -1


class _Checker:
    def __init__(self, reader: ImageReader, sink: _Sink):
        self.r = reader
        self.abi = reader.abi
        self.sink = sink
        self.traits = self.abi.traits
        self.obj_kind_of_record = {rec: kind for kind, rec in self.abi.obj_records.items()}
        self.objs: dict[int, _Obj] = {}
        self.objs_full = False
        self.pending: list[list] = []          # [kind, ref, offset, defines(bool)]
        self.fwd: dict[int, list[tuple]] = {}  # ref -> [(kind, offset, record, task, code)]
        self.nfwd = 0
        self.edges: dict[int, list[int]] = {}
        self.nedges = 0
        self.fwd_edges: list[tuple] = []
        self.creators: dict[int, tuple[int, int]] = {}   # user_ns ref -> (creator, offset)
        self.user_ns_of: dict[int, int] = {}              # user ref -> user_ns ref
        self.inode_use: dict[int, str] = {}
        self.pipe_ends: dict[int, list] = {}             # inode -> [n, dirs set, offset, fifo]
        self.signal_tgid: dict[int, int] = {}
        self.leader_objs: dict[int, dict] = {}
        self.expect: list[tuple[str, object, int]] = []  # (kind, arg, offset announcing)
        self.rec: Record | None = None
        self.name = ""
        # head and tree
        self.head_idx = 0
        self.head_seen: set[str] = {"header"}
        self.in_tasks = False
        self.rows: list[tuple] = []
        self.pid_index: dict[int, int] = {}
        self.ntree: int | None = None
        self.pid_entries: list[int] = []
        self.pids_offset = 1
        self.ntasks = 0
        self.task: _Task | None = None
        self.zombies: set[int] = set()
        # contexts
        self.table = None         # [ref, nfds, count, fds set, offset]
        self.mm: _Mm | None = None
        self.vma: _Vma | None = None
        self.shm_pages = False
        self.after_pipe_file = None   # (inode ref, first use)
        self.err_at: int | None = None
        self.aborted = False
        self.broken = False
        self.tail_seen = False
        self.tail_end = 0
        self.nrecords = 0
        self.xstate_size = None
        self.consts = {}
        self.pid_null = self.traits.get("pid_null", -1)
        self.pid_root = getattr(self.abi.module, "CKPT_PID_ROOT", None) \
            if self.traits["pids_model"] == "pids" else None

    # -- findings -----------------------------------------------------------
    def add(self, code, message, offset=None, record=None, task="cur"):
        if offset is None and self.rec is not None:
            offset = self.rec.offset
        if record is None and self.rec is not None:
            record = self.name.upper()
        if task == "cur":
            task = self.task.pid if self.task is not None else None
        self.sink.add(code, offset, record, task, message)

    # -- driving ------------------------------------------------------------
    def run(self) -> None:
        it = self.r.records()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except ImageError as e:
                self.stream_error(e)
                break
            except (struct.error, ValueError) as e:
                # reader.py's v17 FILE_PIPE look-ahead on a payload under 4 bytes
                self.broken = True
                self.add("record.parse", f"the record before byte {self.r.src.pos} cannot be "
                         f"framed past: {e}", offset=None, record="-")
                break
            try:
                self.step(rec)
            except ImageError as e:         # a streamed payload cut short
                self.stream_error(e)
                break
            except Exception as e:  # noqa: BLE001 - a checker bug must not end the check
                self.add("check.internal", f"{type(e).__name__}: {e}")
            if self.tail_seen:
                self.after_tail(it)
                break
        try:
            self.finish()
        except Exception as e:  # noqa: BLE001
            self.add("check.internal", f"at end of stream: {type(e).__name__}: {e}",
                     offset=None, record=None)

    def stream_error(self, e: ImageError) -> None:
        self.broken = True
        self.add(_stream_code(e), e.message, offset=e.offset, record=e.record or "-")

    def after_tail(self, it) -> None:
        try:
            rec = next(it)
        except StopIteration:
            return
        except ImageError as e:
            size = self.r.src.size
            extra = f"{size - self.tail_end} bytes" if size is not None else "bytes"
            self.add("framing.after-tail", f"{extra} of garbage follow TAIL ({e.message})",
                     offset=self.tail_end, record="-", task=None)
            return
        self.add("framing.after-tail", f"a {self.r.name_of(rec).upper()} record (len "
                 f"{rec.len}) follows TAIL", offset=rec.offset,
                 record=self.r.name_of(rec).upper(), task=None)

    def step(self, rec: Record) -> None:
        self.nrecords += 1
        name = self.r.name_of(rec)
        self.rec, self.name = rec, name
        if self.err_at is not None:
            off, self.err_at = self.err_at, None
            if name == "string":
                data = rec.read(TEXT_MAX)
                msg = data[1:] if data[:1] == b"\0" else data
                text = msg.split(b"\0", 1)[0].decode("utf-8", "replace")
                self.add("error.record", f"checkpoint failed: {text}", offset=off,
                         record="ERROR")
                return
            self.add("error.record", "checkpoint failed (no message STRING follows)",
                     offset=off, record="ERROR")
        if name == "error":
            self.aborted = True
            self.err_at = rec.offset
            return
        unknown = rec.type != PIPE_DATA and self.abi.type_name(rec.type) is None
        if unknown:
            self.add("record.unknown", f"type {rec.type} (len {rec.len}) is no record type of "
                     f"{self.abi.name}")
        matched = self.gate(name, rec)
        if unknown:
            return
        value = None
        st = self.abi.struct(name)
        if st is not None:
            if rec.size > PARSE_MAX:
                self.add("record.size", f"len {rec.len} is far too large for a "
                         f"{name.upper()} record; not parsed")
                value = None
            else:
                try:
                    value = self.r.parse(rec)
                except FramingError:
                    raise                   # the payload itself is cut short
                except ImageError as e:
                    self.add("record.parse", e.message)
                    value = None
                if value is not None and "_tail" in value and self.size_checked(name, value):
                    self.add("record.size", f"{len(value['_tail'])} bytes past the end of the "
                             f"{name.upper()} struct (len {rec.len})")
            if value is None:
                self.on_unparsed(name, rec)
                return
        handler = getattr(self, "on_" + name, None)
        if handler is not None:
            handler(rec, value, matched)

    def size_checked(self, name, v) -> bool:
        if name == "file":
            ft = self.abi.file_type_names.get(v.f_type)
            return ft in ("generic", "pipe", "fifo", "socket", "tty", "eventfd", "ignore")
        return True

    # -- what the next record must be -----------------------------------------
    _MATCH = {"comm": ("string",), "file_name": ("file_name",),
              "pipe_data": ("pipe_buf", "file_pipe"), "auxv": ("buffer",),
              "pages": ("buffer",), "shm_pages": ("buffer",), "signal": ("signal",),
              "shared_pending": ("sigpending",), "ldt": ("mm_context_ldt",),
              "fpu": ("cpu_fpu",), "uts": ("buffer",), "pid_entries": ("buffer",),
              "task_pids": ("buffer",), "vpids": ("buffer",), "ipc_bytes": ("buffer",),
              "pipe_raw": ("pipe_data",)}
    _MISS = {"comm": "task.comm", "file_name": "files.name-missing",
             "pipe_data": "pipe.data-missing", "auxv": "mm.auxv", "pages": "mm.page-batch",
             "shm_pages": "mm.page-batch", "signal": "signal.missing",
             "shared_pending": "signal.missing", "ldt": "mm.ldt", "fpu": "task.fpu",
             "uts": "head.sequence", "pid_entries": "head.pids", "task_pids": "head.pids",
             "vpids": "head.vpids", "ipc_bytes": None, "pipe_raw": None}
    _WHAT = {"comm": "the comm STRING after TASK", "file_name": "a FILE_NAME",
             "pipe_data": "the pipe data after the first end's FILE",
             "auxv": "the saved_auxv BUFFER after MM", "pages": "the page BUFFER after PGARR",
             "shm_pages": "the page BUFFER after PGARR", "signal": "SIGNAL after the "
             "TASK_OBJS that first names it", "shared_pending": "the shared SIGPENDING after "
             "SIGNAL", "ldt": "MM_CONTEXT_LDT after MM_CONTEXT",
             "fpu": "CPU_FPU after a CPU with used_math", "uts": "a uts BUFFER after HEADER",
             "pid_entries": "the pid BUFFER after PIDS", "task_pids": "the pids BUFFER after "
             "TREE", "vpids": "the vpids BUFFER", "ipc_bytes": "", "pipe_raw": ""}

    def gate(self, name: str, rec: Record):
        """Match the record against what the previous ones announced, and close the
        contexts it cannot belong to.  Returns the matched expectation or None."""
        matched = None
        while self.expect:
            kind, arg, off = self.expect[0]
            if name in self._MATCH[kind]:
                matched = self.expect.pop(0)
                break
            self.expect.pop(0)
            code = self._MISS[kind]
            if code is not None:
                self.add(code, f"expected {self._WHAT[kind]} (announced at byte {off}), "
                         f"found {name.upper()}")
        # pipe data belongs only right after a pipe file (and its name)
        if self.after_pipe_file is not None and name not in ("file_name", "pipe_buf",
                                                             "file_pipe", "pipe_data"):
            self.after_pipe_file = None
        # an open page list takes only PGARR and its BUFFERs
        v = self.vma
        if v is not None and v.loop in ("expected", "open") and not (
                name == "pgarr" or (name == "buffer" and matched is not None) or
                (v.holds == "opaque")):
            if v.loop == "expected":
                self.add("mm.pgarr-terminator", f"the VMA at byte {v.offset} "
                         f"({v.start:#x}-{v.end:#x}, {v.kind}) has no PGARR list; found "
                         f"{name.upper()}")
            else:
                self.add("mm.pgarr-terminator", f"the page list of the VMA at byte {v.offset} "
                         f"ends without PGARR{{nr_pages=0}}; found {name.upper()}")
            v.loop = "closed"
        if v is not None and v.holds == "opaque" and (name in MM_CLOSERS or
                                                      name in ("vma", "mm_context")):
            v.loop = "closed"
        if self.shm_pages and name not in ("pgarr", "buffer"):
            self.shm_pages = False
        if self.table is not None and name in TABLE_CLOSERS:
            self.close_table()
        if self.mm is not None and name in MM_CLOSERS:
            self.close_mm()
        if self.pending and name in ("task", "tail", "task_creds", "task_ns", "task_objs",
                                     "thread", "cpu", "restart_block", "signal_task"):
            self.unbound_all()
        return matched

    # -- objrefs ------------------------------------------------------------
    def define(self, ref: int, kind: str, state: int, how: str, offset: int) -> _Obj | None:
        if len(self.objs) >= MAX_OBJECTS:
            if not self.objs_full:
                self.objs_full = True
                self.add("check.limit", f"more than {MAX_OBJECTS} objects: later ones are not "
                         f"tracked")
            return None
        o = _Obj(kind, state, offset, how)
        self.objs[ref] = o
        waiting = self.fwd.pop(ref, None)
        if waiting:
            for (want, off, record, task, code, _src) in waiting:
                o.used = True
                if code is not None:
                    self.add(code, f"{record} refers to objref {ref} ({kind}), defined only "
                             f"later at byte {offset}", offset=off, record=record, task=task)
                if not self.kind_ok(kind, want):
                    self.add("objref.type", f"objref {ref} is {_a(kind)}, {record} wants "
                             f"{_kinds(want)}", offset=off, record=record, task=task)
        return o

    @staticmethod
    def kind_ok(kind, want) -> bool:
        return kind == want if isinstance(want, str) else kind in want

    def ref(self, want, ref: int, field: str, flags: int = 0, src: int | None = None):
        """Check a reference; returns the object (or None)."""
        rname = self.name.upper()
        if ref == 0 or (flags & NEG_NONE and ref < 0):
            if flags & REQ:
                self.add("objref.null", f"{rname}.{field} is 0 but must name {_a(_kinds(want))}")
            return None
        if ref < 0:
            self.add("objref.bad-number", f"{rname}.{field} = {ref}")
            return None
        o = self.objs.get(ref)
        if o is None:
            if flags & IMPLICIT:
                return self.define(ref, want, DONE, "implicit", self.rec.offset)
            if flags & RESERVE:
                return self.define(ref, want, RESERVED, "reserved", self.rec.offset)
            if self.objs_full:
                return None
            if self.nfwd < MAX_PENDING:
                self.nfwd += 1
                code = "loop.creator-order" if flags & CREATOR else "objref.forward"
                if flags & FWD_OK:
                    code = None
                task = self.task.pid if self.task else None
                self.fwd.setdefault(ref, []).append(
                    (want, self.rec.offset, rname, task, code, src))
                if src is not None and not flags & FWD_OK:
                    self.edge(src, ref, forward=True)
            return None
        o.used = True
        if not self.kind_ok(o.kind, want):
            self.add("objref.type", f"{rname}.{field} = {ref} is {_a(o.kind)} (defined at byte "
                     f"{o.offset}), not {_a(_kinds(want))}")
            return None
        if o.state == OPEN and not flags & FWD_OK:
            code = "loop.userns" if flags & CREATOR else "loop.open"
            self.add(code, f"{rname}.{field} = {ref} names the {o.kind} whose definition "
                     f"(OBJREF at byte {o.offset}) is still open: it would contain itself")
        if src is not None:
            self.edge(src, ref)
        return o

    def edge(self, src: int, dst: int, forward: bool = False) -> None:
        if forward:
            if len(self.fwd_edges) < MAX_PENDING:
                task = self.task.pid if self.task else None
                self.fwd_edges.append((src, dst, self.rec.offset, self.name.upper(), task))
        if self.nedges < MAX_EDGES:
            self.nedges += 1
            self.edges.setdefault(src, []).append(dst)

    def refs_of(self, name: str, v, src: int | None) -> None:
        for field, want, flags in REFS.get(name, ()):
            if field in v:
                self.ref(want, v[field], field, flags, src)

    def bind(self, name: str, rec: Record):
        """An object record: pair it with its OBJREF; returns its objref or None."""
        kind = self.obj_kind_of_record.get(name)
        if kind is None:
            return None
        for i in range(len(self.pending) - 1, -1, -1):
            if self.pending[i][0] == kind:
                for p in self.pending[i + 1:]:
                    self.add("objref.unbound", f"OBJREF {p[1]} ({p[0]}) at byte {p[2]} is not "
                             f"followed by its {p[0].upper()} record")
                    self.drop_open(p)
                k, ref, off, defines = self.pending[i]
                del self.pending[i:]
                o = self.objs.get(ref)
                if defines and o is not None:
                    o.state = DONE
                return ref
        self.add("objref.missing", f"{name.upper()} record not introduced by an OBJREF of "
                 f"type {kind}")
        return None

    def drop_open(self, p) -> None:
        o = self.objs.get(p[1])
        if p[3] and o is not None and o.state == OPEN:
            o.state = DONE      # reported once; do not report every later reference

    def unbound_all(self) -> None:
        for p in self.pending:
            self.add("objref.unbound", f"OBJREF {p[1]} ({p[0]}) at byte {p[2]} is not "
                     f"followed by its {p[0].upper()} record")
            self.drop_open(p)
        self.pending.clear()

    def on_objref(self, rec, v, matched):
        kind = self.abi.obj_names.get(v.objtype)
        if kind is None or kind == "ignore":
            self.add("objref.bad-type", f"objtype {v.objtype} is no object type of "
                     f"{self.abi.name}" if kind is None else "OBJREF of type OBJ_IGNORE")
            return
        ref = v.objref
        if ref <= 0:
            self.add("objref.bad-number", f"OBJREF defines objref {ref}")
            return
        has_record = kind in self.abi.obj_records
        o = self.objs.get(ref)
        defines = False
        if o is not None:
            if o.state == RESERVED and o.kind == kind:
                o.state, o.how, o.offset = (OPEN if has_record else DONE), "objref", rec.offset
                defines = True
            else:
                self.add("objref.duplicate", f"objref {ref} ({kind}) was already defined as "
                         f"{_a(o.kind)} at byte {o.offset}")
        else:
            defines = self.define(ref, kind, OPEN if has_record else DONE, "objref",
                                  rec.offset) is not None
        if has_record:
            if len(self.pending) >= MAX_NEST:
                p = self.pending.pop(0)
                self.add("objref.unbound", f"OBJREF {p[1]} ({p[0]}) at byte {p[2]} is not "
                         f"followed by its {p[0].upper()} record ({MAX_NEST} OBJREFs open)")
                self.drop_open(p)
            self.pending.append([kind, ref, rec.offset, defines])

    def on_unparsed(self, name: str, rec: Record) -> None:
        """Bookkeeping for a record whose payload did not parse."""
        if name in self.obj_kind_of_record:
            self.bind(name, rec)
        if name == "task":
            self.start_task(rec, None)
        elif name == "mm":
            self.mm = None
            self.vma = None
        elif name == "tail" and rec.size <= PARSE_MAX:
            self.close_task()
            self.task = None
            self.tail_seen = True
            self.tail_end = rec.offset + rec.len

    # -- head ---------------------------------------------------------------
    def head_step(self, name: str) -> None:
        if self.in_tasks:
            self.add("head.sequence", f"{name.upper()} after the first TASK")
            return
        idx = HEAD_ORDER.index(name)
        if idx <= self.head_idx:
            self.add("head.sequence", f"{name.upper()} repeated or out of order in the head")
            return
        self.head_idx = idx
        self.head_seen.add(name)

    def head_done(self, where: str) -> None:
        if self.in_tasks:
            return
        self.in_tasks = True
        need = ["header_arch", "tree"]
        if self.traits["container"]:
            need.append("container")
        if self.traits["pids_model"] == "pids":
            need.append("pids")
        missing = [n.upper() for n in need if n not in self.head_seen]
        if missing:
            self.add("head.sequence", f"the head lacks {', '.join(missing)} before {where}")

    def on_header(self, rec, v, matched):
        if self.nrecords > 1:
            self.add("head.sequence", "a second HEADER record")
            return
        h = self.r.header
        abi = self.abi
        if self.r.rev != abi.rev:
            self.add("header.rev", f"rev {self.r.rev} but checked as {abi.name} (rev {abi.rev})",
                     offset=rec.offset + 24)
        if h.arch_id != abi.arch_id:
            names = {n: a for a, n in abi.arch_ids.items()}
            self.add("header.arch", f"arch_id {h.arch_id} "
                     f"({names.get(h.arch_id, 'unknown in ' + abi.name)}) but checked as "
                     f"{abi.arch} (arch_id {abi.arch_id} in {abi.name})", offset=rec.offset + 16)
        if abi.arch == "x86_64" and abi.name in ("v17", "v18", "v19-rc1"):
            self.add("header.arch-anachronism", f"x86_64 {abi.name} image: x86_64 checkpoints "
                     f"exist only from v19-rc2", offset=rec.offset + 16)
        c = {k: x for k, x in h.constants.items() if not k.startswith("_")}
        self.consts = c
        bad = [f"{k}={c[k]} (expected {want})" for k, want in CONSTS.items()
               if k in c and c[k] != want]
        if any(h.constants.get("_pad", b"")):
            bad.append("non-zero padding after uts_domainname_len")
        aux = c.get("at_vector_size", c.get("mm_saved_auxv_len"))
        if aux is not None and (aux == 0 or aux % (2 if "at_vector_size" in c
                                                   else 2 * abi.auxv_word)):
            bad.append(f"{'at_vector_size' if 'at_vector_size' in c else 'mm_saved_auxv_len'}"
                       f"={aux} is not a whole number of auxv pairs")
        if bad:
            self.add("header.const", "; ".join(bad), offset=rec.offset + 32)
        known, m = 0, abi.module
        while m is not None:
            known |= getattr(m, "CHECKPOINT_SUBTREE", 0) | getattr(m, "CHECKPOINT_NETNS", 0)
            m = m.BASE
        if h.uflags & ~known:
            self.add("header.uflags", f"uflags {h.uflags:#x} has unknown bits "
                     f"{h.uflags & ~known:#x}", offset=rec.offset + 64)
        self.expect += [("uts", i, rec.offset) for i in range(3)]

    def on_buffer(self, rec, v, matched):
        if matched is None:
            v = self.vma
            if v is not None and v.holds != "opaque" and v.loop in ("open", "expected"):
                self.add("mm.page-batch", "a BUFFER in a page list without its PGARR")
            return
        kind, arg, _ = matched
        getattr(self, "buffer_" + kind)(rec, arg)

    def buffer_uts(self, rec, i):
        key = ("uts_release_len", "uts_version_len", "uts_machine_len")[i]
        want = self.consts.get(key)
        if want and rec.size != want:
            self.add("header.const-mismatch", f"uts BUFFER {i + 1} holds {rec.size} bytes, "
                     f"{key} says {want}")

    def on_header_arch(self, rec, v, matched):
        self.head_step("header_arch")
        self.xstate_size = v.get("xstate_size")

    def on_container(self, rec, v, matched):
        self.head_step("container")

    def on_lsm_info(self, rec, v, matched):
        self.head_step("lsm_info")

    def on_pids(self, rec, v, matched):
        self.head_step("pids")
        self.pids_offset = v.offset
        self.expect.append(("pid_entries", v.nr_pids, rec.offset))

    def buffer_pid_entries(self, rec, count):
        if rec.size > 64 << 20:
            self.add("head.pids", f"pid BUFFER of {rec.size} bytes is too large to check")
            return
        data = rec.data()
        pos, entries = 0, []
        n = len(data)
        for i in range(count):
            if pos + 8 > n:
                self.add("head.pids", f"PIDS announces {count} pid entries, the BUFFER holds "
                         f"{i}")
                break
            depth, first = _PID_ENTRY.unpack_from(data, pos)
            if pos + 8 + 4 * depth > n:
                self.add("head.pids", f"pid entry {i} (depth {depth}) runs past the BUFFER")
                break
            entries.append(first)
            pos += 8 + 4 * depth
            if len(entries) >= MAX_TASKS:
                break
        else:
            if pos != n:
                self.add("head.pids", f"{n - pos} bytes after the {count} pid entries")
        self.pid_entries = entries
        # pid objects take objrefs offset .. offset+nr_pids-1
        off = self.pids_offset
        if off <= 0 and entries:
            self.add("head.pids", f"PIDS.offset {off}: pid objrefs must be positive")
            return
        for i in range(len(entries)):
            if off + i in self.objs:
                self.add("objref.duplicate", f"pid objref {off + i} already defined")
            elif self.define(off + i, "pid", DONE, "pids", rec.offset) is None:
                break

    def on_tree(self, rec, v, matched):
        self.head_step("tree")
        n = v.nr_tasks
        if n < 0:
            self.add("head.pids", f"TREE.nr_tasks is {n}")
            n = 0
        self.ntree = n
        self.expect.append(("task_pids", n, rec.offset))

    def buffer_task_pids(self, rec, count):
        model = self.traits["pids_model"]
        st = self.abi.struct("ckpt_task_pids" if model == "pids" else "ckpt_pids")
        size = st.sizeof()
        if rec.size != count * size:
            self.add("head.pids", f"pids BUFFER of {rec.size} bytes for {count} tasks of "
                     f"{size} bytes ({count * size})")
        rows_n = min(count, rec.size // size, MAX_TASKS)
        if rec.size > 64 << 20:
            rows_n = 0
        data = rec.data() if rows_n else b""
        fmt = struct.Struct("<5i" + ("I" if model == "pids" else "i"))
        nvpids = 0
        rows = []
        for i in range(rows_n):
            vals = fmt.unpack_from(data, i * size)
            ids = list(vals[:5])
            if model == "pids":
                ids = [self.pid_of_tag(t, i) for t in ids]
            if model == "tree_depth":
                nvpids += max(vals[5], 0)
            rows.append(tuple(ids))
        self.rows = rows
        if nvpids:
            self.expect.insert(0, ("vpids", nvpids, rec.offset))
        self.check_tree(rec)

    def buffer_vpids(self, rec, count):
        if rec.size != 4 * count:
            self.add("head.vpids", f"vpids BUFFER of {rec.size} bytes for Σdepth = {count} "
                     f"({4 * count} bytes)")

    def pid_of_tag(self, tag: int, i: int):
        if tag == 0:
            return 0
        if tag < 0:
            return tag              # CKPT_PID_ROOT / CKPT_PID_NULL: markers
        j = tag - self.pids_offset
        if 0 <= j < len(self.pid_entries):
            o = self.objs.get(tag)
            if o is not None:
                o.used = True
            return self.pid_entries[j]
        self.add("tree.pid-tag", f"task {i}: tag {tag} names no pid entry (offset "
                 f"{self.pids_offset}, {len(self.pid_entries)} entries)", task=None)
        return None

    # -- task tree ----------------------------------------------------------
    def check_tree(self, rec) -> None:
        rows = self.rows
        index = self.pid_index
        for i, (pid, *_) in enumerate(rows):
            if pid is None:
                continue
            if pid <= 0:
                self.add("tree.pid", f"task {i} has pid {pid}", task=pid)
            elif pid in index:
                self.add("tree.pid", f"pid {pid} appears twice (tasks {index[pid]} and {i})",
                         task=pid)
            else:
                index[pid] = i
        if not rows:
            return
        markers = {0, self.pid_null, self.pid_root, None}
        root = rows[0]

        def inside(x):
            return x in index

        for i, (pid, ppid, tgid, pgid, sid) in enumerate(rows):
            if pid is None:
                continue
            thread = tgid is not None and tgid != pid and tgid not in markers
            if i == 0:
                outs = [f"{k} {x}" for k, x in (("ppid", ppid), ("pgid", pgid), ("sid", sid))
                        if not inside(x)]
                if outs:
                    self.add("tree.outside", f"root task: {', '.join(outs)} outside the image",
                             task=pid)
            if thread:
                li = index.get(tgid)
                if li is None:
                    self.add("tree.tgid", f"thread {pid}: tgid {tgid} is no task of the image",
                             task=pid)
                else:
                    lp, lpp, ltg, lpg, lsid = rows[li]
                    if ltg != lp:
                        self.add("tree.tgid", f"thread {pid}: its leader {tgid} is itself a "
                                 f"thread of {ltg}", task=pid)
                    diff = [f"{k} {a} vs {b}" for k, a, b in (("pgid", pgid, lpg),
                                                                ("sid", sid, lsid)) if a != b]
                    if ppid not in (lpp, lp):
                        diff.append(f"ppid {ppid} vs {lpp}")
                    if diff:
                        self.add("tree.thread-ids", f"thread {pid} of {tgid}: "
                                 f"{'; '.join(diff)}", task=pid)
            elif i > 0 and not inside(ppid):
                self.add("tree.parent", f"task {pid}: parent {ppid} is no task of the image",
                         task=pid)
            elif tgid in markers and tgid is not None:
                self.add("tree.tgid", f"task {pid}: tgid {tgid}", task=pid)
            if i > 0:
                for k, x, rx in (("pgid", pgid, root[3]), ("sid", sid, root[4])):
                    if not inside(x) and x not in markers and x != rx:
                        self.add("tree.outside-ids", f"task {pid}: {k} {x} is neither a task "
                                 f"of the image nor the root's {k} {rx}", task=pid)
            if inside(sid):
                sl = rows[index[sid]]
                if sl[4] != sl[0]:
                    self.add("tree.session", f"task {pid}: sid {sid} names a task whose own "
                             f"sid is {sl[4]} (not a session leader)", task=pid)
            if sid == pid and pgid != pid and not thread:
                self.add("tree.session", f"session leader {pid} is in process group {pgid}, "
                         f"not its own", task=pid)
            if inside(pgid):
                gl = rows[index[pgid]]
                if gl[3] != gl[0]:
                    self.add("tree.group", f"task {pid}: pgid {pgid} names a task whose own "
                             f"pgid is {gl[3]} (not a group leader)", task=pid)
                elif gl[4] != sid:
                    self.add("tree.group", f"task {pid} (sid {sid}) is in group {pgid} of "
                             f"session {gl[4]}", task=pid)
        # DFS order: a stack of the ancestors of the current task
        stack: list[int] = []
        on_stack: set[int] = set()
        for i, (pid, ppid, tgid, _, _) in enumerate(rows):
            if pid is None:
                continue
            if i == 0:
                stack, on_stack = [pid], {pid}
                continue
            thread = tgid is not None and tgid != pid and tgid not in markers
            if thread:
                prev = rows[i - 1]
                if tgid in index and prev[0] != tgid and prev[2] != tgid:
                    self.add("tree.order", f"thread {pid} does not come right after its "
                             f"leader {tgid} (after task {prev[0]})", task=pid)
                continue
            if not inside(ppid):
                continue
            if ppid in on_stack:
                while stack[-1] != ppid:
                    on_stack.discard(stack.pop())
                stack.append(pid)
                on_stack.add(pid)
            else:
                self.add("tree.order", f"task {pid} comes after tasks outside its parent "
                         f"{ppid}'s subtree (parent at index {index[ppid]})", task=pid)

    # -- tasks --------------------------------------------------------------
    def start_task(self, rec, v) -> None:
        self.close_task()
        self.head_done("the first TASK")
        i = self.ntasks
        self.ntasks += 1
        pid = tgid = None
        if i < len(self.rows):
            pid, _, tgid, _, _ = self.rows[i]
        zombie = bool(v.get("exit_state")) if v is not None else False
        self.task = _Task(i, pid, tgid, zombie, rec.offset)
        if zombie and pid is not None:
            self.zombies.add(pid)
        self.expect.append(("comm", None, rec.offset))

    def close_task(self, at_end: bool = False) -> None:
        t = self.task
        if t is None or t.zombie or (at_end and (self.aborted or self.broken)):
            return
        want = [m for m in MILESTONES[self.traits["task_order"]]
                if m != "signal_task" or self.traits["has_signal"]]
        missing = [m.upper() for m in want if m not in t.milestones]
        if missing:
            self.add("task.incomplete", f"task section at byte {t.offset} lacks "
                     f"{', '.join(missing)}", offset=t.offset, record="TASK", task=t.pid)

    def on_task(self, rec, v, matched):
        self.start_task(rec, v)

    def on_string(self, rec, v, matched):
        if matched is None:
            return
        data = rec.read(TEXT_MAX)
        limit = self.consts.get("task_comm_len") or 16
        if rec.size > limit:
            self.add("task.comm", f"comm STRING of {rec.size} bytes, task_comm_len is {limit}")
        elif b"\0" not in data:
            self.add("task.comm", "comm STRING without a terminating NUL")

    def task_record(self, name: str) -> bool:
        """Bookkeeping for a per-task state record; False if it has no place."""
        t = self.task
        if t is None:
            self.add("record.stray", f"{name.upper()} before the first TASK")
            return False
        if t.zombie:
            if name == "task_objs":
                return True
            if not t.zombie_noted:
                t.zombie_noted = True
                self.add("task.zombie-records", f"zombie task (section at byte {t.offset}) "
                         f"followed by {name.upper()}")
            return False
        order = MILESTONES[self.traits["task_order"]]
        if name in order:
            idx = order.index(name)
            if name in t.milestones:
                self.add("task.order", f"a second {name.upper()} in one task section")
            elif idx < t.last:
                self.add("task.order", f"{name.upper()} after {order[t.last].upper()}: "
                         f"{self.abi.name} writes {' '.join(o.upper() for o in order)}")
            t.milestones.add(name)
            t.last = max(t.last, idx)
        return True

    def on_task_creds(self, rec, v, matched):
        if self.task_record("task_creds"):
            self.refs_of("task_creds", v, None)

    def on_task_ns(self, rec, v, matched):
        if self.task_record("task_ns"):
            self.refs_of("task_ns", v, None)

    def on_task_objs(self, rec, v, matched):
        if not self.task_record("task_objs"):
            return
        t = self.task
        objs = {k[:-7]: x for k, x in v.items() if k.endswith("_objref")}
        if t.zombie:
            if objs.get("mm"):
                self.add("task.zombie-mm", f"zombie task names mm objref {objs['mm']}")
            elif not t.zombie_noted:
                t.zombie_noted = True
                self.add("task.zombie-records", "zombie task followed by TASK_OBJS")
            return
        kinds = {"files": "file_table", "mm": "mm", "fs": "fs", "sem_undo": "sem_undo",
                 "sighand": "sighand", "signal": "signal"}
        for key, ref in objs.items():
            flags = REQ if key == "sighand" else 0
            if key == "signal":
                flags = REQ | IMPLICIT
                if ref > 0 and ref not in self.objs:
                    self.expect += [("signal", ref, rec.offset),
                                    ("shared_pending", ref, rec.offset)]
            self.ref(kinds.get(key, key), ref, f"{key}_objref", flags)
        t.objs = objs
        sig = objs.get("signal")
        if sig and t.tgid in self.pid_index:
            first = self.signal_tgid.setdefault(sig, t.tgid)
            if first != t.tgid:
                self.add("tree.signal-shared", f"signal objref {sig} is named by thread groups "
                         f"{first} and {t.tgid}")
        if t.pid is None or t.zombie:
            return
        if t.tgid == t.pid:
            if len(self.leader_objs) < MAX_TASKS:
                self.leader_objs[t.pid] = objs
        elif t.tgid is not None and t.tgid not in self.zombies:
            lo = self.leader_objs.get(t.tgid)
            if lo is None:
                return
            hard = [k for k in ("mm", "sighand", "signal") if objs.get(k) != lo.get(k)]
            soft = [k for k in ("files", "fs") if objs.get(k) != lo.get(k)]
            if hard:
                self.add("tree.thread-shares", "thread of " f"{t.tgid}: " + ", ".join(
                    f"{k} {objs.get(k)} vs leader's {lo.get(k)}" for k in hard))
            if soft:
                self.add("tree.thread-files", "thread of " f"{t.tgid}: " + ", ".join(
                    f"{k} {objs.get(k)} vs leader's {lo.get(k)}" for k in soft))

    def on_thread(self, rec, v, matched):
        self.task_record("thread")

    def on_restart_block(self, rec, v, matched):
        self.task_record("restart_block")

    def on_cpu(self, rec, v, matched):
        if not self.task_record("cpu"):
            return
        if v is not None and v.get("used_math"):
            self.expect.append(("fpu", self.xstate_size, rec.offset))

    def on_cpu_fpu(self, rec, v, matched):
        if not self.task_record("cpu_fpu"):
            return
        if matched is None:
            if self.abi.struct("cpu") is not None:
                self.add("task.fpu", "CPU_FPU without a CPU with used_math before it")
            return
        want = matched[1]
        if want is not None and rec.size != want:
            self.add("task.fpu", f"CPU_FPU of {rec.size} bytes, HEADER_ARCH.xstate_size is "
                     f"{want}")

    def on_signal_task(self, rec, v, matched):
        self.task_record("signal_task")

    def on_sigpending(self, rec, v, matched):
        if matched is None:
            self.task_record("sigpending")

    # -- ERROR/TAIL -----------------------------------------------------------
    def on_tail(self, rec, v, matched):
        self.head_done("TAIL")
        self.close_task()
        self.task = None
        self.tail_seen = True
        self.tail_end = rec.offset + rec.len
        if v.magic != self.abi.magic_tail:
            self.add("framing.magic-tail", f"magic {v.magic:#018x}, expected "
                     f"{self.abi.magic_tail:#018x}", task=None)

    # -- creds, namespaces ----------------------------------------------------
    def object_record(self, name, rec, v):
        ref = self.bind(name, rec)
        if self.task is None and not self.in_tasks:
            self.add("head.sequence", f"{name.upper()} object in the image head")
        if v is not None:
            self.refs_of(name, v, ref)
        return ref

    def on_cred(self, rec, v, matched):
        self.object_record("cred", rec, v)

    def on_groupinfo(self, rec, v, matched):
        self.object_record("groupinfo", rec, v)

    def on_user(self, rec, v, matched):
        ref = self.object_record("user", rec, v)
        if ref is not None and v.userns_ref > 0:
            self.user_ns_of[ref] = v.userns_ref

    def on_user_ns(self, rec, v, matched):
        ref = self.object_record("user_ns", rec, v)
        if ref is not None and v.creator_ref > 0:
            self.creators[ref] = (v.creator_ref, rec.offset)

    for _n in ("ns", "uts_ns", "ipc_ns", "mnt_ns", "net_ns", "sighand", "security",
               "socket", "tty", "netdev", "task_sem_undo_list"):
        def _h(self, rec, v, matched, _n=_n):
            self.object_record(_n, rec, v)
        locals()["on_" + _n] = _h
    del _n, _h

    def on_signal(self, rec, v, matched):
        if matched is None:
            self.add("signal.stray", "SIGNAL not right after the TASK_OBJS that first names a "
                     "signal objref")
        self.refs_of("signal", v, matched[1] if matched else None)

    def on_fs(self, rec, v, matched):
        self.object_record("fs", rec, v)
        self.expect[:0] = [("file_name", "cwd", rec.offset), ("file_name", "root", rec.offset)]

    # -- files --------------------------------------------------------------
    def on_file_table(self, rec, v, matched):
        ref = self.object_record("file_table", rec, v)
        n = v.fdt_nfds
        if n < 0:
            self.add("files.count", f"fdt_nfds is {n}")
            n = 0
        self.table = [ref, n, 0, set(), rec.offset]
        if n == 0:
            self.table = None

    def close_table(self) -> None:
        t, self.table = self.table, None
        if t[2] < t[1]:
            self.add("files.count", f"FILE_TABLE at byte {t[4]} announces {t[1]} descriptors, "
                     f"{t[2]} follow", offset=t[4], record="FILE_TABLE")

    def on_file_desc(self, rec, v, matched):
        t = self.table
        if t is None:
            self.add("files.count", "FILE_DESC outside a file table (or past its fdt_nfds)")
            self.refs_of("file_desc", v, None)
            return
        t[2] += 1
        fd = v.fd_descriptor
        if fd < 0:
            self.add("files.fd-range", f"fd {fd}")
        elif fd in t[3]:
            self.add("files.fd-dup", f"fd {fd} appears twice in the file table at byte {t[4]}")
        elif len(t[3]) < MAX_OBJECTS:
            t[3].add(fd)
        self.refs_of("file_desc", v, t[0])
        if t[2] >= t[1]:
            self.table = None

    def on_file(self, rec, v, matched):
        ref = self.object_record("file", rec, v)
        ftype = self.abi.file_type_names.get(v.f_type)
        if ftype is None:
            self.add("files.type", f"f_type {v.f_type} is no file type of {self.abi.name}")
            return
        sub = v.sub if v.sub is not None else {}
        if ftype in ("generic", "fifo"):
            self.expect.append(("file_name", "file", rec.offset))
        if ftype in ("pipe", "fifo"):
            ino = sub.get("pipe_objref", 0)
            first = ino > 0 and ino not in self.objs
            o = self.ref("inode", ino, "pipe_objref", REQ | IMPLICIT, ref)
            if o is None:
                return
            use = self.inode_use.setdefault(ino, ftype)
            if use != ftype:
                self.add("pipe.mixed", f"inode objref {ino} is used as {_a(use)} and as "
                         f"{_a(ftype)}")
                return
            ends = self.pipe_ends.get(ino)
            if ends is None and len(self.pipe_ends) < MAX_OBJECTS:
                ends = self.pipe_ends[ino] = [0, set(), rec.offset, ftype == "fifo"]
            if ends is not None:
                ends[0] += 1
                ends[1].add(v.f_flags & 3)
            self.after_pipe_file = (ino, first)
            if first:
                self.expect.append(("pipe_data", ino, rec.offset))
        elif ftype == "socket":
            self.ref("sock", sub.get("sock_objref", 0), "sock_objref", FWD_OK, ref)
        elif ftype == "tty":
            self.ref("tty", sub.get("tty_objref", 0), "tty_objref", 0, ref)

    def on_file_name(self, rec, v, matched):
        if rec.size > TEXT_MAX:
            self.add("files.name-format", f"FILE_NAME of {rec.size} bytes is longer than "
                     f"PATH_MAX")
            return
        data = rec.data()
        if matched is not None and (not data or data[-1:] != b"\0" or data[:1] == b"\0"):
            self.add("files.name-format", f"FILE_NAME {data[:64]!r} is not a NUL-terminated "
                     f"path")

    def pipe_data(self, rec, matched):
        if matched is not None:
            return
        if self.after_pipe_file is not None and not self.after_pipe_file[1]:
            self.add("pipe.data-duplicate", f"pipe inode {self.after_pipe_file[0]} already "
                     f"got its data from the first end")
        else:
            self.add("pipe.data-stray", f"{self.name.upper()} not right after a pipe or FIFO "
                     f"FILE")
        self.after_pipe_file = None

    def on_pipe_buf(self, rec, v, matched):
        self.pipe_data(rec, matched)

    def on_file_pipe(self, rec, v, matched):
        self.pipe_data(rec, matched)
        if v.pipe_len > 0:
            self.expect.insert(0, ("pipe_raw", v.pipe_len, rec.offset))

    # -- memory -------------------------------------------------------------
    def on_mm(self, rec, v, matched):
        ref = self.object_record("mm", rec, v)
        self.mm = _Mm(ref, v.map_count, rec.offset)
        self.vma = None
        self.expect.insert(0, ("auxv", None, rec.offset))

    def buffer_auxv(self, rec, _):
        w = self.abi.auxv_word
        c = self.consts
        if "at_vector_size" in c:
            want = c["at_vector_size"] * 8
        else:
            want = c.get("mm_saved_auxv_len")
        if want and rec.size != want:
            self.add("mm.auxv", f"saved_auxv BUFFER of {rec.size} bytes, the header constant "
                     f"says {want}")
        elif rec.size % (2 * w):
            self.add("mm.auxv", f"saved_auxv BUFFER of {rec.size} bytes is not a whole number "
                     f"of {w}-byte pairs")

    def close_vma(self) -> None:
        v = self.vma
        if v is not None and v.loop in ("expected", "open") and v.holds != "opaque":
            self.add("mm.pgarr-terminator", f"the page list of the VMA at byte {v.offset} is "
                     f"not terminated", offset=v.offset, record="VMA")
        self.vma = None

    def close_mm(self, at_end: bool = False) -> None:
        m, self.mm = self.mm, None
        self.vma = None
        if m is None or (at_end and (self.aborted or self.broken)):
            return
        if not m.context:
            self.check_map_count(m)
            self.add("mm.context", f"the MM at byte {m.offset} ends without MM_CONTEXT",
                     offset=m.offset, record="MM")
        elif m.ldt is not None and m.ldt > 0:
            self.add("mm.ldt", f"MM_CONTEXT announces {m.ldt} LDT entries but no "
                     f"MM_CONTEXT_LDT follows", offset=m.offset, record="MM")

    def check_map_count(self, m: _Mm) -> None:
        if m.nvma != m.map_count:
            self.add("mm.map-count", f"MM at byte {m.offset} has map_count {m.map_count}, "
                     f"{m.nvma} VMAs follow", offset=m.offset, record="MM")

    def on_vma(self, rec, v, matched):
        m = self.mm
        self.vma = None
        if m is None or m.context:
            self.add("record.stray", "VMA outside an MM")
            src = None
        else:
            m.nvma += 1
            src = m.ref
        self.ref("file", v.vma_objref, "vma_objref", 0, src)
        kind = self.abi.vma_type_names.get(v.vma_type, f"type_{v.vma_type}")
        if kind in ("file", "shm_file") and v.vma_objref == 0:
            self.add("objref.null", f"a {kind} VMA without vma_objref")
        holds = VMA_PAGES.get(kind, "no")
        if v.vma_type not in self.abi.vma_type_names:
            self.add("mm.vma-type", f"vma_type {v.vma_type} is no VMA type of {self.abi.name}")
            holds = "opaque"
        if kind in ("shm_anon", "shm_ipc") or v.ino_objref:
            ino = v.ino_objref
            first = ino > 0 and ino not in self.objs
            if self.ref("inode", ino, "ino_objref", IMPLICIT | (REQ if kind == "shm_anon"
                                                                else 0), src) is not None:
                use = self.inode_use.setdefault(ino, "shm")
                if use != "shm":
                    self.add("pipe.mixed", f"inode objref {ino} is used as {_a(use)} and as "
                             f"shared memory")
            if holds == "first":
                holds = "yes" if first else "maybe"
        elif holds == "first":
            holds = "yes"
        s, e = v.vm_start, v.vm_end
        if s >= e or s % PAGE or e % PAGE:
            self.add("mm.vma-range", f"VMA {s:#x}-{e:#x}")
        elif m is not None:
            if m.prev_end is not None and s < m.prev_end:
                self.add("mm.vma-order", f"VMA {s:#x}-{e:#x} starts below the end "
                         f"{m.prev_end:#x} of the previous one")
            m.prev_end = max(e, m.prev_end or 0)
        self.vma = _Vma(s, e, kind, holds, rec.offset)

    def on_pgarr(self, rec, v, matched):
        n = v.nr_pages
        if self.shm_pages:
            if n:
                self.expect.insert(0, ("shm_pages", n, rec.offset))
            else:
                self.shm_pages = False
            return
        vma = self.vma
        if vma is None:
            self.add("record.stray", "PGARR outside a VMA's page list")
            return
        if vma.holds == "no":
            self.add("mm.page-kind", f"PGARR after a {vma.kind} VMA ({vma.start:#x}-"
                     f"{vma.end:#x}), which holds no pages")
            vma.holds = "maybe"
        if vma.loop == "closed":
            self.add("record.stray", "PGARR after the page list's terminator")
            return
        if n == 0:
            vma.loop = "closed"
        else:
            vma.loop = "open"
            self.expect.insert(0, ("pages", n, rec.offset))

    def buffer_shm_pages(self, rec, n):
        w = self.abi.word
        if rec.size != n * (w + PAGE):
            self.add("mm.page-batch", f"page BUFFER of {rec.size} bytes for {n} pages "
                     f"({n * (w + PAGE)} bytes)")

    def buffer_pages(self, rec, n):
        w = self.abi.word
        vma = self.vma
        if rec.size != n * (w + PAGE):
            self.add("mm.page-batch", f"page BUFFER of {rec.size} bytes does not hold the {n} "
                     f"pages its PGARR announced ({n * (w + PAGE)} bytes)")
            return
        if vma is None:
            return
        fmt = "Q" if w == 8 else "I"
        last = vma.last_addr
        bad_align = bad_out = bad_order = 0
        first_bad = {}
        left = n
        while left:
            k = min(left, ADDR_CHUNK)
            left -= k
            for a in struct.unpack(f"<{k}{fmt}", rec.read(k * w)):
                if a % PAGE:
                    bad_align += 1
                    first_bad.setdefault("align", a)
                if not vma.start <= a < vma.end:
                    bad_out += 1
                    first_bad.setdefault("out", a)
                if a <= last:
                    bad_order += 1
                    first_bad.setdefault("order", (a, last))
                last = a
        vma.last_addr = last
        where = f"VMA {vma.start:#x}-{vma.end:#x}"
        if bad_align:
            self.add("mm.page-align", f"{bad_align} page address(es) in the {where} are not "
                     f"page aligned (first {first_bad['align']:#x})")
        if bad_out:
            self.add("mm.page-outside", f"{bad_out} page address(es) lie outside the {where} "
                     f"(first {first_bad['out']:#x})")
        if bad_order:
            a, b = first_bad["order"]
            self.add("mm.page-order", f"{bad_order} page address(es) in the {where} repeat or "
                     f"go backwards (first {a:#x} after {b:#x})")

    def on_mm_context(self, rec, v, matched):
        m = self.mm
        self.close_vma()
        if m is None or m.context:
            self.add("record.stray", "MM_CONTEXT outside an MM")
            return
        m.context = True
        self.check_map_count(m)
        m.ldt = v.nldt
        if v.nldt:
            self.expect.insert(0, ("ldt", (v.nldt, v.ldt_entry_size), rec.offset))

    def on_mm_context_ldt(self, rec, v, matched):
        m = self.mm
        if m is None or not m.context:
            self.add("record.stray", "MM_CONTEXT_LDT without MM_CONTEXT")
            return
        nldt, size = (m.ldt or 0), 8
        if matched is not None:
            nldt, size = matched[1]
        if rec.size != nldt * size:
            self.add("mm.ldt", f"MM_CONTEXT_LDT of {rec.size} bytes for {nldt} entries of "
                     f"{size} bytes")
        m.ldt = None
        self.mm = None

    # -- IPC ----------------------------------------------------------------
    def on_ipc_shm(self, rec, v, matched):
        self.ref("inode", v.objref, "objref", IMPLICIT)
        self.shm_pages = True

    def on_ipc_msg_msg(self, rec, v, matched):
        if v.m_ts > 0:
            self.expect.insert(0, ("ipc_bytes", v.m_ts, rec.offset))

    def buffer_ipc_bytes(self, rec, left):
        left -= rec.size
        if left > 0:
            self.expect.insert(0, ("ipc_bytes", left, rec.offset))

    # -- end ----------------------------------------------------------------
    def finish(self) -> None:
        self.rec = None
        self.name = "-"
        if self.err_at is not None:
            self.add("error.record", "checkpoint failed (no message STRING follows)",
                     offset=self.err_at, record="ERROR", task=None)
            self.err_at = None
        cut = self.aborted or self.broken
        if self.expect and not cut:
            kind, _, off = self.expect[0]
            code = self._MISS[kind]
            if code:
                self.add(code, f"stream ends before {self._WHAT[kind]} (announced at byte "
                         f"{off})", offset=off, record="-", task=None)
        if self.vma is not None and not cut:
            self.close_vma()
        if self.table is not None and not cut:
            self.close_table()
        self.close_mm(at_end=True)
        self.close_task(at_end=True)
        if self.pending and not cut:
            self.unbound_all()
        if not self.tail_seen and not self.broken:
            self.add("framing.tail-missing", "the stream ends without TAIL" +
                     (" (after an ERROR record)" if self.aborted else ""),
                     offset=self.r.src.pos, record="-", task=None)
        if self.ntree is not None and self.ntasks != self.ntree and not cut:
            self.add("tree.count", f"TREE announces {self.ntree} tasks, the image holds "
                     f"{self.ntasks} TASK records", offset=None, record="TREE", task=None)
        if not self.in_tasks and not cut:
            self.head_done("the end")
        if not cut and not self.objs_full:
            for ref, waiting in self.fwd.items():
                for (want, off, record, task, _code, _src) in waiting:
                    self.add("objref.undefined", f"{record} refers to objref {ref} "
                             f"({_kinds(want)}), which is never defined", offset=off,
                             record=record, task=task)
            for ref, o in self.objs.items():
                if not o.used and o.how == "objref" and o.kind in USE_TRACKED:
                    self.add("objref.unused", f"objref {ref} ({o.kind}) is never referred to",
                             offset=o.offset, record="OBJREF", task=None)
        self.loops()
        for ino, (n, dirs, off, fifo) in self.pipe_ends.items():
            if fifo:
                continue
            if n == 1:
                self.add("pipe.single-end", f"pipe inode {ino}: one end in the image",
                         offset=off, record="FILE", task=None)
            elif 2 not in dirs and not (0 in dirs and 1 in dirs):
                which = "read" if 0 not in dirs else "write"
                self.add("pipe.ends", f"pipe inode {ino}: {n} ends, none is a {which} end",
                         offset=off, record="FILE", task=None)

    def loops(self) -> None:
        reported: set[int] = set()
        # user_ns -> creator user -> its user_ns -> ...: one successor each, so a
        # walk with three colours finds every cycle in linear time.
        state: dict[int, int] = {}          # 1 on the current walk, 2 finished
        for ns in self.creators:
            walk, cur = [], ns
            while cur is not None and cur not in state:
                state[cur] = 1
                walk.append(cur)
                c = self.creators.get(cur)
                cur = self.user_ns_of.get(c[0]) if c is not None else None
            if cur is not None and state.get(cur) == 1:
                cyc = walk[walk.index(cur):]
                reported.update(cyc)
                self.add("loop.userns", "user_ns chain " + " -> ".join(
                    str(x) for x in cyc + [cur]) + " comes back to itself",
                    offset=self.creators[cur][1], record="USER_NS", task=None)
            for x in walk:
                state[x] = 2
        # any other cycle closes through a forward reference: src -> dst ->* src
        self.budget = CYCLE_BUDGET
        for src, dst, off, record, task in self.fwd_edges:
            if self.budget <= 0:
                self.add("check.limit", "cycle search stopped: budget spent", offset=None,
                         record=None, task=None)
                break
            if src in reported or dst in reported or dst not in self.objs:
                continue
            path = self.path(dst, src)
            if path is not None:
                reported.update(path)
                self.add("loop.cycle", "objects " + " -> ".join(str(x) for x in [src] + path) +
                         " refer to each other in a circle", offset=off, record=record,
                         task=task)

    def path(self, a: int, b: int) -> list[int] | None:
        """A path of references a ->* b (BFS within the remaining budget)."""
        prev = {a: None}
        queue = [a]
        while queue and self.budget > 0:
            nxt = []
            for x in queue:
                self.budget -= 1
                if x == b:
                    out = []
                    while x is not None:
                        out.append(x)
                        x = prev[x]
                    return out[::-1]
                for y in self.edges.get(x, ()):
                    if y not in prev:
                        prev[y] = x
                        nxt.append(y)
            queue = nxt
        return None


def _stream_code(e: ImageError) -> str:
    """The finding code of an error raised by the framing layer."""
    m = e.message
    if not isinstance(e, FramingError):
        return "record.parse"
    if "less than its 8-byte header" in m:
        return "framing.bad-len"
    if "bytes follow its header" in m:
        return "framing.past-eof"
    if "exceeds" in m:
        return "record.size"
    if "truncated" in m:
        return "framing.truncated"
    return "framing.error"


def _a(kind) -> str:
    kind = str(kind)
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def _kinds(want) -> str:
    return want if isinstance(want, str) else " or ".join(want)


# -- entry points -------------------------------------------------------------
def check(reader: ImageReader, per_code: int = PER_CODE, _sink: _Sink | None = None
          ) -> list[Finding]:
    """All findings of one streaming pass over an opened image."""
    sink = _sink or _Sink(per_code)
    _Checker(reader, sink).run()
    return sink.close()


class _Prefixed:
    """A binary file whose first bytes (the header, already read) are served from memory
    (possibly patched) and the rest from the file; seek and tell stay consistent."""

    def __init__(self, f: BinaryIO, prefix: bytes, start: int):
        self.f, self.prefix, self.start, self.i = f, prefix, start, 0

    def read(self, n: int = -1) -> bytes:
        head = b""
        if self.i < len(self.prefix):
            head = self.prefix[self.i:] if n < 0 else self.prefix[self.i:self.i + n]
            self.i += len(head)
            if n >= 0:
                n -= len(head)
                if n == 0:
                    return head
        return head + self.f.read(n)

    def readinto(self, buf) -> int:
        n = len(buf)
        if self.i < len(self.prefix):
            head = self.prefix[self.i:self.i + n]
            self.i += len(head)
            buf[:len(head)] = head
            return len(head)
        into = getattr(self.f, "readinto", None)
        if into is not None:
            return into(buf)
        data = self.f.read(n)
        buf[:len(data)] = data
        return len(data)

    def fileno(self):
        return self.f.fileno()

    def seekable(self) -> bool:
        return bool(getattr(self.f, "seekable", lambda: False)())

    def tell(self) -> int:
        return self.f.tell() - (len(self.prefix) - self.i)

    def seek(self, off: int, whence: int = 0) -> int:
        if whence == os.SEEK_CUR:
            target = self.tell() + off
        elif whence == os.SEEK_SET:
            target = off
        else:
            target = self.f.seek(off, os.SEEK_END)
        end = self.start + len(self.prefix)
        if target < end:
            self.i = max(0, target - self.start)
            self.f.seek(end)
        else:
            self.i = len(self.prefix)
            self.f.seek(target)
        return target


def _read_upto(f: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        b = f.read(left)
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def check_stream(f: BinaryIO, name: str = "<stream>", version: str | None = None,
                 arch: str | None = None, per_code: int = PER_CODE) -> list[Finding]:
    """Check an image read from a binary stream (a file, a pipe, BytesIO).

    Problems with the header itself become findings too; only an unknown
    ``version``/``arch`` argument raises ValueError."""
    sink = _Sink(per_code)
    if version is not None:
        version = formats.canonical(version)
    if arch is not None and arch not in formats.ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(formats.ARCHES)})")
    try:
        start = f.tell() if getattr(f, "seekable", lambda: False)() else 0
    except (OSError, io.UnsupportedOperation):
        start = 0
    head = _read_upto(f, formats.HEADER_LEN)
    if len(head) < HDR.size:
        sink.add("framing.empty", 0, "-", None, "no record header" if not head else
                 f"{len(head)} bytes, not even a record header")
        return sink.close()
    rtype, rlen = HDR.unpack_from(head)
    if rtype != formats.HEADER_TYPE or rlen != formats.HEADER_LEN:
        sink.add("framing.not-image", 0, "-", None, f"first record has type {rtype} len "
                 f"{rlen}, expected the HEADER (type 1, len 72)")
        return sink.close()
    if len(head) < formats.HEADER_LEN:
        sink.add("framing.truncated", 0, "HEADER", None, f"the stream ends after {len(head)} "
                 f"of the header's 72 bytes")
        return sink.close()
    magic, arch_id, major, minor, patch, rev = _HEAD.unpack_from(head, 8)
    want = formats.abi("v17").magic_head
    if magic != want:
        sink.add("framing.magic-head", 8, "HEADER", None, f"magic {magic:#018x}, expected "
                 f"{want:#018x}; checked as if it were right")
        head = head[:8] + struct.pack("<Q", want) + head[16:]
    if version is None and rev not in _revs():
        sink.add("header.rev-unknown", 24, "HEADER", None, f"rev {rev} is no known revision "
                 f"({', '.join(f'{r}: {v}' for r, v in _revs().items())}); give --format to "
                 f"check it as one")
        return sink.close()
    if arch is None:
        ids = formats.abi(version or _revs()[rev][0]).arch_ids
        arch = next((a for a, n in ids.items() if n == arch_id), None)
        if arch is None:        # reported by the header check; guess the layout
            arch = next((a for v in formats.VERSIONS for a, n in formats.abi(v).arch_ids.items()
                         if n == arch_id), "x86_64")
    try:
        reader = ImageReader(_Prefixed(f, head, start), name, version, arch)
    except ImageError as e:
        sink.add(_stream_code(e), e.offset, e.record or "-", None, e.message)
        return sink.close()
    return check(reader, _sink=sink)


def _revs() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for v in formats.VERSIONS:
        out.setdefault(formats.abi(v).rev, []).append(v)
    return out


def check_bytes(data: bytes, **kw) -> list[Finding]:
    return check_stream(io.BytesIO(data), **kw)


def check_path(path: str, version: str | None = None, arch: str | None = None,
               per_code: int = PER_CODE) -> list[Finding]:
    """Check a file ('-' = stdin)."""
    f, name = open_input(path)
    try:
        return check_stream(f, name, version, arch, per_code)
    finally:
        if path != "-":
            f.close()
