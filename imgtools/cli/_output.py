"""Output sinks: data to stdout (rich tables or JSON), diagnostics and progress to stderr."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out.width = 400         # a pipe or file: long paths stay on one line
err = Console(stderr=True, highlight=False)


def printable(text: str) -> str:
    """Text from an image as it may reach a terminal: every character that is not
    printable (C0/C1 controls, DEL, format characters such as bidi overrides, decoding
    surrogates) becomes a visible escape, so no image can move the cursor, retitle the
    window, or fake a line of our output."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    o = ord(ch)
    if 0xdc80 <= o <= 0xdcff:           # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xdc00:02x}"
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch) or (
        f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")


def plural(n: int, word: str) -> str:
    """'1 task', '2 tasks' ('process' -> 'processes')."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def shown(text) -> str:
    """printable() for rich markup: image text inside a string that out.print renders."""
    return escape(printable(str(text)))


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def table(rows: Iterable[dict], columns: list[tuple[str, str]], title: str | None = None,
          fmt: dict | None = None) -> None:
    """Rows of plain dicts as a rich table; ``columns`` = [(key, heading)]."""
    fmt = fmt or {}
    t = Table(title=title, title_justify="left", box=None, header_style="bold",
              pad_edge=False, show_header=any(h for _, h in columns))
    for _, heading in columns:
        t.add_column(heading, overflow="fold")
    for row in rows:
        t.add_row(*(shown(fmt.get(k, _cell)(row.get(k))) for k, _ in columns))
    out.print(t)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def hexa(v) -> str:
    return "-" if v is None else f"{v:#x}"


@contextmanager
def progress(description: str, total: int | None):
    """A byte progress bar on stderr (one final line when stderr is not a terminal);
    yields an ``advance(n)`` callable."""
    p = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                 TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True,
                 disable=not err.is_terminal)
    with p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


@contextmanager
def record_progress(reader):
    """A byte progress bar over an image's records; yields the ``on_record`` callback."""
    with progress(f"reading {reader.name}", reader.src.size) as advance:
        done = 0

        def on_record(rec) -> None:
            nonlocal done
            end = rec.offset + rec.len
            advance(end - done)
            done = end
        yield on_record
