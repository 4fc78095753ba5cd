"""ckpt-v19-rc1 (user-cr 0abe2fe) = v18 + the container section and inet sockets.

CONTAINER=3 is inserted, so BUFFER, STRING and OBJREF move up by one
("[Serge Hallyn] Add global section container to image format").
"""
from __future__ import annotations

import functools

from . import v18
from ._delta import renumber

BASE = v18
NAME = "v19-rc1"
REV = 3
KERNEL = (2, 6, 32)
TRAITS = v18.TRAITS | {"container": True}

TYPES = renumber(v18.TYPES, 3, 5, +1) | {"container": 3, "socket_inet": 705}


def sockaddr_in():
    """struct sockaddr_in: port and address in network order."""
    from construct import Bytes, Int16ul, Int32ul, Struct
    return Struct("sin_family" / Int16ul, "sin_port" / Int16ul, "sin_addr" / Int32ul,
                  "sin_zero" / Bytes(8))


def inet_addrs():
    """The tail of ckpt_hdr_socket_inet in every version: the two addresses."""
    from construct import Int32ul
    return ("laddr_len" / Int32ul, "raddr_len" / Int32ul, "laddr" / sockaddr_in(),
            "raddr" / sockaddr_in())


@functools.cache                # one build per arch: later versions start from it
def records(arch: str) -> dict:
    from construct import Struct
    r = dict(v18.records(arch))
    r["socket_inet"] = Struct(*inet_addrs())        # 48 bytes
    return r
