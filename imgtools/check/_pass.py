"""The streaming pass: one walk over the records, the state all subsystems share, and the
rules no single subsystem owns (record types, sizes and parsing; what the next record must be;
the order of the checks at the end of the stream).

Each subsystem module adds a subclass of ``Pass`` with its ``on_<record>`` handlers, the
``buffer_<kind>`` readers of the BUFFERs it announced, its ``gate_*``/end steps and its state.
``_Checker`` (in ``__init__``) is all of them at once, so a handler sees the whole pass as
``self``, as every kernel ``checkpoint_*``/``restore_*`` function gets the one ``ckpt_ctx``.
"""
from __future__ import annotations

import struct
from typing import ClassVar, NamedTuple

from formats import ext

from ..errors import FramingError, ImageError
from ..reader import ImageReader
from ..stream import PIPE_DATA, Record

ERROR, WARNING, NOTE = "error", "warning", "note"
SEVERITIES = (ERROR, WARNING, NOTE)

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    # -- records -------------------------------------------------------------
    "record.unknown": (ERROR, "record type unknown to this version", "The type number is not a "
                       "CKPT_HDR_* of the image's version; restart rejects it."),
    "record.size": (ERROR, "record len does not match its struct", "Fixed records are read with "
                    "an exact size; bytes past the struct (or an absurd len) make restart "
                    "fail."),
    "record.parse": (ERROR, "record payload does not parse", "The payload is too short for its "
                     "struct or holds an impossible count."),
    "record.stray": (ERROR, "record out of context", "The record appears where the format does "
                     "not put it (a FILE_DESC outside a file table, a VMA outside an MM, task "
                     "state before the first TASK …)."),
    # -- the checker itself --------------------------------------------------
    "check.limit": (NOTE, "check limit reached", "Findings of one code beyond the per-code "
                    "limit are counted, not listed; tables past their size limit stop "
                    "growing."),
    "check.internal": (ERROR, "checker failure", "The checker hit an internal error on this "
                       "record (a bug in imgtools); the record was skipped."),
}

# -- limits: bounded memory for any input -------------------------------------
PER_CODE = 100              # findings listed per code; more are counted
MAX_OBJECTS = 1 << 19       # objref table entries tracked
MAX_TASKS = 1 << 22         # PID_MAX_LIMIT
MAX_PENDING = 1 << 16       # forward references remembered
MAX_EDGES = 1 << 20         # object -> object references remembered (cycle search)
MAX_NEST = 256              # open OBJREFs at once (real nesting is a handful)
CYCLE_BUDGET = 1 << 21      # nodes visited by the cycle search, in all
TEXT_MAX = 4096             # bytes of a STRING / FILE_NAME looked at (PATH_MAX)
PARSE_MAX = 8 << 20         # a struct record larger than this is not parsed
ADDR_CHUNK = 1 << 16        # page addresses read at a time


class Expect(NamedTuple):
    """What a record announces about the next one(s)."""
    records: tuple[str, ...]    # the records that can be it
    code: str | None            # reported when another record comes first (None: nothing)
    what: str                   # how the finding names it


class Pass:
    # every subsystem's expectations by kind; _Checker merges them
    EXPECT: ClassVar[dict[str, Expect]] = {}

    def __init__(self, reader: ImageReader, sink):
        self.r = reader
        self.abi = reader.abi
        self.sink = sink
        self.traits = self.abi.traits
        self.expect: list[tuple[str, object, int]] = []  # (kind, arg, offset announcing)
        self.rec: Record | None = None
        self.name = ""
        self.last_name = ""         # the record before this one
        self.nrecords = 0
        self.broken = False         # the stream cannot be framed past some point
        self.handlers: dict[str, object] = {}   # record name -> bound on_<name> or None

    # -- findings -----------------------------------------------------------
    def add(self, code, message, offset=None, record=None, task="cur"):
        if offset is None and self.rec is not None:
            offset = self.rec.offset
        if record is None and self.rec is not None:
            record = self.name.upper()
        if task == "cur":
            task = self.task.pid if self.task is not None else None
        self.sink.add(code, offset, record, task, message)

    # -- driving ------------------------------------------------------------
    def run(self) -> None:
        it = self.r.records()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except ImageError as e:
                self.stream_error(e)
                break
            except (struct.error, ValueError) as e:
                # reader.py's v17 FILE_PIPE look-ahead on a payload under 4 bytes
                self.broken = True
                self.add("record.parse", f"the record before byte {self.r.src.pos} cannot be "
                         f"framed past: {e}", offset=None, record="-")
                break
            try:
                self.step(rec)
            except ImageError as e:         # a streamed payload cut short
                self.stream_error(e)
                break
            except Exception as e:  # noqa: BLE001 - a checker bug must not end the check
                self.add("check.internal", f"{type(e).__name__}: {e}")
            if self.tail_seen:
                self.after_tail(it)
                break
        try:
            self.finish()
        except Exception as e:  # noqa: BLE001
            self.add("check.internal", f"at end of stream: {type(e).__name__}: {e}",
                     offset=None, record=None)

    def step(self, rec: Record) -> None:
        self.nrecords += 1
        name = self.r.name_of(rec)
        self.last_name = self.name
        self.rec, self.name = rec, name
        if self.err_at is not None and self.error_message(rec, name):
            return
        if name == "error":
            self.error_begins(rec)
            return
        unknown = rec.type != PIPE_DATA and self.abi.type_name(rec.type) is None
        if unknown and self.ext_known and ext.is_ext(rec.type):
            self.add("ext.unknown", f"extension record type {rec.type} (len {rec.len}) is "
                     f"unknown to this imgtools; skipped")
            self.unknown_ext(rec)
        elif unknown:
            self.add("record.unknown", f"type {rec.type} (len {rec.len}) is no record type of "
                     f"{self.abi.name}")
        elif name in ext.ROLE:
            self.ext_record(name)
        matched = self.gate(name)
        if unknown:
            return
        value = None
        st = self.abi.struct(name)
        if st is not None:
            if name in self.abi.streamed:
                value = self.streamed_head(rec, name, st)
            elif rec.size > PARSE_MAX:
                self.add("record.size", f"len {rec.len} is far too large for a "
                         f"{name.upper()} record; not parsed")
            else:
                try:
                    value = self.r.parse(rec)
                except FramingError:
                    raise                   # the payload itself is cut short
                except ImageError as e:
                    self.add("record.parse", e.message)
                if value is not None and "_tail" in value and (name != "file" or
                                                               self.file_is_sized(value)):
                    self.add("record.size", f"{len(value['_tail'])} bytes past the end of the "
                             f"{name.upper()} struct (len {rec.len})")
            if value is None:
                self.on_unparsed(name, rec)
                return
        try:
            handler = self.handlers[name]
        except KeyError:    # once per record name: getattr of a built name walks every class
            handler = self.handlers[name] = getattr(self, "on_" + name, None)
        if handler is not None:
            handler(rec, value, matched)

    def streamed_head(self, rec: Record, name: str, st):
        """The fixed head of a record whose data follows it (read in chunks, not parsed)."""
        head = rec.read(st.sizeof())
        if len(head) < st.sizeof():
            self.add("record.parse", f"{name.upper()} payload of {rec.size} bytes is too short "
                     f"for its {st.sizeof()}-byte head")
            return None
        return self.abi.parse(name, head)

    def on_unparsed(self, name: str, rec: Record) -> None:
        """Bookkeeping for a record whose payload did not parse."""
        if name in self.obj_kind_of_record:
            self.bind(name)
        if name == "task":
            self.start_task(rec, None)
        elif name == "mm":
            self.mm = None
            self.vma = None
        elif name == "tail" and rec.size <= PARSE_MAX:
            self.reach_tail(rec)

    # -- what the next record must be -----------------------------------------
    def gate(self, name: str):
        """Match the record against what the previous ones announced, and close the
        contexts it cannot belong to.  Returns the matched expectation or None."""
        matched = None
        while self.expect:
            kind, _, off = self.expect[0]
            want = self.EXPECT[kind]
            if name in want.records:
                matched = self.expect.pop(0)
                break
            self.expect.pop(0)
            if want.code is not None:
                self.add(want.code, f"expected {want.what} (announced at byte {off}), "
                         f"found {name.upper()}")
        # each open context decides whether this record ends it
        if self.after_pipe_file is not None:
            self.gate_pipe_data(name)
        if self.vma is not None or self.shm_pages:
            self.gate_page_list(name, matched)
        if self.table is not None:
            self.gate_file_table(name)
        if self.mm is not None:
            self.gate_mm(name)
        if self.pending:
            self.gate_objrefs(name)
        return matched

    def on_buffer(self, rec, v, matched):
        if matched is None:
            self.unannounced_buffer()
            return
        kind, arg, _ = matched
        getattr(self, "buffer_" + kind)(rec, arg)

    # -- end ----------------------------------------------------------------
    def finish(self) -> None:
        """What the stream lacks at its end, then the checks of the whole image; in this
        order, the order of their findings."""
        self.rec = None
        self.name = "-"
        self.error_without_message()
        cut = self.aborted or self.broken
        if self.expect and not cut:
            kind, _, off = self.expect[0]
            want = self.EXPECT[kind]
            if want.code:
                self.add(want.code, f"stream ends before {want.what} (announced at byte "
                         f"{off})", offset=off, record="-", task=None)
        if self.vma is not None and not cut:
            self.close_vma()
        if self.table is not None and not cut:
            self.close_table()
        self.close_mm(at_end=True)
        self.close_task(at_end=True)
        if self.pending and not cut:
            self.unbound_all()
        if not self.tail_seen and not self.broken:
            self.tail_missing()
        if not cut:
            self.count_tasks()
        if not self.in_tasks and not cut:
            self.head_done("the end")
        if not cut and not self.objs_full:
            self.undefined_and_unused()
        self.loops()
        self.pipe_ends_at_end()
