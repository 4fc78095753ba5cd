"""`imgtools to-core IMG | gdb`: who reads our stdout, and a core that lives as long as
its reader.

gdb cannot read a core from a pipe (it seeks) and reads its stdin as commands. So when
the process holding the read end of our stdout is gdb, to-core writes the core to a
private temporary file and sends gdb the commands that open it; the file is removed by a
small background child once every reader of the pipe has exited.
"""
from __future__ import annotations

import os
import select
import signal
import stat
import time

# A shell forks the reader of a pipeline and then execs it: until the exec, the reader
# is a copy of the shell (our parent). How long to wait for it to become what it runs.
EXEC_WAIT = 1.0


def pipe_readers(fd: int = 1) -> list[int]:
    """The processes (other than us) holding the read end of the pipe ``fd`` writes to;
    [] when ``fd`` is not a pipe."""
    try:
        st = os.fstat(fd)
    except OSError:
        return []
    if not stat.S_ISFIFO(st.st_mode):
        return []
    link = f"pipe:[{st.st_ino}]"
    me = os.getpid()
    readers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for n in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{n}") != link:
                    continue
                with open(f"/proc/{entry}/fdinfo/{n}") as info:
                    flags = next(int(line.split()[1], 8) for line in info
                                 if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & os.O_ACCMODE == os.O_RDONLY:
                readers.append(int(entry))
                break
    return readers


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def is_gdb(pid: int) -> bool:
    exe = _exe(pid)
    return exe is not None and os.path.basename(exe).startswith("gdb")


def gdb_reader(fd: int = 1) -> int | None:
    """The pid of the gdb that reads the pipe ``fd`` writes to, else None."""
    shell = _exe(os.getppid())
    deadline = time.monotonic() + EXEC_WAIT
    while True:
        readers = pipe_readers(fd)
        for pid in readers:
            if is_gdb(pid):
                return pid
        forked = [pid for pid in readers if shell is not None and _exe(pid) == shell]
        if not forked or time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def remove_when_read(path: str, readers: list[int]) -> None:
    """Fork a child that removes ``path`` once every process in ``readers`` has exited
    (it holds no descriptor of ours, so the readers see end of file when we exit)."""
    waits = []
    for pid in readers:
        try:
            waits.append(os.pidfd_open(pid))
        except OSError:
            pass                    # already gone
    if os.fork():
        for w in waits:
            os.close(w)
        return
    try:                            # the child: nothing but the wait and the unlink
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)
        os.setsid()                 # out of the terminal's job: Ctrl-C belongs to gdb
        low = 0
        for w in sorted(waits):     # close all but the pidfds: stdout above all
            os.closerange(low, w)
            low = w + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        poll = select.poll()
        for w in waits:
            poll.register(w, select.POLLIN)
        left = set(waits)
        while left:
            for w, _ in poll.poll():
                poll.unregister(w)
                left.discard(w)
        os.unlink(path)
    finally:
        os._exit(0)
