"""ckpt-v19-rc1 (user-cr 0abe2fe) = v18 + the container section and inet sockets.

CONTAINER=3 is inserted, so BUFFER, STRING and OBJREF move up by one
("[Serge Hallyn] Add global section container to image format").
"""
from __future__ import annotations

from . import v18
from ._delta import renumber

BASE = v18
NAME = "v19-rc1"
REV = 3
KERNEL = (2, 6, 32)
TRAITS = v18.TRAITS | {"container": True}

TYPES = renumber(v18.TYPES, 3, 5, +1) | {"container": 3, "socket_inet": 705}
