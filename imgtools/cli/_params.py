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
OutputOpt = Annotated[Optional[str], typer.Option(
    "-o", "--output", help="output file ('-' or absent = stdout), written atomically")]
