"""The imgtools command line: this module only wires the command modules together."""
from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer
import typer.core

from .. import __version__


class Command(typer.core.TyperCommand):
    """The usage line names the arguments as the help describes them: IMG, PID,
    [GDB_ARGS]… (not typer's {IMG})."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, typer.core.TyperArgument):
                name = (p.metavar or p.name).upper()
                name = name if p.required else f"[{name}]"
                pieces.append(name + ("…" if p.nargs != 1 else ""))
        return pieces


app = typer.Typer(
    name="imgtools",
    help="Inspect, check, convert, debug and restart linux-cr checkpoint images (ckpt-v17 … v23).",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
)
_command = app.command


def _plain_command(*args, **kwargs):
    """app.command with our Command class unless one is given (every module registers
    through it)."""
    kwargs.setdefault("cls", Command)
    return _command(*args, **kwargs)


app.command = _plain_command


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgtools {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")]
        = False) -> None:
    """Inspect, check, convert, debug and restart linux-cr checkpoint images (ckpt-v17 … v23)."""


# Each module adds its commands with register(app).
COMMANDS = ("inspect", "codec", "dump", "restore", "check", "core", "convert", "mem", "diff")
for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    """Run the command; usage errors get the same one-line 'imgtools: ' form as every
    other error (exit 2), Ctrl-C ends with exit 130 and no traceback."""
    try:
        code = app(prog_name="imgtools", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("imgtools: interrupted\n")
        code = 130
    except typer.TyperException as e:      # click's usage errors (no such option, ...)
        code = getattr(e, "exit_code", 2)
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()                        # plain 'imgtools': the help
        else:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            sys.stderr.write(f"imgtools: {e.format_message()}{hint}\n")
    sys.exit(code if isinstance(code, int) else 0)
