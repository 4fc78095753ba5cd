"""Framing: the record stream itself.  An image's first bytes, sniffed before a reader is
built (is it an image at all, is its magic right); a stream that cannot be framed past some
byte; TAIL, its magic, and anything after it."""
from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

import formats

from ..errors import FramingError, ImageError
from ..reader import ImageReader
from ..stream import HDR
from . import head
from ._pass import ERROR, Pass

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
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
}

# HEADER after its record header: magic, arch_id, major, minor, patch, rev
_HEAD = struct.Struct("<QHHHHH")


def open_image(f: BinaryIO, name: str, version: str | None, arch: str | None,
               sink) -> ImageReader | None:
    """A reader over ``f`` once its first record looks like a HEADER; None when it does not
    (the reason is a finding in ``sink``).  Only an unknown ``version``/``arch`` raises
    ValueError."""
    if version is not None:
        version = formats.canonical(version)
    if arch is not None and arch not in formats.ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(formats.ARCHES)})")
    try:
        start = f.tell() if getattr(f, "seekable", lambda: False)() else 0
    except (OSError, io.UnsupportedOperation):
        start = 0
    first = _read_upto(f, formats.HEADER_LEN)
    if len(first) < HDR.size:
        sink.add("framing.empty", 0, "-", None, "no record header" if not first else
                 f"{len(first)} bytes, not even a record header")
        return None
    rtype, rlen = HDR.unpack_from(first)
    if rtype != formats.HEADER_TYPE or rlen != formats.HEADER_LEN:
        sink.add("framing.not-image", 0, "-", None, f"first record has type {rtype} len "
                 f"{rlen}, expected the HEADER (type 1, len 72)")
        return None
    if len(first) < formats.HEADER_LEN:
        sink.add("framing.truncated", 0, "HEADER", None, f"the stream ends after {len(first)} "
                 f"of the header's 72 bytes")
        return None
    magic, arch_id, _major, _minor, _patch, rev = _HEAD.unpack_from(first, 8)
    want = formats.abi("v17").magic_head
    if magic != want:
        sink.add("framing.magic-head", 8, "HEADER", None, f"magic {magic:#018x}, expected "
                 f"{want:#018x}; checked as if it were right")
        first = first[:8] + struct.pack("<Q", want) + first[16:]
    arch = head.layout_arch(rev, arch_id, version, arch, sink)
    if arch is None:
        return None
    try:
        return ImageReader(_Prefixed(f, first, start), name, version, arch)
    except ImageError as e:
        sink.add(_stream_code(e), e.offset, e.record or "-", None, e.message)
        return None


def _read_upto(f: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        b = f.read(left)
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


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


class Framing(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.tail_seen = False
        self.tail_end = 0

    def stream_error(self, e: ImageError) -> None:
        self.broken = True
        self.add(_stream_code(e), e.message, offset=e.offset, record=e.record or "-")

    def on_tail(self, rec, v, matched):
        self.head_done("TAIL")
        self.reach_tail(rec)
        if v.magic != self.abi.magic_tail:
            self.add("framing.magic-tail", f"magic {v.magic:#018x}, expected "
                     f"{self.abi.magic_tail:#018x}", task=None)

    def reach_tail(self, rec) -> None:
        self.close_task()
        self.task = None
        self.tail_seen = True
        self.tail_end = rec.offset + rec.len

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

    def tail_missing(self) -> None:
        self.add("framing.tail-missing", "the stream ends without TAIL" +
                 (" (after an ERROR record)" if self.aborted else ""),
                 offset=self.r.src.pos, record="-", task=None)
