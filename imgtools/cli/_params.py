"""Parameters shared by the commands, and how a command is registered.

The commands declare their parameters with ``Argument`` and ``Option`` from here, which
take what ``typer.Argument`` / ``typer.Option`` take and only remember it: importing a
command module imports no typer. ``command(app, fn)`` registers a command on a typer app,
handing typer its own parameter objects made from these; the start-up path
(``_direct``) reads the same declarations to run a plain command line without typer."""
from __future__ import annotations

from typing import Annotated, Optional, get_args, get_origin

import formats


class _Param:
    """What a typer.Argument / typer.Option call would be given, kept for later."""
    typer_name = ""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def typer(self):
        import typer
        return getattr(typer, self.typer_name)(*self.args, **self.kwargs)


class Argument(_Param):
    typer_name = "Argument"


class Option(_Param):
    typer_name = "Option"


ImageArg = Annotated[str, Argument(help="image file, '-' = stdin", metavar="IMG")]
JsonOpt = Annotated[bool, Option("--json", help="machine-readable output on stdout")]
FormatOpt = Annotated[Optional[str], Option(
    "--format", help="force the ABI version instead of detecting it (see 'imgtools versions')",
    metavar="VERSION")]
ArchOpt = Annotated[Optional[str], Option(
    "--arch", help=f"force the architecture ({' or '.join(formats.ARCHES)}) instead of the "
                   f"header's", metavar="|".join(formats.ARCHES))]
PidOpt = Annotated[Optional[int], Option("--pid", help="only this task")]
OUTPUT_HELP = ("a regular file (or a new path) is replaced atomically, created 0600; a "
               "device, FIFO or socket is written directly; a symlink is followed to its "
               "target; the input itself is refused")
OutputOpt = Annotated[Optional[str], Option(
    "-o", "--output", help=f"output file ('-' or absent = stdout): {OUTPUT_HELP}")]

_EMPTY = object()


def as_int(value) -> int | None:
    """An int parameter's value as typer takes it from the command line (without
    pydantic), or None if typer would refuse it."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, str) and text.lstrip("+-").isdigit() and text.isascii():
        return int(text)
    return None


def params_of(fn) -> list[tuple[str, object, object]]:
    """(name, annotation, default or _EMPTY) of each parameter of a command, annotations
    evaluated, without the inspect module (start-up): ``fn`` is a plain function or
    a functools.wraps wrapper of one (whose own ``__annotations__`` win)."""
    inner = fn
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    code = inner.__code__
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    positional = (_EMPTY,) * code.co_argcount
    defaults = positional[:len(positional) - len(inner.__defaults__ or ())] + \
        tuple(inner.__defaults__ or ())
    kwdefaults = inner.__kwdefaults__ or {}
    annotations = fn.__annotations__
    out = []
    for i, name in enumerate(names):
        ann = annotations.get(name, _EMPTY)
        if isinstance(ann, str):
            ann = eval(ann, inner.__globals__)      # noqa: S307 - our own annotation text
        default = defaults[i] if i < len(defaults) else kwdefaults.get(name, _EMPTY)
        out.append((name, ann, default))
    return out


def declared(ann, default) -> tuple[object, _Param | None, bool]:
    """(the value's type, its Argument/Option, whether the marker is the default (typer's
    ``x: T = Option(default, *names)`` style))."""
    if get_origin(ann) is Annotated:
        base, *meta = get_args(ann)
        marks = [m for m in meta if isinstance(m, _Param)]
        return base, (marks[0] if marks else None), False
    if isinstance(default, _Param):
        return ann, default, True
    return ann, None, False


def command(app, fn, name: str | None = None, **kwargs) -> None:
    """Register ``fn`` as a command of the typer ``app`` (``app.command(name, **kwargs)``),
    its Argument/Option declarations turned into typer's; the ``Exit`` a command raises
    becomes typer's. A recording app (``_direct.Commands``) just keeps ``fn``."""
    if hasattr(app, "record"):
        app.record(name, fn)
        return
    import functools
    import inspect

    import typer

    from ._errors import Exit

    params = []
    annotations = {}
    for pname, ann, default in params_of(fn):
        base, mark, as_default = declared(ann, default)
        if mark is not None and as_default:
            default = mark.typer()
        elif mark is not None:
            ann = Annotated[base, mark.typer()]
        annotations[pname] = ann
        params.append(inspect.Parameter(
            pname, inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=inspect.Parameter.empty if default is _EMPTY else default,
            annotation=inspect.Parameter.empty if ann is _EMPTY else ann))

    @functools.wraps(fn)
    def typed(*args, **kw):
        try:
            return fn(*args, **kw)
        except Exit as e:
            raise typer.Exit(e.exit_code) from None

    del typed.__wrapped__           # typer reads the signature below, not fn's
    typed.__signature__ = inspect.Signature(params)
    typed.__annotations__ = annotations
    app.command(name, **kwargs)(typed)
