"""restore: restart the processes of an image with the C engine.

A v23 image file is handed to the engine as it is (the engine reads it twice: a metadata
pass that refuses before any process exists, then the restore). Anything else flows through
a pipe into the engine as it is read: a v23 stream is spliced on unchanged, an older ABI is
converted to v23 on the way, record by record; the engine then checks each record as it
arrives and a refusal kills what was created.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from typing import Annotated


from .. import engine
from ..errors import UsageError
from ..reader import ImageReader
from ._errors import EXIT_INVALID, Exit, fail, handled
from ._params import Argument, FormatOpt, Option, command

RestoreImageArg = Annotated[str, Argument(
    help="image file, '-' = stdin (a pipe from 'imgtools dump PID -o -' migrates live)",
    metavar="IMG")]
TARGET = "v23"
SPLICE = 1 << 20


class _Taken:
    """The raw input, remembering what the version detection read from a pipe."""

    def __init__(self, fd: int):
        self.fd = fd
        self.taken: list[bytes] = []

    def fileno(self) -> int:
        return self.fd

    def read(self, n: int = -1) -> bytes:
        data = os.read(self.fd, n if n >= 0 else SPLICE)
        self.taken.append(data)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return False


def _pump(src: int, dst: int) -> None:
    """Everything left on src into dst, by splice where both are pipes."""
    while True:
        try:
            n = os.splice(src, dst, SPLICE)
        except OSError:
            data = os.read(src, SPLICE)
            n = len(data)
            if n:
                os.write(dst, data)
        if not n:
            return


def _run_fed(cmd: list[str], feed) -> int:
    """The engine with a pipe on its stdin that feed(fd) fills; its exit status."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    forward = lambda sig, _frame: proc.send_signal(sig)  # noqa: E731 - the tree's signal
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        feed(proc.stdin.fileno())
    except BrokenPipeError:
        pass                    # the engine stopped reading: its status says why
    finally:
        proc.stdin.close()
    return proc.wait()


@handled
def restore(image: RestoreImageArg = "-",
            pidns: Annotated[bool, Option(
                "--pidns/--no-pidns",
                help="restore into a new pid namespace where every task has its original pid "
                     "(default); --no-pidns: original pids in this namespace, refused if taken")]
            = True,
            detach: Annotated[bool, Option(
                "--detach", help="return once the tree runs; print the root's pid (as seen "
                                 "here) alone on the last line of stdout")] = False,
            stopped: Annotated[bool, Option(
                "--stopped", help="leave every task stopped (SIGSTOP), for a debugger")] = False,
            shell_job: Annotated[bool, Option(
                "--shell-job", help="a job of a shell: the tree joins the caller's session, "
                                    "its descriptors on an outside terminal become the "
                                    "caller's terminal, its foreground job the caller's "
                                    "foreground")] = False,
            allow_changed_files: Annotated[bool, Option(
                "--allow-changed-files", help="reopen files whose size or mtime changed "
                                              "since the dump (refused by default)")] = False,
            tcp_close: Annotated[bool, Option(
                "--tcp-close", help="restore a TCP connection whose peer is gone closed (the "
                                    "program's next read or write fails) instead of refusing "
                                    "the image")] = False,
            fmt: FormatOpt = None) -> None:
    """Restart the process tree of IMG; wait for its root and exit with its status.

    Every task gets its registers, memory, files, signal state and credentials back; what
    cannot be restored faithfully is refused with the reason (exit 3) and nothing is left
    running. Images of older ABI versions are converted to v23 on the way. Exit: the
    root's status (128+N if signal N ended it), 0 with --detach; 2 usage, 3 refused or
    invalid."""
    if image != "-" and not os.path.exists(image):
        raise UsageError(f"{image}: no such file")
    fd = sys.stdin.fileno() if image == "-" else os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    if image == "-" and os.isatty(fd):
        raise UsageError("refusing to read an image from a terminal (give IMG or a pipe)")
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    src = _Taken(fd)
    reader = ImageReader(src, "<stdin>" if image == "-" else image, version=fmt)
    flags = dict(pidns=pidns, detach=detach, stopped=stopped, shell_job=shell_job,
                 progress=sys.stderr.isatty(), allow_changed_files=allow_changed_files,
                 tcp_close=tcp_close)
    if reader.version == TARGET and regular:
        cmd = engine.restore_command(image if image != "-" else f"/proc/self/fd/{fd}", **flags)
        if image == "-":
            os.lseek(fd, 0, os.SEEK_SET)
        sys.stdout.flush()
        os.execv(cmd[0], cmd)
    cmd = engine.restore_command("-", **flags)
    if reader.version == TARGET:
        def feed(out: int) -> None:
            for chunk in src.taken:
                os.write(out, chunk)
            _pump(fd, out)
    else:
        from converters import LossRefused, convert

        def feed(out: int) -> None:
            with os.fdopen(os.dup(out), "wb", buffering=1 << 20) as f:
                try:
                    convert(reader, f, TARGET)
                except LossRefused as e:
                    raise fail(f"cannot restore: converting {reader.version} to {TARGET} would "
                               f"lose {e.report.loss_count} item(s); see 'imgtools convert "
                               f"--to {TARGET}'", EXIT_INVALID) from None
    code = _run_fed(cmd, feed)
    raise Exit(code)


def register(app) -> None:
    command(app, restore)
