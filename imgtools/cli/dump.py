"""dump: checkpoint a live process tree with the C engine (v23, x86_64)."""
from __future__ import annotations

import os
import stat
import sys
from typing import Annotated


from formats import NATIVE, abi

from ._private import private_binary_output
from ._errors import EXIT_INVALID, Exit, fail, handled
from ._params import Argument, Option, OutputOpt, command
from ..errors import UsageError


def parse_pid(text: str) -> int:
    """The PID argument: decimal digits naming a positive pid (the engine's range)."""
    if not text.isascii() or not text.isdigit():
        raise UsageError(f"PID must be a number, not {text!r}")
    pid = int(text)
    if not 0 < pid <= 0x3FFFFFFF:
        raise UsageError(f"PID must be a positive number below 2**30, not {text}")
    return pid


def dump(pid: Annotated[str, Argument(help="root of the process tree to checkpoint",
                                            metavar="PID", show_default=False)],
         output: OutputOpt = None,
         single: Annotated[bool, Option(
             "--single", help="only this process (with its threads), not its descendants")]
         = False,
         kill: Annotated[bool, Option(
             "--kill", help="kill the checkpointed tasks afterwards instead of resuming them")]
         = False,
         allow_partial: Annotated[bool, Option(
             "--allow-partial", help="exit 0 even if some state was written as ERROR records")]
         = False,
         strict: Annotated[bool, Option(
             "--strict", help="a pure v23 image: no imgtools extension records (what only "
                              "they hold, e.g. a memfd or a deleted file, becomes an ERROR "
                              "record)")] = False,
         ghost_limit: Annotated[str, Option(
             "--ghost-limit", metavar="SIZE",
             help="contents of deleted files saved per image, at most (bytes, or K/M/G); "
                  "a larger one is an ERROR record")] = "64M") -> None:
    """Checkpoint PID (and its descendants) into a v23 image: -o FILE, or stdout ('-').

    Every thread is stopped for the dump and resumed afterwards; a failed or interrupted
    dump leaves the processes running as before. The file is written atomically."""
    number = parse_pid(pid)
    limit = _size(ghost_limit)
    from .. import engine
    from ._output import _drawn, progress
    # the bar's total walks /proc over every task (1,000 threads: 1,000 files): only for a bar
    total = _memory_of(number, not single) if _drawn(sys.stderr) else None
    try:
        # a path is written atomically: the image appears only when the dump produced one
        # (complete, or complete with ERROR records: a partial dump is kept, exit 3)
        with private_binary_output(output) as out, \
                progress(f"dump {number}", total) as advance:
            done = [0]

            def on_progress(mib: int) -> None:
                advance((mib << 20) - done[0])
                done[0] = mib << 20
            code = engine.dump(number, "-", tree=not single, kill=kill,
                               allow_partial=allow_partial, stdout=out, strict=strict,
                               ghost_limit=limit,
                               on_progress=on_progress if sys.stderr.isatty() else None)
            complete = _ends_with_tail(out) if code == EXIT_INVALID else None
            if code and not (code == EXIT_INVALID and complete is not False):
                raise Exit(code)          # a file output is discarded
    except engine.EngineError as e:
        raise fail(str(e), 1) from None
    if output not in (None, "-") and os.path.isfile(output):
        _summary(output, number)
    if code == EXIT_INVALID:
        where = "stdout" if output in (None, "-") else output
        if complete is None:
            # a pipe: we cannot see whether the engine refused or wrote a partial image
            raise fail("the dump ended with exit 3: refused (reason above), or state the "
                       "format cannot hold was written as ERROR records (--allow-partial "
                       "accepts such an image)", EXIT_INVALID)
        raise fail(f"{where}: the image was written with ERROR records for the state it "
                   f"cannot hold (listed above); --allow-partial accepts it (exit 0)",
                   EXIT_INVALID)


def _size(text: str) -> str:
    """--ghost-limit SIZE checked here (a usage error names it), handed on as written."""
    body = text[:-1] if text[-1:] in ("K", "M", "G", "k", "m", "g") else text
    if not body.isascii() or not body.isdigit():
        raise UsageError(f"--ghost-limit takes a size (bytes, or a number with K, M or G), not {text!r}")
    return text


def _memory_of(pid: int, tree: bool) -> int | None:
    """What the image's pages will about come to (the resident memory of the tree), for
    the progress bar's total; None if /proc does not say."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                rss = next((l for l in f if l.startswith("VmRSS:")), "VmRSS: 0 kB")
            total += int(rss.split()[1]) << 10
            if tree:
                for t in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            if p == pid:
                return None
    return total or None


def _summary(path: str, pid: int) -> None:
    """One line, as to-core and convert say what they wrote."""
    tasks = _tasks_in(path)
    size = os.path.getsize(path)
    what = f"{tasks} task{'s' if tasks != 1 else ''}, " if tasks is not None else ""
    sys.stderr.write(f"{path}: pid {pid}, {what}{size / 2**20:.1f} MiB\n")


def _tasks_in(path: str) -> int | None:
    """TREE.nr_tasks, from the head of the image the engine wrote (the first records)."""
    from ..stream import HDR, HDR_SIZE
    tree = abi(NATIVE).types["tree"]
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    pos = 0
    while pos + HDR_SIZE + 4 <= len(head):
        rtype, rlen = HDR.unpack_from(head, pos)
        if rtype == tree:
            return int.from_bytes(head[pos + HDR_SIZE:pos + HDR_SIZE + 4], "little")
        if rlen < HDR_SIZE:
            return None
        pos += rlen
    return None


def _ends_with_tail(out) -> bool | None:
    """Whether the image just written ends with its TAIL record (the engine wrote it
    whole); None when the output cannot be read back (a pipe, a device)."""
    from ..stream import HDR, HDR_SIZE
    try:
        fd = out.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    tail = abi(NATIVE)
    size = HDR_SIZE + tail.struct("tail").sizeof()
    if st.st_size < size:
        return False
    try:                            # stdout may be open write-only: read it anew
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    except OSError:
        return None
    try:
        rtype, rlen = HDR.unpack(os.pread(rfd, HDR_SIZE, st.st_size - size))
    finally:
        os.close(rfd)
    return rtype == tail.types["tail"] and rlen == size


def register(app) -> None:
    command(app, handled(dump))
