"""Outputs that hold process memory (images, cores, decoded JSON) are private: 0600,
as the kernel creates a core, whatever the umask."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager

from ._atomic import binary_output, text_output

PRIVATE = 0o600


def make_private(f) -> None:
    """Restrict a regular file we created; a device, FIFO or socket named by -o is
    someone else's and keeps its mode."""
    fd = f.fileno()
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, PRIVATE)


@contextmanager
def private_binary_output(path: str | None, **kw):
    with binary_output(path, **kw) as f:
        if path not in (None, "-"):
            make_private(f)
        yield f


@contextmanager
def private_text_output(path: str | None):
    with text_output(path) as f:
        if path not in (None, "-"):
            make_private(f)
        yield f
