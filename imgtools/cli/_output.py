"""Output sinks: data to stdout (tables, lines or JSON), diagnostics and progress to stderr.

rich draws only for a terminal. Into a pipe or a file the same text is written directly,
aligned as rich would align it, so a command that prints no terminal output never
imports rich (start-up) and a table of 20,000 rows costs no layout engine (issue 11)."""
from __future__ import annotations

import itertools
import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, Union

# A line is made of parts: plain text, or (text, rich style) drawn in that style on a
# terminal. No markup: image strings can never be read as style tags.
Part = Union[str, "tuple[str, str]"]

PLAIN_WIDTH = 400           # a pipe or file: long paths stay on one line
_GAP = "  "                 # between columns: rich's padding (0, 1) without the edges


def _drawn(stream) -> bool:
    """Whether rich would treat ``stream`` as a terminal (the variables it honours
    make it decide, so the output is rich's own). Asked once per stream: ``say`` asks
    for every line (50,000 lines of ``show`` spent 0.2 s in the environment lookups)."""
    global _last_drawn
    if _last_drawn[0] is stream:
        return _last_drawn[1]
    drawn = _drawn_now(stream)
    _last_drawn = (stream, drawn)       # holding the stream: its id cannot be reused
    return drawn


_last_drawn: tuple = (None, False)


def _drawn_now(stream) -> bool:
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def __getattr__(name: str):
    """``out`` / ``err``: the rich consoles, made (and rich imported) on first use."""
    if name in ("out", "err"):
        from rich.console import Console
        console = Console(stderr=name == "err", highlight=False,
                          soft_wrap=name == "out")
        if name == "out" and not console.is_terminal:
            console.width = PLAIN_WIDTH
        globals()[name] = console
        return console
    raise AttributeError(name)


def _safe(text: str) -> str:
    """printable() line by line: a text of several lines stays several lines."""
    if text.isprintable():
        return text
    return "\n".join(printable(line) for line in text.split("\n"))


def say(*parts: Part) -> None:
    """One line on stdout; image text in it cannot reach the terminal raw (printable)."""
    parts = tuple(_safe(p) if isinstance(p, str) else (_safe(p[0]), p[1]) for p in parts)
    if not _drawn(sys.stdout):
        sys.stdout.write("".join(p if isinstance(p, str) else p[0] for p in parts) + "\n")
        return
    from rich.text import Text
    out = __getattr__("out")
    out.print(Text.assemble(*parts))


def say_lines(lines: Iterable[tuple]) -> None:
    """``say(*parts)`` for each line, written at once into a pipe or a file (show:
    a task's section in one write instead of one per line)."""
    if _drawn(sys.stdout):
        for parts in lines:
            say(*parts)
        return
    text = "".join(p if isinstance(p, str) else p[0] for parts in lines
                   for p in (*parts, "\n"))
    sys.stdout.write(_safe(text))     # (printable() keeps to each character: as say's)


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
    from rich.markup import escape
    return escape(printable(str(text)))


def emit_json(obj) -> None:
    sys.stdout.write(_encoder().encode(obj) + "\n")    # (a command printing text loads
    sys.stdout.flush()                                  # no json: start-up)


def emit_json_list(items: Iterable) -> None:
    """``emit_json(list(items))``, written as the items are made (the list is never
    held: a listing of 400,000 rows)."""
    _write_json_list(items)
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit_json_fields(fields: Iterable[tuple[str, object]]) -> None:
    """``emit_json(dict(fields))``, written a field at a time: a value that is an
    iterator (not a list) is written as the list of its items, each as it is made."""
    encode = _encoder().encode
    write = sys.stdout.write
    for i, (key, value) in enumerate(fields):
        write(("{" if i == 0 else ", ") + encode(key) + ": ")
        if isinstance(value, Iterator):
            _write_json_list(value)
        else:
            write(encode(value))
    write("}\n")
    sys.stdout.flush()


class JsonText(str):
    """An item of a JSON list already in its JSON text (json.dumps(..., default=
    _jsonable)): written as it is."""
    __slots__ = ()


def json_text(obj) -> JsonText:
    return JsonText(_encoder().encode(obj))


def _encoder():
    """json.dumps(..., default=_jsonable)'s encoder, made once (dumps makes one at each
    call given a ``default``: 400,000 items of show --json spent 1 s making them)."""
    global _made_encoder
    if _made_encoder is None:
        import json
        _made_encoder = json.JSONEncoder(default=_jsonable)
    return _made_encoder


_made_encoder = None
_LIST_BATCH = 256           # items written at once (a write to stdout costs ~5 us)


def _write_json_list(items: Iterable) -> None:
    """As json.dumps writes a list: its items joined with ', '."""
    encode = _encoder().encode
    write = sys.stdout.write
    write("[")
    batch: list[str] = []
    first = True
    for item in items:
        batch.append(item if type(item) is JsonText else encode(item))
        if len(batch) == _LIST_BATCH:
            write(("" if first else ", ") + ", ".join(batch))
            batch, first = [], False
    if batch:
        write(("" if first else ", ") + ", ".join(batch))
    write("]")


class HeldTexts:
    """Texts made one at a time, each under a key, held compressed until they are read
    back in the order they came: what a command makes as the records pass but writes
    after them (show of 100,000 tasks: each task's detail, 70 MB as text; a detail is
    made while the task's records are held, the model keeps none of them)."""

    def __init__(self):
        import zlib
        from array import array
        self._z = zlib.compressobj(1)
        self._parts: list[bytes] = []
        self.keys, self._sizes = array("q"), array("q")

    def add(self, key: int, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        self.keys.append(key)
        self._sizes.append(len(data))
        part = self._z.compress(data)
        if part:
            self._parts.append(part)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(key, text) in the order they were added (once: the parts are freed as they
        are read)."""
        import zlib
        from collections import deque
        parts = deque(self._parts)
        parts.append(self._z.flush())
        self._parts = []
        unz = zlib.decompressobj()
        buf, at = bytearray(), 0
        for key, size in zip(self.keys, self._sizes):
            while len(buf) - at < size:
                if not parts:
                    raise RuntimeError("held texts: shorter than their sizes")
                del buf[:at]
                at = 0
                buf += unz.decompress(parts.popleft())
            yield key, bytes(buf[at:at + size]).decode("utf-8", "surrogateescape")
            at += size


def _jsonable(o):
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def table(rows: Iterable[dict], columns: list[tuple[str, str]], title: str | None = None,
          fmt: dict | None = None) -> None:
    """Rows of plain dicts as an aligned table; ``columns`` = [(key, heading)]. The
    cells are formatted as the rows arrive; only their text is held, for the widths."""
    cells = _Cells(rows, columns, fmt)
    show_header = any(h for _, h in columns)
    if _drawn(sys.stdout) or not cells.plain or not _plain_table(cells, columns, title,
                                                                 show_header):
        _rich_table(cells, columns, title, show_header)


def table_lines(rows: Iterable[dict], columns: list[tuple[str, str]],
                fmt: dict | None = None) -> Iterator[str] | None:
    """The lines ``table`` writes for these rows into a pipe or a file, made as they
    are asked for, for a caller that writes them itself (show: the same table again for
    the tasks that share it); None where rich draws the table (a terminal, cells to
    escape, a line too long)."""
    if _drawn(sys.stdout):
        return None
    cells = _Cells(rows, columns, fmt)
    if not cells.plain:
        return None
    return _plain_lines(cells, columns, None, any(h for _, h in columns))


class _Cells:
    """The text of a table's cells, formatted as the rows arrive and held compactly: a
    row as one string, its cells joined by NUL (which no cell holds: cells are printable
    or escaped by printable()), every _PIECE_ROWS rows packed by zlib; and the widest
    cell of each column. (400,000 rows held as lists of cells took 300 MB.)"""

    __slots__ = ("packed", "last", "count", "widths", "plain")

    def __init__(self, rows: Iterable[dict], columns, fmt: dict | None):
        fmt = fmt or {}
        formats = [(k, fmt.get(k, _cell)) for k, _ in columns]
        packed, held, widths, plain, count = [], [], [0] * len(columns), True, 0
        for row in rows:
            text = [f(row.get(k)) for k, f in formats]
            if not _plain_text(text):       # (most tables: nothing to escape)
                plain = False
                text = [printable(c) for c in text]     # (a plain cell stays as it is)
            widths = list(map(max, widths, map(len, text)))
            held.append("\0".join(text))
            if len(held) == _PIECE_ROWS:
                packed.append(_pack(held))
                count += len(held)
                held = []
        self.packed, self.last, self.count = packed, held, count + len(held)
        self.widths, self.plain = widths, plain

    def __len__(self) -> int:
        return self.count

    def rows(self) -> Iterator[str]:
        """Each row's cells, NUL-joined, in order."""
        for piece in self.packed:
            yield from _unpack(piece)
        yield from self.last

    def lists(self) -> Iterator[list[str]]:
        return (row.split("\0") for row in self.rows())


def _pack(rows: list[str]) -> bytes:
    import zlib
    return zlib.compress("\n".join(rows).encode("utf-8", "surrogatepass"), 1)


def _unpack(piece: bytes) -> list[str]:
    import zlib
    return zlib.decompress(piece).decode("utf-8", "surrogatepass").split("\n")


def _plain_text(row: list[str]) -> bool:
    """Whether the cells are printable ASCII: written as they are, padded, rich draws
    them so too."""
    text = "".join(row)
    return text.isascii() and text.isprintable()


def _plain_lines(cells: _Cells, columns, title, show_header):
    """The lines of the table rich draws with box=None, pad_edge=False at PLAIN_WIDTH
    columns (cells of printable ASCII), made as they are asked for; None for a line too
    long to fit, which rich draws."""
    heads = [h for _, h in columns]
    widths = cells.widths
    if show_header:
        widths = list(map(max, widths, map(len, heads)))
    if sum(widths) + len(_GAP) * (len(widths) - 1) > PLAIN_WIDTH:
        return None
    line = _GAP.join(f"{{:<{w}}}" for w in widths).format     # (str.ljust, per cell)
    head = [title] if title else []
    if show_header:
        head.append(line(*heads))
    return itertools.chain(head, (line(*row.split("\0")) for row in cells.rows()))


def _plain_table(cells: _Cells, columns, title, show_header) -> bool:
    """The plain table written directly; False where rich must draw it."""
    small = len(cells) <= _SAME_ROWS
    if small:
        key = (title, show_header, tuple(cells.last))
        same = _last_text.get(tuple(columns))
        if same is not None and same[0] == key:
            sys.stdout.write(same[1])
            return True
    lines = _plain_lines(cells, columns, title, show_header)
    if lines is None:
        return False
    if small:
        text = "\n".join([*lines, ""])
        sys.stdout.write(text)
        _last_text[tuple(columns)] = (key, text)
        return True
    write = sys.stdout.write
    while True:         # a large table in pieces: its text is never held whole
        piece = list(itertools.islice(lines, _PIECE_ROWS))
        if not piece:
            return True
        piece.append("")
        write("\n".join(piece))


# The last small plain table of each set of columns, as written: show prints a table of
# maps and one of files per task, the same text again for tasks that share them.
_SAME_ROWS = 16
_PIECE_ROWS = 1024
_last_text: dict[tuple, tuple] = {}


def _rich_table(cells: _Cells, columns, title, show_header) -> None:
    from rich.markup import escape
    from rich.table import Table
    t = Table(title=title, title_justify="left", box=None, header_style="bold",
              pad_edge=False, show_header=show_header)
    for _, heading in columns:
        t.add_column(heading, overflow="fold")
    for row in cells.lists():
        t.add_row(*(escape(c) for c in row))
    __getattr__("out").print(t)


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
    """A byte progress bar on stderr when it is a terminal (nothing otherwise, and rich
    is not imported); yields an ``advance(n)`` callable."""
    if not _drawn(sys.stderr):
        yield _ignore
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)
    p = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                 TransferSpeedColumn(), TimeRemainingColumn(), console=__getattr__("err"),
                 transient=True)
    with p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


def _ignore(n: int) -> None:
    pass


@contextmanager
def record_progress(reader):
    """A byte progress bar over an image's records; yields the ``on_record`` callback
    (None when no bar is drawn, so the reader pays for no call per record)."""
    if not _drawn(sys.stderr):
        yield None
        return
    with progress(f"reading {reader.name}", reader.src.size) as advance:
        done = 0

        def on_record(rec) -> None:
            nonlocal done
            end = rec.offset + rec.len
            advance(end - done)
            done = end
        yield on_record
