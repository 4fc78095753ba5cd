"""The typer app: this module only wires the command modules together."""
from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer
import typer.core

from .. import __version__
from ._direct import MODULE_OF, MODULES
from ._params import as_int


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


def make_app(modules: tuple[str, ...] = MODULES) -> typer.Typer:
    app = typer.Typer(
        name="imgtools",
        help="Inspect, check, convert, debug and restart linux-cr checkpoint images "
             "(ckpt-v17 … v23).",
        no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
        rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
    )
    command = app.command

    def plain_command(*args, **kwargs):
        """app.command with our Command class unless one is given (every module
        registers through it)."""
        kwargs.setdefault("cls", Command)
        return command(*args, **kwargs)

    app.command = plain_command
    app.callback()(_main)
    for name in modules:
        importlib.import_module(f"{__package__}.{name}").register(app)
    return app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgtools {__version__}")
        raise typer.Exit()


def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")]
        = False) -> None:
    """Inspect, check, convert, debug and restart linux-cr checkpoint images (ckpt-v17 … v23)."""


def __getattr__(name: str):
    if name == "app":                   # every command (imgtools --help, tests)
        app = globals()["app"] = make_app()
        return app
    raise AttributeError(name)


def run() -> None:
    """Run the command; usage errors get the same one-line 'imgtools: ' form as every
    other error (exit 2), Ctrl-C ends with exit 130 and no traceback."""
    _plain_conversions()
    command = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        app = make_app((MODULE_OF[command],) if command in MODULE_OF else MODULES)
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


def _plain_conversions() -> None:
    """Convert str, int and bool values as click would, without pydantic.

    typer 0.29 converts every value that is not already a bool through a pydantic
    TypeAdapter, which imports pydantic (110-150 ms) on every command run; our parameters
    are only str, int, bool and lists of str, for which that buys nothing. The parameters
    (--help among them) are made per run, so the conversion is chosen where typer makes
    it. Should typer's internals change, this does nothing and typer converts as before."""
    try:
        from typer._coercion import RuntimeParam
        from typer.core import _TyperParameter
        typers_own = _TyperParameter.get_runtime_param
    except (ImportError, AttributeError):
        return

    class Plain(RuntimeParam):
        def _coerce_value(self, value, param, ctx):
            return _PLAIN[self.annotation](value, param, ctx)

    def get_runtime_param(self):
        desc = getattr(self, "type_descriptor", None)
        if getattr(self, "_runtime_param", 0) is None and desc is not None \
                and desc.file_annotation is None and desc.annotation in _PLAIN:
            self._runtime_param = Plain(parameter_info=desc.parameter_info,
                                        annotation=desc.annotation)
        return typers_own(self)
    _TyperParameter.get_runtime_param = get_runtime_param


def _as_int(value, param, ctx):
    n = as_int(value)
    if n is not None:
        return n
    raise typer.BadParameter("Input should be a valid integer, unable to parse string as an "
                             "integer", ctx=ctx, param=param)


def _as_str(value, param, ctx):
    return value if isinstance(value, str) else str(value)


def _as_strs(value, param, ctx):
    return [_as_str(v, param, ctx) for v in value]


def _as_bool(value, param, ctx):
    if isinstance(value, bool):
        return value
    raise typer.BadParameter(f"{value!r} is not a valid boolean", ctx=ctx, param=param)


_PLAIN = {int: _as_int, str: _as_str, bool: _as_bool, list[str]: _as_strs}
