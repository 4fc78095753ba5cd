"""Open an image: frame it, read the header, detect the ABI version.

Phase 1 reads the header record with a version-free struct; phase 2 picks the
ABI from ``rev`` (and, where ``rev`` is shared, from a bounded look-ahead at
the records before the first task), then replays the look-ahead and goes on.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import formats
from formats import Abi, PayloadError

from .errors import FramingError, ImageError, SchemaError, UsageError
from .stream import PIPE_DATA, Record, RecordReader, Source, open_input

# The fields of ckpt_hdr_header that every version shares.
HEAD = struct.Struct("<QHHHHH")
LOOKAHEAD_RECORDS = 64
LOOKAHEAD_BYTES = 16 << 20

_BY_REV: dict[int, list[str]] = {}
for _v in formats.VERSIONS:
    _BY_REV.setdefault(formats.abi(_v).rev, []).append(_v)


class ImageReader:
    """The records of one image, with its ABI and parsed header."""

    def __init__(self, f: BinaryIO, name: str = "<stream>", version: str | None = None,
                 arch: str | None = None):
        self.name = name
        try:                        # a bad --format/--arch is the user's, not the image's
            version = formats.canonical(version) if version is not None else None
            if arch is not None and arch not in formats.ARCHES:
                raise ValueError(f"unknown architecture {arch!r} (known: "
                                 f"{', '.join(formats.ARCHES)})")
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.src = Source(f, name)
        self.frames = RecordReader(self.src)
        self._ahead: list[Record] = []
        first = self._next_or_none()
        if first is None:
            raise FramingError("empty image: no header record", offset=0)
        if first.type != formats.HEADER_TYPE or first.len != formats.HEADER_LEN:
            raise FramingError(f"not a checkpoint image: first record has type {first.type} "
                               f"len {first.len}, expected the header (type 1, len 72)",
                               offset=first.offset)
        magic, arch_id, major, minor, patch, rev = HEAD.unpack_from(first.data())
        head_magic = formats.abi("v17").magic_head
        if magic != head_magic:
            raise FramingError(f"bad magic {magic:#018x}, expected {head_magic:#018x}",
                               offset=first.offset + 8, record="HEADER")
        self.kernel = (major, minor, patch)
        self.rev = rev
        if version is None:
            version = self._detect(rev, first)
        if arch is None:
            arch = _arch_of(version, arch_id, first.offset)
        self.version = version
        self.arch = arch
        self.abi: Abi = formats.abi(version, arch)
        self.header = self.parse(first)
        self._ahead.insert(0, first)
        if self.abi.traits["pipe_framing"] == "unframed":
            self.frames.unframed = _unframed_pipe_bytes(self.abi)

    def _next_or_none(self) -> Record | None:
        try:
            return next(self.frames)
        except StopIteration:
            return None

    def _detect(self, rev: int, first: Record) -> str:
        candidates = _BY_REV.get(rev)
        if not candidates:
            known = "; ".join(f"{r}: {'/'.join(v)}" for r, v in _BY_REV.items())
            raise ImageError(f"unknown format revision {rev} (known: {known}); use --format "
                             f"to force one", offset=first.offset + 24, record="HEADER")
        if len(candidates) == 1:
            return candidates[0]
        return self._probe(candidates)

    def _probe(self, candidates: list[str]) -> str:
        """rev is shared (v21, v23-rc1, v23): look at the records before the first task.

        The first record of type 101 is PIDS (len 24) only in v23, TREE (len 16)
        before it; then the first type-102 record is TASK, 64 bytes in v21 and
        80 in v23-rc1."""
        with_pids = [c for c in candidates if formats.abi(c).has("pids")]
        without = [c for c in candidates if c not in with_pids]
        pids = {formats.abi(c).types["pids"]: formats.abi(c).sizeof("pids") + 8
                for c in with_pids}
        first_tree = {formats.abi(c).types["tree"] for c in without}
        task_len = {formats.abi(c).sizeof("task") + 8: c for c in without}
        task_type = {formats.abi(c).types["task"] for c in without}
        ahead_bytes = 0
        saw_tree = False
        while len(self._ahead) < LOOKAHEAD_RECORDS and ahead_bytes < LOOKAHEAD_BYTES:
            rec = self._next_or_none()
            if rec is None:
                break
            rec.data(LOOKAHEAD_BYTES)
            self._ahead.append(rec)
            ahead_bytes += rec.len
            if not saw_tree and pids.get(rec.type) == rec.len:
                return with_pids[-1]
            if not saw_tree and rec.type in first_tree:
                saw_tree = True
            elif saw_tree and rec.type in task_type:
                return task_len.get(rec.len, without[-1])
        # No task in sight: the newest candidate without PIDS (docs/format-choices.md).
        return without[-1]

    def records(self) -> Iterator[Record]:
        """Every record from the header on, each once."""
        while self._ahead:
            yield self._ahead.pop(0)
        yield from self.frames

    def name_of(self, rec: Record) -> str:
        if rec.type == PIPE_DATA:
            return "pipe_data"
        return self.abi.type_name(rec.type) or f"type_{rec.type}"

    def parse(self, rec: Record, name: str | None = None):
        """Parse a record's payload with its version's struct (None if opaque);
        ``name``: the record's name, if the caller has it already."""
        if name is None:
            name = self.name_of(rec)
        if name not in self.abi.structs:
            return None
        try:
            return self.abi.parse(name, rec.data())
        except PayloadError as e:
            raise SchemaError(str(e), offset=rec.offset, record=name.upper()) from None


def _arch_of(version: str, arch_id: int, offset: int) -> str:
    ids = formats.abi(version).arch_ids
    for arch, n in ids.items():
        if n == arch_id:
            return arch
    raise ImageError(f"unsupported architecture id {arch_id} for {version} (supported: "
                     f"{', '.join(f'{a}={n}' for a, n in ids.items())})",
                     offset=offset + 16, record="HEADER")


def _unframed_pipe_bytes(abi: Abi):
    file_pipe = abi.types["file_pipe"]

    def after(rec: Record) -> int:
        if rec.type != file_pipe:
            return 0
        if rec.size < 4:
            raise SchemaError(f"FILE_PIPE payload of {rec.size} bytes has no pipe_len",
                              offset=rec.offset, record="FILE_PIPE")
        (n,) = struct.unpack_from("<i", rec.data())
        if n < 0:
            raise SchemaError(f"negative pipe_len {n}", offset=rec.offset, record="FILE_PIPE")
        return n
    return after


@contextmanager
def open_image(path: str, version: str | None = None, arch: str | None = None):
    f, name = open_input(path)
    try:
        yield ImageReader(f, name, version, arch)
    finally:
        if path != "-":
            f.close()
