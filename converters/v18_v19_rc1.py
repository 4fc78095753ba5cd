"""v18 <-> v19-rc1: the container section and inet sockets.

* CONTAINER=3 is inserted, so BUFFER, STRING and OBJREF move from 3..5 to
  4..6 (renumbered by name).  The CONTAINER record (header only) follows
  HEADER_ARCH.
* SOCKET_INET (705) exists only in v19-rc1.

Upgrade adds the empty CONTAINER; downgrade drops it (a loss only if it had a
payload).
"""
from __future__ import annotations

from . import _base


class Step(_base.Step):
    OLD, NEW = "v18", "v19-rc1"

    def upward(self, recs):
        for rec in recs:
            out = self.generic(rec)
            if out is None:
                continue
            yield out
            if rec.name == "header_arch":
                yield rec.derive("container", b"")

    def downward(self, recs):
        for rec in recs:
            if rec.name == "container":
                if rec.size:
                    self.lose(rec, "payload", rec.data(), "v18 has no container section")
                continue
            out = self.generic(rec)
            if out is not None:
                yield out
