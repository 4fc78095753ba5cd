"""The imgtools command line: this module only wires the command modules together."""
from __future__ import annotations

import importlib
from typing import Annotated

import typer

from .. import __version__

app = typer.Typer(
    name="imgtools",
    help="Inspect, check, convert and debug linux-cr checkpoint images (ckpt-v17 … v23).",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
)



def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgtools {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")]
        = False) -> None:
    """Inspect, check, convert and debug linux-cr checkpoint images (ckpt-v17 … v23)."""


# Each module adds its commands with register(app).
COMMANDS = ("inspect", "codec", "dump", "restore", "check", "core", "convert", "mem", "diff")
for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app(prog_name="imgtools")
