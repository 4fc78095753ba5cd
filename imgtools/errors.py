"""Errors with a position: every complaint about an image names where it is."""
from __future__ import annotations


class ImageError(Exception):
    """The image is invalid (exit code 3)."""

    def __init__(self, message: str, offset: int | None = None, record: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.record = record

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"at byte {self.offset}")
        if self.record:
            where.append(f"in {self.record}")
        return f"{' '.join(where)}: {self.message}" if where else self.message


class FramingError(ImageError):
    """The record stream itself is broken (bad len, truncation, magic)."""


class SchemaError(ImageError):
    """A record does not fit the layout of its version."""


class RefError(ImageError):
    """An objref that resolves to nothing, or to the wrong kind of object."""


class UsageError(Exception):
    """The command line asks for something impossible (exit code 2)."""
