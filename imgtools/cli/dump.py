"""dump: checkpoint a live process tree with the C engine (v23, x86_64)."""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._atomic import binary_output
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
    from .. import engine
    try:
        # a path is written atomically: the image appears only when the dump succeeded
        with binary_output(output) as out:
            code = engine.dump(pid, "-", tree=not single, kill=kill,
                               allow_partial=allow_partial, progress=sys.stderr.isatty(),
                               stdout=out)
            if code:
                raise typer.Exit(code)
    except engine.EngineError as e:
        raise fail(str(e), 1) from None


def register(app: typer.Typer) -> None:
    app.command()(handled(dump))
