"""The imgtools command line: this module only wires the command modules together."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="imgtools",
    help="Inspect, check, convert and debug linux-cr checkpoint images (ckpt-v17 … v23).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Each module adds its commands with register(app).
COMMANDS = ("inspect", "codec", "dump", "check", "core", "convert")
for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()
