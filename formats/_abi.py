"""One ABI (version × arch): the record and object tables and the payload structs.

A version module states only what changed from its ``BASE``; an attribute it
does not define is looked up along the chain, so each fact has one home.
"""
from __future__ import annotations

import functools
import io
from types import ModuleType

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


def _short(e: ConstructError, name: str, size: int) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "stream read less than specified amount" in msg or "expected" in msg and "found" in msg:
        return f"{name.upper()} payload of {size} bytes is too short for its struct"
    return f"{name.upper()} payload does not parse: {msg}"
