"""One ABI (version × arch): the record and object tables and the payload structs.

A version module states only what changed from its ``BASE``; an attribute it
does not define is looked up along the chain, so each fact has one home.
"""
from __future__ import annotations

import functools
import io
import operator
import struct
from itertools import islice
from types import ModuleType
from typing import Callable

import construct as cs
from construct import Construct, ConstructError, Container


class PayloadError(ValueError):
    """A record payload that does not fit its struct."""


class Abi:
    def __init__(self, module: ModuleType, arch: str):
        self.module = module
        self.arch = arch
        self.name: str = module.NAME
        self.rev: int = self._get("REV")
        self.kernel: tuple[int, int, int] = self._get("KERNEL")
        self.traits: dict = self._get("TRAITS")
        self.types: dict[str, int] = self._get("TYPES")
        self.objs: dict[str, int] = self._get("OBJS")
        self.obj_records: dict[str, str] = self._get("OBJ_RECORDS")
        # record name -> the kind of object it defines
        self.record_kinds: dict[str, str] = {rec: kind for kind, rec in
                                             self.obj_records.items()} | \
            self._get("EXTRA_OBJ_RECORDS")
        self.streamed: frozenset = self._get("STREAMED")
        self.file_types: dict[str, int] = self._get("FILE_TYPES")
        self.vma_types: dict[str, int] = self._get("VMA_TYPES")
        self.restart_block_types: dict[str, int] = self._get("RESTART_BLOCK_TYPES")
        self.arch_ids: dict[str, int] = self._get("ARCH_IDS")
        self.arch_id: int = self.arch_ids[arch]
        self.magic_head: int = self._get("MAGIC_HEAD")
        self.magic_tail: int = self._get("MAGIC_TAIL")
        self.page_size: int = self._get("PAGE_SIZE")
        self.type_names = {v: k for k, v in self.types.items()}
        self.obj_names = {v: k for k, v in self.objs.items()}
        self.file_type_names = {v: k for k, v in self.file_types.items()}
        self.vma_type_names = {v: k for k, v in self.vma_types.items()}
        # sizeof(unsigned long): page addresses, and saved_auxv before v19.
        self.word = 4 if arch == "i386" else 8
        self.auxv_word = 8 if self.traits["auxv_u64"] else self.word

    @functools.cached_property
    def _fast(self) -> dict:
        return {}

    @functools.cached_property
    def structs(self) -> dict[str, Construct]:
        """The payload structs, built on first use: telling versions apart (rev, types)
        needs none of them."""
        return self._get("records")(self.arch)

    def _get(self, attr: str):
        m = self.module
        while m is not None:
            if hasattr(m, attr):
                return getattr(m, attr)
            m = m.BASE
        raise AttributeError(f"{self.module.NAME} defines no {attr}")

    def __repr__(self) -> str:
        return f"<Abi {self.name} {self.arch}>"

    def has(self, record: str) -> bool:
        return record in self.types

    def type_name(self, number: int) -> str | None:
        return self.type_names.get(number)

    def struct(self, name: str) -> Construct | None:
        return self.structs.get(name)

    def parse(self, name: str, payload: bytes) -> Container:
        """Parse a payload; bytes past the struct are kept as ``_tail``."""
        fast = self._layout(name)
        if fast is not None:
            try:
                value, used = fast.parse(payload)
            except Exception:   # noqa: BLE001 - construct parses it and says what is wrong
                pass
            else:
                if len(payload) > used:
                    value["_tail"] = payload[used:]
                return value
        st = self.structs[name]
        stream = io.BytesIO(payload)
        try:
            value = st.parse_stream(stream)
        except ConstructError as e:
            raise PayloadError(_short(e, name, len(payload))) from None
        tail = payload[stream.tell():]
        if tail:
            value["_tail"] = tail
        return value

    def plain(self, name: str, payload: bytes) -> dict:
        """The payload's public fields as a plain dict (no ``_`` fields, no tail): what
        ``parse`` gives without its private keys, made by one unpack where the struct is
        of fixed size (the hot path of the model builder: a record per task or fd)."""
        fast = self._plain_of(name)
        if fast is not None:
            try:
                return fast.parse(payload)
            except Exception:   # noqa: BLE001 - construct parses it and says what is wrong
                pass
        return {k: v for k, v in self.parse(name, payload).items() if not k.startswith("_")}

    def checker(self, name: str) -> Callable[[bytes], bytes]:
        """``payload -> payload``, raising the PayloadError ``parse`` would raise (a
        payload a fixed-size struct fits is checked by its length alone): for payloads
        held unparsed."""
        fast = self._plain_of(name)
        plain = self.plain
        size = fast.size if isinstance(fast, _Plain) else None

        def checked(payload):
            if size is None or len(payload) < size:
                plain(name, payload)
            return payload
        return checked

    def _plain_of(self, name: str):
        fast = self._plain.get(name, _UNSET)
        if fast is _UNSET:
            layout = self._layout(name)
            fast = self._plain[name] = _Plain.of(layout) if layout is not None else None
        return fast

    def getter(self, name: str, fields: tuple[str, ...],
               missing: dict | None = None) -> Callable[[bytes], tuple]:
        """``payload -> (values of fields)``: one unpack of just those scalar fields where
        the struct is of fixed size, else through ``plain``; errors as ``parse`` raises
        them. A field this version's struct lacks takes its value from ``missing``."""
        missing = missing or {}
        st = self.structs[name]
        present = tuple(f for f in fields if f not in missing or _has(st, f))
        layout = self._layout(name)
        fast = _Picker.of(layout, present) if layout is not None else None
        if fast is None:
            plain = self.plain

            def get(payload):
                d = plain(name, payload)
                return tuple(d[f] for f in present)
        else:
            get = fast.get(functools.partial(self.plain, name))
        if len(present) == len(fields):
            return get
        order = [present.index(f) if f in present else None for f in fields]
        consts = [None if i is not None else missing[f] for f, i in zip(fields, order)]

        def with_missing(payload):
            values = get(payload)
            return tuple(values[i] if i is not None else c for i, c in zip(order, consts))
        return with_missing

    @functools.cached_property
    def _plain(self) -> dict:
        return {}

    def _layout(self, name: str) -> "_Layout | None":
        fast = self._fast.get(name, _UNSET)
        if fast is _UNSET:
            fast = self._fast[name] = _Layout.of(self.structs[name])
        return fast

    def build(self, name: str, value: dict) -> bytes:
        st = self.structs[name]
        try:
            data = st.build(value)
        except (ConstructError, KeyError, TypeError, ValueError) as e:
            raise PayloadError(f"cannot build {name.upper()}: {e}") from None
        return data + bytes(value.get("_tail", b""))

    def sizeof(self, name: str) -> int | None:
        try:
            return self.structs[name].sizeof()
        except (ConstructError, KeyError):
            return None


_UNSET = object()


class _Layout:
    """A struct parsed with ``struct.Struct``s built from its fields' format strings
    into the Container construct makes, many times faster (the hot path of every
    reader: VMAs, page arrays, objrefs, tasks, files). Runs of fixed fields are one
    unpack; a count, length or switch that depends on an earlier field (``this.x``) is
    read from the fields parsed so far. ``parse`` raises on anything unexpected and
    the caller lets construct parse (and report) it."""

    def __init__(self, st: Construct):
        self.segments = _segments(st)
        self.size = sum(seg.size for seg in self.segments) \
            if all(isinstance(seg, _Fixed) for seg in self.segments) else None

    @classmethod
    def of(cls, st: Construct) -> "_Layout | None":
        try:
            return cls(st)
        except _Variable:
            return None

    def parse(self, payload: bytes) -> tuple[Container, int]:
        obj = Container()
        obj["_io"] = None           # (construct keeps its stream here; no reader uses it)
        off = 0
        for seg in self.segments:
            off = seg.parse(payload, off, obj)
        return obj, off


class _Plain:
    """The public fields of a fixed-size struct as a dict: private fields (padding) are
    skipped by the unpack itself ("x" codes), so nothing is filtered afterwards."""

    def __init__(self, seg: "_Fixed"):
        names, fmt, makes = [], [], []
        for n, f, m in zip(seg.names, seg.fmt, seg.makes):
            if n.startswith("_"):
                fmt.append(f"{struct.calcsize('<' + f)}x")
            else:
                names.append(n)
                fmt.append(f)
                makes.append(m)
        st = struct.Struct("<" + "".join(fmt))
        self.size, self.unpack, self.names, self.makes = st.size, st.unpack_from, names, makes
        if all(m is next for m in makes):
            self.parse = self._flat

    @classmethod
    def of(cls, layout: "_Layout") -> "_Plain | _Segments":
        if len(layout.segments) != 1 or not isinstance(layout.segments[0], _Fixed):
            return _Segments(layout)
        return cls(layout.segments[0])

    def _flat(self, payload) -> dict:
        if len(payload) < self.size:
            raise ValueError("short")
        return dict(zip(self.names, self.unpack(payload)))

    def parse(self, payload) -> dict:
        if len(payload) < self.size:
            raise ValueError("short")
        it = iter(self.unpack(payload))
        return dict(zip(self.names, [m(it) for m in self.makes]))


class _Segments:
    """The public fields of a struct with data-dependent parts (counts, switches), parsed
    into a dict segment by segment, the private fields dropped at the end."""

    def __init__(self, layout: "_Layout"):
        self.segments = layout.segments
        self.private = [n for seg in layout.segments
                        for n in (seg.names if isinstance(seg, _Fixed) else (seg.name,))
                        if n.startswith("_")]

    def parse(self, payload) -> dict:
        obj: dict = {}
        off = 0
        for seg in self.segments:
            off = seg.parse(payload, off, obj)
        for n in self.private:
            del obj[n]
        return obj


class _Picker:
    """Some scalar fields of a fixed-size struct, unpacked at their offsets alone."""

    def __init__(self, seg: "_Fixed", fields: tuple[str, ...]):
        offsets, off = {}, 0
        for n, f, m in zip(seg.names, seg.fmt, seg.makes):
            offsets[n] = (off, f if m is next else None)
            off += struct.calcsize("<" + f)
        self.size = off
        at = sorted(fields, key=lambda f: offsets[f][0])
        fmt, pos = [], 0
        for f in at:
            o, code = offsets[f]
            if code is None:
                raise _Variable         # a nested struct or array: not a scalar
            fmt.append(f"{o - pos}x{code}" if o > pos else code)
            pos = o + struct.calcsize("<" + code)
        self.unpack = struct.Struct("<" + "".join(fmt)).unpack_from
        self.order = [at.index(f) for f in fields]
        self.fields = fields

    @classmethod
    def of(cls, layout: "_Layout", fields: tuple[str, ...]) -> "_Picker | None":
        if len(layout.segments) != 1 or not isinstance(layout.segments[0], _Fixed):
            return None
        try:
            return cls(layout.segments[0], fields)
        except (_Variable, KeyError):
            return None

    def get(self, plain: Callable[[bytes], dict]) -> Callable[[bytes], tuple]:
        """The getter: a short payload goes to ``plain`` (which says what is wrong)."""
        unpack, size, order, names = self.unpack, self.size, self.order, self.fields
        reorder = None if order == sorted(order) else order

        def get(payload):
            if len(payload) < size:
                d = plain(payload)
                return tuple(d[f] for f in names)
            values = unpack(payload)
            return values if reorder is None else tuple(values[i] for i in reorder)
        return get


def _has(st, name: str) -> bool:
    return any(sub.name == name for sub in st.subcons)


# Container.update is a Python loop over the pairs; dict's own is C (Container is a dict
# that keeps dict's __setitem__, so the result is the same Container).
_update = dict.update


class _Variable(Exception):
    """A field this fast path does not know: construct parses the struct."""


def _bare(sc):
    while isinstance(sc, (cs.Renamed, cs.Default)):
        sc = sc.subcon
    return sc


def _segments(st) -> list:
    """The struct's fields as runs of fixed fields and single data-dependent ones."""
    segs: list = []
    for sub in st.subcons:
        if not sub.name:
            raise _Variable
        sc = _bare(sub)
        try:
            fmt, make = _fixed(sc)
        except _Variable:
            segs.append(_Dependent(sub.name, sc))
            continue
        if not segs or not isinstance(segs[-1], _Fixed):
            segs.append(_Fixed())
        segs[-1].add(sub.name, fmt, make)
    for seg in segs:
        if isinstance(seg, _Fixed):
            seg.compile()
    return segs


class _Fixed:
    def __init__(self):
        self.names, self.fmt, self.makes = [], [], []

    def add(self, name, fmt, make):
        self.names.append(name)
        self.fmt.append(fmt)
        self.makes.append(make or next)

    def compile(self):
        st = struct.Struct("<" + "".join(self.fmt))
        self.size, self.unpack = st.size, st.unpack_from
        self.flat = all(m is next for m in self.makes)

    def parse(self, payload, off, obj):
        values = self.unpack(payload, off)
        if self.flat:
            _update(obj, zip(self.names, values))
        else:
            it = iter(values)
            _update(obj, zip(self.names, [m(it) for m in self.makes]))
        return off + self.size


class _Dependent:
    """Array(this.n, fixed), Bytes(this.n), Switch(this.k, {k: struct}, Pass)."""

    def __init__(self, name, sc):
        self.name = name
        if isinstance(sc, cs.Array) and callable(sc.count):
            fmt, self.make = _fixed(sc.subcon)
            self.item = struct.calcsize("<" + fmt)
            self.fmt = fmt
            self.count = _field_of(sc.count)
            self.parse = self._array
        elif isinstance(sc, cs.Bytes) and callable(sc.length):
            self.length = _field_of(sc.length)
            self.parse = self._bytes
        elif isinstance(sc, cs.Switch) and callable(sc.keyfunc) \
                and isinstance(sc.default, cs.Pass.__class__):
            self.key = _field_of(sc.keyfunc)
            self.cases = {k: _Layout(_bare(c)) for k, c in sc.cases.items()
                          if isinstance(_bare(c), cs.Struct)}
            if len(self.cases) != len(sc.cases):
                raise _Variable
            self.parse = self._switch
        else:
            raise _Variable

    def _array(self, payload, off, obj):
        n = self.count(obj)
        if not isinstance(n, int) or n < 0:
            raise ValueError("count")
        if n == 0:                  # (SIGPENDING without pending signals: most of them)
            obj[self.name] = cs.ListContainer()
            return off
        values = struct.unpack_from("<" + (f"{n}{self.fmt}" if len(self.fmt) == 1
                                           else self.fmt * n), payload, off)
        if self.make is None:
            obj[self.name] = cs.ListContainer(values)
        else:
            it = iter(values)
            obj[self.name] = cs.ListContainer(self.make(it) for _ in range(n))
        return off + n * self.item

    def _bytes(self, payload, off, obj):
        n = self.length(obj)
        if not isinstance(n, int) or n < 0 or off + n > len(payload):
            raise ValueError("length")
        obj[self.name] = payload[off:off + n]
        return off + n

    def _switch(self, payload, off, obj):
        case = self.cases.get(self.key(obj))
        if case is None:
            obj[self.name] = None
            return off
        value, used = case.parse(payload[off:])
        obj[self.name] = value
        return off + used


def _field_of(expr):
    """``this.name`` as an item getter (two construct calls fewer per use); any other
    expression as it is."""
    if isinstance(expr, cs.expr.Path) and getattr(expr, "_Path__parent", None) is cs.this \
            and isinstance(getattr(expr, "_Path__field", None), str):
        return operator.itemgetter(expr._Path__field)
    return expr


def _fixed(sc):
    """(format string without byte order, make(values) or None for a scalar) of a
    field of fixed layout, or _Variable."""
    sc = _bare(sc)
    if isinstance(sc, cs.FormatField):
        if sc.fmtstr[0] != "<" or len(sc.fmtstr) != 2:
            raise _Variable
        return sc.fmtstr[1], None
    if isinstance(sc, cs.Bytes) and isinstance(sc.length, int):
        return f"{sc.length}s", None
    if isinstance(sc, cs.Struct):
        names, fmt, makes = ["_io"], [], []
        for sub in sc.subcons:
            if not sub.name:
                raise _Variable
            f, make = _fixed(sub)
            names.append(sub.name)
            fmt.append(f)
            makes.append(make or next)
        n = len(makes)
        if all(m is next for m in makes):
            return "".join(fmt), lambda it: Container(zip(names, (None, *islice(it, n))))
        return "".join(fmt), lambda it: Container(zip(names, (None, *(m(it) for m in makes))))
    if isinstance(sc, cs.Array) and isinstance(sc.count, int):
        f, make = _fixed(sc.subcon)
        count = sc.count
        if make is None:
            return f * count, lambda it: cs.ListContainer(islice(it, count))
        return f * count, lambda it: cs.ListContainer(make(it) for _ in range(count))
    raise _Variable


def _short(e: ConstructError, name: str, size: int) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "stream read less than specified amount" in msg or "expected" in msg and "found" in msg:
        return f"{name.upper()} payload of {size} bytes is too short for its struct"
    return f"{name.upper()} payload does not parse: {msg}"
