"""Open an image and build its model, with a progress bar on stderr for long reads."""
from __future__ import annotations

from contextlib import contextmanager

from ._output import record_progress


@contextmanager
def load(path: str, version: str | None = None, arch: str | None = None,
         keep: frozenset[str] | None = None, vma_table: bool = False, **reads):
    """Yields (reader, model) for a path or '-'; ``keep``: what of the model the command
    reads (build_model's; None: all of it); ``vma_table``: the VMAs held in arrays
    (vmatable.py: a command that reads every VMA once); ``reads``: build_model's
    task_done and done_reads (what the command reads of each task's records as they
    pass)."""
    from ..build import Builder, build_model   # here: the CLI's start-up reads no format
    from ..reader import open_image
    builder = Builder
    if vma_table:
        from ..vmatable import CompactBuilder as builder
    with open_image(path, version, arch) as reader:
        with record_progress(reader) as on_record:
            img = build_model(reader, on_record, builder, keep=keep, **reads)
        yield reader, img
