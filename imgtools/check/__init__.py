"""Check an image: one streaming pass over its records -> a list of findings.

``check(reader)`` walks the records once, parses each with its version's
(non-compiled) struct and keeps only what later rules need: the objref table,
the task tree, the open MM / VMA / file table, pipe inodes.  Page buffers are
read only as far as their address arrays; the page images are skipped.
Nothing in here raises on a bad image: a framing or schema problem becomes a
finding at its byte offset and the check ends with a verdict.

One module per subsystem, each with the finding codes its checks emit and its
record handlers: framing, head, tree, tasks, objrefs, memory, files, pipes,
sockets (with epoll, tty line disciplines, sem undo lists), extensions (imgtools' own records),
signals, errors (ERROR records); _pass.py drives the pass.  ``CODES`` here is
all of their codes: severity, title, explanation.  A code is stable: tools may
match on it; the message text may change.
"""
from __future__ import annotations

import io
import sys
from dataclasses import asdict, dataclass
from typing import BinaryIO, Iterable

from ..reader import ImageReader
from ..stream import open_input
from ._pass import ERROR, NOTE, PER_CODE, SEVERITIES, WARNING
from .error_records import Errors
from .extensions import Extensions
from .files import Files
from .framing import Framing, _stream_code, open_image  # noqa: F401 - _stream_code: tests
from .head import Head
from .memory import Memory
from .objrefs import DONE, Objrefs, _Obj  # noqa: F401 - DONE, _Obj: tests
from .pipes import Pipes
from .signals import Signals
from .sockets import Sockets
from .tasks import Tasks
from .tree import Tree

__all__ = ["CODES", "ERROR", "NOTE", "PER_CODE", "SEVERITIES", "WARNING", "Finding", "check",
           "check_bytes", "check_path", "check_stream", "explain", "has_errors"]


class _Checker(Framing, Head, Tree, Tasks, Objrefs, Memory, Files, Pipes, Sockets, Extensions,
               Signals, Errors):
    """The pass with every subsystem's handlers, on one state."""


def _merged(tables: Iterable[dict]) -> dict:
    out: dict = {}
    for t in tables:
        twice = out.keys() & t.keys()
        if twice:
            raise ValueError(f"defined in two subsystems: {sorted(twice)}")
        out.update(t)
    return out


# the subsystem modules, _pass.py last
_SUBSYSTEMS = [sys.modules[c.__module__] for c in _Checker.__mro__[1:-1]]
_Checker.EXPECT = _merged(getattr(m, "EXPECT", {}) for m in _SUBSYSTEMS)

# The order ``imgtools check --codes`` lists the codes in, by their first word.
_SECTIONS = ("framing", "header", "head", "record", "objref", "loop", "pipe", "tree", "task",
             "mm", "files", "socket", "epoll", "tty", "ipc", "ext", "signal", "error", "check")
# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = dict(sorted(
    _merged(m.CODES for m in _SUBSYSTEMS).items(),
    key=lambda item: _SECTIONS.index(item[0].split(".")[0])))


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


# -- entry points -------------------------------------------------------------
def check(reader: ImageReader, per_code: int = PER_CODE, _sink: _Sink | None = None
          ) -> list[Finding]:
    """All findings of one streaming pass over an opened image."""
    sink = _sink or _Sink(per_code)
    _Checker(reader, sink).run()
    return sink.close()


def check_stream(f: BinaryIO, name: str = "<stream>", version: str | None = None,
                 arch: str | None = None, per_code: int = PER_CODE) -> list[Finding]:
    """Check an image read from a binary stream (a file, a pipe, BytesIO).

    Problems with the header itself become findings too; only an unknown
    ``version``/``arch`` argument raises ValueError."""
    sink = _Sink(per_code)
    reader = open_image(f, name, version, arch, sink)
    if reader is None:
        return sink.close()
    return check(reader, _sink=sink)


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
