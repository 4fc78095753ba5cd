"""Write records with the schemas of one ABI, sequentially, to any binary stream."""
from __future__ import annotations

from typing import BinaryIO

from formats import Abi

from .stream import HDR


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
