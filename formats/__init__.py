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
# The top of the user address space (TASK_SIZE_MAX) of the kernels the images come from:
# 47-bit x86_64 (no 5-level paging before 4.14), 32-bit i386 at most (a 4G/4G split or a
# compat task). No VMA of a user process ends above it.
USER_TOP = {"x86_64": (1 << 47) - 4096, "i386": 1 << 32}

# Header fields and framing that every version shares (the header record is
# type 1 and 72 bytes long in all of them).
HEADER_TYPE = 1
HEADER_LEN = 72


def canonical(version: str) -> str:
    """A version label as given by a user -> the canonical label."""
    v = version.strip().lower()
    v = v.removeprefix("ckpt-")         # the patch series' own names: ckpt-v21
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
           "canonical", "HEADER_TYPE", "HEADER_LEN", "USER_TOP"]
