"""ERROR records: a checkpoint that failed says so with an ERROR record and a STRING message
(reported like ``ckptinfo -e``).  The image is cut there, so what it lacks after that point is
not reported."""
from __future__ import annotations

from ._pass import ERROR, TEXT_MAX, Pass

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "error.record": (ERROR, "checkpoint ERROR record", "The kernel wrote an ERROR record (with "
                     "a STRING message) because the checkpoint failed; restart aborts on it. "
                     "Reported like `ckptinfo -e`."),
}


class Errors(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.aborted = False                # an ERROR record came
        self.err_at: int | None = None      # offset of an ERROR still waiting for its STRING

    def error_begins(self, rec) -> None:
        self.aborted = True
        self.err_at = rec.offset

    def error_message(self, rec, name: str) -> bool:
        """The record after ERROR: True if it was the message STRING (and nothing more)."""
        off, self.err_at = self.err_at, None
        if name == "string":
            data = rec.read(TEXT_MAX)
            msg = data[1:] if data[:1] == b"\0" else data
            text = msg.split(b"\0", 1)[0].decode("utf-8", "replace")
            self.add("error.record", f"checkpoint failed: {text}", offset=off, record="ERROR")
            return True
        self.add("error.record", "checkpoint failed (no message STRING follows)",
                 offset=off, record="ERROR")
        return False

    def error_without_message(self) -> None:
        """At the end of the stream."""
        if self.err_at is not None:
            self.add("error.record", "checkpoint failed (no message STRING follows)",
                     offset=self.err_at, record="ERROR", task=None)
            self.err_at = None
