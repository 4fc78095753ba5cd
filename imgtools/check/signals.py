"""Signal objects: the TASK_OBJS that first names a signal objref is followed by SIGNAL and
the shared SIGPENDING; any other SIGPENDING is the task's own."""
from __future__ import annotations

from ._pass import ERROR, Expect, Pass

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "signal.missing": (ERROR, "signal object not written", "The TASK_OBJS that first names a "
                       "signal objref is followed by SIGNAL and the shared SIGPENDING."),
    "signal.stray": (ERROR, "SIGNAL without a new signal objref", "SIGNAL follows only the "
                     "TASK_OBJS that names its objref first."),
}

EXPECT = {
    "signal": Expect(("signal",), "signal.missing", "SIGNAL after the TASK_OBJS that first "
                     "names it"),
    "shared_pending": Expect(("sigpending",), "signal.missing", "the shared SIGPENDING after "
                             "SIGNAL"),
}


class Signals(Pass):
    def announce_signal(self, ref: int, rec) -> None:
        """TASK_OBJS.signal_objref: a new signal object is written right after."""
        if ref > 0 and ref not in self.objs:
            self.expect += [("signal", ref, rec.offset), ("shared_pending", ref, rec.offset)]

    def on_signal(self, rec, v, matched):
        if matched is None:
            self.add("signal.stray", "SIGNAL not right after the TASK_OBJS that first names a "
                     "signal objref")
        self.refs_of("signal", v, matched[1] if matched else None)

    def on_sigpending(self, rec, v, matched):
        if matched is None:
            self.task_record("sigpending")
