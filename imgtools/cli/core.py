"""to-core (image -> ELF core file) and debug (the core opened in gdb)."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Optional


from ..errors import UsageError
from ._private import private_binary_output
from ._errors import EXIT_INVALID, Exit, fail, handled
from ._gdbpipe import gdb_reader, pipe_readers, remove_when_read
from ._output import printable, progress
from ._params import OUTPUT_HELP, Argument, ArchOpt, FormatOpt, ImageArg, Option, command

if TYPE_CHECKING:
    from ..core import CorePlan

CorePidOpt = Annotated[Optional[int], Option(
    "--pid", help="the process to dump (a thread id names its process); default: the "
                  "image's root process")]
XstateOpt = Annotated[str, Option(
    "--xstate-layout", help="NT_X86_XSTATE layout: 'gdb' = Intel standard offsets, which "
                            "gdb 13 reads; 'native' = the area exactly as the image holds it "
                            "(plus NT_X86_XSAVE_LAYOUT), as the kernel writes it, which gdb 13 "
                            "misreads where the CPU's layout is not Intel's (AMD)",
    metavar="gdb|native")]
SPOOL_CHUNK = 1 << 20
NO_TAIL = ("the image ends without its TAIL record (truncated?): the core holds what the "
           "image holds")


@contextmanager
def _image_file(image: str):
    """A seekable path for the image: '-' (stdin) and compressed images are spooled
    (decompressed) to a temporary file in $TMPDIR first (bounded memory), then read like
    any file."""
    from ..stream import open_input
    src, name = open_input(image)
    if image != "-" and src.seekable():
        src.close()
        yield image
        return
    import tempfile
    fd, path = tempfile.mkstemp(prefix="imgtools-stdin-", suffix=".img")
    try:
        with progress(f"spooling {name}", None) as advance:
            _spool(src, fd, advance)
        if image != "-":
            src.close()
        os.close(fd)
        fd = -1
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(path)


def _spool(src, fd: int, advance) -> None:
    """Copy a stream to fd: splice(2) from a pipe (no copy through user space), else
    1 MiB reads."""
    try:
        in_fd = src.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(in_fd).st_mode) and hasattr(os, "splice")
    except (OSError, AttributeError, ValueError):
        in_fd, is_pipe = -1, False
    if is_pipe:
        first = src.read1(SPOOL_CHUNK)      # what the check of its first bytes buffered
        if not first:
            return
        os.write(fd, first)
        advance(len(first))
        try:
            fcntl.fcntl(in_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), SPOOL_CHUNK)
        except OSError:
            pass
        try:
            while True:
                n = os.splice(in_fd, fd, SPOOL_CHUNK)
                if not n:
                    return
                advance(n)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    while True:
        b = src.read(SPOOL_CHUNK)
        if not b:
            return
        view = memoryview(b)
        while view:
            view = view[os.write(fd, view):]
        advance(len(b))


def _check_layout(xstate_layout: str) -> None:
    if xstate_layout not in ("gdb", "native"):
        raise UsageError(f"--xstate-layout must be 'gdb' or 'native', not {xstate_layout!r}")


@contextmanager
def _plans(image: str, format: str | None, arch: str | None, pid: int | None,
           every: bool = False):
    """Yields (model, make_plan(pid, layout), page source fd); the model holds the task
    records of the process ``pid`` names (None: the image's first) only, or of every
    task (``every``)."""
    from functools import partial

    from ..build import build_model
    from ..core.build import CORE_READS, ProcessBuilder
    from ..reader import open_image
    from ._output import record_progress
    with _image_file(image) as path, open_image(path, format, arch) as reader:
        with record_progress(reader) as on_record:
            img = build_model(reader, on_record, partial(ProcessBuilder, pid=pid, every=every),
                              keep=CORE_READS)
        if not img.tail:
            _warn(NO_TAIL)
        try:
            src = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise UsageError(f"cannot open {path}: {e.strerror}") from None
        try:
            yield img, lambda pid, layout: _plan(img, lambda off, n: os.pread(src, n, off),
                                                 pid, layout), src
        finally:
            os.close(src)


def _plan(img, read_at, pid: int | None, layout: str) -> CorePlan:
    from ..core import UnsupportedImage, plan_core
    try:
        return plan_core(img, read_at, pid, layout)
    except UnsupportedImage as e:
        raise fail(f"cannot make a core: {e}", EXIT_INVALID) from None


def _streams(image: str, output: str | None) -> bool:
    """Whether the core is written as the image is read (``core.streamed``): the input
    cannot be read twice (stdin, a compressed image) and the output is a regular file,
    which can be written out of order."""
    if image != "-":
        from ..stream import open_input
        src, _ = open_input(image)
        seekable = src.seekable()
        src.close()
        if seekable:
            return False
    if output in (None, "-"):
        try:
            st = os.fstat(sys.stdout.fileno())
            return stat.S_ISREG(st.st_mode) and \
                not fcntl.fcntl(sys.stdout.fileno(), fcntl.F_GETFL) & os.O_APPEND
        except (OSError, ValueError, AttributeError):
            return False
    try:
        return stat.S_ISREG(os.stat(output).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _streamed(image: str, output: str | None, pid: int | None, xstate_layout: str,
              format: str | None, arch: str | None) -> CorePlan:
    """The core of a stream, written as it is read (see ``core.streamed``)."""
    from functools import partial

    from ..build import build_model
    from ..core.build import CORE_READS
    from ..core.streamed import Layout, StreamingBuilder
    from ..reader import open_image
    from ._output import record_progress
    with open_image(image, format, arch) as reader, \
            private_binary_output(output, inputs=(image,)) as out:
        out.flush()
        fd = out.fileno()
        layout = Layout(fd, os.lseek(fd, 0, os.SEEK_CUR))
        try:
            with record_progress(reader) as on_record:
                img = build_model(reader, on_record,
                                  partial(StreamingBuilder, layout=layout, pid=pid),
                                  keep=CORE_READS)
            if not img.tail:
                _warn(NO_TAIL)
            plan = _plan(img, layout.read_at, pid, xstate_layout)
            for w in plan.warnings:
                _warn(w)
            with progress(f"core of {plan.pid}", None) as advance:
                layout.finish(plan, advance)
        finally:
            layout.close()
    return plan


def _write(plan: CorePlan, src: int, out) -> int:
    for w in plan.warnings:
        _warn(w)
    from ..core import write_core
    with progress(f"core of {plan.pid}", plan.data_bytes) as advance:
        return write_core(plan, src, out, advance)


def to_core(image: ImageArg,
            output: Annotated[Optional[str], Option(
                "-o", "--output", help="core file (a directory: DIR/core.PID); absent or '-' = "
                                       "stdout, which must not be a terminal. "
                                       f"{OUTPUT_HELP}",
                metavar="FILE")] = None,
            pid: CorePidOpt = None,
            all_: Annotated[bool, Option(
                "--all", help="one core per process, written as core.PID into the directory "
                              "given with -o")] = False,
            gdb_script: Annotated[bool, Option(
                "--gdb-script", help="write gdb commands that open the core on stdout "
                                     "instead of the core (what a pipe to gdb gets); the core "
                                     "goes to -o FILE, or to a temporary file removed when "
                                     "the pipe's reader exits")] = False,
            xstate_layout: XstateOpt = "gdb",
            format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Write an ELF core file of one process of an image (any version, x86_64).

    The core is what the kernel would have written: per-thread registers
    (NT_PRSTATUS, FP and XSAVE state), NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE,
    and one PT_LOAD per memory mapping with the pages the image holds.

    Without -o the core goes to stdout when that is not a terminal, so it can be
    piped to a compressor. gdb cannot read a core from a pipe (it needs to seek), so
    'imgtools to-core IMG | gdb' sends gdb commands instead: the core is written to a
    private temporary file, gdb loads it with the executable and prints the threads,
    their backtraces and the registers, and the file is removed when gdb exits. Any
    other reader of the pipe gets the core itself. For gdb at a prompt: 'imgtools
    debug IMG'.

    IMG '-' (stdin) and compressed images are read once. Into a regular file (-o
    FILE, or stdout redirected to one) the core is written as the image streams in:
    the page data goes to its place as it arrives, the program headers and notes
    follow it (gdb and readelf read such cores); only what must be seen twice goes
    to a temporary file in $TMPDIR: the FPU state, memfd contents and the pages of
    the image's other processes (a shared mapping may borrow them). Into a pipe, or
    with --all, --gdb-script or -o DIR, the image is first copied to a temporary
    file in $TMPDIR (splice from a pipe): there the notes come first, and they and
    the program headers depend on records that follow the page data.
    """
    _check_layout(xstate_layout)
    if all_ and pid is not None:
        raise UsageError("--all and --pid exclude each other")
    if all_ and gdb_script:
        raise UsageError("--gdb-script opens one core: give --pid instead of --all")
    if all_ and output in (None, "-"):
        raise UsageError("--all writes one file per process: give the directory with -o DIR")
    to_stdout = output in (None, "-")
    if to_stdout and gdb_script and not pipe_readers():
        raise UsageError("--gdb-script without -o CORE needs stdout to be a pipe (its "
                         "temporary core is removed when the reader exits): give -o CORE")
    if not all_ and to_stdout and not gdb_script and _stdout_is_terminal():
        raise UsageError("refusing to write a core to a terminal: use -o FILE or a pipe "
                         "(to open it in gdb: imgtools debug IMG)")
    if not all_ and not gdb_script and not (output and os.path.isdir(output)) \
            and _streams(image, output):
        plan = _streamed(image, output, pid, xstate_layout, format, arch)
        if not to_stdout:
            _summary(output, plan)
        return
    with _plans(image, format, arch, pid, every=all_) as (img, make, src):
        if all_:
            try:
                os.makedirs(output, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create {output}: {e.strerror}") from None
            from ..core import processes
            procs = processes(img)
            if not procs:
                raise fail("cannot make a core: the image holds no process with memory to "
                           "dump", EXIT_INVALID)
            for t in procs:
                path = os.path.join(output, f"core.{t.pid}")
                plan = make(t.pid, xstate_layout)
                with private_binary_output(path, inputs=(image,)) as out:
                    _write(plan, src, out)
                _summary(path, plan)
            return
        plan = make(pid, xstate_layout)
        if not to_stdout and os.path.isdir(output):
            output = os.path.join(output, f"core.{plan.pid}")
        reader = gdb_reader() if to_stdout and not gdb_script else None
        if gdb_script or reader is not None:
            return _core_for_gdb(plan, src, None if to_stdout else output)
        with private_binary_output(output, inputs=(image,)) as out:
            _write(plan, src, out)
        if not to_stdout:
            _summary(output, plan)


def _core_for_gdb(plan: CorePlan, src: int, output: str | None) -> None:
    """The core to ``output`` (a private temporary file when None) and, on stdout, the
    gdb commands that open it and print the report."""
    if output is not None:
        with private_binary_output(output) as out:
            _write(plan, src, out)
        _summary(output, plan)
        core = os.path.abspath(output)
    else:
        fd, core = tempfile.mkstemp(prefix=f"imgtools-core.{plan.pid}.", suffix=".core")
        try:
            with os.fdopen(fd, "wb") as out:
                _write(plan, src, out)
        except BaseException:
            os.unlink(core)
            raise
    try:
        script = gdb_script_for(core, _find_exe(plan, None, "/"), plan, "/")
        sys.stdout.write(script)
        sys.stdout.flush()
    finally:
        if output is None:
            remove_when_read(core, pipe_readers())


REPORT = ["info threads", "thread apply all bt", "info registers"]


def gdb_script_for(core: str, exe: str | None, plan: CorePlan, sysroot: str) -> str:
    """gdb commands that load the executable and the core, then print the report.
    gdb's core-file takes the rest of the line as the path: it must be plain."""
    if not _gdb_safe(core) or core != core.strip() or not core.startswith("/"):
        raise UsageError(f"core path {core!r}: gdb's core-file cannot be given it")
    cmds = ["set pagination off", "set confirm off", "set width 0", *gdb_settings(plan, sysroot)]
    if exe:
        cmds.append(f"file {gdb_quoted(exe)}")
    cmds += [f"core-file {core}", *REPORT]
    return "".join(c + "\n" for c in cmds)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _summary(path: str, plan: CorePlan) -> None:
    sys.stderr.write(f"{path}: pid {plan.pid}, {len(plan.tids)} thread(s), "
                     f"{len(plan.segments)} segments, {plan.size / 2**20:.1f} MiB\n")


def _warn(message: str) -> None:
    sys.stderr.write(f"imgtools: warning: {printable(message)}\n")


def _find_exe(plan: CorePlan, exe: str | None, sysroot: str) -> str | None:
    """The executable to give gdb, as an absolute path (so it can never read as an
    option); an image's name that a gdb command line could not carry intact is not used."""
    if exe is not None:
        if not os.path.exists(exe):
            raise UsageError(f"--exe {exe}: no such file")
        return os.path.abspath(exe)
    if not plan.exe:
        _warn("the image names no executable; give one with --exe")
        return None
    if not _gdb_safe(plan.exe):
        _warn(f"the image's executable name {plan.exe!r} holds control characters: not "
              f"used; give the executable with --exe")
        return None
    for cand in (os.path.join(sysroot, plan.exe.lstrip("/")), plan.exe):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    _warn(f"executable {plan.exe} not found (under {sysroot}); give it with --exe")
    return None


def _gdb_safe(text: str) -> bool:
    """A path from an image may reach gdb only without control characters: a newline
    would end one gdb command and start another."""
    return text.isprintable()


def gdb_quoted(path: str) -> str:
    """A path as one argument of gdb's file/core-file commands (gdb splits their
    arguments like a shell: double quotes, backslash escapes)."""
    if not _gdb_safe(path):
        raise UsageError(f"path {path!r} holds control characters: gdb cannot be given it")
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gdb_settings(plan: CorePlan, sysroot: str) -> list[str]:
    """The gdb commands to run before the core is loaded, so the shared libraries load
    with it: the sysroot, and the directories of the libraries the image maps."""
    dirs = []
    for f in plan.files:
        d = os.path.dirname(f)
        here = os.path.join(sysroot, d.lstrip("/"))
        if d and _gdb_safe(here) and ":" not in here and here not in dirs \
                and os.path.isdir(here):
            dirs.append(here)
    cmds = [f"set sysroot {sysroot}"]
    if dirs:
        cmds.append("set solib-search-path " + ":".join(dirs))
    return cmds


def gdb_command(gdb: str, core: str, exe: str | None, plan: CorePlan, sysroot: str,
                batch: bool, ex: list[str], gdb_args: list[str]) -> list[str]:
    """The gdb command line for a core. The paths come last, after '--', and absolute:
    nothing an image names can become a gdb option or command."""
    argv = [gdb]
    if batch:
        argv.append("-batch")
    for c in gdb_settings(plan, sysroot):
        argv += ["-iex", c]
    argv += ["-c", os.path.abspath(core)]
    for c in ex:
        argv += ["-ex", c]
    argv += gdb_args
    return argv + (["--", exe] if exe else [])


def debug(image: ImageArg, pid: CorePidOpt = None,
          exe: Annotated[Optional[str], Option(
              "--exe", help="the executable (default: the one the image's memory map names)",
              metavar="PATH")]
          = None,
          batch: Annotated[bool, Option(
              "--batch", help="run gdb with -batch: execute the -ex commands, then exit")] = False,
          ex: Annotated[Optional[list[str]], Option(
              "--ex", "-ex", help="a gdb command to run after loading the core (repeatable)",
              metavar="CMD")] = None,
          sysroot: Annotated[str, Option(
              "--sysroot", help="where the shared libraries the process used are found",
              metavar="DIR")] = "/",
          gdb: Annotated[str, Option("--gdb", help="the gdb to run", metavar="PATH")]
          = "gdb",
          gdb_args: Annotated[Optional[list[str]], Argument(
              help="more gdb arguments, given after '--'", metavar="GDB_ARGS",
              show_default=False)] = None,
          xstate_layout: XstateOpt = "gdb",
          format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Open one process of an image in gdb.

    Writes the process's core to a temporary file in $TMPDIR (gdb cannot read one
    from a pipe),
    starts gdb on it with the executable and the shared libraries, and removes the
    core when gdb exits. Interactive unless --batch; for scripts:
    'imgtools debug IMG --batch -ex bt' or 'imgtools debug IMG -- -batch -ex bt'.
    gdb's exit status is returned.
    """
    import shutil
    import tempfile
    _check_layout(xstate_layout)
    gdb_path = shutil.which(gdb)
    if gdb_path is None:
        raise UsageError(f"{gdb} not found: install gdb or name it with --gdb")
    with _plans(image, format, arch, pid) as (_, make, src):
        plan = make(pid, xstate_layout)
        exe_path = _find_exe(plan, exe, sysroot)
        fd, core = tempfile.mkstemp(prefix=f"imgtools-core.{plan.pid}.")
        try:
            with os.fdopen(fd, "wb") as out:
                _write(plan, src, out)
            argv = gdb_command(gdb_path, core, exe_path, plan, sysroot, batch, ex or [],
                               gdb_args or [])
            rc = _run_gdb(argv, stdin_was_image=image == "-" and not batch)
        finally:
            try:
                os.unlink(core)
            except FileNotFoundError:
                pass
    raise Exit(rc)


def _run_gdb(argv: list[str], stdin_was_image: bool) -> int:
    """gdb in the foreground; Ctrl-C belongs to gdb while it runs."""
    import signal
    import subprocess
    stdin = None
    if stdin_was_image:             # the image came on stdin: talk to the terminal instead
        try:
            stdin = open("/dev/tty", "rb")
        except OSError:
            stdin = None
    try:
        proc = subprocess.Popen(argv, stdin=stdin)
    except OSError as e:
        raise UsageError(f"cannot run {argv[0]}: {e.strerror}") from None
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
        if stdin is not None:
            stdin.close()


def register(app) -> None:
    command(app, handled(to_core), "to-core")
    command(app, handled(debug), "debug")
