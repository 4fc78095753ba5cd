"""imgtools extension records (formats/ext.py; docs/format-choices.md, "Extension records"):
the header flag that allows them, where annotations go, the object records that define FILE
objects, and what follows them (a memfd's name, a deleted file's path, inotify watches, the
EXT_EXTENT runs of file contents)."""
from __future__ import annotations

from formats import ext

from ._pass import ERROR, WARNING, Expect, Pass
from .objrefs import IMPLICIT, NEG_NONE, REQ

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "ext.flag": (ERROR, "extension record without the header flag", "An image carries "
                 "imgtools extension records (types 8000-8999) only when HEADER.uflags has "
                 "IMGTOOLS_UFLAG_EXT (bit 32); `dump --strict` writes neither."),
    "ext.unknown": (WARNING, "unknown extension record", "A record type in the extension "
                    "range 8000-8999 that this imgtools does not know (a newer one wrote "
                    "it); it is skipped by its length. Right after OBJREF(FILE) it is taken "
                    "for the object record of a file of a kind this imgtools cannot show."),
    "ext.place": (ERROR, "extension record out of place", "EXT_CLOCKS follows HEADER_ARCH; "
                  "EXT_RSEQ belongs to a task section; EXT_FILE_STAT follows the FILE_NAME of "
                  "a generic FILE; EXT_INOTIFY_WATCH and EXT_EXTENT belong to the object "
                  "before them."),
    "ext.layout": (ERROR, "extension object incomplete", "EXT_FILE_MEMFD is followed by its "
                   "STRING name, EXT_FILE_GHOST by its FILE_NAME, EXT_FILE_INOTIFY by "
                   "nr_watches x (EXT_INOTIFY_WATCH FILE_NAME); the first file naming a "
                   "memfd or deleted inode carries its contents: EXT_EXTENTs in increasing "
                   "offsets within size, ended by one of no data at offset = size."),
}

EXPECT = {
    "memfd_name": Expect(("string",), "ext.layout", "the STRING name of an EXT_FILE_MEMFD"),
    "watch": Expect(("ext_inotify_watch",), "ext.layout", "an EXT_INOTIFY_WATCH its "
                    "EXT_FILE_INOTIFY announced"),
    "extents": Expect(("ext_extent",), "ext.layout", "the EXT_EXTENTs of a file's contents"),
}

# what an object record refers to, besides what FILE common does
REFS = [("f_credref", "cred", NEG_NONE), ("f_secref", ("security", "security_ptr"),
                                           NEG_NONE)]


class Extensions(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.ext_known = self.abi.has("ext_clocks")
        uflags = (reader.header or {}).get("uflags", 0) or 0
        self.ext_flag = bool(uflags & ext.UFLAG_EXT)
        self.generic_named = False      # the FILE_NAME before was a generic file's

    def ext_record(self, name: str) -> None:
        if not self.ext_flag:
            self.add("ext.flag", f"{name.upper()} in an image whose HEADER.uflags lacks "
                     f"IMGTOOLS_UFLAG_EXT")
        after = ext.AFTER.get(name)
        if after is not None and self.last_name not in after:
            self.add("ext.place", f"{name.upper()} after {self.last_name.upper() or '-'}, "
                     f"not after {' or '.join(a.upper() for a in after)}")

    def unknown_ext(self, rec) -> None:
        """An extension record of a newer imgtools right after OBJREF(FILE) is an object
        record (only those follow an OBJREF): it defines that file, whatever it holds."""
        if self.last_name == "objref" and self.pending and self.pending[-1][0] == "file":
            self.bind(self.name, "file")

    # -- annotations (where they go: ext.AFTER) ----------------------------------------
    def on_ext_clocks(self, rec, v, matched):
        if self.in_tasks:
            self.add("ext.place", "EXT_CLOCKS after the first task")

    def on_ext_rseq(self, rec, v, matched):
        if self.task is None:
            self.add("ext.place", "EXT_RSEQ outside a task section")

    def on_ext_file_stat(self, rec, v, matched):
        if self.last_name == "file_name" and not self.generic_named:
            self.add("ext.place", "EXT_FILE_STAT after the FILE_NAME of a file that is not "
                     "a generic FILE")

    # -- object records --------------------------------------------------------------
    def ext_object(self, name: str, rec, v):
        ref = self.object_record(name, rec, v)
        for field, want, flags in REFS:
            self.ref(want, v[field], field, flags, ref)
        if v.f_type != self.abi.file_types["ignore"]:
            self.add("ext.layout", f"{name.upper()}.f_type is {v.f_type}, not FILE_IGNORE")
        return ref

    def on_ext_file_signalfd(self, rec, v, matched):
        self.ext_object("ext_file_signalfd", rec, v)

    def on_ext_file_timerfd(self, rec, v, matched):
        self.ext_object("ext_file_timerfd", rec, v)

    def on_ext_file_inotify(self, rec, v, matched):
        self.ext_object("ext_file_inotify", rec, v)
        if v.nr_watches:
            self.expect.insert(0, ("watch", min(v.nr_watches, 1 << 20), rec.offset))

    def on_ext_inotify_watch(self, rec, v, matched):
        if matched is None:
            self.add("ext.place", "EXT_INOTIFY_WATCH not announced by an EXT_FILE_INOTIFY")
        follow = [("file_name", "watch", rec.offset)]
        if matched is not None and matched[1] > 1:
            follow.append(("watch", matched[1] - 1, matched[2]))
        self.expect[:0] = follow

    def contents(self, name: str, rec, v, ref, first: list) -> None:
        """A memfd or deleted file: its inode; its contents come with the first use."""
        ino = v.ino_objref
        new = ino > 0 and ino not in self.objs
        if self.ref("inode", ino, "ino_objref", REQ | IMPLICIT, ref) is None:
            return
        if not self.inode_used_as(ino, name, f"the inode of {name.upper()}"):
            return
        self.expect[:0] = first
        if new:
            self.expect.insert(len(first), ("extents", [v.size, 0], rec.offset))

    def on_ext_file_memfd(self, rec, v, matched):
        ref = self.ext_object("ext_file_memfd", rec, v)
        self.contents("ext_file_memfd", rec, v, ref, [("memfd_name", None, rec.offset)])

    def on_ext_file_ghost(self, rec, v, matched):
        ref = self.ext_object("ext_file_ghost", rec, v)
        self.contents("ext_file_ghost", rec, v, ref, [("file_name", "ghost", rec.offset)])

    def on_ext_extent(self, rec, v, matched):
        if matched is None:
            self.add("ext.place", "EXT_EXTENT outside the contents of a memfd or deleted file")
            return
        run = matched[1]            # [size, lowest offset the next extent may have]
        size, low = run
        n = rec.size - 8
        if v.offset < low:
            self.add("ext.layout", f"EXT_EXTENT at offset {v.offset} overlaps or precedes "
                     f"the one before (next free offset {low})")
        if n == 0:
            if v.offset != size:
                self.add("ext.layout", f"the run of EXT_EXTENTs ends at offset {v.offset}, "
                         f"not at the file size {size}")
            return
        if v.offset + n > size:
            self.add("ext.layout", f"EXT_EXTENT of {n} bytes at offset {v.offset} ends past "
                     f"the file size {size}")
        run[1] = v.offset + n
        self.expect.insert(0, ("extents", run, matched[2]))
