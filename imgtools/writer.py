"""Sequential output: records with the schemas of one ABI (ImageWriter), and page data
copied from an image file at the kernel's speed (SequentialOut)."""
from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from formats import Abi

from .errors import FramingError
from .stream import CHUNK, HDR, grow_pipe

COPY_MAX = 8 << 20        # per sendfile call
COPY_BUF = 256 << 10      # pread/write buffer


class ImageWriter:
    def __init__(self, out: BinaryIO, abi: Abi):
        self.out = out
        self.abi = abi
        self.pos = 0
        self._open = 0          # bytes still owed to a record begun with begin()

    def _type(self, name_or_type: str | int) -> int:
        if isinstance(name_or_type, int):
            return name_or_type
        try:
            return self.abi.types[name_or_type]
        except KeyError:
            raise ValueError(f"{self.abi.name} has no record {name_or_type.upper()}") from None

    def raw(self, name_or_type: str | int, payload: bytes = b"") -> None:
        """A record with the given payload bytes."""
        self.begin(name_or_type, len(payload))
        self.write(payload)

    def rec(self, name: str, value: dict | None = None, **fields) -> None:
        """A record built from field values with this ABI's struct."""
        v = dict(value or {}, **fields)
        self.raw(name, self.abi.build(name, v))

    def begin(self, name_or_type: str | int, size: int) -> None:
        """Start a record whose ``size`` payload bytes follow through ``write``."""
        if self._open:
            raise RuntimeError(f"{self._open} payload bytes still owed to the previous record")
        self.out.write(HDR.pack(self._type(name_or_type), size + HDR.size))
        self.pos += HDR.size
        self._open = size

    def write(self, data: bytes) -> None:
        if len(data) > self._open:
            raise RuntimeError("payload longer than announced")
        self.out.write(data)
        self.pos += len(data)
        self._open -= len(data)

    def skip(self, n: int) -> None:
        """Count ``n`` payload bytes written to ``out`` past this writer (a kernel copy
        into its file descriptor, after a flush)."""
        if n > self._open:
            raise RuntimeError("payload longer than announced")
        self.pos += n
        self._open -= n

    def unframed(self, data: bytes) -> None:
        """Bytes outside any record (v17 pipe data)."""
        if self._open:
            raise RuntimeError("unframed bytes inside a record")
        self.out.write(data)
        self.pos += len(data)


class SequentialOut:
    """Sequential output: holes by seeking on regular files; page copies by sendfile
    into pipes and through one small buffer into files.

    Page images sit at arbitrary (unaligned) offsets of an image, and for such a source
    pread/write through a 256 KiB buffer (it stays in the CPU cache) beats both
    sendfile and copy_file_range into a file; into a pipe sendfile wins (measured,
    bench/bench_core.py).  A file object without a descriptor gets plain writes.

    ``background`` (into a regular file): every write and copy is made by a thread
    (``_Copier``), in order, while the caller goes on with the records after them, and
    ``finish`` waits for them.  The copies are the kernel's work, done without the
    interpreter lock, so the interpreter's work on the metadata no longer adds to them;
    the caller then writes through this object only (a write of its own to the file
    would wait for the thread's, on the file's lock)."""

    def __init__(self, out: BinaryIO | int, src_fd: int, background: bool = False):
        self.src = src_fd
        self.fd: int | None = None
        self.stream = None
        if isinstance(out, int):
            self.fd = out
        else:
            out.flush()
            try:
                self.fd = out.fileno()
            except (OSError, AttributeError, ValueError):
                self.stream = out           # io.UnsupportedOperation is an OSError
        self.sparse = self.sendfile = False
        self.pos = 0
        if self.fd is not None:
            regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
            try:
                import fcntl
                append = bool(fcntl.fcntl(self.fd, fcntl.F_GETFL) & os.O_APPEND)
            except OSError:
                append = True
            self.sparse = regular and not append
            if self.sparse:
                self.pos = os.lseek(self.fd, 0, os.SEEK_CUR)
            self.sendfile = not regular and hasattr(os, "sendfile")
            if stat.S_ISFIFO(os.fstat(self.fd).st_mode):
                grow_pipe(self.fd)      # 1 MiB per sendfile, not the default 64 KiB
        self._buf: memoryview | None = None
        self._zeros = bytes(CHUNK)
        self._copier = _Copier(self.fd) if background and self.sparse else None
        self._pending = bytearray()     # small writes, handed to the thread together

    @property
    def background(self) -> bool:
        return self._copier is not None

    def write(self, data) -> None:
        if self._copier is not None:
            self._pending += data
            if len(self._pending) >= COPY_BUF:
                self.flush()
            return
        if self.stream is not None:
            self.stream.write(data)
            self.pos += len(data)
            return
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.pos += n

    def flush(self) -> None:
        """(background) Hand the small writes so far to the thread."""
        if self._copier is not None and self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            self._copier.put(None, data, self.pos, len(data))
            self.pos += len(data)

    def zeros(self, n: int) -> None:
        if n <= 0:
            return
        if self.sparse:
            if self._copier is not None:
                self.flush()
                self.pos += n               # (a hole: finish gives the file its size)
            else:
                self.pos = os.lseek(self.fd, n, os.SEEK_CUR)
            return
        while n:
            k = min(n, CHUNK)
            self.write(self._zeros[:k])
            n -= k

    def copy(self, src: int, n: int, advance, src_fd: int | None = None) -> None:
        """``n`` bytes at ``src`` of the source (``src_fd``, else the one given)."""
        if self._copier is not None:
            self.flush()
            self._copier.put(self.src if src_fd is None else src_fd, src, self.pos, n)
            self.pos += n
            if advance:
                advance(n)
            return
        if src_fd is not None and src_fd != self.src:
            raise ValueError("a copy from another source needs background=True")
        while n:
            got = self._copy_some(src, min(n, COPY_MAX))
            if got <= 0:
                raise FramingError(f"image ends inside page data ({n} bytes missing)",
                                   offset=src)
            src += got
            n -= got
            if advance:
                advance(got)

    def _copy_some(self, src: int, k: int) -> int:
        if self.sendfile:
            try:
                got = os.sendfile(self.fd, self.src, src, k)
                self.pos += got
                return got
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self.sendfile = False
        if self._buf is None:
            self._buf = memoryview(bytearray(COPY_BUF))
        got = os.preadv(self.src, [self._buf[:min(k, COPY_BUF)]], src)
        if got > 0:
            self.write(self._buf[:got])
        return got

    def finish(self) -> None:
        if self._copier is not None:
            self.flush()
            self._copier.close()
            self._copier = None
            os.lseek(self.fd, self.pos, os.SEEK_SET)    # where a caller's writes go on
        if self.stream is not None:
            self.stream.flush()
        elif self.sparse and os.fstat(self.fd).st_size < self.pos:
            os.ftruncate(self.fd, self.pos)

    def abandon(self) -> None:
        """Stop the background writes (the output is being given up)."""
        if self._copier is not None:
            self._copier.close(abandon=True)
            self._copier = None


class _Copier:
    """The thread behind ``SequentialOut(background=True)``: writes bytes and copies
    ranges of a source into the output at given offsets (pwrite, pread), in the order
    given.  The first error is kept, the jobs after it are dropped, and it is raised to
    the caller at its next ``put`` or at ``close``."""

    def __init__(self, fd: int):
        import queue
        import threading
        self.fd = fd
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="imgtools-copy", daemon=True)
        self.thread.start()

    def put(self, src_fd: int | None, src, dst: int, n: int) -> None:
        """Copy ``n`` bytes at offset ``src`` of ``src_fd`` to ``dst``; with ``src_fd``
        None, ``src`` is the bytes to write."""
        if self.error is not None:
            self._raise()
        self.jobs.put((src_fd, src, dst, n))

    def close(self, abandon: bool = False) -> None:
        self.stop = abandon
        self.jobs.put(None)
        self.thread.join()
        if not abandon and self.error is not None:
            self._raise()

    def _raise(self):
        e, self.error = self.error, None
        self.stop = True
        raise e

    def _run(self) -> None:
        buf = memoryview(bytearray(COPY_BUF))
        while (job := self.jobs.get()) is not None:
            if self.error is not None or self.stop:
                continue
            src_fd, src, dst, n = job
            try:
                if src_fd is None:
                    self._write(memoryview(src), dst)
                    continue
                while n:
                    got = os.preadv(src_fd, [buf[:min(n, COPY_BUF)]], src)
                    if got <= 0:
                        raise FramingError(f"image ends inside page data ({n} bytes "
                                           f"missing)", offset=src)
                    self._write(buf[:got], dst)
                    dst += got
                    src += got
                    n -= got
            except BaseException as e:      # raised to the caller (put, close)
                self.error = e

    def _write(self, view: memoryview, dst: int) -> None:
        while view:
            k = os.pwrite(self.fd, view, dst)
            view = view[k:]
            dst += k
