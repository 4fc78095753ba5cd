"""Rewrite linux-cr images between ABI versions, streaming.

One module per adjacent pair of versions (``v17_v18`` … ``v23_rc1_v23``), each
with both directions; ``chain`` composes them into a path for any pair.  A step
that has to drop information reports a :class:`Loss`; by default a conversion
with losses is refused (:class:`LossRefused`, raised after the whole input was
read so that every loss is listed).  Values an upgrade had to assume are
reported as :class:`Note`\\ s.
"""
from __future__ import annotations

from typing import BinaryIO, Callable

from imgtools.reader import ImageReader

from ._base import Loss, Note
from .chain import LossRefused, Report, describe_path, path, run


def convert(src_reader: ImageReader, out_binary: BinaryIO, target_version: str,
            allow_loss: bool = False, on_loss: Callable[[Loss], None] | None = None,
            progress: Callable[[int], object] | None = None,
            keep_partial: bool = True) -> Report:
    """Convert the image behind ``src_reader`` to ``target_version``, writing to
    ``out_binary`` as it goes.

    ``on_loss`` is called with each loss as it is found; ``progress`` with the
    number of input bytes consumed since its last call.  Without ``allow_loss``
    the first loss stops all further writing and :class:`LossRefused` is raised
    at the end, so ``out_binary`` then holds a partial image: callers write to a
    temporary file and discard it, or look for the losses first: with ``out_binary``
    None nothing is written and payloads the steps need not see are skipped unread
    (seeked over in a file), so a refusal costs a pass over the metadata only.
    ``keep_partial`` False: an output given up at a refusal (a temporary file); the page
    copies still under way at the first loss are then dropped.
    """
    return run(src_reader, out_binary, target_version, allow_loss, on_loss, progress,
               keep_partial)


__all__ = ["convert", "Report", "Loss", "Note", "LossRefused", "path", "describe_path"]
