"""convert / upgrade / downgrade: rewrite an image in another ABI version.

The image is streamed through the conversion steps straight into the output (stdout,
a device or FIFO, or a new file that replaces ``-o FILE`` only on success, see
``_atomic``). Unless losses are allowed, a file input is first read for its metadata
(page data seeked over) to refuse a lossy conversion before anything is written; a pipe
cannot be read twice, so there a late loss ends a direct output early.
"""
from __future__ import annotations

import json as jsonlib
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated


import formats

from ..errors import UsageError
from ._atomic import Target, opened
from ._errors import EXIT_INVALID, Exit, handled
from ._output import progress
from ._params import ArchOpt, FormatOpt, ImageArg, JsonOpt, Option, OutputOpt, command

if TYPE_CHECKING:
    from converters import Report

ToOpt = Annotated[str, Option("--to", help="target ABI version (see 'imgtools versions')",
                                    metavar="VERSION")]
UpToOpt = Annotated[str, Option("--to", help="target ABI version (default: the newest)",
                                      metavar="VERSION")]
AllowLossOpt = Annotated[bool, Option(
    "--allow-loss", help="convert even if information is dropped, and list what was. "
                         "Without it a lossy conversion writes nothing, except from a pipe "
                         "to stdout, a device or a FIFO, where the output stops at the "
                         "first loss")]
SHOWN = 50


def register(app) -> None:
    command(app, convert_cmd, "convert",
            help="Rewrite an image in another ABI version (either way).")
    command(app, upgrade_cmd, "upgrade", help="Rewrite an image in a newer ABI version.")
    command(app, downgrade_cmd, "downgrade", help="Rewrite an image in an older ABI version.")


@handled
def convert_cmd(image: ImageArg, to: ToOpt, output: OutputOpt = None, fmt: FormatOpt = None,
                arch: ArchOpt = None, allow_loss: AllowLossOpt = False,
                json: JsonOpt = False) -> None:
    run(image, to, output, fmt, arch, allow_loss, json, None)


@handled
def upgrade_cmd(image: ImageArg, to: UpToOpt = formats.VERSIONS[-1], output: OutputOpt = None,
                fmt: FormatOpt = None, arch: ArchOpt = None, allow_loss: AllowLossOpt = False,
                json: JsonOpt = False) -> None:
    run(image, to, output, fmt, arch, allow_loss, json, "up")


@handled
def downgrade_cmd(image: ImageArg, to: ToOpt, output: OutputOpt = None, fmt: FormatOpt = None,
                  arch: ArchOpt = None, allow_loss: AllowLossOpt = False,
                  json: JsonOpt = False) -> None:
    run(image, to, output, fmt, arch, allow_loss, json, "down")


def _version(v: str | None, what: str) -> str | None:
    if v is None:
        return None
    try:
        return formats.canonical(v)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None


def run(image: str, to: str, output: str | None, fmt: str | None, arch: str | None,
        allow_loss: bool, as_json: bool, direction: str | None) -> Report:
    target = _version(to, "--to")
    fmt = _version(fmt, "--format")
    if arch is not None and arch not in formats.ARCHES:
        raise UsageError(f"--arch: unknown architecture {arch!r} (known: "
                         f"{', '.join(formats.ARCHES)})")
    from converters import LossRefused, convert     # here: start-up loads no converter
    from ..reader import open_image
    to_stdout = output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write a binary image to a terminal; use -o FILE or "
                         "redirect stdout")
    with open_image(image, fmt, arch) as reader:
        src = reader.version
        order = formats.VERSIONS.index
        if direction == "up" and order(target) < order(src):
            raise UsageError(f"upgrade: {target} is older than the image's {src} (use "
                             f"'downgrade' or 'convert')")
        if direction == "down" and order(target) > order(src):
            raise UsageError(f"downgrade: {target} is newer than the image's {src} (use "
                             f"'upgrade' or 'convert')")
        target_file = None if to_stdout else Target(output, (image,))
        seekable = reader.src.seekable
        if not allow_loss and seekable and (target_file is None or target_file.direct):
            # Losses are found in the metadata: a first pass that skips the page data
            # refuses before anything is written, at the cost of reading the records.
            # A new file needs no such pass: it is written aside and replaces nothing
            # until the end, and the first loss stops its page copies (made by a thread
            # while the records are read), so a refusal costs the same metadata pass.
            try:
                convert(reader, None, target)
            except LossRefused as e:
                _refuse(e, image, src, target, output, as_json, written=False)
            reader = _reopen(reader, fmt, arch)
        try:
            with _output(output, target_file) as out, \
                    progress(f"{src} -> {target}", reader.src.size) as advance:
                report = convert(reader, out, target, allow_loss=allow_loss,
                                 progress=advance,
                                 keep_partial=target_file is None or target_file.direct)
        except LossRefused as e:
            # a pipe found to lose information late: a direct output holds the image
            # up to the first loss (an -o file was not replaced)
            _refuse(e, image, src, target, output, as_json,
                    written=to_stdout or target_file.direct)
    _show(report, output, as_json)
    return report


def _reopen(reader, fmt, arch):
    """The same image from its first byte (the input is a regular file)."""
    from ..reader import ImageReader
    f = reader.src.f
    f.seek(0)
    return ImageReader(f, reader.name, fmt, arch)


@contextmanager
def _output(output: str | None, target: Target | None):
    if target is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with opened(target, "wb") as f:
        yield f


def _refuse(e, image: str, src: str, target: str, output: str | None, as_json: bool,
            written: bool) -> None:
    _show(e.report, output, as_json)
    n = e.report.loss_count
    what = ("the output holds the image only up to the first loss (a pipe cannot be read "
            "twice to find the losses first)") if written else "nothing was written"
    _say_err(f"imgtools: refusing to convert {image} from {src} to {target}: {n} "
             f"loss{'es' if n != 1 else ''} (listed above); {what}. Use --allow-loss to "
             f"convert anyway.")
    raise Exit(EXIT_INVALID) from None


def _show(report: Report, output: str | None, as_json: bool) -> None:
    """The report: JSON on stdout (stderr when the image itself goes to stdout), or
    notes, losses and a summary line on stderr."""
    if as_json:
        doc = report.to_dict() | {"output": output or "-"}
        text = jsonlib.dumps(doc, default=str) + "\n"
        stream = sys.stderr if output in (None, "-") else sys.stdout
        stream.write(text)
        stream.flush()
        return

    say = _say_err
    for n in report.notes:
        say(f"note: {n}")
    for lo in report.losses[:SHOWN]:
        say(f"loss: {lo}")
    if report.loss_count > SHOWN:
        say(f"loss: ... and {report.loss_count - SHOWN} more (--json lists "
            f"{len(report.losses)})")
    if report.refused:
        return
    steps = " ".join(report.path) if report.path else "no conversion needed"
    lost = f", {report.loss_count} loss{'es' if report.loss_count != 1 else ''} allowed" \
        if report.loss_count else ""
    say(f"imgtools: {report.source} -> {report.target} ({report.arch}; {steps}): "
        f"{report.records_in} records in, {report.records_out} out, "
        f"{report.bytes_out} bytes written{lost}")


def _say_err(text: str) -> None:
    from ._output import printable
    sys.stderr.write(printable(text) + "\n")


__all__ = ["register", "run"]
