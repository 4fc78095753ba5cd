"""Compose the adjacent-pair steps into a path between any two versions and run it.

``records(reader) -> step -> step -> ... -> Sink``: each step is a generator
over records, so a streamed payload travels from the input to the output
before the next input record is read, unless a step spools it.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO, Callable, Iterator

import formats
from imgtools._record import dataclass, field
from imgtools.reader import ImageReader
from imgtools.stream import INLINE_MAX
from imgtools.writer import ImageWriter

from . import (v17_v18, v18_v19_rc1, v19_rc1_v19_rc2, v19_rc2_v19, v19_v21, v21_v23_rc1,
               v23_rc1_v23)
from ._base import (PID_FIELDS, Context, FileBody, Loss, Note, Rec, SourceBody, Step,
                    parse_pid_entries, parse_rows)

# One step per adjacent pair, oldest first.
STEPS: tuple[type[Step], ...] = (
    v17_v18.Step, v18_v19_rc1.Step, v19_rc1_v19_rc2.Step, v19_rc2_v19.Step, v19_v21.Step,
    v21_v23_rc1.Step, v23_rc1_v23.Step)
assert [s.OLD for s in STEPS] == list(formats.VERSIONS[:-1])
assert [s.NEW for s in STEPS] == list(formats.VERSIONS[1:])


def path(source: str, target: str) -> list[tuple[type[Step], bool]]:
    """The steps from ``source`` to ``target``: (step class, upward?) in order."""
    i = formats.VERSIONS.index(formats.canonical(source))
    j = formats.VERSIONS.index(formats.canonical(target))
    if i <= j:
        return [(STEPS[k], True) for k in range(i, j)]
    return [(STEPS[k], False) for k in range(i - 1, j - 1, -1)]


def describe_path(source: str, target: str) -> list[str]:
    return [f"{s.OLD}->{s.NEW}" if up else f"{s.NEW}->{s.OLD}" for s, up in path(source, target)]


@dataclass
class Report:
    source: str
    target: str
    arch: str
    path: list[str]
    losses: list[Loss] = field(default_factory=list)
    loss_count: int = 0
    notes: list[Note] = field(default_factory=list)
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    refused: bool = False

    @property
    def lossless(self) -> bool:
        return self.loss_count == 0

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "arch": self.arch,
                "path": self.path, "refused": self.refused, "loss_count": self.loss_count,
                "losses": [lo.to_dict() for lo in self.losses],
                "notes": [n.to_dict() for n in self.notes],
                "records_in": self.records_in, "records_out": self.records_out,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


class LossRefused(Exception):
    """The conversion would lose information and ``allow_loss`` was not given."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(f"converting {report.source} to {report.target} would lose "
                         f"information ({report.loss_count} loss"
                         f"{'es' if report.loss_count != 1 else ''}); nothing was written")


# -- the ends of the pipeline ------------------------------------------------------------------


def records(reader: ImageReader, ctx: Context, stats: Report,
            progress: Callable[[int], object] | None = None) -> Iterator[Rec]:
    """The input image as records in flight, each stamped with its task index; the
    source's task list (pid, ppid, tgid, pgid, sid) goes to ``ctx.tasks``."""
    abi = reader.abi
    model = abi.traits["pids_model"]
    expect: list[tuple[str, int]] = []
    entries: list[list[int]] = []
    offset = 1
    task = None
    pos = 0                 # (the reader has already read the head to detect the version)
    fd = _regular_fd(reader)
    for r in reader.records():
        name = reader.name_of(r)
        stats.records_in += 1
        if r.streamed:
            rec = Rec(name, None, SourceBody(r, fd), r.offset)
        else:
            rec = Rec(name, r.payload, None, r.offset)
        if name == "task":
            task = 0 if task is None else task + 1
        elif name == "tail":
            task = None
        elif name == "pids":
            v = reader.parse(r)
            offset = v.offset
            expect.append(("entries", v.nr_pids))
        elif name == "tree":
            expect.append(("rows", reader.parse(r).nr_tasks))
        elif name == "buffer" and expect:
            what, count = expect.pop(0)
            if what == "entries":
                entries = parse_pid_entries(rec.data(), count, rec)
            else:
                for row in parse_rows(abi, rec.data(), count, rec):
                    ids = [row[f] for f in PID_FIELDS]
                    if model == "pids":
                        ids = [entries[t - offset][0] if 0 <= t - offset < len(entries) else 0
                               for t in ids]
                    ctx.tasks.append(tuple(ids))
        rec.task = task
        yield rec
        if progress is not None:
            new = reader.src.pos
            progress(new - pos)
            pos = new
    stats.bytes_in = reader.src.pos


def _regular_fd(reader: ImageReader) -> int | None:
    """The input's file descriptor if it is a regular file (payloads can be re-read)."""
    if not reader.src.seekable:
        return None
    try:
        fd = reader.src.f.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


class Sink:
    """Writes records in flight with the target's numbering through ImageWriter."""

    def __init__(self, out: BinaryIO, abi: formats.Abi):
        self.w = ImageWriter(out, abi)
        self.types = abi.types
        self.records = 0
        self.discard = False
        self._copier = None         # kernel copies of payloads lying in the input file
        self._grown = False         # the output pipe asked to hold 1 MiB

    def put(self, rec: Rec) -> None:
        if self.discard:
            return
        self.records += 1
        w = self.w
        if rec.name == "pipe_data":
            for c in rec.chunks():
                w.unframed(c)
                del c
            return
        t = self.types.get(rec.name)
        if t is None:
            if not rec.name.startswith("type_"):
                raise RuntimeError(f"no record {rec.name} in {w.abi.name}")
            t = int(rec.name[5:])
        if rec.payload is not None:
            w.raw(t, rec.payload)
            return
        w.begin(t, rec.body.size)
        if self._copy(rec.body):
            return
        for c in rec.body.chunks():
            w.write(c)
            del c                   # before the next chunk is read (see SourceBody)

    def _copy(self, body) -> bool:
        """Copy a payload that lies in the input file with sendfile (into a pipe) or,
        into a file, by SequentialOut's thread (every later write of the sink then goes
        through it, in order); False if it cannot be."""
        if self._copier is False or body.size < INLINE_MAX:
            return False
        region = body.region()
        if region is None:
            return self._splice(body)
        fd, offset = region
        self.w.out.flush()
        if self._copier is not None and not self._copier.background \
                and self._copier.src != fd:
            self._copier = None             # (copied in this thread: one source each)
        if self._copier is None:
            from imgtools.writer import SequentialOut
            try:
                self._copier = SequentialOut(self.w.out, fd, background=True)
            except (AttributeError, OSError, ValueError):
                self._copier = False
            if self._copier is False or self._copier.fd is None:
                self._copier = False
                for c in FileBody(fd, offset, body.size).chunks():  # (region() used it)
                    self.w.write(c)
                    del c
                return True
            if self._copier.background:
                self.w.out = self._copier   # every write goes through its thread now
        self._copier.copy(offset, body.size, None, src_fd=fd)
        self.w.skip(body.size)
        return True


    def _splice(self, body) -> bool:
        """A payload read from a pipe, moved into the output by splice(2) (no copy
        through user space); False if it cannot be."""
        if self._copier is False or not hasattr(body, "splice_to") or \
                (self._copier is not None and self._copier.background):
            return False
        try:
            fd = self.w.out.fileno()
        except (AttributeError, OSError, ValueError):
            self._copier = False
            return False
        self.w.out.flush()
        if not self._grown:
            from imgtools.stream import grow_pipe
            grow_pipe(fd)               # (into a pipe: 1 MiB per splice, not 64 KiB)
            self._grown = True
        if not body.splice_to(fd):
            return False
        self.w.skip(body.size)
        return True

    def finish(self) -> None:
        """Wait for the copies still in flight (their errors are raised here)."""
        if self._copier:
            self._copier.finish()

    def abandon(self) -> None:
        if self._copier:
            self._copier.abandon()


def run(reader: ImageReader, out: BinaryIO, target: str, allow_loss: bool = False,
        on_loss: Callable[[Loss], None] | None = None,
        progress: Callable[[int], object] | None = None, keep_partial: bool = True) -> Report:
    target = formats.canonical(target)
    ctx = Context(on_loss)
    report = Report(reader.version, target, reader.arch, describe_path(reader.version, target))
    stream: Iterator[Rec] = records(reader, ctx, report, progress)
    for cls, up in path(reader.version, target):
        stream = cls(ctx, up, reader.arch).run(stream)
    sink = Sink(out, formats.abi(target, reader.arch))
    sink.discard = out is None      # only looking for losses: payloads are skipped unread
    try:
        for rec in stream:
            if ctx.loss_count and not allow_loss and not sink.discard:
                sink.discard = True     # keep reading to list every loss, write nothing more
                if not keep_partial:
                    sink.abandon()      # (and the copies still queued are not wanted)
            sink.put(rec)
    except BaseException:
        sink.abandon()
        raise
    sink.finish()
    if hasattr(out, "flush"):
        out.flush()
    report.losses = ctx.losses
    report.loss_count = ctx.loss_count
    report.notes = list(ctx.notes.values())
    report.records_out = sink.records
    report.bytes_out = sink.w.pos
    if ctx.loss_count and not allow_loss:
        report.refused = True
        raise LossRefused(report)
    return report
