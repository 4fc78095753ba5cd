"""imgtools extension records: types 8000-8999, which no linux-cr version used.

The contract is docs/format-choices.md, "Extension records" (the C home of the same
layouts is engine/include/ckpt_hdr.h).  An image carries them only when HEADER.uflags
has ``UFLAG_EXT``; only v23 (the engine's ABI) knows them, every older version drops
them on conversion.

Adding a record is one entry in ``SCHEMAS``: its name (``ckpt_hdr_<name>`` in C), its
type number, its role, its fields after the 8-byte header (an object record's fields
follow the FILE common part, which it starts with) and, for an annotation, the records it
may follow.
"""
from __future__ import annotations

from ._delta import pad

FIRST, LAST = 8000, 8999
UFLAG_EXT = 1 << 32                 # IMGTOOLS_UFLAG_EXT

# Roles.  An annotation adds facts to the core record before it; an object record
# defines a FILE object after OBJREF(FILE, n); a part belongs to the object before it.
ANNOTATION, OBJECT, PART = "annotation", "object", "part"

# name -> (type, role, fields after the header (after FILE common for OBJECT) made from the
# construct module when a struct is built (the tables here need no construct), the
# records an annotation follows)
SCHEMAS: dict[str, tuple] = {
    "ext_clocks": (8001, ANNOTATION, lambda c: (
        "realtime_ns" / c.Int64sl, "monotonic_ns" / c.Int64sl, "boottime_ns" / c.Int64sl),
        ("header_arch",)),
    "ext_rseq": (8002, ANNOTATION, lambda c: (
        "rseq" / c.Int64ul, "rseq_len" / c.Int32ul, "signature" / c.Int32ul), ("signal_task",)),
    "ext_file_stat": (8003, ANNOTATION, lambda c: (
        "size" / c.Int64ul, "mtime_sec" / c.Int64sl, "mtime_nsec" / c.Int32ul,
        "mode" / c.Int32ul, "dev" / c.Int64ul, "ino" / c.Int64ul), ("file_name",)),
    "ext_file_signalfd": (8010, OBJECT, lambda c: ("sigmask" / c.Int64ul,)),
    "ext_file_timerfd": (8011, OBJECT, lambda c: (
        "clockid" / c.Int32sl, "settime_flags" / c.Int32ul, "ticks" / c.Int64ul,
        "value_ns" / c.Int64sl, "interval_ns" / c.Int64sl)),
    "ext_file_inotify": (8012, OBJECT, lambda c: ("nr_watches" / c.Int32ul, pad(4, "_pad_ext"))),
    "ext_inotify_watch": (8013, PART, lambda c: (
        "wd" / c.Int32sl, "mask" / c.Int32ul, "ino" / c.Int64ul, "dev" / c.Int64ul)),
    "ext_file_memfd": (8014, OBJECT, lambda c: (
        "ino_objref" / c.Int32sl, "seals" / c.Int32ul, "size" / c.Int64ul)),
    "ext_file_ghost": (8015, OBJECT, lambda c: (
        "ino_objref" / c.Int32sl, "mode" / c.Int32ul, "size" / c.Int64ul, "uid" / c.Int32ul,
        "gid" / c.Int32ul)),
    # offset, then the data bytes (the rest of the payload: streamed, never parsed)
    "ext_extent": (8020, PART, lambda c: ("offset" / c.Int64ul,)),
    # socket options SOCKET and SOCKET_INET have no field for (IMGTOOLS_INET_* flags)
    "ext_inet": (8030, ANNOTATION, lambda c: ("flags" / c.Int32ul, "tos" / c.Int32sl),
                 ("socket_inet",)),
    # TCP_REPAIR state v23's tcp fields do not hold
    "ext_tcp": (8031, ANNOTATION, lambda c: (
        "options" / c.Int32ul, "snd_wscale" / c.Int8ul, "rcv_wscale" / c.Int8ul,
        pad(2, "_padding"), "mss_clamp" / c.Int32ul, "timestamp" / c.Int32ul,
        "user_timeout" / c.Int32ul, "notsent_lowat" / c.Int32ul, "congestion" / c.Bytes(16)),
        ("socket_inet", "ext_inet")),
}

TYPES = {name: entry[0] for name, entry in SCHEMAS.items()}
assert all(FIRST <= t <= LAST for t in TYPES.values())
ROLE = {name: entry[1] for name, entry in SCHEMAS.items()}
# annotation -> the records it may follow
AFTER = {name: entry[3] for name, entry in SCHEMAS.items() if entry[1] == ANNOTATION}
# Object records define FILE objects, as the core FILE record does.
OBJECT_RECORDS = {name: "file" for name, role in ROLE.items() if role == OBJECT}
# Records whose payload is a fixed head followed by raw data.
STREAMED = frozenset({"ext_extent"})
# The kind of file each object record holds (what `files` shows as its type).
FILE_KINDS = {name: name.removeprefix("ext_file_") for name in OBJECT_RECORDS}


def is_ext(type_number: int) -> bool:
    return FIRST <= type_number <= LAST


def records(file_common) -> dict:
    """Record name -> payload struct; ``file_common``: the version's FILE common part."""
    import construct
    return {name: construct.Struct(*(file_common.subcons if entry[1] == OBJECT else ()),
                                   *entry[2](construct))
            for name, entry in SCHEMAS.items()}
