"""Pipes: the files that name a pipe inode (pipe and FIFO ends), the buffered data the first
end carries (PIPE_BUF, or v17's FILE_PIPE + unframed bytes), the directions of the ends; and
the inode objrefs pipes, FIFOs and shared memory must not mix."""
from __future__ import annotations

from ._pass import ERROR, MAX_OBJECTS, NOTE, WARNING, Expect, Pass
from .objrefs import IMPLICIT, REQ, with_article

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "pipe.data-missing": (ERROR, "first pipe end without its data", "The first file that names "
                          "a pipe inode carries the pipe's buffered data (PIPE_BUF, v17 "
                          "FILE_PIPE) right after its FILE record."),
    "pipe.data-duplicate": (ERROR, "pipe data carried twice", "Only the first file naming a "
                            "pipe inode carries the data; a later end does not."),
    "pipe.data-stray": (ERROR, "pipe data without a pipe file", "PIPE_BUF / FILE_PIPE follows "
                        "only a pipe or FIFO FILE record."),
    "pipe.single-end": (NOTE, "pipe with one end in the image", "Only one file refers to this "
                        "pipe inode (the other end was closed or is held outside the image)."),
    "pipe.ends": (WARNING, "pipe ends all of one direction", "Several files share the pipe "
                  "inode but none is a read end, or none a write end."),
    "pipe.mixed": (ERROR, "inode objref used for different things", "One inode objref is named "
                   "as a pipe, a FIFO and/or a shared-memory inode."),
}

EXPECT = {
    "pipe_data": Expect(("pipe_buf", "file_pipe"), "pipe.data-missing",
                        "the pipe data after the first end's FILE"),
    "pipe_raw": Expect(("pipe_data",), None, ""),      # v17: the bytes after FILE_PIPE
}


class Pipes(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.inode_use: dict[int, str] = {}
        self.pipe_ends: dict[int, list] = {}        # inode -> [n, dirs set, offset, fifo]
        self.after_pipe_file = None                 # (inode ref, first use)

    def gate_pipe_data(self, name: str) -> None:
        # pipe data belongs only right after a pipe file (and its name)
        if name not in ("file_name", "pipe_buf", "file_pipe", "pipe_data"):
            self.after_pipe_file = None

    def inode_used_as(self, ino: int, use: str, what: str) -> bool:
        """An inode objref is a pipe's, a FIFO's or shared memory's, never two of them."""
        first = self.inode_use.setdefault(ino, use)
        if first != use:
            self.add("pipe.mixed", f"inode objref {ino} is used as {with_article(first)} and "
                     f"as {what}")
            return False
        return True

    def pipe_end(self, rec, v, ftype: str, ino: int, ref) -> None:
        """A pipe or FIFO FILE, ``ref``, naming pipe inode ``ino``."""
        first = ino > 0 and ino not in self.objs
        if self.ref("inode", ino, "pipe_objref", REQ | IMPLICIT, ref) is None:
            return
        if not self.inode_used_as(ino, ftype, with_article(ftype)):
            return
        ends = self.pipe_ends.get(ino)
        if ends is None and len(self.pipe_ends) < MAX_OBJECTS:
            ends = self.pipe_ends[ino] = [0, set(), rec.offset, ftype == "fifo"]
        if ends is not None:
            ends[0] += 1
            ends[1].add(v.f_flags & 3)
        self.after_pipe_file = (ino, first)
        if first:
            self.expect.append(("pipe_data", ino, rec.offset))

    def pipe_data(self, matched) -> None:
        if matched is not None:
            return
        if self.after_pipe_file is not None and not self.after_pipe_file[1]:
            self.add("pipe.data-duplicate", f"pipe inode {self.after_pipe_file[0]} already "
                     f"got its data from the first end")
        else:
            self.add("pipe.data-stray", f"{self.name.upper()} not right after a pipe or FIFO "
                     f"FILE")
        self.after_pipe_file = None

    def on_pipe_buf(self, rec, v, matched):
        self.pipe_data(matched)

    def on_file_pipe(self, rec, v, matched):
        self.pipe_data(matched)
        if v.pipe_len > 0:
            self.expect.insert(0, ("pipe_raw", v.pipe_len, rec.offset))

    def pipe_ends_at_end(self) -> None:
        for ino, (n, dirs, off, fifo) in self.pipe_ends.items():
            if fifo:
                continue
            if n == 1:
                self.add("pipe.single-end", f"pipe inode {ino}: one end in the image",
                         offset=off, record="FILE", task=None)
            elif 2 not in dirs and not (0 in dirs and 1 in dirs):
                which = "read" if 0 not in dirs else "write"
                self.add("pipe.ends", f"pipe inode {ino}: {n} ends, none is a {which} end",
                         offset=off, record="FILE", task=None)
