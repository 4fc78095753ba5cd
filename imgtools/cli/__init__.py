"""The imgtools command line. ``main`` is the console script; the typer app (``app``) and
its wiring live in ``_app`` and are imported only when a command runs."""
from __future__ import annotations

import sys

from .. import __version__


def main() -> None:
    if sys.argv[1:] == ["--version"]:       # needs no command: answered before any import
        sys.stdout.write(f"imgtools {__version__}\n")
        return
    try:
        from . import _direct
        code = _direct.run(sys.argv)        # a plain command line: no typer (start-up)
        if code is not None:
            sys.exit(code)
        from ._app import run
    except KeyboardInterrupt:               # Ctrl-C while the modules load: as in a command
        sys.stderr.write("imgtools: interrupted\n")
        sys.exit(130)
    run()


def __getattr__(name: str):
    if name == "app":
        from ._app import app
        return app
    raise AttributeError(name)
