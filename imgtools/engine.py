"""The C checkpoint engine: find (or build) the ``imgtools-engine`` binary and run it.

An installed package carries the binary at ``imgtools/_engine/imgtools-engine`` (put there by
``setup.py``); a development checkout builds ``engine/build/imgtools-engine`` with make on
first use. The engine checkpoints a live process tree into a linux-cr v23 x86_64 image.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
PROGRESS_PREFIX = b"imgtools-engine: progress: "     # "N MiB written" (engine/src/image.c)
INSTALLED_ENGINE = _PACKAGE / "_engine" / "imgtools-engine"
SOURCE_TREE = _PACKAGE.parent / "engine"


class EngineError(Exception):
    """The engine cannot be found, built or started."""


def build_engine(source: Path = SOURCE_TREE) -> Path:
    """Run ``make -C source`` and return the built binary."""
    import platform             # here: running a built engine needs none of them (start-up)
    import shutil
    import subprocess
    if platform.machine() != "x86_64":
        raise EngineError(f"the checkpoint engine supports x86_64 only, this machine is {platform.machine()}")
    missing = [tool for tool in ("make", "gcc") if shutil.which(tool) is None]
    if missing:
        raise EngineError(f"building the checkpoint engine needs {' and '.join(missing)}, not found on PATH")
    if not (source / "Makefile").is_file():
        raise EngineError(f"no engine source tree at {source}")
    result = subprocess.run(["make", "-C", str(source)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise EngineError(f"make -C {source} failed:\n{result.stdout}")
    return source / "build" / "imgtools-engine"


def find_engine() -> Path:
    """The installed engine binary, else the development tree's (built if missing)."""
    if os.access(INSTALLED_ENGINE, os.X_OK):
        return INSTALLED_ENGINE
    if (SOURCE_TREE / "Makefile").is_file():
        binary = SOURCE_TREE / "build" / "imgtools-engine"
        return binary if os.access(binary, os.X_OK) else build_engine(SOURCE_TREE)
    raise EngineError(f"imgtools-engine is not installed ({INSTALLED_ENGINE}) and there is no engine source tree")


def dump(
    pid: int,
    output: str | os.PathLike[str],
    tree: bool = True,
    kill: bool = False,
    allow_partial: bool = False,
    progress: bool = False,
    stdout=None,
    on_progress=None,
    strict: bool = False,
    ghost_limit: str | None = None,
) -> int:
    """Checkpoint process ``pid`` (and its descendants if ``tree``) into ``output`` ('-' = stdout).

    With ``output`` '-', the image goes to ``stdout`` (a file object; default: ours).
    The engine's stderr passes through, but for its progress lines when ``on_progress``
    is given: it gets the MiB written so far instead. Returns its exit code: 0 ok,
    1 internal error, 2 usage, 3 refused or partial (unsupported state was recorded as
    ERROR records). ``strict``: a pure v23 image (no imgtools extension records, ERROR
    records instead); ``ghost_limit``: the engine's ``--ghost-limit`` SIZE (contents of
    deleted files per image).
    """
    cmd = [str(find_engine()), "dump", str(int(pid)), "-o", os.fspath(output), "--tree" if tree else "--single"]
    progress = progress or on_progress is not None
    cmd += [flag for flag, on in (("--kill", kill), ("--allow-partial", allow_partial), ("--progress", progress),
                                  ("--strict", strict)) if on]
    if ghost_limit is not None:
        cmd += ["--ghost-limit", ghost_limit]
    try:
        if on_progress is None:
            return _run(cmd, stdout)
        import subprocess       # a progress bar: only on a terminal
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
        for line in proc.stderr:
            words = line.split()
            if line.startswith(PROGRESS_PREFIX) and len(words) > 2 and words[2].isdigit():
                on_progress(int(words[2]))
            else:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
        return proc.wait()
    except OSError as exc:
        raise EngineError(f"cannot run {cmd[0]}: {exc}") from exc


def _run(cmd: list[str], stdout) -> int:
    """Run cmd with stdout (a file object, or None: ours) and return its exit code, as
    subprocess.run would, without importing subprocess (start-up: `imgtools dump` should
    cost little more than the engine). Our descriptors are close-on-exec (Python opens
    them so). Interrupted (SIGINT), the engine is given the SIGINT too -- it puts back
    and releases every task -- and waited for before KeyboardInterrupt goes on; SIGKILL
    after 5 s (its tracer then takes the same path)."""
    actions = [] if stdout is None else [(os.POSIX_SPAWN_DUP2, stdout.fileno(), 1)]
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except BaseException:
        _stop(pid)
        raise


def _stop(pid: int) -> None:
    """SIGINT to the engine pid, waited for 5 s, then SIGKILL; reaped."""
    import signal
    import time
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.01)
        except KeyboardInterrupt:
            continue            # a second Ctrl-C: the engine is finishing already
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def restore_command(image: str, pidns: bool = True, detach: bool = False, stopped: bool = False,
                    shell_job: bool = False, progress: bool = False,
                    allow_changed_files: bool = False, tcp_close: bool = False) -> list[str]:
    """The engine's command line restoring the v23 image ``image`` ('-' = stdin)."""
    cmd = [str(find_engine()), "restore", os.fspath(image), "--pidns" if pidns else "--no-pidns"]
    cmd += [flag for flag, on in (("--detach", detach), ("--stopped", stopped),
                                  ("--shell-job", shell_job), ("--tcp-close", tcp_close),
                                  ("--progress", progress),
                                  ("--allow-changed-files", allow_changed_files)) if on]
    return cmd
