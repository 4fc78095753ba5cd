"""The linux-cr image ABIs, one module per version, each a delta of the one before.

``abi(version, arch)`` returns the cached :class:`Abi`; ``VERSIONS`` lists the
supported labels oldest first (the order converters walk).
"""
from __future__ import annotations

import functools
import importlib

from ._abi import Abi, PayloadError

VERSIONS = ("v17", "v18", "v19-rc1", "v19-rc2", "v19", "v21", "v23-rc1", "v23")
ALIASES = {"v20": "v21"}
ARCHES = ("x86_64", "i386")
NATIVE = "v23"          # what the engine writes

# Header fields and framing that every version shares (the header record is
# type 1 and 72 bytes long in all of them).
HEADER_TYPE = 1
HEADER_LEN = 72


def canonical(version: str) -> str:
    """A version label as given by a user -> the canonical label."""
    v = version.strip().lower()
    if not v.startswith("v"):
        v = "v" + v
    v = v.replace("_", "-")
    v = ALIASES.get(v, v)
    if v not in VERSIONS:
        raise ValueError(f"unknown format version {version!r} (known: {', '.join(VERSIONS)}, "
                         f"{', '.join(f'{a}={b}' for a, b in ALIASES.items())})")
    return v


def module_name(version: str) -> str:
    return "formats." + canonical(version).replace("-", "_")


@functools.cache
def abi(version: str, arch: str = "x86_64") -> Abi:
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHES)})")
    return Abi(importlib.import_module(module_name(version)), arch)


__all__ = ["Abi", "PayloadError", "VERSIONS", "ALIASES", "ARCHES", "NATIVE", "abi",
           "canonical", "HEADER_TYPE", "HEADER_LEN"]
