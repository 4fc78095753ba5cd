"""Model -> plain rows for the inspection commands (tables for people, JSON for programs)."""
from __future__ import annotations

import time
from array import array
from bisect import bisect_left, bisect_right
from typing import Iterator

from .model import Image, Task, Vma, task_state

VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYSHARE, VM_GROWSDOWN = 0x1, 0x2, 0x4, 0x8, 0x80, 0x100
VM_PFNMAP, VM_IO = 0x400, 0x4000
SIGNALS = {1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE",
           9: "KILL", 10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM",
           16: "STKFLT", 17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN",
           22: "TTOU", 23: "URG", 24: "XCPU", 25: "XFSZ", 26: "VTALRM", 27: "PROF",
           28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS"}


# What of the model each listing reads (build_model's ``keep``: a model built for it holds
# nothing else, so that ps or info of 100,000 tasks fits in bounded memory).
INFO_READS = PS_READS = frozenset()
MAPS_READS = frozenset(("vmas", "task_objs", "mm", "file"))
FILES_READS = frozenset(("fds", "task_objs", "file_table", "file", "inode", "sock", "tty"))
# show: the task tree, each task's creds, registers and signals, maps, fds (the registers
# and signals read from each task's records as they pass: build_model's task_done)
SHOW_READS = MAPS_READS | FILES_READS | frozenset(("cred", "groupinfo", "sighand", "signal"))


def kernel_str(img: Image) -> str:
    return ".".join(map(str, img.kernel))


def info(img: Image) -> dict:
    processes = zombies = 0         # (counted, not listed: a lean model makes each task
    for t in img.tasks:             # as it is read)
        processes += not t.is_thread
        zombies += t.zombie
    return {
        "version": img.version, "arch": img.arch, "kernel": kernel_str(img), "rev": img.rev,
        "time": img.header.get("time"),
        "time_utc": _utc(img.header.get("time")),
        "uflags": img.header.get("uflags"),
        "uts": {"release": _at(img.uts, 0), "version": _at(img.uts, 1),
                "machine": _at(img.uts, 2)},
        "tasks": len(img.tasks), "processes": processes,
        "threads": len(img.tasks) - processes, "zombies": zombies,
        "records": img.records, "objects": len(img.objects),
        "pages": img.pages, "page_bytes": img.pages * 4096, "size": img.size,
        "errors": [{"offset": e.offset, "message": e.message} for e in img.errors],
        "tail": img.tail, "opaque_records": dict(img.opaque),
    }


def _at(lst, i):
    return lst[i] if i < len(lst) else None


def _utc(t):
    """The ISO 8601 UTC time of seconds since the epoch, as datetime writes it (years 1
    to 9999; None outside them), without loading datetime (start-up)."""
    if not t:
        return None
    try:
        tm = time.gmtime(t)
    except (OverflowError, OSError, ValueError):
        return None
    if not 1 <= tm.tm_year <= 9999:
        return None
    return f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:" \
           f"{tm.tm_min:02d}:{tm.tm_sec:02d}+00:00"


def state(t: Task) -> str:
    """The state the task had when it was checkpointed, as ps shows it."""
    if t.offset is None:
        return "?"          # announced in the tree, no TASK record
    if t.zombie:
        return "Z"
    return task_state(t.state)[1]


def ps(img: Image) -> list[dict]:
    return list(iter_ps(img))


def iter_ps(img: Image) -> Iterator[dict]:
    """The rows of ``ps``, made as they are asked for (a listing holds none of them)."""
    counts = img.thread_counts()
    for t in img.tasks:
        thread = t.is_thread
        yield {"pid": t.pid, "ppid": t.ppid, "tgid": t.tgid, "pgid": t.pgid, "sid": t.sid,
               "comm": t.comm, "state": state(t), "thread": thread,
               "threads": None if thread else counts.get(t.pid, 0)}


def perms(v: Vma) -> str:
    f = v.vm_flags
    return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
        ("x" if f & VM_EXEC else "-") + ("s" if f & (VM_SHARED | VM_MAYSHARE) else "p")


def vma_path(img: Image, mm, v: Vma) -> str | None:
    """The name /proc/PID/maps gives the mapping: its file, or [vdso], [vvar],
    [vvar_vclock], [heap], [stack]."""
    if v.file_ref:
        f = img.get(v.file_ref, "file")
        if f is not None and f.f_type in ("memfd", "ghost"):    # as the kernel names them
            return f"{'/' + _memfd(img, f) if f.f_type == 'memfd' else f.path} (deleted)"
        return f.path if f is not None else f"<objref {v.file_ref}>"
    if v.vma_type == "vdso":
        return "[vdso]"
    if v.vm_flags & (VM_IO | VM_PFNMAP):
        return _vvar_name(mm, v)
    brk = mm.fields.get("start_brk", 0), mm.fields.get("brk", 0)
    if brk[0] and v.start <= brk[0] and v.end >= brk[1] and v.start < v.end:
        return "[heap]"
    stack = mm.fields.get("start_stack", 0)
    if stack:               # the kernel's [stack] is the mapping holding start_stack
        return "[stack]" if v.start <= stack < v.end else None
    if v.vm_flags & VM_GROWSDOWN:
        return "[stack]"    # start_stack not saved: the grows-down mapping is the best guess
    return None


def _vvar_name(mm, v: Vma) -> str | None:
    """The kernel's data pages for the vDSO sit right below it: [vvar], and from Linux
    6.13 [vvar_vclock] between the two. Other I/O mappings have no name."""
    vdso = next((x for x in mm.vmas if x.vma_type == "vdso"), None)
    if vdso is None:
        return None
    run, end = [], vdso.start          # the contiguous I/O mappings ending at the vDSO
    for x in sorted(mm.vmas, key=lambda x: x.start, reverse=True):
        if x.end == end and x.vm_flags & (VM_IO | VM_PFNMAP) and not x.file_ref:
            run.insert(0, x)
            end = x.start
        elif x.end <= end and run:
            break
    if v not in run:
        return None
    return ("[vvar]", "[vvar_vclock]")[min(run.index(v), 1)]


def mm_of(img: Image, t: Task):
    return img.get(t.obj("mm"), "mm")


def _selected(img: Image, pid: int | None) -> Iterator[Task]:
    """The tasks maps and files list, made as they are asked for."""
    if pid is None:
        return (t for t in img.tasks if not t.is_thread and not t.zombie)
    t = img.task_by_pid(pid)
    return iter([t] if t else [])


def maps(img: Image, pid: int | None = None) -> list[dict]:
    return list(iter_maps(img, pid))


def iter_maps(img: Image, pid: int | None = None) -> Iterator[dict]:
    for t in _selected(img, pid):
        yield from task_maps(img, t)


def selected_by_pid(img: Image, pid: int | None = None) -> "Listed":
    """pid -> the indexes of the tasks ``maps`` and ``files`` list under it (one pass;
    indexes, not tasks: a lean model makes a task each time it is read)."""
    listed = Listed()
    for i, t in enumerate(img.tasks):
        if pid is None and not t.is_thread and not t.zombie:
            listed.pids.append(t.pid)
            listed.indexes.append(i)
        elif pid is not None and t.pid == pid:      # (the first, as task_by_pid)
            listed.pids.append(pid)
            listed.indexes.append(i)
            break
    listed.sort()
    return listed


class Listed:
    """selected_by_pid's mapping, as two arrays sorted by pid (a dict of a list each
    held 15 MB for 100,000 processes)."""
    __slots__ = ("pids", "indexes")

    def __init__(self):
        self.pids, self.indexes = array("q"), array("q")

    def sort(self) -> None:
        if any(a > b for a, b in zip(self.pids, self.pids[1:])):
            order = sorted(range(len(self.pids)), key=self.pids.__getitem__)    # (stable)
            self.pids = array("q", (self.pids[k] for k in order))
            self.indexes = array("q", (self.indexes[k] for k in order))

    def get(self, pid: int, default=()) -> list[int]:
        at = bisect_left(self.pids, pid)
        end = bisect_right(self.pids, pid, at)
        return list(self.indexes[at:end]) if end > at else default


def task_maps(img: Image, t: Task) -> Iterator[dict]:
    """The ``maps`` rows of one task, made as they are asked for."""
    mm = mm_of(img, t)
    if mm is None:
        return
    for v in mm.vmas:
        yield {"pid": t.pid, "start": v.start, "end": v.end, "perms": perms(v),
               "pgoff": v.pgoff * 4096, "path": vma_path(img, mm, v),
               "pages": v.pages, "type": v.vma_type, "vm_flags": v.vm_flags}


def files(img: Image, pid: int | None = None) -> list[dict]:
    return list(iter_files(img, pid))


def iter_files(img: Image, pid: int | None = None) -> Iterator[dict]:
    for t in _selected(img, pid):
        yield from task_files(img, t)


def task_files(img: Image, t: Task) -> Iterator[dict]:
    """The ``files`` rows of one task, made as they are asked for."""
    table = img.get(t.obj("files"), "file_table")
    if table is None:
        return
    for fd in table.fds:
        yield file_row(img, t.pid, fd, img.get(fd.file_ref, "file"))


def file_row(img: Image, pid: int, fd, f) -> dict:
    """The ``files`` row of one descriptor (an Fd) of process ``pid``; ``f``: the file it
    names (None for none)."""
    row = {"pid": pid, "fd": fd.fd, "objref": fd.file_ref, "cloexec": fd.close_on_exec}
    if f is None:
        row.update(type="?", path=None, flags=None, pos=None, pipe=None, pipe_bytes=None)
    else:
        pipe = img.get(f.pipe_ref, "inode") if f.pipe_ref else None
        row.update(type=f.f_type, path=describe_file(img, f), flags=f.f_flags,
                   pos=f.f_pos,
                   pipe=f.pipe_ref or None,
                   pipe_bytes=pipe.data_len if pipe is not None else None)
    return row


SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
TTY_DRIVER_TYPE_PTY, PTY_TYPE_MASTER = 4, 1


def describe_file(img: Image, f) -> str | None:
    """What a file is, as lsof would name it: its path, or for the kinds without one a
    description ("socket unix stream '/run/x' peer=#12", "eventfd count=3", ...)."""
    how = _DESCRIBE.get(f.f_type)
    return f.path if how is None else how(img, f)


def _socket(img: Image, f) -> str:
    s = img.get(f.sub.get("sock_objref", 0), "sock")
    if s is None:
        return f"socket <objref {f.sub.get('sock_objref', 0)}>"
    family, stype = s["sock_common"]["family"], s["sock"]["type"]
    queued = f" queued={s['queued']}" if s.get("queued") else ""
    if family == AF_UNIX:
        u = s.get("unix") or {}
        text = f"socket unix {SOCK_TYPES.get(stype, stype)}"
        path = _sun_path(u.get("laddr"), u.get("laddr_len", 0))
        if path:
            text += " " + _quoted(path)
        if u.get("peer"):
            text += f" peer=#{u['peer']}"
        return text + queued
    if family in (AF_INET, AF_INET6):
        proto = {1: "tcp", 2: "udp"}.get(stype, f"inet type {stype}")
        proto += "6" if family == AF_INET6 else ""
        i = s.get("inet") or {}
        text = f"{proto} {_sin(i.get('laddr'))}"
        if i.get("raddr_len"):
            text += f" -> {_sin(i.get('raddr'))}"
        if stype == 1:
            state = s["sock"]["state"]
            text += " " + TCP_STATES.get(state, f"state {state}")
        return text + queued
    return f"socket family {family} type {stype}"


def _sun_path(addr: dict | None, length: int) -> str | None:
    if not addr or length <= 2:
        return None
    raw = bytes(addr["sun_path"])[:max(length - 2, 0)]
    if raw[:1] == b"\0":            # abstract: shown with '@', as ss does
        return "@" + raw[1:].decode("utf-8", "replace")
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


def _sin(addr: dict | None) -> str:
    if not addr:
        return "?"
    host = ".".join(str(b) for b in int(addr["sin_addr"]).to_bytes(4, "little"))
    port = int.from_bytes(int(addr["sin_port"]).to_bytes(2, "little"), "big")
    return f"{host}:{port}"


def _tty(img: Image, f) -> str:
    t = img.get(f.sub.get("tty_objref", 0), "tty")
    if t is None:
        return f"tty <objref {f.sub.get('tty_objref', 0)}>"
    if t["driver_type"] == TTY_DRIVER_TYPE_PTY:
        end = "master" if t["driver_subtype"] == PTY_TYPE_MASTER else "slave"
        return f"pty {end} {t['index']}"
    return f"tty type {t['driver_type']} index {t['index']}"


def _memfd(img: Image, f) -> str:
    name = f.path or ""
    return name if name.startswith("memfd:") else "memfd:" + name


_DESCRIBE = {
    "socket": _socket, "tty": _tty,
    "eventfd": lambda img, f: f"eventfd count={f.sub.get('count', 0)}",
    "epoll": lambda img, f: f"epoll ({len(f.sub.get('items', []))} items)",
    "signalfd": lambda img, f: "signalfd " + (",".join(sigset(f.sub.get("sigmask"))) or "-"),
    "timerfd": lambda img, f: "timerfd" + (" disarmed" if not f.sub.get("value_ns") else
                                           f" next={f.sub['value_ns']}ns"),
    "inotify": lambda img, f: f"inotify ({len(f.sub.get('watches', []))} watches)",
    "memfd": _memfd,
    "ghost": lambda img, f: f"deleted {f.path}",
}


def sigset(mask: int | None) -> list[str]:
    if not mask:
        return []
    return [SIGNALS.get(i + 1, str(i + 1)) for i in range(64) if mask >> i & 1]


def creds(img: Image, t: Task) -> dict | None:
    c = img.get(t.cred_ref, "cred")
    if c is None:
        return None
    gi = img.get(c.get("groupinfo_ref", 0), "groupinfo") or {}
    return {k: c[k] for k in ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")} \
        | {"groups": list(gi.get("groups", [])),
           "cap_eff": _cap(c, "e"), "cap_prm": _cap(c, "p"), "cap_bnd": _cap(c, "b")}


def _cap(c: dict, which: str) -> int:
    caps = c.get("cap_s") or {}
    return caps.get(f"cap_{which}_0", 0) | caps.get(f"cap_{which}_1", 0) << 32


def signals(img: Image, t: Task) -> dict:
    sh = img.get(t.obj("sighand"), "sighand") or {}
    sig = img.get(t.obj("signal"), "signal")
    return {"handlers": dict(_handlers(sh)), "blocked": sigset(t.blocked),
            "pending": sigset(t.pending_mask),
            "shared_pending": sigset(sig.shared_mask) if sig else []}


def _handlers(sh: dict) -> dict:
    """Signal name -> handler of a SIGHAND record; the last one's kept, as the tasks of
    a process (and often its children) share one SIGHAND: 64 actions read once."""
    global _last_handlers
    if _last_handlers[0] is sh:
        return _last_handlers[1]
    handlers = {}
    for i, a in enumerate(sh.get("action", [])):
        h = a["_sa_handler"]
        if h:
            handlers[SIGNALS.get(i + 1, str(i + 1))] = "ignore" if h == 1 else f"{h:#x}"
    _last_handlers = (sh, handlers)     # holding the record: its id cannot be reused
    return handlers


_last_handlers: tuple = (None, {})


def task_regs(t: Task) -> dict | None:
    """The registers show lists (None without a CPU record)."""
    all_regs = t.regs                   # parsed on each read: read once
    if not all_regs or "ip" not in all_regs:
        return None
    return {k: all_regs[k] for k in ("ip", "sp", "ax", "bp", "flags", "fs", "gs")}


def task_detail(img: Image, t: Task) -> dict:
    return {"pid": t.pid, "comm": t.comm, "state": state(t), "offset": t.offset,
            "fields": t.fields, "creds": creds(img, t), "regs": task_regs(t),
            "fpu_bytes": t.fpu_size, "signals": signals(img, t) if not t.zombie else None}
