"""v19 <-> v21 (C/R v20/v21): network namespaces and nested pid namespaces.

* NET_NS/NETDEV/NETDEV_ADDR 707-709 and objects NET_NS=20/NETDEV=21 exist only
  in v21; ``ns`` gains ``net_objref`` (16 -> 24); ``uflags`` gains
  CHECKPOINT_NETNS (0x2).
* ``ckpt_pids`` gains ``depth`` (in v19's padding); when any depth > 0 a second
  BUFFER of s32 vpids (sum of depths, in task order) follows the pids array.

Upgrade: depth 0 everywhere, net_objref 0 (no network namespace saved; what a
v21 kernel writes without CHECKPOINT_NETNS).  Downgrade: a nested pid
(depth > 0, its vpids), a network namespace or the NETNS flag is a loss.
"""
from __future__ import annotations

from . import _base
from ._base import New, parse_rows

CHECKPOINT_NETNS = 0x2


class Step(_base.Step):
    OLD, NEW = "v19", "v21"
    NEW_FIELDS = {"ns": {"net_objref": New(0)}}

    def run_head(self, recs):
        """Rewrites the pids array(s) after TREE; passes everything else to ``generic``."""
        expect = None           # ("rows", nr_tasks) | ("vpids", count)
        for rec in recs:
            n = rec.name
            if n == "tree":
                expect = ("rows", self.parse(rec)["nr_tasks"])
            elif n == "buffer" and expect is not None:
                what, count = expect
                expect = None
                if what == "rows":
                    nested = 0
                    out = []            # (each row packed as it is made)
                    for i, row in enumerate(parse_rows(self.src, rec.data(), count, rec)):
                        row.pop("_pad", None)
                        depth = row.pop("depth", 0)
                        if self.up:
                            row["depth"] = 0
                        elif depth:
                            nested += max(depth, 0)
                            self.lose(rec, f"pids[{i}].depth", depth, "v19 has no nested pid "
                                      "namespaces", record="BUFFER")
                        out.append(self.dst.build("ckpt_pids", row))
                    yield rec.derive("buffer", b"".join(out)
                                     + rec.data()[count * self.src.sizeof("ckpt_pids"):])
                    if nested:
                        expect = ("vpids", nested)
                    continue
                self.lose(rec, "vpids", list(_ints(rec.data())), "v19 has no nested pid "
                          "namespaces", record="BUFFER")
                continue
            out = self.generic(rec)
            if out is not None:
                yield out

    upward = downward = run_head

    def fix_header(self, rec, v) -> None:
        if not self.up and v["uflags"] & CHECKPOINT_NETNS:
            self.lose(rec, "uflags", v["uflags"], "v19 cannot checkpoint network namespaces")
            v["uflags"] &= ~CHECKPOINT_NETNS


def _ints(data: bytes):
    import struct
    n = len(data) // 4
    return struct.unpack_from(f"<{n}i", data)
