"""A plain command line, run without typer (start-up, issue 11).

``imgtools info IMG`` spends longer importing typer and building its click command than
reading a small image. A command line that only names a command, its declared options
(exactly as declared: ``--json``, ``--format V``, ``--format=V``, ``-o FILE``) and its
arguments is parsed here from the same declarations typer reads (``_params``) and the
command runs as typer would run it. Anything else -- help, completion, a short or
unknown option, ``--``, a repeated option, a missing or extra argument, a value typer
would refuse, a declaration this parser does not know -- returns None and typer handles
the whole command line, so its help and its errors stay exactly typer's.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

from ._errors import Exit
from ._params import _EMPTY, as_int, declared, params_of

# The module that registers each command (register(app)); a command line that names a
# command imports only its module (tests/test_cli_outputs.py checks this table).
MODULE_OF = {"info": "inspect", "show": "inspect", "ps": "inspect", "maps": "inspect",
             "files": "inspect", "versions": "inspect", "decode": "codec", "encode": "codec",
             "dump": "dump", "restore": "restore", "check": "check", "to-core": "core",
             "debug": "core", "convert": "convert", "upgrade": "convert",
             "downgrade": "convert", "mem": "mem", "diff": "diff"}
MODULES = tuple(dict.fromkeys(MODULE_OF.values()))
# The keywords of a declaration that change nothing in how a command line is parsed.
_PLAIN_KEYWORDS = {"help", "metavar", "show_default"}
_VALUE_TYPES = {str: str, Optional[str]: str, int: int, Optional[int]: int}


class Commands:
    """What a module's register() registers, by command name (typer's naming: the
    function's name, lower case, '_' -> '-')."""

    def __init__(self):
        self.functions: dict = {}

    def record(self, name: str | None, fn) -> None:
        self.functions[name or fn.__name__.lower().replace("_", "-")] = fn


class _Fallback(Exception):
    """Not a plain command line: typer parses it."""


def run(argv: list[str]) -> int | None:
    """The exit code of the command line ``argv`` (sys.argv), or None if typer must
    handle it."""
    try:
        planned = plan(argv)
    except KeyboardInterrupt:       # while the modules load: as typer's path says it
        sys.stderr.write("imgtools: interrupted\n")
        return 130
    if planned is None:
        return None
    fn, kwargs = planned
    try:                            # as click returns in standalone_mode=False
        rv = fn(**kwargs)
    except Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return rv if isinstance(rv, int) else 0


def plan(argv: list[str]):
    """(the command's function, its keyword arguments) for a plain command line, else
    None."""
    if len(argv) < 2 or argv[1] not in MODULE_OF or "_IMGTOOLS_COMPLETE" in os.environ \
            or os.environ.get("IMGTOOLS_DEBUG"):
        return None
    commands = Commands()
    importlib.import_module(f"{__package__}.{MODULE_OF[argv[1]]}").register(commands)
    fn = commands.functions.get(argv[1])
    if fn is None:
        return None
    try:
        return fn, _parse(params_of(fn), argv[2:])
    except _Fallback:
        return None


class _Opt:
    def __init__(self, dest: str, kind, value=None):
        self.dest, self.kind, self.value = dest, kind, value


def _parse(params, args: list[str]) -> dict:
    """The keyword arguments typer would call the command with, or _Fallback."""
    kwargs: dict = {}
    options: dict[str, _Opt] = {}
    arguments: list[tuple[str, object, bool]] = []      # (name, kind, required)
    required: list[str] = []
    for name, ann, default in params:
        base, mark, as_default = declared(ann, default)
        if mark is None or not set(mark.kwargs) <= _PLAIN_KEYWORDS:
            raise _Fallback
        decls = mark.args
        if as_default:
            default, decls = decls[0] if decls else _EMPTY, decls[1:]
        if mark.typer_name == "Argument":
            if decls or as_default:
                raise _Fallback
            kind = list if base == list[str] else _VALUE_TYPES.get(base)
            if kind is None or kind is list and default is not _EMPTY:
                raise _Fallback
            arguments.append((name, kind, default is _EMPTY))
        elif base is bool:
            if default is _EMPTY or not decls:
                raise _Fallback
            for decl in decls:
                on, _, off = decl.partition("/")
                if not off and default is not False:
                    raise _Fallback     # click's flag_value would be `not default`
                for names, value in ((on, True), (off, False)):
                    for opt in filter(None, names.split()):
                        options[opt] = _Opt(name, bool, value)
        else:
            kind = _VALUE_TYPES.get(base)
            if kind is None or not decls or any("/" in d or " " in d for d in decls):
                raise _Fallback
            for opt in decls:
                options[opt] = _Opt(name, kind)
            if default is _EMPTY:
                required.append(name)
        if default is not _EMPTY:
            kwargs[name] = default
    if any(not opt.startswith("-") or opt in ("-", "--") for opt in options) \
            or len(arguments) > 1 and any(kind is list for _, kind, _ in arguments):
        raise _Fallback
    given: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "-" or not token.startswith("-"):
            positional.append(token)
            continue
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        opt = options.get(name)
        if opt is None or opt.dest in given:
            raise _Fallback
        given.add(opt.dest)
        if opt.kind is bool:
            if eq:
                raise _Fallback
            kwargs[opt.dest] = opt.value
            continue
        if not eq:
            if i == len(args):
                raise _Fallback
            value = args[i]
            i += 1
        if not value or value.startswith("-") and value != "-":
            raise _Fallback
        kwargs[opt.dest] = _value(opt.kind, value)
    if not set(required) <= given:
        raise _Fallback
    if arguments and arguments[0][1] is list:
        if not positional:
            raise _Fallback
        kwargs[arguments[0][0]] = positional
        return kwargs
    if len(positional) > len(arguments):
        raise _Fallback
    for (name, kind, needed), value in zip(arguments, positional + [None] * len(arguments)):
        if value is None:
            if needed:
                raise _Fallback
            continue
        kwargs[name] = _value(kind, value)
    return kwargs


def _value(kind, text: str):
    if kind is str:
        return text
    try:
        n = as_int(text)
    except ValueError:
        n = None
    if n is None:
        raise _Fallback
    return n
