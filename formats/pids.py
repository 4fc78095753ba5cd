"""The BUFFERs that follow PIDS and TREE: pid entries and per-task pid rows.

v23's PIDS buffer holds ``nr_pids`` variable entries ``{u32 depth; s32
numbers[depth+1]}`` (not 8-aligned); the TREE buffer holds one fixed row per task,
``ckpt_pids`` (numbers) before v23 and ``ckpt_task_pids`` (tags) in v23 — the
row structs live with each version in ``records()``.
"""
from __future__ import annotations

import struct
from typing import Iterable, Iterator

from ._abi import Abi, PayloadError

PID_FIELDS = ("vpid", "vppid", "vtgid", "vpgid", "vsid")
ENTRY_HEAD = struct.Struct("<Ii")           # depth, numbers[0]


def iter_entries(data: bytes, count: int) -> Iterator[tuple[int, ...]]:
    """The numbers of each of ``count`` PIDS entries (root namespace first)."""
    if count > len(data) // ENTRY_HEAD.size:
        raise PayloadError(f"PIDS buffer of {len(data)} bytes cannot hold {count} entries")
    pos = 0
    for _ in range(count):
        try:
            depth, first = ENTRY_HEAD.unpack_from(data, pos)
            rest = struct.unpack_from(f"<{depth}i", data, pos + 8) if depth else ()
        except struct.error:
            raise PayloadError(f"PIDS buffer holds fewer than {count} entries") from None
        yield (first, *rest)
        pos += 8 + 4 * depth


def build_entries(entries: Iterable[Iterable[int]]) -> bytes:
    out = []
    for e in entries:
        e = list(e)
        out.append(struct.pack(f"<I{len(e)}i", len(e) - 1, *e))
    return b"".join(out)


def row_struct(abi: Abi) -> str:
    """The name of the per-task row struct of the TREE buffer in this ABI."""
    return "ckpt_task_pids" if abi.traits["pids_model"] == "pids" else "ckpt_pids"


def iter_row_fields(abi: Abi, data: bytes, count: int,
                    fields: tuple[str, ...]) -> Iterator[tuple]:
    """The ``fields`` of each of ``count`` rows, one unpack a row (no construct Container:
    100,000 of them took 40 MB); a field the row struct lacks ("depth" before v23) is 0."""
    name, size = _rows(abi, data, count)
    get = abi.getter(name, fields, dict.fromkeys(fields, 0))
    return (get(data[i * size:(i + 1) * size]) for i in range(count))


def _rows(abi: Abi, data: bytes, count: int) -> tuple[str, int]:
    """The row struct's name and size, once ``data`` is known to hold ``count`` rows."""
    name = row_struct(abi)
    size = abi.sizeof(name)
    if count < 0 or len(data) < count * size:
        raise PayloadError(f"pids array of {len(data)} bytes is too short for {count} tasks "
                           f"of {size} bytes")
    return name, size


def iter_rows(abi: Abi, data: bytes, count: int) -> Iterator[dict]:
    """The rows one by one, each a new dict of all its fields (pads included: what
    ``Abi.parse`` gives without construct's ``_io``), so that 100,000 tasks need not be
    100,000 dicts at once.  The short-buffer error is raised before the first row."""
    name, size = _rows(abi, data, count)
    rows = abi.rows(name, data[:count * size])
    return rows if rows is not None else \
        ({k: v for k, v in abi.parse(name, data[i * size:(i + 1) * size]).items() if k != "_io"}
         for i in range(count))


def build_rows(abi: Abi, rows: Iterable[dict]) -> bytes:
    name = row_struct(abi)
    return b"".join(abi.build(name, r) for r in rows)
