"""Exceptions -> one line on stderr and an exit code; a traceback only with IMGTOOLS_DEBUG=1."""
from __future__ import annotations

import functools
import os
import sys

import typer

from ..errors import ImageError, UsageError
from ._output import printable

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3


def fail(message: str, code: int) -> typer.Exit:
    sys.stderr.write(f"imgtools: {printable(message)}\n")
    return typer.Exit(code)


def handled(fn):
    """Wrap a command so errors end with one clear line and the documented exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except ImageError as e:
            raise fail(f"invalid image: {e}", EXIT_INVALID) from None
        except UsageError as e:
            raise fail(str(e), EXIT_USAGE) from None
        except BrokenPipeError:
            # the reader of our stdout went away (| head): not an error of ours
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_OK) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as e:  # noqa: BLE001 - the one place internal errors are reported
            if os.environ.get("IMGTOOLS_DEBUG"):
                raise
            raise fail(f"internal error: {type(e).__name__}: {e} "
                       f"(set IMGTOOLS_DEBUG=1 for a traceback)", EXIT_INTERNAL) from None
    return wrapper
