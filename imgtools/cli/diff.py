"""diff: what changed between two checkpoints (exit 0 equal, 1 different, like cmp)."""
from __future__ import annotations

import sys
from typing import Annotated


from .. import diff as D
from ..errors import UsageError
from ..mem import esc_text
from ..reader import open_image
from ._errors import Exit, handled
from ._output import _jsonable, out, record_progress
from ._params import Argument, ArchOpt, FormatOpt, JsonOpt, Option, command

EXIT_DIFFERENT = 1


def diff(a: Annotated[str, Argument(help="first image ('-' = stdin)", metavar="A")],
         b: Annotated[str, Argument(help="second image ('-' = stdin)", metavar="B")],
         pages: Annotated[bool, Option(
             "--pages", help="list the address ranges of changed pages")] = False,
         json: JsonOpt = False, format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Tasks that appeared or exited; per task changed registers, creds, signal state,
    fds, VMAs and pages. Exit 0 when equal, 1 when different."""
    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be stdin")
    _large_blocks_mapped()
    facts = []
    for path in (a, b):
        facts.append(D.Facts())
        with open_image(path, format, arch) as reader:
            with record_progress(reader) as on_record:
                facts[-1].read(reader, on_record, *facts[:-1])     # (B against A)
    result = D.diff(*facts)
    changed = 0

    def tasks(compared):
        nonlocal changed
        for t in compared:
            changed += 1
            if json and not pages:
                t.get("pages", {}).pop("ranges", None)
            yield t
    result["tasks"] = tasks(result["tasks"])
    if json:
        emit_result(result, lambda: not (result["appeared"] or result["exited"] or changed))
    else:
        for line in text_lines(result, pages):      # paths and names are the image's
            out.print(esc_text(line), markup=False, highlight=False)
    if result["appeared"] or result["exited"] or changed:
        raise Exit(EXIT_DIFFERENT)


# glibc's mallopt: the size from which a block is mmapped (and unmapped when freed)
M_MMAP_THRESHOLD, LARGE_BLOCK = -3, 1 << 20


def _large_blocks_mapped() -> None:
    """Blocks of 1 MiB or more mmapped, as glibc starts. Freeing one raises its threshold
    to the block's size: once the first image's model is freed, the second's columns grow
    in the heap instead, each move leaving a hole (17 MB of the RSS of 400,000 fds, issue
    11). Setting the threshold keeps it. (No glibc: nothing to set.)"""
    import ctypes
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
    except (OSError, AttributeError):
        pass


def emit_result(result: dict, equal) -> None:
    """``emit_json(result | {"equal": equal()})``, its tasks written as they are compared
    (the list is never held). json.dumps joins items with ', ' and keys with ': '."""
    import json
    write = sys.stdout.write
    head = {k: v for k, v in result.items() if k != "tasks"}
    write(json.dumps(head, default=_jsonable)[:-1] + ', "tasks": [')
    for i, t in enumerate(result["tasks"]):
        write((", " if i else "") + json.dumps(t, default=_jsonable))
    write(f'], "equal": {json.dumps(equal())}}}\n')
    sys.stdout.flush()


def _v(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:#x}" if abs(x) > 4096 else str(x)
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    return repr(x) if isinstance(x, str) else str(x)


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} {_v(a)} -> {_v(b)}" for k, (a, b) in sorted(d.items()))


def _vma(m: dict) -> str:
    return f"{m['start']:#x}-{m['end']:#x} {m['perms']} {m['path'] or ''}".rstrip()


def text_lines(r: dict, with_ranges: bool):
    """The human form of a diff result: one line per change, nothing when equal."""
    if r["a"]["version"] != r["b"]["version"]:
        yield f"versions: {r['a']['version']} and {r['b']['version']}"
    for t in r["appeared"]:
        yield f"task {t['pid']} appeared ({t['comm']})"
    for t in r["exited"]:
        yield f"task {t['pid']} exited ({t['comm']})"
    for t in r["tasks"]:
        yield f"task {t['pid']} ({t['comm']}):"
        for key in ("renamed", "state", "ppid"):
            if key in t:
                yield f"  {key}: {_v(t[key][0])} -> {_v(t[key][1])}"
        for key in ("fields", "regs", "rseq", "creds", "fs"):
            if key in t:
                yield f"  {key}: {_pairs(t[key])}"
        if "signals" in t:
            s = dict(t["signals"])
            yield f"  signals: {_pairs(s)}"
        for kind, rows in t.get("fds", {}).items():
            for f in rows:
                if kind in ("opened", "closed"):
                    yield f"  fd {f['fd']} {kind}: {f['type']} {f['path'] or ''}".rstrip()
                elif kind == "moved":
                    yield f"  fd {f['fd']} offset {f['pos'][0]} -> {f['pos'][1]}"
                else:
                    rest = {k: v for k, v in f.items() if k != "fd"}
                    yield f"  fd {f['fd']} changed: {_pairs(rest)}"
        for kind, rows in t.get("vmas", {}).items():
            for m in rows:
                if kind in ("added", "removed"):
                    yield f"  vma {kind} {_vma(m)}"
                elif kind == "resized":
                    yield f"  vma resized {_vma(m['from'])} -> {m['to']['start']:#x}-" \
                          f"{m['to']['end']:#x}"
                elif kind == "reprotected":
                    yield f"  vma reprotected {_vma(m['vma'])}: {m['perms'][0]} -> " \
                          f"{m['perms'][1]} (vm_flags {m['vm_flags'][0]:#x} -> " \
                          f"{m['vm_flags'][1]:#x})"
                else:
                    yield f"  vma replaced {_vma(m['vma'])}: {_pairs({'path': m['path'], 'type': m['type']})}"
        p = t.get("pages")
        if p:
            yield f"  pages: {p['changed']} changed, {p['added']} added, {p['gone']} gone"
            if with_ranges:
                for kind in ("changed", "added", "gone"):
                    for s, e in p["ranges"][kind]:
                        yield f"    {kind} {s:#x}-{e:#x} ({(e - s) // 4096} pages)"


def register(app) -> None:
    command(app, handled(diff))
