"""mem: process memory from an image (hexdump, raw bytes, search, strings), maps --summary."""
from __future__ import annotations

import re
import sys
from typing import Annotated, Optional


from .. import mem as M
from ..errors import UsageError
from ..reader import open_image
from ._errors import handled
from ._image import load
from ._output import emit_json, err, record_progress, table
from ._params import Argument, ArchOpt, FormatOpt, ImageArg, JsonOpt, Option, PidOpt, command

# How many bytes `mem IMG ADDR` shows without LEN.
DEFAULT_LEN = 256
_SIZE = re.compile(r"(0x[0-9a-fA-F]+|[0-9]+)([kKmMgG]?)")


def number(text: str, what: str) -> int:
    """An address or length: 0x hex or decimal, lengths with a k/M/G suffix."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        try:
            return int(text, 16)            # a bare hex address as /proc/PID/maps writes it
        except ValueError:
            raise UsageError(f"{what} {text!r}: expected a number like 0x7ffd0000 or 4096"
                             ) from None
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(m.group(1), 0) * scale


def _range(text: str) -> tuple[int, int]:
    a, sep, b = text.partition("-")
    if not sep:
        raise UsageError(f"--range {text!r}: expected START-END")
    start, end = number(a, "--range start"), number(b, "--range end")
    if end <= start:
        raise UsageError(f"--range {text!r}: the end must lie above the start")
    return start, end


def mem(image: ImageArg,
        addr: Annotated[Optional[str], Argument(
            help="address to show (0x hex); LEN bytes from it", metavar="[ADDR]")] = None,
        length: Annotated[Optional[str], Argument(
            help=f"bytes to show (default {DEFAULT_LEN}; k/M suffixes)", metavar="[LEN]")] = None,
        pid: PidOpt = None,
        vma: Annotated[Optional[str], Option(
            "--vma", help="show whole VMAs: index as `maps` lists it, path, basename or "
                          "[heap]/[stack]")] = None,
        range_: Annotated[Optional[str], Option(
            "--range", help="show START-END", metavar="A-B")] = None,
        raw: Annotated[bool, Option(
            "--raw", help="the bytes themselves (holes as zeros, named on stderr)")] = False,
        search: Annotated[Optional[str], Option(
            "--search", help="find bytes: hex (0xdeadbeef, 'de ad be ef'), a string, or a "
                             "regular expression with --regex", metavar="PATTERN")] = None,
        regex: Annotated[bool, Option("--regex", help="PATTERN is a regex")] = False,
        strings: Annotated[bool, Option(
            "--strings", help="printable strings, like strings(1)")] = False,
        min_len: Annotated[int, Option("--min", help="shortest string")] = 4,
        perms: Annotated[Optional[str], Option(
            "--perms", help="only VMAs with these permissions (rw-: readable, writable, "
                            "not executable)")] = None,
        kind: Annotated[Optional[str], Option(
            "--type", help="only VMAs of these kinds: anon,file,stack,heap,shm,vdso")] = None,
        path: Annotated[Optional[str], Option(
            "--path", help="only VMAs whose path matches this glob")] = None,
        json: JsonOpt = False, format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Process memory from the image: hexdump of ADDR [LEN], --vma or --range; --search;
    --strings. Files are read by seek, pipes as they stream."""
    filt = M.Filter(pids={pid} if pid is not None else None, perms=perms,
                    kinds=set(kind.split(",")) if kind else None, path=path, vma=vma)
    modes = [m for m, on in (("ADDR", addr is not None), ("--vma", vma is not None and
             search is None and not strings), ("--range", range_ is not None),
             ("--search", search is not None), ("--strings", strings)) if on]
    if len(modes) != 1:
        raise UsageError("give one of ADDR, --vma, --range, --search or --strings"
                         + (f" (not {' and '.join(modes)})" if modes else ""))
    write = sys.stdout.write
    if search is not None or strings:
        if raw:
            raise UsageError("--raw goes with ADDR, --vma or --range")
        literal = None
        if search is not None:
            find, longest, literal = M.parse_pattern(search, regex)
        else:
            find, longest = M.regex_finder(M.strings_regex(min_len)), M.MATCH_MAX
        emit = (lambda h: emit_json(h.row())) if json else \
            (lambda h: write(_hit_line(h, strings)))
        if literal is not None:
            consumer = M.LiteralScanner(literal, M.CONTEXT, emit, filt)
        else:
            consumer = M.Scanner(find, longest, 0 if strings else M.CONTEXT, emit, filt)
    else:
        span: dict = {"pid": pid}
        if vma is not None:
            span = {"whole": filt}
        else:
            if addr is not None:
                start = number(addr, "ADDR")
                size = number(length, "LEN") if length is not None else DEFAULT_LEN
                span.update(start=start, end=start + size)
            else:
                start, end = _range(range_)
                span.update(start=start, end=end)
        if raw:
            if sys.stdout.isatty():
                raise UsageError("refusing to write raw memory to a terminal: use a pipe or "
                                 "a file")
            consumer = M.RawDump(sys.stdout.buffer, lambda m: err.print(m, markup=False),
                                 **span)
        else:
            consumer = M.HexDump(write, json=emit_json if json else None, **span)
    _feed(image, format, arch, consumer)
    consumer.finish()
    sys.stdout.flush()


def _feed(image: str, format, arch, consumer: M.Consumer) -> None:
    """By seek when the image is a file, else in one streaming pass."""
    from ..views import MAPS_READS
    with open_image(image, format, arch) as reader:
        with record_progress(reader) as on_record:
            M.read_pages(reader, consumer, on_record, keep=MAPS_READS, vma_table=True)


def _hit_line(h: M.Hit, bare: bool) -> str:
    head = f"{h.region.pid}  {h.address:#x}  {M.esc_text(h.region.label)}  @{h.offset}  "
    if bare:
        return head + M.esc_text(h.match) + "\n"
    return (head + M.esc_text(h.before) + "[" + M.esc_text(h.match) + "]"
            + M.esc_text(h.after) + "\n")


SUMMARY_COLUMNS = [("type", "TYPE"), ("vmas", "VMAS"), ("size", "SIZE"), ("pages", "PAGES"),
                   ("share", "SHARE")]


def maps_summary(image: str, pid: int | None, json: bool, format, arch) -> None:
    """`maps --summary`: per kind of VMA, how many, their size, the pages held, the share
    of the image those pages make."""
    from ..views import MAPS_READS
    with load(image, format, arch, MAPS_READS, vma_table=True) as (_, img):     # (mem's)
        filt = M.Filter(pids={pid} if pid is not None else None)
        filt.resolve(img)
        rows = M.summary(img, filt)
    if json:
        emit_json(rows)
        return
    table(rows, SUMMARY_COLUMNS, fmt={"size": _size, "share": lambda s: f"{s:.1%}"})


def _size(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def register(app) -> None:
    command(app, handled(mem))
