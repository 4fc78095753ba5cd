"""One ABI (version × arch): the record and object tables and the payload structs.

A version module states only what changed from its ``BASE``; an attribute it
does not define is looked up along the chain, so each fact has one home.
"""
from __future__ import annotations

import functools
import io
import marshal
import os
import struct
import sys
from itertools import islice
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from construct import Construct, ConstructError, Container
# construct is imported where a struct is built or parsed by it: what tells versions apart
# (revisions, record types) loads without it (start-up: dump, versions, --help).


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
    def structs(self) -> "_Structs":
        """The payload structs (name -> construct struct), built on first use: telling
        versions apart (rev, types), knowing which records have a struct and parsing
        them by the fast path need none of them (the tables)."""
        return _Structs(self)

    @functools.cached_property
    def tables(self) -> dict:
        """What the structs are, as plain data: ``names`` (every record with a struct),
        ``sizes`` (name -> sizeof, None if variable), ``layouts`` (name -> _Layout
        description, None if construct parses it), ``signatures`` (name -> the struct's
        ``signature``: a converter compares them to know which records change),
        ``packs`` (name -> ``_pack_fields``, None if construct builds it). Kept in the user's cache folder
        (made again when a formats module changes), so a start-up that only parses
        loads no construct."""
        key = _tables_key()
        path = os.path.join(_cache_folder(), f"abi-tables.{self.name}.{self.arch}.marshal")
        try:
            with open(path, "rb") as f:
                cached = marshal.loads(f.read())
            if isinstance(cached, dict) and cached.get("key") == key:
                return cached
        except (OSError, EOFError, ValueError, TypeError):
            pass
        tables = self._make_tables(key)
        _write_atomically(path, marshal.dumps(tables))
        return tables

    def _make_tables(self, key: str) -> dict:
        built = self.structs.built()
        layouts = {}
        for name, st in built.items():
            try:
                layouts[name] = describe(st)
            except _Variable:
                layouts[name] = None
        return {"key": key, "names": list(built), "layouts": layouts,
                "sizes": {name: _sizeof(st) for name, st in built.items()},
                "signatures": {name: signature(st) for name, st in built.items()},
                "packs": {name: _pack_fields(st) for name, st in built.items()}}

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

    def switch_keys(self, name: str) -> frozenset:
        """The keys of the switch that ends struct ``name`` (FILE's ``sub``, chosen by
        f_type), from the tables, so construct is not loaded to know them."""
        layout = self.tables["layouts"].get(name)
        if layout and layout[-1][0] == "switch":
            return frozenset(layout[-1][3])
        return frozenset(self.structs[name].subcons[-1].subcon.cases)

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
        from construct import ConstructError
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

    def fast_plain(self, name: str) -> Callable[[bytes], dict] | None:
        """What ``plain`` tries first: one parse by the fixed layout, which raises anything
        on a payload it cannot read (``plain`` then says what is wrong); None where the
        struct has no such layout. For a hot caller that falls back to ``plain`` itself."""
        fast = self._plain_of(name)
        return fast.parse if fast is not None else None

    def fixed_size(self, name: str) -> int | None:
        """The size of a struct of one fixed segment (a payload of at least that many
        bytes parses), else None."""
        fast = self._plain_of(name)
        return fast.size if isinstance(fast, _Plain) else None

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

    def rows(self, name: str, data: bytes) -> Iterator[dict] | None:
        """Structs of ``name`` laid end to end in ``data`` (a whole number of them), each
        as a new dict of all its fields, pads included, by one unpack each; None where
        the struct is not of flat fixed layout (the caller parses each)."""
        layout = self._layout(name)
        if layout is None or len(layout.segments) != 1:
            return None
        seg = layout.segments[0]
        if not isinstance(seg, _Fixed) or not seg.flat:
            return None
        names, fmt = seg.names, "<" + "".join(seg.fmt)
        return (dict(zip(names, values)) for values in struct.iter_unpack(fmt, data))

    def getter(self, name: str, fields: tuple[str, ...],
               missing: dict | None = None) -> Callable[[bytes], tuple]:
        """``payload -> (values of fields)``: one unpack of just those scalar fields where
        the struct is of fixed size, else through ``plain``; errors as ``parse`` raises
        them. A field this version's struct lacks takes its value from ``missing``."""
        missing = missing or {}
        present = tuple(f for f in fields if f not in missing or self._has_field(name, f))
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
            desc = self.tables["layouts"].get(name)
            fast = self._fast[name] = None if desc is None else _Layout.described(desc)
        return fast

    def _has_field(self, name: str, field: str) -> bool:
        """Whether this version's struct of ``name`` has ``field`` (from its layout when
        it has one: no construct needed)."""
        layout = self._layout(name)
        if layout is not None:
            return field in layout.fields()
        return any(sub.name == field for sub in self.structs[name].subcons)

    @functools.cached_property
    def _packers(self) -> dict:
        return {}

    def build(self, name: str, value: dict) -> bytes:
        packer = self._packers.get(name, _UNSET)
        if packer is _UNSET:
            fields = self.tables["packs"].get(name)
            packer = self._packers[name] = None if fields is None else _Packer(fields)
        if packer is not None:
            data = packer.pack(value)
            if data is not None:
                return data + bytes(value.get("_tail", b""))
        from construct import ConstructError
        st = self.structs[name]
        try:
            data = st.build(value)
        except (ConstructError, KeyError, TypeError, ValueError) as e:
            raise PayloadError(f"cannot build {name.upper()}: {e}") from None
        return data + bytes(value.get("_tail", b""))

    def sizeof(self, name: str) -> int | None:
        return self.tables["sizes"].get(name)


_UNSET = object()


class _Structs(Mapping):
    """An ABI's structs: which records have one is known from its tables; the construct
    structs themselves are built when one is asked for."""

    def __init__(self, abi: Abi):
        self._abi = abi
        self._built: dict | None = None

    def built(self) -> dict:
        if self._built is None:     # a copy: the version modules' records() are cached
            self._built = dict(self._abi._get("records")(self._abi.arch))
        return self._built

    def __contains__(self, name) -> bool:
        if self._built is None:
            return name in self._abi.tables["names"]
        return name in self._built

    def __getitem__(self, name: str) -> Construct:
        return self.built()[name]

    def __iter__(self):
        return iter(self.built())

    def __len__(self) -> int:
        return len(self.built())


def _sizeof(st) -> int | None:
    from construct import ConstructError
    try:
        return st.sizeof()
    except ConstructError:
        return None


def _tables_key() -> str:
    """What the tables are made from: the formats modules and construct's (as byte code
    is keyed, by modification time and size) and the Python running them."""
    spec = _construct_spec()
    parts = [sys.version]
    for folder in (os.path.dirname(__file__), *(spec and spec.submodule_search_locations or ())):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                st = entry.stat()
                parts.append(f"{folder}/{entry.name}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


def _cache_folder() -> str:
    """$XDG_CACHE_HOME/imgtools (~/.cache/imgtools), one subfolder per formats package
    (checkouts side by side keep their own tables)."""
    import zlib
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(base, "imgtools", f"formats-{zlib.crc32(here.encode()):08x}")


def _write_atomically(path: str, data: bytes) -> None:
    """Written whole or not at all (private to the user), never an error: the tables are
    made again next time."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


class _Layout:
    """A struct parsed with ``struct.Struct``s built from its fields' format strings
    into the Container construct makes, many times faster (the hot path of every
    reader: VMAs, page arrays, objrefs, tasks, files). Runs of fixed fields are one
    unpack; a count, length or switch that depends on an earlier field (``this.x``) is
    read from the fields parsed so far. ``parse`` raises on anything unexpected and
    the caller lets construct parse (and report) it.

    Made from the struct's description (``describe``: plain data, which the ABI's
    tables cache keeps), so a warm start parses without importing construct."""

    def __init__(self, st: Construct):
        self._load(describe(st))

    @classmethod
    def of(cls, st: Construct) -> "_Layout | None":
        try:
            return cls(st)
        except _Variable:
            return None

    @classmethod
    def described(cls, desc: list) -> "_Layout":
        layout = cls.__new__(cls)
        layout._load(desc)
        return layout

    def _load(self, desc: list) -> None:
        self.container, listing = _containers()
        self.segments = [_Fixed(d[1], self.container, listing) if d[0] == "fixed"
                         else _Dependent(d, self.container, listing) for d in desc]
        self.size = sum(seg.size for seg in self.segments) \
            if all(isinstance(seg, _Fixed) for seg in self.segments) else None

    def fields(self) -> list[str]:
        return [n for seg in self.segments
                for n in (seg.names if isinstance(seg, _Fixed) else (seg.name,))]

    def parse(self, payload: bytes) -> tuple[Container, int]:
        obj = self.container()
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


# Container.update is a Python loop over the pairs; dict's own is C (Container is a dict
# that keeps dict's __setitem__, so the result is the same Container).
_update = dict.update


class _Variable(Exception):
    """A field this fast path does not know: construct parses the struct."""


def _bare(sc):
    import construct as cs
    while isinstance(sc, (cs.Renamed, cs.Default)):
        sc = sc.subcon
    return sc


def _pack_fields(st) -> list | None:
    """A struct as plain data for _Packer, or None (construct builds it): [(name, default
    bytes or None, node), ...], a node being a format ("I", "8s"), ("s", fields) for a
    struct, ("a", count, node) for an array; and where the layout depends on an earlier
    field of the same struct, ("n", count field, node) for an array, ("b", length field)
    for bytes, ("w", key field, {key: fields}) for a switch that builds nothing for
    other keys."""
    import construct as cs
    fields = []
    for sub in st.subcons:
        if not sub.name:
            return None
        sc, default = sub, None
        while isinstance(sc, (cs.Renamed, cs.Default)):
            if isinstance(sc, cs.Default):
                if not isinstance(sc.value, bytes):
                    return None
                default = sc.value
            sc = sc.subcon
        node = _pack_node(sc)
        if node is None:
            return None
        fields.append((sub.name, default, node))
    return fields


def _pack_node(sc):
    import construct as cs
    if isinstance(sc, cs.FormatField) and sc.fmtstr[0] == "<" and len(sc.fmtstr) == 2:
        return sc.fmtstr[1]
    if isinstance(sc, cs.Bytes) and isinstance(sc.length, int):
        return f"{sc.length}s"
    if isinstance(sc, cs.Struct):
        fields = _pack_fields(sc)
        return None if fields is None else ("s", fields)
    if isinstance(sc, cs.Array) and isinstance(sc.count, int):
        node = _pack_node(sc.subcon)
        return None if node is None else ("a", sc.count, node)
    try:
        if isinstance(sc, cs.Array) and callable(sc.count):
            node = _pack_node(sc.subcon)
            return None if node is None else ("n", _field(sc.count), node)
        if isinstance(sc, cs.Bytes) and callable(sc.length):
            return ("b", _field(sc.length))
        if isinstance(sc, cs.Switch) and callable(sc.keyfunc) \
                and isinstance(sc.default, cs.Pass.__class__) \
                and all(isinstance(_bare(c), cs.Struct) for c in sc.cases.values()):
            cases = {k: _pack_fields(_bare(c)) for k, c in sc.cases.items()}
            if None in cases.values():
                return None
            return ("w", _field(sc.keyfunc), cases)
    except _Variable:
        pass
    return None


def _fixed_node(node) -> bool:
    if isinstance(node, str):
        return True
    if node[0] == "s":
        return all(_fixed_node(n) for _, _, n in node[1])
    return node[0] == "a" and _fixed_node(node[2])


class _NoPack(Exception):
    """A value one pack does not take as construct would."""


class _Packer:
    """Builds a struct of fixed layout with one struct.pack, as construct builds it;
    None where a value is not what construct takes for it without converting (construct
    then builds it, or says what is wrong)."""

    def __init__(self, fields: list):
        self.fields = fields
        if not _fixed_node(("s", fields)):
            self.pack = self._pack_variable
            return
        self.pack_values = struct.Struct("<" + _pack_format(("s", fields))).pack
        # the usual struct: scalars only, checked without a walk
        self.flat = all(isinstance(node, str) for _, _, node in fields)
        self.scalars = [(name, default) for name, default, _ in fields]
        self.lengths = [(name, int(node[:-1])) for name, _, node in fields
                        if isinstance(node, str) and node[-1] == "s"]

    def pack(self, value: dict) -> bytes | None:
        try:
            if self.flat:
                out = [value[name] if name in value else default
                       for name, default in self.scalars]
                if None in out:
                    return None
                for name, n in self.lengths:
                    b = value.get(name)
                    if b is not None and not (type(b) is bytes and len(b) == n):
                        return None
            else:
                out = []
                _flatten(("s", self.fields), value, out)
            return self.pack_values(*out)
        except (_NoPack, struct.error, TypeError, KeyError, AttributeError):
            return None

    def _pack_variable(self, value: dict) -> bytes | None:
        # (records of this kind are few: a pack per part is fast enough)
        try:
            return _pack_parts(("s", self.fields), value, None)
        except (_NoPack, struct.error, TypeError, KeyError, AttributeError):
            return None


def _pack_parts(node, v, parent) -> bytes:
    """The bytes of a value of ``node`` (a field of the struct value ``parent``) as
    construct builds them; _NoPack where it might not."""
    if isinstance(node, str) or node[0] == "a" and _fixed_node(node):
        out: list = []
        _flatten(node, v, out)
        return struct.pack("<" + _pack_format(node), *out)
    kind = node[0]
    if kind == "s":
        if not isinstance(v, dict):
            raise _NoPack
        return b"".join(_pack_parts(sub, v[name] if name in v else _given(default), v)
                        for name, default, sub in node[1])
    if kind == "b":
        n = parent[node[1]]
        if type(v) is not bytes or type(n) is not int or len(v) != n:
            raise _NoPack
        return v
    if kind == "w":
        case = node[2].get(parent[node[1]])
        return b"" if case is None else _pack_parts(("s", case), v, parent)
    count = node[1] if kind == "a" else parent[node[1]]
    if type(count) is not int or not isinstance(v, list) or len(v) != count:
        raise _NoPack
    return b"".join(_pack_parts(node[2], item, None) for item in v)


def _given(default):
    """A missing field's value: its default; construct fails without one."""
    if default is None:
        raise _NoPack
    return default


def _pack_format(node) -> str:
    if isinstance(node, str):
        return node
    if node[0] == "s":
        return "".join(_pack_format(n) for _, _, n in node[1])
    return _pack_format(node[2]) * node[1]


def _flatten(node, v, out: list) -> None:
    if isinstance(node, str):
        if node[-1] == "s" and not (type(v) is bytes and len(v) == int(node[:-1])):
            raise _NoPack
        if v is None:
            raise _NoPack
        out.append(v)
    elif node[0] == "s":
        if not isinstance(v, dict):
            raise _NoPack
        for name, default, sub in node[1]:
            _flatten(sub, v[name] if name in v else default, out)
    else:
        if not isinstance(v, list) or len(v) != node[1]:
            raise _NoPack
        for item in v:
            _flatten(node[2], item, out)


def signature(con) -> tuple:
    """A structural fingerprint of a construct: equal layouts give equal tuples (plain
    data, as the tables keep it)."""
    import construct as cs
    if isinstance(con, cs.Renamed):
        return ("R", con.name, signature(con.subcon))
    if isinstance(con, cs.Struct):
        return ("S",) + tuple(signature(s) for s in con.subcons)
    if isinstance(con, cs.FormatField):
        return ("F", con.fmtstr)
    if isinstance(con, cs.Default):
        return ("D", signature(con.subcon))
    if isinstance(con, cs.Bytes):
        return ("B", str(con.length))
    if isinstance(con, cs.Array):
        return ("A", str(con.count), signature(con.subcon))
    if isinstance(con, cs.Switch):
        return ("W", str(con.keyfunc), tuple(sorted((k, signature(c)) for k, c in
                                                    con.cases.items())), signature(con.default))
    return (type(con).__name__,)


def describe(st) -> list:
    """The struct's fields as runs of fixed fields and single data-dependent ones, as
    plain data (marshal-able): ``("fixed", [(name, format, shape), ...])``,
    ``("array", name, count field, format, shape)``, ``("bytes", name, length field)``,
    ``("switch", name, key field, {key: description})``; a shape is None (a scalar),
    ``("s", names, shapes)`` (a struct) or ``("a", count, shape)``. _Variable if a field
    is none of these."""
    import construct as cs
    segs: list = []
    for sub in st.subcons:
        if not sub.name:
            raise _Variable
        sc = _bare(sub)
        try:
            fmt, shape = _fixed(sc)
        except _Variable:
            pass
        else:
            if not segs or segs[-1][0] != "fixed":
                segs.append(("fixed", []))
            segs[-1][1].append((sub.name, fmt, shape))
            continue
        if isinstance(sc, cs.Array) and callable(sc.count):
            segs.append(("array", sub.name, _field(sc.count), *_fixed(sc.subcon)))
        elif isinstance(sc, cs.Bytes) and callable(sc.length):
            segs.append(("bytes", sub.name, _field(sc.length)))
        elif isinstance(sc, cs.Switch) and callable(sc.keyfunc) \
                and isinstance(sc.default, cs.Pass.__class__) \
                and all(isinstance(_bare(c), cs.Struct) for c in sc.cases.values()):
            segs.append(("switch", sub.name, _field(sc.keyfunc),
                         {k: describe(_bare(c)) for k, c in sc.cases.items()}))
        else:
            raise _Variable
    return segs


class _Probe(dict):
    """Records the one field an expression reads (``this.x`` reads x)."""

    def __missing__(self, key):
        self.setdefault("read", []).append(key)
        return _Probe


def _field(expr) -> str:
    """The field ``expr`` is (``this.n`` -> "n"), or _Variable for any other expression."""
    probe = _Probe()
    try:
        value = expr(probe)
    except Exception:   # noqa: BLE001 - an expression of more than one field
        raise _Variable from None
    read = dict.get(probe, "read", [])
    if value is not _Probe or len(read) != 1 or not isinstance(read[0], str):
        raise _Variable
    return read[0]


def _fixed(sc) -> tuple[str, object]:
    """(format string without byte order, shape) of a field of fixed layout, or
    _Variable."""
    import construct as cs
    sc = _bare(sc)
    if isinstance(sc, cs.FormatField):
        if sc.fmtstr[0] != "<" or len(sc.fmtstr) != 2:
            raise _Variable
        return sc.fmtstr[1], None
    if isinstance(sc, cs.Bytes) and isinstance(sc.length, int):
        return f"{sc.length}s", None
    if isinstance(sc, cs.Struct):
        names, fmt, shapes = [], [], []
        for sub in sc.subcons:
            if not sub.name:
                raise _Variable
            f, shape = _fixed(sub)
            names.append(sub.name)
            fmt.append(f)
            shapes.append(shape)
        return "".join(fmt), ("s", tuple(names), tuple(shapes))
    if isinstance(sc, cs.Array) and isinstance(sc.count, int):
        f, shape = _fixed(sc.subcon)
        return f * sc.count, ("a", sc.count, shape)
    raise _Variable


def _maker(shape, container, listing):
    """make(values iterator) -> the value of a field of this shape (``next``: a scalar)."""
    if shape is None:
        return next
    if shape[0] == "s":
        names = ("_io", *shape[1])
        makes = [_maker(s, container, listing) for s in shape[2]]
        n = len(makes)
        if all(m is next for m in makes):
            return lambda it: container(zip(names, (None, *islice(it, n))))
        return lambda it: container(zip(names, (None, *(m(it) for m in makes))))
    count, make = shape[1], _maker(shape[2], container, listing)
    if make is next:
        return lambda it: listing(islice(it, count))
    return lambda it: listing(make(it) for _ in range(count))


class _Fixed:
    def __init__(self, fields: list, container, listing):
        self.names = [name for name, _, _ in fields]
        self.fmt = [fmt for _, fmt, _ in fields]
        self.makes = [_maker(shape, container, listing) for _, _, shape in fields]
        st = struct.Struct("<" + "".join(fmt for _, fmt, _ in fields))
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

    def __init__(self, desc, container, listing):
        kind, self.name, self.field = desc[:3]
        self.list = listing
        if kind == "array":
            self.fmt, shape = desc[3:]
            self.make = None if shape is None else _maker(shape, container, listing)
            self.item = struct.calcsize("<" + self.fmt)
            self.parse = self._array
        elif kind == "bytes":
            self.parse = self._bytes
        else:
            self.cases = {k: _Layout.described(d) for k, d in desc[3].items()}
            self.parse = self._switch

    def _array(self, payload, off, obj):
        n = obj[self.field]
        if not isinstance(n, int) or n < 0:
            raise ValueError("count")
        if n == 0:                  # (SIGPENDING without pending signals: most of them)
            obj[self.name] = self.list()
            return off
        values = struct.unpack_from("<" + (f"{n}{self.fmt}" if len(self.fmt) == 1
                                           else self.fmt * n), payload, off)
        if self.make is None:
            obj[self.name] = self.list(values)
        else:
            it = iter(values)
            obj[self.name] = self.list(self.make(it) for _ in range(n))
        return off + n * self.item

    def _bytes(self, payload, off, obj):
        n = obj[self.field]
        if not isinstance(n, int) or n < 0 or off + n > len(payload):
            raise ValueError("length")
        obj[self.name] = payload[off:off + n]
        return off + n

    def _switch(self, payload, off, obj):
        case = self.cases.get(obj[self.field])
        if case is None:
            obj[self.name] = None
            return off
        value, used = case.parse(payload[off:])
        obj[self.name] = value
        return off + used


def _containers():
    """construct's Container and ListContainer (what construct's own parse returns).

    With construct not loaded yet, its containers module is loaded alone (under its own
    name, so a later ``import construct`` takes this very module: one Container class):
    construct's __init__ imports its whole parser and pdb, inspect, pickle and hashlib,
    most of a small command's start-up, and the fast path needs none of it."""
    mod = sys.modules.get("construct.lib.containers")
    if mod is None and "construct" not in sys.modules:
        mod = _alone("construct.lib.containers")
    if mod is None:
        from construct.lib import containers as mod
    return mod.Container, mod.ListContainer


def _construct_spec():
    """Where construct is, found on sys.path as an import would find it (not by
    importlib.util, a module of its own to load at every start-up)."""
    from importlib.machinery import PathFinder
    return PathFinder.find_spec("construct")


def _alone(name: str) -> ModuleType | None:
    """The submodule ``name`` of construct (a pure module) imported without running the
    __init__ of its packages (None if construct is not where it is expected)."""
    import importlib
    spec = _construct_spec()
    if spec is None or not spec.submodule_search_locations:
        return None
    stubs = []
    try:
        for package, path in (("construct", list(spec.submodule_search_locations)),
                              ("construct.lib", [os.path.join(p, "lib") for p in
                                                 spec.submodule_search_locations])):
            stub = ModuleType(package)
            stub.__path__ = path
            sys.modules[package] = stub
            stubs.append(stub)
        return importlib.import_module(name)
    except ImportError:
        return None
    finally:
        for stub in stubs:
            if sys.modules.get(stub.__name__) is stub:
                del sys.modules[stub.__name__]


def _short(e: ConstructError, name: str, size: int) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "stream read less than specified amount" in msg or "expected" in msg and "found" in msg:
        return f"{name.upper()} payload of {size} bytes is too short for its struct"
    return f"{name.upper()} payload does not parse: {msg}"
