"""Inputs recognised by their first bytes: zstd, gzip and xz images are decompressed as
they are read (files and pipes alike); a file that is something else entirely (an ELF
file, the JSON of `decode`, a CRIU image) is named instead of being framed as records."""
from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

from .errors import ImageError, UsageError

ZSTD, GZIP, XZ = b"\x28\xb5\x2f\xfd", b"\x1f\x8b", b"\xfd7zXZ\x00"
ELF = b"\x7fELF"
# CRIU image files start with one of these (criu/include/magic.h), then the image's own.
CRIU_MAGICS = {0x54564319: "image", 0x55105940: "service image", 0x58313116: "inventory"}
ELF_TYPES = {1: "relocatable object", 2: "executable", 3: "shared object or PIE executable",
             4: "core file"}
CHUNK = 1 << 20


def compression(head: bytes) -> str | None:
    for name, magic in (("zstd", ZSTD), ("gzip", GZIP), ("xz", XZ)):
        if head.startswith(magic):
            return name
    return None


def what_is(head: bytes) -> str | None:
    """What a file that is not a linux-cr image is, from its first bytes (None: unknown,
    perhaps an image)."""
    if head.startswith(ELF):
        kind = struct.unpack_from("<H", head, 16)[0] if len(head) >= 18 else 0
        return f"an ELF {ELF_TYPES.get(kind, 'file')}"
    if head.lstrip()[:1] == b"{":
        if b'"imgtools"' in head:
            return "the JSON of `imgtools decode` (`imgtools encode` makes an image of it)"
        return "a JSON document"
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] in CRIU_MAGICS:
        return f"a CRIU {CRIU_MAGICS[struct.unpack_from('<I', head)[0]]} file (crit reads those)"
    return None


def peek(f: BinaryIO, n: int = 64) -> bytes:
    """The first bytes of a freshly opened input, left unread."""
    if f.seekable():
        pos = f.tell()
        head = f.read(n)
        f.seek(pos)
        return head
    return f.peek(n)[:n]        # a buffered pipe: one read, kept in the buffer


def check_directory(path: str) -> None:
    """A directory is refused with what it looks like (a CRIU dump holds *.img files)."""
    try:
        names = os.listdir(path)
    except OSError:
        names = []
    if "inventory.img" in names or any(n.endswith(".img") for n in names):
        raise ImageError(f"{path} is a directory of CRIU images (inventory.img, ...), not a "
                         f"linux-cr image; crit reads those")
    raise UsageError(f"{path} is a directory, not an image")


class _Decompressed(io.RawIOBase):
    """A forward-only stream of the decompressed bytes (no fileno: it is not the file)."""

    def __init__(self, inner, name: str, kind: str):
        self.inner, self.name, self.kind = inner, name, kind

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self.inner.read(len(b))
        except (OSError, EOFError, ValueError) as e:      # corrupt compressed data
            raise ImageError(f"{self.name}: {self.kind} data is corrupt: {e}") from None
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


class _Zstd:
    """zstd frames one after another; input that ends inside a frame is an error (the
    library's stream reader would just stop)."""

    def __init__(self, f: BinaryIO, zstandard):
        self.f, self.z = f, zstandard
        self.obj = zstandard.ZstdDecompressor().decompressobj()
        self.out = b""
        self.started = False

    def read(self, n: int) -> bytes:
        while len(self.out) < n:
            data = self.f.read(CHUNK)
            if not data:
                if self.started and not self.obj.eof:
                    raise EOFError("the input ends inside a zstd frame")
                break
            self.started = True
            while data:
                if self.obj.eof:            # the next frame
                    self.obj = self.z.ZstdDecompressor().decompressobj()
                try:
                    self.out += self.obj.decompress(data)
                except self.z.ZstdError as e:
                    raise ValueError(str(e)) from None
                data = self.obj.unused_data if self.obj.eof else b""
        out, self.out = self.out[:n], self.out[n:]
        return out

    def close(self) -> None:
        pass


def decompressing(f: BinaryIO, name: str) -> BinaryIO:
    """``f`` itself, or a stream of its decompressed bytes; refuses what is no image."""
    head = peek(f)
    kind = compression(head)
    if kind is None:
        what = what_is(head)
        if what is not None:
            raise ImageError(f"{name} is {what}, not a linux-cr checkpoint image", offset=0)
        return f
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise UsageError(f"{name} is zstd-compressed and the zstandard package is not "
                             f"installed (or: zstd -dc {name} | imgtools ... -)") from None
        inner = _Zstd(f, zstandard)
    elif kind == "gzip":
        import gzip
        inner = gzip.GzipFile(fileobj=f, mode="rb")
    else:
        import lzma
        inner = lzma.LZMAFile(f)
    return io.BufferedReader(_Decompressed(inner, name, kind), buffer_size=1 << 20)
