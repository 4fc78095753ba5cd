"""Struct surgery for writing one ABI version as a delta of its predecessor.

A construct ``Struct`` keeps its fields in ``.subcons``; a newer layout is the
older list with fields inserted, replaced or removed.  The helpers return new
structs and never touch the old one, so ``v18`` can derive from ``v17`` while
``v17`` stays what it was.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from construct import Struct
# construct is imported where a struct is made: the ABI tables (types, revisions) load
# without it (start-up; formats/__init__.py).


def pad(n: int, name: str = "_pad"):
    """Explicit padding that is kept when parsed (lossless) and zero when built."""
    from construct import Bytes, Default
    return name / Default(Bytes(n), bytes(n))


def _index(st: Struct, name: str) -> int:
    for i, sc in enumerate(st.subcons):
        if sc.name == name:
            return i
    raise KeyError(f"no field {name!r} in struct")


def insert_after(st: Struct, name: str | None, *fields) -> Struct:
    """Fields inserted after ``name`` (``None``: at the front)."""
    from construct import Struct
    subs = list(st.subcons)
    i = 0 if name is None else _index(st, name) + 1
    return Struct(*subs[:i], *fields, *subs[i:])


def replace(st: Struct, name: str, *fields) -> Struct:
    from construct import Struct
    subs = list(st.subcons)
    i = _index(st, name)
    return Struct(*subs[:i], *fields, *subs[i + 1:])


def remove(st: Struct, *names: str) -> Struct:
    from construct import Struct
    return Struct(*(sc for sc in st.subcons if sc.name not in names))


def append(st: Struct, *fields) -> Struct:
    from construct import Struct
    return Struct(*st.subcons, *fields)


def renumber(table: dict[str, int], first: int, last: int, by: int) -> dict[str, int]:
    """Shift every value in ``first..last`` by ``by`` (an insertion in a C enum)."""
    return {k: (v + by if first <= v <= last else v) for k, v in table.items()}
