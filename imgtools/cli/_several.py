"""Read commands over several images: `info a.img b.img` runs `info` on each in turn."""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Annotated

import typer

from ._output import say

ImagesArg = Annotated[list[str], typer.Argument(
    help="image files, '-' = stdin (compressed ok)", metavar="IMG")]


def several(fn):
    """``fn(image, ...)`` -> a command taking one or more images.  With more than one,
    text output gets a ``==> IMG <==`` line before each image (as head(1) does) and JSON
    one document per line; the exit code is the worst of the runs."""
    sig = inspect.signature(fn, eval_str=True)
    params = [p.replace(annotation=ImagesArg) if p.name == "image" else p
              for p in sig.parameters.values()]

    @functools.wraps(fn)
    def wrapper(image: list[str], **kwargs):
        if image.count("-") > 1:
            raise typer.Exit(_usage("stdin ('-') can be read only once"))
        worst = 0
        for path in image:
            if len(image) > 1 and not kwargs.get("json"):
                say(f"==> {path} <==")
            try:
                fn(path, **kwargs)
            except typer.Exit as e:
                worst = max(worst, e.exit_code)
            sys.stdout.flush()
        if worst:
            raise typer.Exit(worst)

    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {**fn.__annotations__, "image": ImagesArg}
    return wrapper


def _usage(message: str) -> int:
    sys.stderr.write(f"imgtools: {message}\n")
    return 2
