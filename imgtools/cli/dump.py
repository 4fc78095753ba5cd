"""dump: checkpoint a live process tree with the C engine (v23, x86_64)."""
from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .. import engine
from ..errors import UsageError
from ._errors import fail, handled
from ._params import OutputOpt


def dump(pid: Annotated[int, typer.Argument(help="root of the process tree to checkpoint")],
         output: OutputOpt = None,
         single: Annotated[bool, typer.Option(
             "--single", help="only this process (with its threads), not its descendants")]
         = False,
         kill: Annotated[bool, typer.Option(
             "--kill", help="kill the checkpointed tasks afterwards instead of resuming them")]
         = False,
         allow_partial: Annotated[bool, typer.Option(
             "--allow-partial", help="exit 0 even if some state was written as ERROR records")]
         = False) -> None:
    """Checkpoint PID (and its descendants) into a v23 image: -o FILE, or stdout ('-').

    Every thread is stopped for the dump and resumed afterwards; a failed or interrupted
    dump leaves the processes running as before. The file is written atomically."""
    to_stdout = output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write an image to a terminal: use -o FILE or a pipe")
    try:
        if to_stdout:
            code = engine.dump(pid, "-", tree=not single, kill=kill,
                               allow_partial=allow_partial, progress=sys.stderr.isatty())
        else:
            code = _dump_atomically(pid, output, single, kill, allow_partial)
    except engine.EngineError as e:
        raise fail(str(e), 1) from None
    if code:
        raise typer.Exit(code)


def _dump_atomically(pid, output, single, kill, allow_partial) -> int:
    tmp = f"{output}.{os.getpid()}.tmp"
    try:
        code = engine.dump(pid, tmp, tree=not single, kill=kill, allow_partial=allow_partial,
                           progress=sys.stderr.isatty())
        # a partial image (code 3) is kept only when asked for; it carries ERROR records
        if code == 0:
            os.replace(tmp, output)
        return code
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def register(app: typer.Typer) -> None:
    app.command()(handled(dump))
