"""Files: FILE_TABLE and its FILE_DESCs, FILE records by type (pipe and FIFO ends are
pipes.py's), FILE_NAMEs, and FS with its cwd and root names."""
from __future__ import annotations

from ._pass import ERROR, MAX_OBJECTS, TEXT_MAX, WARNING, Expect, Pass
from .objrefs import FWD_OK

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "files.count": (ERROR, "file table count mismatch", "FILE_TABLE.fdt_nfds announces the "
                    "number of FILE_DESC records that follow."),
    "files.fd-dup": (ERROR, "descriptor number used twice", "One file table holds each fd "
                     "number once."),
    "files.fd-range": (ERROR, "negative descriptor number", "fd_descriptor is >= 0."),
    "files.type": (ERROR, "unknown file type", "FILE.f_type is no file type of this version."),
    "files.name-missing": (ERROR, "FILE_NAME missing", "Generic files and FIFOs are followed "
                           "by their FILE_NAME; FS by the cwd and root FILE_NAMEs."),
    "files.name-format": (WARNING, "odd FILE_NAME", "FILE_NAME holds a path ending with NUL."),
}

EXPECT = {"file_name": Expect(("file_name",), "files.name-missing", "a FILE_NAME")}

# Records that end an open file table (they never nest inside one).
TABLE_CLOSERS = {"task", "task_objs", "task_creds", "task_ns", "file_table", "mm", "sighand",
                 "fs", "tail", "thread", "cpu", "restart_block", "signal_task", "signal",
                 "vma", "mm_context"}
# FILE types whose struct is the whole payload: bytes past it are a record.size finding.
SIZED_FILE_TYPES = ("generic", "pipe", "fifo", "socket", "tty", "eventfd", "epoll", "ignore")


class FdSet:
    """The descriptor numbers of one file table: a bit each below a bound that grows with
    the count (a set of 400,000 ints was 30 MB), a set for the few far beyond it."""

    def __init__(self):
        self.bits = bytearray()
        self.far: set[int] = set()
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def __contains__(self, fd: int) -> bool:
        if fd >> 3 < len(self.bits) and self.bits[fd >> 3] & 1 << (fd & 7):
            return True
        return fd in self.far       # (added before the bits reached it)

    def add(self, fd: int) -> None:
        self.n += 1
        byte = fd >> 3
        if byte >= len(self.bits) and byte < self.n + 8192:
            self.bits.extend(bytes(max(byte + 1, 2 * len(self.bits)) - len(self.bits)))
        if byte < len(self.bits):
            self.bits[byte] |= 1 << (fd & 7)
        else:
            self.far.add(fd)


class Files(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.table = None         # [ref, nfds, count, FdSet, offset]
        self.file_type = None     # f_type of the last FILE

    def gate_file_table(self, name: str) -> None:
        if name in TABLE_CLOSERS:
            self.close_table()

    def file_is_sized(self, v) -> bool:
        return self.abi.file_type_names.get(v.f_type) in SIZED_FILE_TYPES

    def on_fs(self, rec, v, matched):
        self.object_record("fs", rec, v)
        self.expect[:0] = [("file_name", "cwd", rec.offset), ("file_name", "root", rec.offset)]

    def on_file_table(self, rec, v, matched):
        ref = self.object_record("file_table", rec, v)
        n = v.fdt_nfds
        if n < 0:
            self.add("files.count", f"fdt_nfds is {n}")
            n = 0
        self.table = [ref, n, 0, FdSet(), rec.offset]
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
        self.file_type = v.f_type
        if ftype is None:
            self.add("files.type", f"f_type {v.f_type} is no file type of {self.abi.name}")
            return
        sub = v.sub if v.sub is not None else {}
        self.generic_named = False
        if ftype in ("generic", "fifo"):
            self.expect.append(("file_name", "file", rec.offset))
        if ftype in ("pipe", "fifo"):
            self.pipe_end(rec, v, ftype, sub.get("pipe_objref", 0), ref)
        elif ftype == "socket":
            self.ref("sock", sub.get("sock_objref", 0), "sock_objref", FWD_OK, ref)
            self.socket_file()
        elif ftype == "tty":
            self.ref("tty", sub.get("tty_objref", 0), "tty_objref", 0, ref)

    def on_file_name(self, rec, v, matched):
        if rec.size > TEXT_MAX:
            self.add("files.name-format", f"FILE_NAME of {rec.size} bytes is longer than "
                     f"PATH_MAX")
            return
        data = rec.data()
        self.generic_named = matched is not None and matched[1] == "file" and \
            self.abi.file_type_names.get(self.file_type) == "generic"
        if matched is not None and (not data or data[-1:] != b"\0" or data[:1] == b"\0"):
            self.add("files.name-format", f"FILE_NAME {data[:64]!r} is not a NUL-terminated "
                     f"path")
