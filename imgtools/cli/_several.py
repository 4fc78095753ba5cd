"""Read commands over several images: `info a.img b.img` runs `info` on each in turn."""
from __future__ import annotations

import functools
import sys
from typing import Annotated

from ._errors import Exit
from ._output import say
from ._params import Argument

ImagesArg = Annotated[list[str], Argument(
    help="image files, '-' = stdin (compressed ok)", metavar="IMG")]


def several(fn):
    """``fn(image, ...)`` -> a command taking one or more images.  With more than one,
    text output gets a ``==> IMG <==`` line before each image (as head(1) does) and JSON
    one document per line; the exit code is the worst of the runs."""
    @functools.wraps(fn)
    def wrapper(image: list[str], **kwargs):
        if image.count("-") > 1:
            raise Exit(_usage("stdin ('-') can be read only once"))
        worst = 0
        for path in image:
            if len(image) > 1 and not kwargs.get("json"):
                say(f"==> {path} <==")
            try:
                fn(path, **kwargs)
            except Exit as e:
                worst = max(worst, e.exit_code)
            sys.stdout.flush()
        if worst:
            raise Exit(worst)

    # fn's parameters (_params.params_of reads them through __wrapped__), image a list
    wrapper.__annotations__ = {**fn.__annotations__, "image": ImagesArg}
    return wrapper


def _usage(message: str) -> int:
    sys.stderr.write(f"imgtools: {message}\n")
    return 2
