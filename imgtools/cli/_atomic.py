"""Outputs written atomically: a temp file beside the target, renamed on success.
A failed run leaves nothing behind; stdout is used when no path (or '-') is given."""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

from ..errors import UsageError


@contextmanager
def _atomic(path: str, mode: str):
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory: name the file to write")
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".imgtools-", suffix=".tmp", dir=d)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    # mkstemp makes 0600; the output gets the mode any new file would
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def binary_output(path: str | None, allow_tty: bool = False):
    if path in (None, "-"):
        if sys.stdout.isatty() and not allow_tty:
            raise UsageError("refusing to write binary data to a terminal: use -o FILE or a pipe")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with _atomic(path, "wb") as f:
        yield f


@contextmanager
def text_output(path: str | None):
    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    with _atomic(path, "w") as f:
        yield f
