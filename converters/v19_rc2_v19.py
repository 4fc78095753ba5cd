"""v19-rc2 <-> v19: mount namespaces, fs_struct, repacked task, cpu-first order.

* MNT_NS=111 is inserted (CAPABILITIES..TASK_CREDS +1), FS=451; objects FS=5
  and MNT_NS=11 are inserted (renumbered by name).
* Arch ids are renumbered (X86_64 5 -> 2; by arch name).
* The x86_64 CPU record drops the debug registers (240 -> 192 bytes).  That is
  no loss: v19 stopped saving them; a downgrade writes 0.  The i386 CPU record
  is opaque (its layout is not documented) and passes unchanged.
* ``ckpt_hdr_task`` is repacked, identically for i386 and x86_64 (by field name).
* ``task_objs`` gains ``fs_objref``; the FS object is
  ``OBJREF(FS) FS FILE_NAME(cwd) FILE_NAME(root)`` (docs/format-choices.md).
* ``ns.ipc_objref`` u32 -> s32, ``msg_msg.m_type`` s32 -> s64.
* 67cfee9: ``ckpt_const.mm_saved_auxv_len`` (bytes) becomes ``at_vector_size``
  (u64 entries) and the saved_auxv BUFFER that follows MM holds u64 instead of
  native words (a difference on i386 only).
* Per-task order "objs_first" -> "cpu_first": THREAD, RESTART_BLOCK, CPU and
  CPU_FPU move from after the creds/ns/objects section (TASK_CREDS .. TASK_OBJS
  [SIGNAL SIGPENDING]) to right after TASK+STRING.  Going up, the objects
  section (which may hold page data) is spooled until the CPU records are
  through; going down the small CPU records are held back.

Upgrade assumes one fs_struct per thread group (what fork gives, and what the
engine writes) with cwd and root "/" (a note); it is inserted where the engine
writes it, in the objects section of the group's first live task, before that
task's new SIGHAND object (or its TASK_OBJS), and gets an objref in order of
first use (canonical numbering).  Downgrade drops FS objects; another cwd/root,
or an fs_struct not shared by exactly one thread group, is a loss.
"""
from __future__ import annotations

import struct

from . import _base
from ._base import Old, Sharing, Spool, group_of, s32, u32

CPU_PART = ("thread", "restart_block", "cpu", "cpu_fpu")
SECTION_END = ("task", "tail")
_DEBUGREGS = {f"debugreg{i}": Old(0, up="note", message="v19 no longer saves debug registers")
              for i in (0, 1, 2, 3, 6, 7)}


class Step(_base.Step):
    OLD, NEW = "v19-rc2", "v19"
    REFS = "canonical"
    OLD_FIELDS = {"cpu": _DEBUGREGS}

    def __init__(self, ctx, up, arch):
        super().__init__(ctx, up, arch)
        self.fs_of: dict = {}       # upgrade: thread group -> FS objref (output numbering)
        self.sharing = Sharing()    # downgrade

    # -- upgrade ---------------------------------------------------------------------------
    def upward(self, recs):
        return to_cpu_first(self._up(recs))

    def _up(self, recs):
        group = None                # the thread group of a task still owed its FS object
        after_mm = False
        for rec in recs:
            n = rec.name
            if n == "task":
                group = group_of(self.ctx, rec)
                if group in self.fs_of:
                    group = None
            elif n == "tail":
                group = None
            if group is not None and (
                    n == "task_objs" or (n == "objref" and self._objtype(rec) == "sighand")):
                yield from self._fs_object(rec, group)
                group = None
            if after_mm and n == "buffer":
                rec = self._auxv(rec)
            after_mm = n == "mm"
            if n == "cpu" and "cpu" not in self.src.structs:
                self.note(rec, "cpu", None, "i386 CPU record passed unchanged (layout not "
                          "documented)")
            out = self.generic(rec)
            if out is not None:
                yield out

    def _objtype(self, rec) -> str | None:
        return self.src.obj_names.get(self.parse(rec)["objtype"])

    def _fs_object(self, rec, group):
        ref = self.fs_of[group] = self.refs.synth()
        self.note(rec, "fs", None, "v19-rc2 saved no fs_struct: assumed one per thread group, "
                  "cwd / and root /", record="FS")
        yield self.small(rec, "objref", {"objtype": self.dst.objs["fs"], "objref": ref})
        yield self.small(rec, "fs", {})
        yield rec.derive("file_name", b"/\0")
        yield rec.derive("file_name", b"/\0")

    # -- downgrade -------------------------------------------------------------------------
    def downward(self, recs):
        return to_objs_first(self._down(recs))

    def _down(self, recs):
        fs_names = 0                # FILE_NAMEs still owed to a dropped FS object
        after_mm = False
        for rec in recs:
            n = rec.name
            if fs_names and n == "file_name":
                fs_names -= 1
                path = rec.data().split(b"\0", 1)[0].decode("utf-8", "replace")
                if path != "/":
                    self.lose(rec, "cwd" if fs_names else "root", path,
                              "v19-rc2 has no fs_struct", record="FS")
                continue
            fs_names = 0
            if n == "objref" and self._objtype(rec) == "fs":
                continue
            if n == "fs":
                if rec.size:
                    self.lose(rec, "payload", rec.data(), "v19-rc2 has no fs_struct")
                fs_names = 2
                continue
            if after_mm and n == "buffer":
                rec = self._auxv(rec)
            after_mm = n == "mm"
            out = self.generic(rec)
            if out is not None:
                yield out

    # -- record hooks ------------------------------------------------------------------------
    def pre_task_objs(self, rec, v) -> None:
        if not self.up:
            ref = v.pop("fs_objref")
            if not self.sharing.check(group_of(self.ctx, rec), ref):
                self.lose(rec, "fs_objref", ref, "fs_struct not shared by exactly one thread "
                          "group; v19-rc2 cannot tell")

    def fix_task_objs(self, rec, v) -> None:
        if self.up:
            v["fs_objref"] = self.fs_of.get(group_of(self.ctx, rec), 0)

    def fix_header(self, rec, v) -> None:
        c = v["constants"]
        if self.up:
            n = c.pop("mm_saved_auxv_len")
            w = self.src.auxv_word
            if n % w:
                self.lose(rec, "constants.mm_saved_auxv_len", n,
                          f"not a multiple of the {w}-byte word")
            c["at_vector_size"] = n // w
        else:
            c["mm_saved_auxv_len"] = c.pop("at_vector_size") * self.dst.auxv_word

    def fix_ns(self, rec, v) -> None:
        v["ipc_objref"] = s32(v["ipc_objref"]) if self.up else u32(v["ipc_objref"])

    def fix_ipc_msg_msg(self, rec, v) -> None:
        if not self.up and not -2**31 <= v["m_type"] < 2**31:
            self.lose(rec, "m_type", v["m_type"], "v19-rc2 stores m_type in 32 bits")
            v["m_type"] = s32(v["m_type"])

    def _auxv(self, rec):
        """The saved_auxv BUFFER: native words <-> u64."""
        ws, wd = self.src.auxv_word, self.dst.auxv_word
        if ws == wd:
            return rec
        data = rec.data()
        n = len(data) // ws
        vals = struct.unpack_from(f"<{n}{'Q' if ws == 8 else 'I'}", data)
        if wd == 4:
            big = [x for x in vals if x > 0xFFFFFFFF]
            if big:
                self.lose(rec, "saved_auxv", big, "does not fit the 4-byte words of i386",
                          record="BUFFER")
            vals = [x & 0xFFFFFFFF for x in vals]
        out = struct.pack(f"<{n}{'Q' if wd == 8 else 'I'}", *vals) + data[n * ws:]
        return rec.derive("buffer", out)


# -- the per-task order --------------------------------------------------------------------------


def _glued(rec, prev: str | None) -> bool:
    """An ERROR record and its message STRING: the engine writes them in place of state it
    could not save and goes on, so they are no section end; they move with the record
    before them, which makes each reordering the exact inverse of the other."""
    return rec.name == "error" or (rec.name == "string" and prev == "error")


def to_cpu_first(recs):
    """objs_first -> cpu_first: after TASK+STRING, hold the objects section back (spooled)
    until THREAD RESTART_BLOCK CPU [CPU_FPU] have been passed on."""
    spool = Spool()
    state = "out"       # comm: after TASK; objs: holding; cpu: passing the cpu part
    prev, held = None, False
    for rec in recs:
        n = rec.name
        if state != "out" and _glued(rec, prev):
            if held:
                spool.add(rec)
            else:
                yield rec
            prev = n
            continue
        prev, held = n, False
        if state == "comm":
            state = "objs"
            if n == "string":
                yield rec
                continue
        if state == "objs":
            if n == "thread":
                yield rec
                state = "cpu"
                continue
            if n not in SECTION_END:
                spool.add(rec)
                held = True
                continue
            yield from spool.replay()
            state = "out"
        elif state == "cpu":
            if n in CPU_PART[1:]:
                yield rec
                continue
            yield from spool.replay()
            state = "out"
        if n == "task":
            state = "comm"
        yield rec
    yield from spool.replay()


def to_objs_first(recs):
    """cpu_first -> objs_first: hold THREAD RESTART_BLOCK CPU [CPU_FPU] back until
    TASK_OBJS (and the SIGNAL + shared SIGPENDING of a new signal_struct) went by."""
    held = Spool()
    state = "out"
    prev, holding = None, False
    for rec in recs:
        n = rec.name
        if state != "out" and _glued(rec, prev):
            if holding:
                held.add(rec)
            else:
                yield rec
            prev = n
            continue
        prev, holding = n, False
        if state == "comm":
            state = "cpu"
            if n == "string":
                yield rec
                continue
        if state in ("cpu", "objs") and n in CPU_PART:
            held.add(rec)               # (in objs: an ERROR came before them)
            holding = True
            continue
        if state == "cpu":
            state = "objs"
        if state == "objs":
            if n == "task_objs":
                yield rec
                state = "after_objs"
                continue
            if n not in SECTION_END:
                yield rec
                continue
        elif state == "after_objs":
            if n == "signal":
                yield rec
                state = "after_signal"
                continue
        elif state == "after_signal":
            if n == "sigpending":
                yield rec
                yield from held.replay()
                state = "out"
                continue
        if state != "out":
            yield from held.replay()
            state = "out"
        if n == "task":
            state = "comm"
        yield rec
    yield from held.replay()
