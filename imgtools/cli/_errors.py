"""Exceptions -> one line on stderr and an exit code; a traceback only with IMGTOOLS_DEBUG=1."""
from __future__ import annotations

import errno
import functools
import os
import sys

from ..errors import ImageError, UsageError
from ._output import printable

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3
# Errors of the system we run on (a full disk, a file too large for its filesystem, a
# failing device): reported as what they are, not as a bug of ours; still exit 1.
ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


class Exit(Exception):
    """End the command with this exit code (what it had to say is said). Ours, not
    typer's, so a command runs without typer; a registered command's becomes
    typer.Exit (_params.command)."""

    def __init__(self, code: int = 0):
        super().__init__(code)
        self.exit_code = code


def fail(message: str, code: int) -> Exit:
    sys.stderr.write(f"imgtools: {printable(message)}\n")
    return Exit(code)


def handled(fn):
    """Wrap a command so errors end with one clear line and the documented exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exit:
            raise
        except ImageError as e:
            raise fail(f"invalid image: {e}", EXIT_INVALID) from None
        except UsageError as e:
            raise fail(str(e), EXIT_USAGE) from None
        except BrokenPipeError:
            # the reader of our stdout went away (| head): not an error of ours
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise Exit(EXIT_OK) from None
        except OSError as e:
            if e.errno not in ENVIRONMENT:
                raise _internal(e) from None
            # the system, not us: say what failed, and where when we know
            where = f"{e.filename}: " if e.filename else ""
            raise fail(f"{where}{e.strerror}", EXIT_INTERNAL) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as e:  # noqa: BLE001 - the one place internal errors are reported
            raise _internal(e) from None
    return wrapper


def _internal(e: Exception) -> Exit:
    if os.environ.get("IMGTOOLS_DEBUG"):
        raise e
    return fail(f"internal error: {type(e).__name__}: {e} (set IMGTOOLS_DEBUG=1 for a "
                f"traceback)", EXIT_INTERNAL)
