"""convert / upgrade / downgrade: rewrite an image in another ABI version.

The image is streamed through the conversion steps into a temporary file (in
the target's directory, or an anonymous one when the output is stdout) and only
moved into place (``os.replace``) or copied to stdout once the conversion went
through: a refused or failed conversion leaves nothing behind.
"""
from __future__ import annotations

import json as jsonlib
import os
import shutil
import sys
import tempfile
from typing import Annotated

import typer

import formats
from converters import LossRefused, Report, convert
from converters.chain import describe_path

from ..errors import UsageError
from ..reader import open_image
from ..stream import CHUNK
from ._errors import EXIT_INVALID, handled
from ._output import err, printable, progress
from ._params import ArchOpt, FormatOpt, ImageArg, JsonOpt, OutputOpt

ToOpt = Annotated[str, typer.Option("--to", help="target ABI version (see 'imgtools versions')",
                                    metavar="VERSION")]
UpToOpt = Annotated[str, typer.Option("--to", help="target ABI version (default: the newest)",
                                      metavar="VERSION")]
AllowLossOpt = Annotated[bool, typer.Option(
    "--allow-loss", help="convert even if information is dropped, and list what was")]
SHOWN = 50


def register(app: typer.Typer) -> None:
    app.command("convert", help="Rewrite an image in another ABI version (either way).")(
        convert_cmd)
    app.command("upgrade", help="Rewrite an image in a newer ABI version.")(upgrade_cmd)
    app.command("downgrade", help="Rewrite an image in an older ABI version.")(downgrade_cmd)


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
        out = _Output(output)
        try:
            with progress(f"{src} -> {target}", reader.src.size) as advance:
                report = convert(reader, out.f, target, allow_loss=allow_loss,
                                 progress=advance)
        except LossRefused as e:
            out.discard()
            _show(e.report, output, as_json)
            err.print(f"imgtools: refusing to convert {image} from {src} to {target}: "
                      f"{e.report.loss_count} loss{'es' if e.report.loss_count != 1 else ''} "
                      f"(listed above); nothing was written. Use --allow-loss to convert "
                      f"anyway.", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INVALID) from None
        except BaseException:
            out.discard()
            raise
        out.commit()
    _show(report, output, as_json)
    return report


class _Output:
    """A temporary file that becomes the output (rename, or copy to stdout) on commit."""

    def __init__(self, output: str | None):
        self.path = None if output in (None, "-") else output
        self.tmp = None
        if self.path is None:
            self.f = tempfile.TemporaryFile(prefix="imgtools-convert-")
            return
        if os.path.isdir(self.path):
            raise UsageError(f"cannot write {self.path}: is a directory")
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(self.path)}.",
                                            suffix=".tmp")
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from None
        self.f = os.fdopen(fd, "wb")     # mkstemp's 0600: an image holds process memory

    def commit(self) -> None:
        if self.path is None:
            self.f.flush()
            self.f.seek(0)
            shutil.copyfileobj(self.f, sys.stdout.buffer, CHUNK)
            sys.stdout.buffer.flush()
            self.f.close()
            return
        self.f.close()
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        try:
            self.f.close()
        finally:
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except FileNotFoundError:
                    pass
                self.tmp = None


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

    def say(text: str) -> None:
        err.print(printable(text), markup=False, highlight=False, soft_wrap=True)

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


__all__ = ["register", "run", "describe_path"]
