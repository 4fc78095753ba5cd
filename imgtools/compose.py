"""Compose a complete image of any version from a version-independent description.

This is the writer side of the model: tests describe a process tree once and
get the image every ABI would have held for it, in that ABI's record order
(docs/format-choices.md).  Objects are written the first time a task names
them, introduced by OBJREF, as the kernel's objhash did.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import formats
from formats import Abi, ext, pids

from .writer import ImageWriter

PAGE = 4096
# FdSpec kinds written by a Composer.file_<kind> method
NO_CRED = 0xFFFFFFFF            # v18-v21 SOCKET_UNIX peercred uid/gid of no peer
FILE_TYPE_OF = {"unix": "socket", "tcp": "socket", "udp": "socket", "signalfd": "ignore",
                "timerfd": "ignore", "inotify": "ignore", "memfd": "ignore", "ghost": "ignore"}
NEW_KINDS = ("unix", "tcp", "udp", "eventfd", "epoll", "tty", "signalfd", "timerfd", "inotify",
             "memfd", "ghost")
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_GROWSDOWN = 0x10, 0x20, 0x40, 0x100


@dataclass
class VmaSpec:
    start: int
    end: int
    flags: int = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE
    kind: str = "anon"              # anon | file | vdso | shm_anon | shm_file
    path: str | None = None
    pgoff: int = 0
    page_prot: int = 0x8000000000000027
    pages: dict[int, bytes] = field(default_factory=dict)
    fd: "FdSpec | None" = None      # the mapped file, described as a descriptor (a memfd)
    file: str | None = None         # ... and the key it shares with descriptors


@dataclass
class MmSpec:
    vmas: list[VmaSpec]
    exe: str | None = None
    brk: tuple[int, int] = (0, 0)
    auxv: list[tuple[int, int]] = field(default_factory=lambda: [(6, 4096), (0, 0)])
    vdso: int = 0


@dataclass
class FdSpec:
    fd: int
    # generic | pipe | fifo | unix | tcp | udp | eventfd | epoll | tty, and the extension
    # records' signalfd | timerfd | memfd | ghost | inotify
    kind: str = "generic"
    path: str | None = None         # generic/fifo
    pipe: str | None = None         # pipe key (both ends name the same key)
    flags: int = 0                  # O_* flags
    pos: int = 0
    cloexec: bool = False
    file: str | None = None         # share one open file between descriptors
    # per kind: unix {sock, peer, addr, type, queued}; tcp/udp {sock, laddr, raddr, state,
    # queued}; eventfd {count}; epoll {watch: [fd, ...]}; tty {tty, link, master, index,
    # data}; signalfd {sigmask}; timerfd {clockid, value_ns, interval_ns}; memfd {name,
    # data, seals}; ghost {data} (path = the name it had); inotify {watches: [(wd, path)]}
    opts: dict = field(default_factory=dict)


@dataclass
class TaskSpec:
    pid: int
    ppid: int
    tgid: int | None = None
    pgid: int | None = None
    sid: int | None = None
    comm: str = "task"
    zombie: bool = False
    exit_code: int = 0
    mm: str | None = "mm"
    files: str | None = "files"
    sighand: str = "sighand"
    signal: str | None = None       # default: one per thread group
    cred: str = "cred"
    regs: dict = field(default_factory=dict)
    blocked: int = 0
    pending: list[int] = field(default_factory=list)        # private signals
    shared_pending: list[int] = field(default_factory=list)
    fpu: bytes | None = None
    sas: tuple[int, int] = (0, 0)
    # SysV semaphore undo list (v23-rc1+): [(semid, [adjustment per semaphore]), ...]
    sem_undo: list[tuple[int, list[int]]] | None = None


@dataclass
class CredSpec:
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)


@dataclass
class ImageSpec:
    tasks: list[TaskSpec]
    mms: dict[str, MmSpec] = field(default_factory=dict)
    files: dict[str, list[FdSpec]] = field(default_factory=dict)
    pipes: dict[str, bytes] = field(default_factory=dict)
    creds: dict[str, CredSpec] = field(default_factory=lambda: {"cred": CredSpec()})
    handlers: dict[int, int] = field(default_factory=dict)  # signo -> handler address
    sighands: dict[str, dict[int, int]] = field(default_factory=dict)  # a SIGHAND's own
    uts: tuple[str, ...] = ("linux", "node", "2.6.38", "#1", "x86_64", "(none)")
    cwd: str = "/"
    errors: list[str] = field(default_factory=list)         # ERROR records before TAIL
    time: int | None = None
    tail: bool = True
    xstate_size: int = 832
    ext: bool = False               # extension records: clocks, rseq, file stats (v23)


def _fix(spec: ImageSpec) -> None:
    by_pid: dict[int, TaskSpec] = {}
    for t in spec.tasks:
        t.tgid = t.pid if t.tgid is None else t.tgid
        # pgid and sid belong to the thread group: a thread has its leader's
        lead = by_pid.get(t.tgid) if t.tgid != t.pid else None
        t.pgid = (lead.pgid if lead else t.pid) if t.pgid is None else t.pgid
        t.sid = (lead.sid if lead else t.pid) if t.sid is None else t.sid
        by_pid[t.pid] = t
        t.signal = f"signal-{t.tgid}" if t.signal is None else t.signal


class Composer:
    def __init__(self, out: BinaryIO, abi: Abi, spec: ImageSpec):
        _fix(spec)
        self.w = ImageWriter(out, abi)
        self.abi = abi
        self.spec = spec
        self.refs: dict[tuple[str, str], int] = {}
        self.next_ref = 1
        self.deferred: list = []        # written after the file table, as the kernel did
        self.written: set[tuple[str, str]] = set()     # objects OBJREF introduced

    # objhash: number on first sight; returns (ref, is_new)
    def _ref(self, kind: str, key: str) -> tuple[int, bool]:
        k = (kind, key)
        if k in self.refs:
            return self.refs[k], False
        self.refs[k] = self.next_ref
        self.next_ref += 1
        return self.refs[k], True

    def _objref(self, kind: str, key: str) -> tuple[int, bool]:
        """The objref, written with OBJREF the first time (a number _ref gave out
        earlier, for a forward reference, is written now)."""
        ref, _ = self._ref(kind, key)
        new = (kind, key) not in self.written
        if new:
            self.written.add((kind, key))
            self.w.rec("objref", objtype=self.abi.objs[kind], objref=ref)
        return ref, new

    def compose(self) -> None:
        a, w, s = self.abi, self.w, self.spec
        self.head()
        for t in s.tasks:
            self.task(t)
        for msg in s.errors:
            self.error(msg)
        if s.tail:
            w.rec("tail", magic=a.magic_tail)

    def error(self, msg: str) -> None:
        self.w.raw("error")
        self.w.raw("string", b"\0" + msg.encode() + b"\0")

    # -- head -----------------------------------------------------------------
    def head(self) -> None:
        a, w, s = self.abi, self.w, self.spec
        const = {"task_comm_len": 16, "signal_nsig": 64, "uts_sysname_len": 65,
                 "uts_nodename_len": 65, "uts_release_len": 65, "uts_version_len": 65,
                 "uts_machine_len": 65, "uts_domainname_len": 65, "rlimit_nlimits": 16,
                 "n_tty_buf_size": 4096, "tty_termios_ncc": 8, "tty_termios_nccs": 19}
        const["at_vector_size" if a.traits["auxv_u64"] else "mm_saved_auxv_len"] = \
            self._auxv_count() * (1 if a.traits["auxv_u64"] else a.auxv_word)
        w.rec("header", magic=a.magic_head, arch_id=a.arch_id, major=a.kernel[0],
              minor=a.kernel[1], patch=a.kernel[2], rev=a.rev, constants=const,
              time=int(time.time()) if s.time is None else s.time,
              uflags=1 | (ext.UFLAG_EXT if s.ext else 0))
        for text in (s.uts[2], s.uts[3], s.uts[4]):
            w.raw("buffer", text.encode().ljust(65, b"\0"))
        w.rec("header_arch", has_fxsr=1, has_xsave=1, xstate_size=s.xstate_size)
        if s.ext:
            w.rec("ext_clocks", realtime_ns=1_700_000_000 * 10**9, monotonic_ns=5 * 10**9,
                  boottime_ns=6 * 10**9)
        if a.traits["container"]:
            w.raw("container")
        model = a.traits["pids_model"]
        rows = [(t.pid, t.ppid, t.tgid, t.pgid, t.sid) for t in s.tasks]
        if model == "pids":
            numbers = list(dict.fromkeys(n for row in rows for n in row if n))  # first use
            tag = {n: i + 1 for i, n in enumerate(numbers)}
            self.next_ref = len(numbers) + 1
            w.rec("pids", nr_pids=len(numbers), nr_vpids=0, offset=1)
            w.raw("buffer", pids.build_entries([n] for n in numbers))
            rows = [[tag.get(n, 0) for n in row] for row in rows]
        w.rec("tree", nr_tasks=len(rows))
        w.raw("buffer", pids.build_rows(a, (dict(zip(pids.PID_FIELDS, row), depth=0)
                                            for row in rows)))

    def _auxv_count(self) -> int:
        return max((2 * len(m.auxv) for m in self.spec.mms.values()), default=2)

    # -- one task -------------------------------------------------------------
    def task(self, t: TaskSpec) -> None:
        a, w = self.abi, self.w
        fields = {"state": 64 if t.zombie else 1, "exit_state": 16 if t.zombie else 0,
                  "exit_code": t.exit_code, "exit_signal": 17, "pdeath_signal": 0,
                  "set_child_tid": 0, "clear_child_tid": 0,
                  "compat_robust_futex_head_len": 0, "compat_robust_futex_list": 0,
                  "robust_futex_head_len": 24, "robust_futex_list": 0,
                  "sas_ss_sp": t.sas[0], "sas_ss_size": t.sas[1], "flags": 0}
        w.rec("task", fields)
        w.raw("string", t.comm.encode()[:15].ljust(16, b"\0"))
        if t.zombie:
            return
        if a.traits["task_order"] == "cpu_first":
            self.cpu(t)
            self.objects(t)
        else:
            self.objects(t)
            self.cpu(t)
        if a.traits["has_signal"]:
            self.sigpending(t.pending)
            w.rec("signal_task", blocked=t.blocked)
        if self.spec.ext:
            w.rec("ext_rseq", rseq=0x7f0000001000 + t.pid * 32, rseq_len=32,
                  signature=0x53053053)

    def cpu(self, t: TaskSpec) -> None:
        a, w = self.abi, self.w
        tls = bytes(24)
        w.rec("thread", sysenter_return=0, thread_info_flags=0, gdt_entry_tls_entries=3,
              sizeof_tls_array=len(tls), tls_array=tls)
        w.rec("restart_block", function_type=a.restart_block_types["none"],
              **{f"arg_{i}": 0 for i in range(5)})
        if a.struct("cpu") is None:          # i386: opaque registers
            w.raw("cpu", bytes(t.regs.get("raw", bytes(120))))
            return
        regs = {r: 0 for r in formats.abi("v17").module.CPU_REGS}
        regs.update(flags=0x246, fs=0, gs=0, fsindex=0, gsindex=0, cs=3, ss=4, ds=0, es=0,
                    used_math=1, **{f"debugreg{i}": 0 for i in (0, 1, 2, 3, 6, 7)})
        regs.update(t.regs)
        w.rec("cpu", regs)
        if regs["used_math"]:
            w.raw("cpu_fpu", t.fpu if t.fpu is not None else bytes(self.spec.xstate_size))

    def objects(self, t: TaskSpec) -> None:
        a, w = self.abi, self.w
        cred = self.creds(t.cred)
        w.rec("task_creds", cred_ref=cred, ecred_ref=cred)
        ns = self.namespaces()
        w.rec("task_ns", ns_objref=ns)
        objs = {"files_objref": self.files(t.files) if t.files else 0,
                "mm_objref": self.mm(t.mm) if t.mm else 0,
                "fs_objref": self.fs(str(t.tgid)) if a.has("fs") else 0,
                "sem_undo_objref": self.sem_undo(t) if t.sem_undo is not None and
                a.has("task_sem_undo_list") else 0,
                "sighand_objref": self.sighand(t.sighand)}
        new_signal = False
        if a.traits["has_signal"]:
            objs["signal_objref"], new_signal = self._ref("signal", t.signal)
        w.rec("task_objs", objs)
        if new_signal:
            w.rec("signal", rlim=[{"rlim_cur": 2**64 - 1, "rlim_max": 2**64 - 1}] * 16,
                  it_real_value=0, it_real_incr=0, it_virt_value=0, it_virt_incr=0,
                  it_prof_value=0, it_prof_incr=0, tty_objref=0, tty_pgrp=0, tty_old_pgrp=0)
            self.sigpending(t.shared_pending)

    def sigpending(self, signals: list[int]) -> None:
        mask = 0
        for sig in signals:
            mask |= 1 << (sig - 1)
        infos = [{k: 0 for k in self._siginfo_fields()} | {"csi_signo": sig}
                 for sig in signals]
        self.w.rec("sigpending", nr_pending=len(signals), signal=mask, siginfo=infos)

    def _siginfo_fields(self):
        st = self.abi.struct("sigpending").subcons[-1].subcon.subcon
        return [sc.name for sc in st.subcons if not sc.name.startswith("_")]

    def creds(self, key: str) -> int:
        w = self.w
        ref, new = self._objref("cred", key)
        if not new:
            return ref
        c = self.spec.creds[key]
        gi, gnew = self._objref("groupinfo", key)
        if gnew:
            w.rec("groupinfo", ngroups=len(c.groups), groups=c.groups)
        user, unew = self._objref("user", str(c.uid))
        if unew:
            userns, nsnew = self._objref("user_ns", "root")
            if nsnew:
                w.rec("user_ns", creator_ref=0)
            w.rec("user", uid=c.uid, userns_ref=userns)
        caps = {f: 0 for f in ("cap_i_0", "cap_i_1", "cap_p_0", "cap_p_1", "cap_e_0",
                               "cap_e_1", "cap_b_0", "cap_b_1", "securebits")}
        w.rec("cred", uid=c.uid, suid=c.uid, euid=c.uid, fsuid=c.uid, gid=c.gid, sgid=c.gid,
              egid=c.gid, fsgid=c.gid, user_ref=user, groupinfo_ref=gi, sec_ref=0, cap_s=caps)
        return ref

    def namespaces(self) -> int:
        a, w, s = self.abi, self.w, self.spec
        ref, new = self._objref("ns", "root")
        if not new:
            return ref
        uts, _ = self._objref("uts_ns", "root")
        w.rec("uts_ns", dict(zip(("sysname", "nodename", "release", "version", "machine",
                                  "domainname"), (x.encode().ljust(65, b"\0") for x in s.uts))))
        ipc, _ = self._objref("ipc_ns", "root")
        w.rec("ipc_ns", shm_ctlmax=2**32, shm_ctlall=2**32, shm_ctlmni=4096,
              msg_ctlmax=8192, msg_ctlmnb=16384, msg_ctlmni=32000, sem_ctl_msl=32000,
              sem_ctl_mns=1024000000, sem_ctl_opm=500, sem_ctl_mni=32000)
        for name in ("ipc_shm", "ipc_msg", "ipc_sem"):
            w.rec("ipc", ipc_type=a.types[name], ipc_count=0)
        w.rec("ns", uts_objref=uts, ipc_objref=ipc, net_objref=0)
        return ref

    def sem_undo(self, t: TaskSpec) -> int:
        """One undo list per thread group: TASK_SEM_UNDO_LIST, then per semaphore set
        TASK_SEM_UNDO and a BUFFER of its s16 adjustments."""
        ref, new = self._objref("sem_undo", str(t.tgid))
        if new:
            self.w.rec("task_sem_undo_list", count=len(t.sem_undo))
            for semid, adj in t.sem_undo:
                self.w.rec("task_sem_undo", semid=semid, semadj_count=len(adj))
                if adj:
                    self.w.raw("buffer", struct.pack(f"<{len(adj)}h", *adj))
        return ref

    def sighand(self, key: str) -> int:
        ref, new = self._objref("sighand", key)
        if new:
            handlers = self.spec.sighands.get(key, self.spec.handlers)
            acts = [{"_sa_handler": handlers.get(i + 1, 0), "sa_flags": 0,
                     "sa_restorer": 0, "sa_mask": 0} for i in range(64)]
            self.w.rec("sighand", action=acts)
        return ref

    def fs(self, key: str) -> int:
        """One fs_struct per thread group, as the engine writes it."""
        ref, new = self._objref("fs", key)
        if new:
            self.w.rec("fs", umask=0o22)
            for path in (self.spec.cwd, "/"):
                self.w.raw("file_name", path.encode() + b"\0")
        return ref

    def file(self, key: str, fd: FdSpec) -> int:
        a, w = self.abi, self.w
        ref, new = self._objref("file", key)
        if not new:
            return ref
        cred = self.refs[("cred", "cred")] if ("cred", "cred") in self.refs else 0
        common = {"f_type": a.file_types[FILE_TYPE_OF.get(fd.kind, fd.kind)], "f_mode": 3, "f_flags": fd.flags,
                  "f_credref": cred, "f_pos": fd.pos, "f_version": 0, "f_secref": 0}
        if fd.kind in NEW_KINDS:
            getattr(self, "file_" + fd.kind)(ref, common, fd)
        elif fd.kind in ("pipe", "fifo"):
            ino, ino_new = self._ref("inode", fd.pipe)
            w.rec("file", common, sub={"pipe_objref": ino})
            if fd.kind == "fifo":
                w.raw("file_name", fd.path.encode() + b"\0")
            if ino_new:
                data = self.spec.pipes.get(fd.pipe, b"")
                if a.traits["pipe_framing"] == "unframed":
                    w.rec("file_pipe", pipe_len=len(data))
                    w.unframed(data)
                else:
                    w.raw("pipe_buf", data)
        else:
            w.rec("file", common, sub=None)
            w.raw("file_name", (fd.path or "").encode() + b"\0")
            if self.spec.ext and fd.path:
                w.rec("ext_file_stat", size=len(fd.path) * 100, mtime_sec=1_600_000_000,
                      mtime_nsec=5, mode=0o100644, dev=0x801, ino=1000 + ref)
        return ref

    # -- sockets, event fds, ttys, extension files --------------------------------
    def _socket(self, fd: FdSpec, family: int, stype: int, state: int) -> tuple[int, bool]:
        """OBJREF(SOCK) and SOCKET the first time the socket is met; (objref, first)."""
        o = fd.opts
        ref, new = self._objref("sock", o["sock"])
        if new:
            self.w.rec("socket", has_buffers=int("queued" in o),
                       socket={"flags": 0, "state": 3 if state == 1 else 1},
                       sock_common={"bound_dev_if": 0, "reuse": 0, "family": family,
                                    "state": state},
                       sock={"rcvlowat": 1, "flags": 0, "rcvtimeo": 2**63 - 1,
                             "sndtimeo": 2**63 - 1, "err": 0, "err_soft": 0, "priority": 0,
                             "rcvbuf": 212992, "sndbuf": 212992, "type": stype,
                             "backlog": o.get("backlog", 0), "protocol": 0, "state": state,
                             "shutdown": 0, "userlocks": 0, "no_check": 0,
                             "linger_onoff": 0, "linger_linger": 0})
            if "queued" in o:
                self.deferred.append(("queue", ref, o["queued"]))
        return ref, new

    def file_unix(self, ref: int, common: dict, fd: FdSpec) -> None:
        o = fd.opts
        state = 1 if o.get("peer") else 10 if o.get("listen") else 7
        sref, new = self._socket(fd, 1, o.get("type", 1), state)
        if new:
            # the peer is numbered now and written with its own file (a forward reference)
            peer = self._ref("sock", o["peer"])[0] if o.get("peer") else 0
            addr = (o.get("addr") or "").encode()
            self.w.rec("socket_unix", this=sref, peer=peer, flags=0, peercred=0,
                       peercred_uid=NO_CRED, peercred_gid=NO_CRED,
                       laddr_len=len(addr) + 3 if addr else 2, raddr_len=0,
                       laddr={"sun_family": 1, "sun_path": addr.ljust(108, b"\0")},
                       raddr={"sun_family": 1 if peer else 0, "sun_path": bytes(108)})
        self.w.rec("file", common, sub={"sock_objref": sref})

    def file_tcp(self, ref: int, common: dict, fd: FdSpec, stype: int = 1) -> None:
        o = fd.opts
        sref, new = self._socket(fd, 2, stype, o.get("state", 1 if stype == 1 else 7))
        if new:
            (lhost, lport), (rhost, rport) = o.get("laddr", ("0.0.0.0", 0)), \
                o.get("raddr", ("0.0.0.0", 0))
            tcp = dict.fromkeys(formats.abi("v19-rc2").module.TCP_FIELDS, 0) | \
                dict.fromkeys(("urg_data", "advmss", "frto_counter", "nonagle", "ecn_flags",
                               "reordering", "keepalive_probes"), 0) | \
                {"rcv_nxt": o.get("seq", 1000), "snd_nxt": o.get("seq", 1000) + 7}
            self.w.rec("socket_inet", laddr_len=16, raddr_len=16 if rport else 0,
                       laddr=_sin(lhost, lport), raddr=_sin(rhost, rport),
                       daddr=_ip(rhost), rcv_saddr=_ip(lhost), saddr=_ip(lhost),
                       dport=_port(rport), num=lport, sport=_port(lport), uc_ttl=-1,
                       cmsg_flags=0, tcp=tcp,
                       icsk_ack=dict.fromkeys(("timeout", "ato", "lrcvtime", "last_seg_size",
                                               "rcv_mss", "pending", "quick", "pingpong",
                                               "blocked"), 0),
                       inet6={"saddr": bytes(16), "rcv_saddr": bytes(16),
                              "daddr": bytes(16)})
        self.w.rec("file", common, sub={"sock_objref": sref})

    def file_udp(self, ref: int, common: dict, fd: FdSpec) -> None:
        self.file_tcp(ref, common, fd, stype=2)

    def file_eventfd(self, ref: int, common: dict, fd: FdSpec) -> None:
        self.w.rec("file", common, sub={"count": fd.opts.get("count", 0),
                                        "flags": fd.opts.get("flags", 0o2000000)})

    def file_epoll(self, ref: int, common: dict, fd: FdSpec) -> None:
        self.w.rec("file", common, sub=None)
        self.deferred.append(("epoll", ref, fd.opts.get("watch", [])))

    def file_tty(self, ref: int, common: dict, fd: FdSpec) -> None:
        w, o = self.w, fd.opts
        tref, new = self._objref("tty", o.get("tty", f"tty:{ref}"))
        if new:
            link = self._ref("tty", o["link"])[0] if o.get("link") else 0
            termios = {"c_iflag": 0x500, "c_oflag": 5, "c_cflag": 0xbf, "c_lflag": 0x8a3b,
                       "c_ispeed": 38400, "c_ospeed": 38400, "c_line": 0,
                       "c_cc": bytes(range(1, 20))[:self._cc_len()]}
            w.rec("tty", driver_type=4, driver_subtype=1 if o.get("master") else 2,
                  link_objref=link, file_objref=0, index=o.get("index", 0), ldisc=0,
                  flags=0, termios=termios,
                  winsize={"ws_row": 24, "ws_col": 80, "ws_xpixel": 0, "ws_ypixel": 0})
            data = o.get("data", b"")
            w.rec("tty_ldisc", {f: 0 for f in ("column", "canon_column", "canon_datalen",
                                               "canon_data", "minimum_to_wake", "stopped",
                                               "hw_stopped", "flow_stopped", "packet",
                                               "ctrl_status", "lnext", "erasing", "raw",
                                               "real_raw", "icanon", "closing")},
                  datalen=len(data), read_flags=bytes(512))
            if data:
                w.raw("buffer", data)
        w.rec("file", common, sub={"tty_objref": tref})

    def _cc_len(self) -> int:
        termios = next(sc for sc in self.abi.struct("tty").subcons if sc.name == "termios")
        return next(sc for sc in termios.subcon.subcons if sc.name == "c_cc").subcon.length

    def _ext_common(self, common: dict) -> dict:
        return common | {"f_type": self.abi.file_types["ignore"]}

    def file_signalfd(self, ref: int, common: dict, fd: FdSpec) -> None:
        self.w.rec("ext_file_signalfd", self._ext_common(common),
                   sigmask=fd.opts.get("sigmask", 1 << 16))

    def file_timerfd(self, ref: int, common: dict, fd: FdSpec) -> None:
        o = fd.opts
        self.w.rec("ext_file_timerfd", self._ext_common(common), clockid=o.get("clockid", 1),
                   settime_flags=0, ticks=o.get("ticks", 0),
                   value_ns=o.get("value_ns", 10**9), interval_ns=o.get("interval_ns", 0))

    def file_inotify(self, ref: int, common: dict, fd: FdSpec) -> None:
        watches = fd.opts.get("watches", [])
        self.w.rec("ext_file_inotify", self._ext_common(common), nr_watches=len(watches))
        for wd, path in watches:
            self.w.rec("ext_inotify_watch", wd=wd, mask=0x2, ino=wd + 100, dev=0x801)
            self.w.raw("file_name", path.encode() + b"\0")

    def _extents(self, data: bytes) -> None:
        for off in range(0, len(data), 8192):
            self.w.raw("ext_extent", struct.pack("<Q", off) + data[off:off + 8192])
        self.w.raw("ext_extent", struct.pack("<Q", len(data)))

    def file_memfd(self, ref: int, common: dict, fd: FdSpec) -> None:
        o = fd.opts
        data = o.get("data", b"")
        ino, new = self._ref("inode", o.get("inode", f"memfd:{ref}"))
        self.w.rec("ext_file_memfd", self._ext_common(common), ino_objref=ino,
                   seals=o.get("seals", 0), size=len(data))
        self.w.raw("string", b"memfd:" + o.get("name", "x").encode() + b"\0")
        if new:
            self._extents(data)

    def file_ghost(self, ref: int, common: dict, fd: FdSpec) -> None:
        o = fd.opts
        data = o.get("data", b"")
        ino, new = self._ref("inode", o.get("inode", f"ghost:{ref}"))
        self.w.rec("ext_file_ghost", self._ext_common(common), ino_objref=ino,
                   mode=0o100644, size=len(data), uid=0, gid=0)
        self.w.raw("file_name", (fd.path or "").encode() + b"\0")
        if new:
            self._extents(data)

    def run_deferred(self) -> None:
        """Socket buffers and epoll items: after the file table, as the kernel's deferqueue
        wrote them."""
        a, w = self.abi, self.w
        todo, self.deferred = self.deferred, []
        for item in todo:
            if item[0] == "epoll":
                _, ep, fds = item
                table = {f.fd: f for f in self.spec.files[self._table]}
                rows = []
                for n in fds:
                    spec = table[n]
                    rows.append(a.build("ckpt_eventpoll_item", {
                        "data": n, "fd": n, "events": 1,
                        "file_objref": self.refs[("file", spec.file or f"{self._table}:{n}")]}))
                w.rec("epoll_items", epfile_objref=ep, num_items=len(rows))
                w.raw("buffer", b"".join(rows))
                continue
            _, sref, chunks = item
            for queue in (chunks, []):
                w.rec("socket_queue", skb_count=len(queue),
                      total_bytes=sum(len(c) for c in queue))
                for c in queue:
                    w.rec("socket_buffer", {f: 0 for f in (
                        "transport_header", "network_header", "mac_header", "frg_len",
                        "hdr_len", "mac_len", "data_offset", "protocol", "nr_frags")},
                        lin_len=len(c), skb_len=len(c), sk_objref=sref, pr_objref=sref,
                        cb=bytes(48))
                    w.raw("buffer", c)

    def files(self, key: str) -> int:
        ref, new = self._objref("file_table", key)
        if not new:
            return ref
        fds = self.spec.files.get(key, [])
        self.w.rec("file_table", fdt_nfds=len(fds))
        self._table = key
        for fd in fds:
            fref = self.file(fd.file or f"{key}:{fd.fd}", fd)
            self.w.rec("file_desc", fd_objref=fref, fd_descriptor=fd.fd,
                       fd_close_on_exec=int(fd.cloexec))
        self.run_deferred()
        return ref

    def mm(self, key: str) -> int:
        a, w = self.abi, self.w
        ref, new = self._objref("mm", key)
        if not new:
            return ref
        m = self.spec.mms[key]
        exe = self.file(f"exe:{key}", FdSpec(-1, path=m.exe)) if m.exe else 0
        w.rec("mm", map_count=len(m.vmas), exe_objref=exe, def_flags=0, flags=0,
              start_code=0, end_code=0, start_data=0, end_data=0, start_brk=m.brk[0],
              brk=m.brk[1], start_stack=0, arg_start=0, arg_end=0, env_start=0, env_end=0)
        words = [x for pair in m.auxv for x in pair]
        words += [0] * (self._auxv_count() - len(words))
        fmt = "Q" if a.auxv_word == 8 else "I"
        w.raw("buffer", struct.pack(f"<{len(words)}{fmt}", *words))
        for v in m.vmas:
            self.vma(key, v)
        w.rec("mm_context", vdso=m.vdso, ldt_entry_size=8, nldt=0)
        w.raw("mm_context_ldt")
        return ref

    def vma(self, mm_key: str, v: VmaSpec) -> None:
        a, w = self.abi, self.w
        fref = 0
        if v.fd is not None:
            fref = self.file(v.file or f"map:{mm_key}:{v.start:x}", v.fd)
        elif v.path:
            fref = self.file(f"map:{v.path}", FdSpec(-1, path=v.path))
        ino = 0
        if v.kind == "shm_anon":
            ino, _ = self._ref("inode", f"shm:{mm_key}:{v.start:x}")
        w.rec("vma", vma_type=a.vma_types[v.kind], vma_objref=fref, ino_objref=ino,
              ino_size=0, vm_start=v.start, vm_end=v.end, vm_page_prot=v.page_prot,
              vm_flags=v.flags, vm_pgoff=v.pgoff, hugetlb_shift=0)
        if v.kind in ("vdso", "shm_file"):
            return
        addrs = sorted(v.pages)
        fmt = "Q" if a.word == 8 else "I"
        for i in range(0, len(addrs), 512):
            batch = addrs[i:i + 512]
            w.rec("pgarr", nr_pages=len(batch))
            w.begin("buffer", len(batch) * (a.word + PAGE))
            w.write(struct.pack(f"<{len(batch)}{fmt}", *batch))
            for addr in batch:
                page = v.pages[addr]
                w.write(page.ljust(PAGE, b"\0")[:PAGE])
        w.rec("pgarr", nr_pages=0)


def _ip(host: str) -> int:
    """A dotted IPv4 address as the u32 the kernel stores (network order in memory)."""
    return int.from_bytes(bytes(map(int, host.split("."))), "little")


def _port(port: int) -> int:
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def _sin(host: str, port: int) -> dict:
    return {"sin_family": 2, "sin_port": _port(port), "sin_addr": _ip(host),
            "sin_zero": bytes(8)}


def compose(out: BinaryIO, spec: ImageSpec, version: str = formats.NATIVE,
            arch: str = "x86_64") -> None:
    Composer(out, formats.abi(version, arch), spec).compose()


def compose_bytes(spec: ImageSpec, version: str = formats.NATIVE, arch: str = "x86_64") -> bytes:
    import io
    buf = io.BytesIO()
    compose(buf, spec, version, arch)
    return buf.getvalue()
