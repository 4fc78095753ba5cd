"""Parameters shared by the commands."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

import formats

ImageArg = Annotated[str, typer.Argument(help="image file, '-' = stdin", metavar="IMG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help="force the ABI version instead of detecting it (see 'imgtools versions')",
    metavar="VERSION")]
ArchOpt = Annotated[Optional[str], typer.Option(
    "--arch", help=f"force the architecture ({' or '.join(formats.ARCHES)}) instead of the "
                   f"header's", metavar="|".join(formats.ARCHES))]
PidOpt = Annotated[Optional[int], typer.Option("--pid", help="only this task")]
OUTPUT_HELP = ("a regular file (or a new path) is replaced atomically, created 0600; a "
               "device, FIFO or socket is written directly; a symlink is followed to its "
               "target; the input itself is refused")
OutputOpt = Annotated[Optional[str], typer.Option(
    "-o", "--output", help=f"output file ('-' or absent = stdout): {OUTPUT_HELP}")]
