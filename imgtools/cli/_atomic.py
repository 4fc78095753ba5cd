"""Where ``-o PATH`` writes, decided by what is at the path (issue 10, item 1).

- nothing, or a regular file: a new file (0600: images, cores and their JSON hold process
  memory) written beside it and renamed over it on success, so a failed run leaves the
  old file as it was. The new file has no name until then (O_TMPFILE, linked in at the
  end), so even a SIGKILLed run leaves nothing behind; where the filesystem has no
  O_TMPFILE, a named ``.imgtools-*.tmp`` is used and removed on failure.
- a character device, a FIFO or a socket: written directly, as the user asked (a FIFO's
  reader gets every byte; /dev/null stays /dev/null). What failed is then half-written.
- a symbolic link: followed; what is at its target decides.
- a directory, a block device, or the command's own input: refused (exit 2).
- ``-`` or no path: stdout.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from contextlib import contextmanager

from ..errors import UsageError

OUTPUT_MODE = 0o600
_TMP_PREFIX = ".imgtools-"


class Target:
    """The resolved output path and how it is written."""

    def __init__(self, path: str, inputs: tuple[str | None, ...] = ()):
        self.given = path
        self.path = os.path.realpath(path)          # a symlink's target (or dangling target)
        try:
            st = os.stat(path)                      # (/dev/stdout: whatever fd 1 is)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        self.mode = st.st_mode if st is not None else None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path} is a directory: name the file to write")
        if st is not None and stat.S_ISBLK(st.st_mode):
            raise UsageError(f"{path} is a block device: imgtools does not write to one")
        if st is not None:
            for i in inputs:
                if i not in (None, "-") and _same_file(i, st):
                    raise UsageError(f"-o {path} names the input {i}: write to another file")

    @property
    def direct(self) -> bool:
        """Written in place (a device, FIFO or socket), not replaced."""
        return self.mode is not None and not stat.S_ISREG(self.mode)


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


@contextmanager
def _replacing(target: Target, mode: str):
    """A file that becomes ``target.path`` when the block ends without an exception."""
    folder = os.path.dirname(target.path)
    fd, named = _new_file(folder, target.given)
    try:
        with os.fdopen(fd, mode, closefd=False,
                       **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
        if named is None:
            named = _link(fd, folder, target.given)
        os.replace(named, target.path)
        named = None
    finally:
        os.close(fd)
        if named is not None:
            try:
                os.unlink(named)
            except FileNotFoundError:
                pass


def _new_file(folder: str, given: str) -> tuple[int, str | None]:
    """(fd, None) for an unnamed file in ``folder``, or (fd, name) where the filesystem
    cannot make one."""
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        try:
            return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, OUTPUT_MODE), None
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise UsageError(f"cannot write {given}: {e.strerror}") from None
    import tempfile
    try:
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=folder)
    except OSError as e:
        raise UsageError(f"cannot write {given}: {e.strerror}") from None
    os.fchmod(fd, OUTPUT_MODE)
    return fd, name


def _link(fd: int, folder: str, given: str) -> str:
    """Give the unnamed file a temporary name in ``folder``: linkat(AT_SYMLINK_FOLLOW) of
    its /proc/self/fd entry (a dir_fd makes os.link use linkat; without one it calls
    link(2), which does not follow the /proc link)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for n in range(100):
            name = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{n}.tmp")
            try:
                os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
                return name
            except FileExistsError:
                continue
            except OSError as e:
                raise UsageError(f"cannot write {given}: {e.strerror}") from None
    finally:
        os.close(proc)
    raise UsageError(f"cannot write {given}: no free temporary name in {folder}")


@contextmanager
def _in_place(target: Target, mode: str):
    """Write a device, FIFO or socket directly."""
    if stat.S_ISSOCK(target.mode):
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(target.path)
        except OSError as e:
            s.close()
            raise UsageError(f"cannot write {target.given}: {e.strerror}") from None
        f = s.makefile("wb")
        close = s.close
    else:
        try:
            fd = os.open(target.given, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise UsageError(f"cannot write {target.given}: {e.strerror}") from None
        f = os.fdopen(fd, "wb")
        close = f.close
    try:
        if "b" not in mode:
            import io
            with io.TextIOWrapper(f, encoding="utf-8") as text:
                yield text
        else:
            yield f
            f.flush()
    finally:
        try:
            f.close()
        finally:
            close()


def opened(target: Target, mode: str):
    return _in_place(target, mode) if target.direct else _replacing(target, mode)


@contextmanager
def binary_output(path: str | None, allow_tty: bool = False, inputs: tuple = ()):
    """A binary file object for ``-o path`` (see the module's rules), or stdout.
    ``inputs`` are the command's input paths, which it must not overwrite."""
    if path in (None, "-"):
        if sys.stdout.isatty() and not allow_tty:
            raise UsageError("refusing to write binary data to a terminal: use -o FILE or a pipe")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with opened(Target(path, inputs), "wb") as f:
        yield f


@contextmanager
def text_output(path: str | None, inputs: tuple = ()):
    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    with opened(Target(path, inputs), "w") as f:
        yield f
