"""decode (image -> JSON) and encode (JSON -> image), both streaming."""
from __future__ import annotations

import sys
from typing import Annotated, Optional


from ..errors import UsageError
from ._atomic import binary_output, text_output
from ._errors import handled
from ._output import record_progress
from ._params import Argument, ArchOpt, FormatOpt, ImageArg, Option, OutputOpt, command


def decode(image: ImageArg, output: OutputOpt = None,
           no_pages: Annotated[bool, Option(
               "--no-pages", help="leave page data out (the JSON then cannot be encoded)")]
           = False,
           format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Image -> JSON, one record per line; pages as base64 unless --no-pages."""
    from .. import codec
    from ..reader import open_image
    with open_image(image, format, arch) as reader, text_output(output, (image,)) as out:
        with record_progress(reader) as on_record:
            codec.decode(reader, out.write, pages=not no_pages, on_record=on_record)


def encode(document: Annotated[str, Argument(
               help="JSON written by 'imgtools decode', '-' = stdin", metavar="JSON")],
           output: OutputOpt = None,
           format: Annotated[Optional[str], Option(
               "--format", help="ABI to encode with instead of the document's")] = None) -> None:
    """JSON (from decode) -> image, byte-identical to the decoded one."""
    from .. import codec
    if document == "-":
        src = sys.stdin
    else:
        try:
            src = open(document, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot open {document}: {e.strerror}") from None
    try:
        with binary_output(output, inputs=(document,)) as out:
            codec.encode(src, out, format)
    finally:
        if src is not sys.stdin:
            src.close()


def register(app) -> None:
    command(app, handled(decode))
    command(app, handled(encode))
