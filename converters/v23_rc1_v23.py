"""v23-rc1 <-> v23 (1fd8e6e, the last ABI): pid objects and hugetlb.

* PIDS=101 is inserted before TREE (101..118 move up by one, HPAGE=404 pushes
  MM_CONTEXT to 405) and OBJ_PID=1 before every object type (renumbered by name).
* Pids become objects.  v23-rc1: ``TREE {s32 nr_tasks} | BUFFER ckpt_pids[]
  {vpid, vppid, vtgid, vpgid, vsid, depth} [| BUFFER s32 vpids[sum depth]]``.
  v23: ``PIDS {nr_pids, nr_vpids, offset} | BUFFER {u32 depth; s32
  numbers[depth+1]}[] | TREE {u32 nr_tasks} | BUFFER ckpt_task_pids[]`` whose
  values are tags (objref of a pid object; 0 = from an ancestor namespace).
  CKPT_PID_NULL is -1 before and -4096 in v23; CKPT_PID_ROOT (-4097) is new.
* The pid objects take objrefs ``offset .. offset+nr_pids-1``; the upgrade puts
  them first (offset 1, every number a task names, in order of first reference,
  as the engine does) and shifts every other objref up by nr_pids; the
  downgrade shifts them down.
* ``task`` += ``flags`` (repacked), ``vma`` += ``hugetlb_shift`` (72 -> 80),
  ``ipc_shm`` += ``shm_shift``; HPAGE and the HUGETLB vma types are new.

* Extension records (types 8000-8999, HEADER.uflags bit 32) exist only in v23: a
  downgrade drops every one (a loss each) and clears the flag; an object record
  (EXT_FILE_*) goes with what refers to it (``_base.ObjectDrop``).

Upgrade assumes task flags 0 (a note).  Downgrade loses task flags, hugetlb
shifts, HPAGE records, pids the tasks do not name, depths that disagree with
their pid entries, and CKPT_PID_ROOT; another PIDS numbering (offset != 1, or
entries not in order of first reference) is renumbered (a note).
"""
from __future__ import annotations

import struct

import formats
import formats.v23
from imgtools.errors import SchemaError

from formats import ext
from formats.pids import row_struct

from . import _base
from ._base import PID_FIELDS, New, build_pid_entries, parse_pid_entries, parse_rows

OLD_PID_NULL = formats.abi("v23-rc1").traits["pid_null"]
NEW_PID_NULL = formats.abi("v23").traits["pid_null"]
PID_ROOT = formats.v23.CKPT_PID_ROOT


def first_referenced(rows: list[dict]) -> list[int]:
    """Every pid number the rows name, in order of first reference (as the engine
    numbers its pid objects): row by row, vpid, vppid, vtgid, vpgid, vsid."""
    return list(dict.fromkeys(r[f] for r in rows for f in PID_FIELDS if r[f] > 0))


def _unannounced(state, collecting: tuple[str, ...], rec) -> None:
    """The pids section is PIDS BUFFER TREE BUFFER [BUFFER]: nothing may come between."""
    if state in collecting:
        found = f"found {rec.name.upper()}" if rec is not None else "the image ends"
        raise SchemaError(f"incomplete pids section: {found} where its next record was due",
                          offset=rec.offset if rec is not None else None, record="TREE")


class Step(_base.Step):
    OLD, NEW = "v23-rc1", "v23"
    REFS = "shift"
    NEW_FIELDS = {
        "task": {"flags": New(0, "assumed no CKPT_PF_* task flags (not saved by v23-rc1)")},
        "vma": {"hugetlb_shift": New(0)},
        "ipc_shm": {"shm_shift": New(0)},
    }

    def fix_vma(self, rec, v) -> None:
        if not self.up:
            name = self.src.vma_type_names.get(v["vma_type"])
            if name not in self.dst.vma_types:
                self.lose(rec, "vma_type", name or v["vma_type"], "v23-rc1 has no hugetlb "
                          "mappings")

    # -- upgrade ---------------------------------------------------------------------------
    def upward(self, recs):
        held: list = []
        state = None            # tree: TREE held; vpids: pids array held, vpids follow
        for rec in recs:
            n = rec.name
            if state is None and n == "tree":
                held, state = [rec], "tree"
                nr = self.parse(rec)["nr_tasks"]
                continue
            if state in ("tree", "vpids") and n == "buffer":
                held.append(rec.derive(n, rec.data()))
                if state == "tree":
                    rows = parse_rows(self.src, rec.data(), nr, rec)
                    if any(r["depth"] > 0 for r in rows):
                        state = "vpids"
                        continue            # the vpids buffer follows
                yield from self._pids_up(held, rows)
                state = "done"
                continue
            _unannounced(state, ("tree", "vpids"), rec)
            out = self.generic(rec)
            if out is not None:
                yield out
        _unannounced(state, ("tree", "vpids"), None)

    def _pids_up(self, held, rows):
        tree, buf = held[0], held[1]
        vpids = list(struct.unpack_from(f"<{held[2].size // 4}i", held[2].data())) \
            if len(held) > 2 else []
        depth = sum(max(r["depth"], 0) for r in rows)
        if len(vpids) != depth:
            raise SchemaError(f"the vpids buffer holds {len(vpids)} pids, the tree's depths "
                              f"add up to {depth}", offset=held[-1].offset, record="BUFFER")
        nested: dict[int, list[int]] = {}
        k = 0
        for r in rows:
            d = max(r["depth"], 0)
            if d:
                nested[r["vpid"]] = vpids[k:k + d]
            k += d
        numbers = first_referenced(rows)
        tag = {num: i + 1 for i, num in enumerate(numbers)}
        entries = [[num, *nested.get(num, [])] for num in numbers]
        tagged = []                 # (each row packed as it is made)
        row_name = row_struct(self.dst)
        for i, r in enumerate(rows):
            t = {}
            for f in PID_FIELDS:
                x = r[f]
                if x > 0:
                    t[f] = tag[x]
                elif x == OLD_PID_NULL:
                    t[f] = NEW_PID_NULL
                else:
                    if x < 0:
                        self.lose(buf, f"pids[{i}].{f}", x, "no v23 tag for it", record="BUFFER")
                    t[f] = 0
            t["depth"] = max(r["depth"], 0)
            tagged.append(self.dst.build(row_name, t))
        n = len(numbers)
        self.refs.set_shift(1, n)
        yield self.small(tree, "pids", {"nr_pids": n, "nr_vpids": sum(len(e) - 1 for e in entries),
                                        "offset": 1})
        yield buf.derive("buffer", build_pid_entries(entries))
        yield self.small(tree, "tree", {"nr_tasks": len(rows)})
        yield buf.derive("buffer", b"".join(tagged))

    def fix_header(self, rec, v) -> None:
        if not self.up:
            v["uflags"] &= ~ext.UFLAG_EXT

    # -- downgrade -------------------------------------------------------------------------
    def downward(self, recs):
        state = None            # collecting: pids -> entries -> tree -> rows
        for rec in recs:
            n = rec.name
            if state is None and n == "pids":
                p = self.parse(rec)
                pids_rec, state = rec, "entries"
                continue
            if state == "entries" and n == "buffer":
                entries = parse_pid_entries(rec.data(), p["nr_pids"], rec)
                state = "tree"
                continue
            if state == "tree" and n == "tree":
                tree_rec, nr = rec, self.parse(rec)["nr_tasks"]
                state = "rows"
                continue
            if state == "rows" and n == "buffer":
                yield from self._pids_down(pids_rec, p, entries, tree_rec, rec, nr)
                state = "done"
                continue
            _unannounced(state, ("entries", "tree", "rows"), rec)
            out = self.generic(rec)
            if out is not None:
                yield out
        _unannounced(state, ("entries", "tree", "rows"), None)

    def _pids_down(self, pids_rec, p, entries, tree_rec, buf, nr):
        offset, count = p["offset"], p["nr_pids"]
        rows = parse_rows(self.src, buf.data(), nr, buf)
        used: set[int] = set()
        own: set[int] = set()       # the entries that are a task's own pid
        named: dict[int, None] = {}     # the pid numbers the rows name, in order
        out, vpids = [], []         # (each row packed as it is made)
        row_name = row_struct(self.dst)
        for i, r in enumerate(rows):
            row = {}
            for f in PID_FIELDS:
                t = r[f]
                if t > 0 and 0 <= t - offset < count:
                    used.add(t - offset)
                    row[f] = entries[t - offset][0]
                elif t == 0:
                    row[f] = 0
                elif t == NEW_PID_NULL:
                    row[f] = OLD_PID_NULL
                else:
                    self.lose(buf, f"pids[{i}].{f}", t, "CKPT_PID_ROOT" if t == PID_ROOT
                              else "tag names no pid", record="BUFFER")
                    row[f] = 0
            t = r["vpid"]
            nested = entries[t - offset][1:] if 0 <= t - offset < count else []
            if r["depth"] != len(nested):
                self.lose(buf, f"pids[{i}].depth", r["depth"], f"its pid entry has depth "
                          f"{len(nested)}", record="BUFFER")
            row["depth"] = len(nested)
            vpids += nested
            own.add(t - offset)
            named.update((row[f], None) for f in PID_FIELDS if row[f] > 0)
            out.append(self.dst.build(row_name, row))
        for i, e in enumerate(entries):
            if i not in used:
                self.lose(pids_rec, f"entries[{i}]", e, "a pid no task names")
            elif len(e) > 1 and i not in own:
                self.lose(pids_rec, f"entries[{i}]", e, "nested numbers of a pid that is no "
                          "task's own")
        if offset != 1 or [e[0] for e in entries] != list(named):
            self.note(pids_rec, "offset", offset, "pid objects not numbered from 1 in order of "
                      "first reference; an upgrade renumbers them")
        self.refs.set_shift(offset, -count)
        yield self.small(tree_rec, "tree", {"nr_tasks": nr})
        yield buf.derive("buffer", b"".join(out))
        if vpids:
            yield buf.derive("buffer", struct.pack(f"<{len(vpids)}i", *vpids))

