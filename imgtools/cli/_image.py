"""Open an image and build its model, with a progress bar on stderr for long reads."""
from __future__ import annotations

from contextlib import contextmanager

from ._output import record_progress


@contextmanager
def load(path: str, version: str | None = None, arch: str | None = None):
    """Yields (reader, model) for a path or '-'."""
    from ..build import build_model         # here: the CLI's start-up reads no format
    from ..reader import open_image
    with open_image(path, version, arch) as reader:
        with record_progress(reader) as on_record:
            img = build_model(reader, on_record)
        yield reader, img
