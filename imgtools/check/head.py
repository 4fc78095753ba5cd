"""The image head: HEADER (rev, arch, ckpt_const, uflags), its uts BUFFERs, HEADER_ARCH,
CONTAINER and LSM_INFO, and the order of the head's records before the first TASK.  The pids
arrays that end the head belong to the task tree (tree.py)."""
from __future__ import annotations

import formats
from formats import ext

from ._pass import ERROR, NOTE, WARNING, Expect, Pass

# code -> (severity, title, explanation)
CODES: dict[str, tuple[str, str, str]] = {
    "header.rev": (ERROR, "header rev does not match the version", "HEADER.rev names the ABI "
                   "revision (v17=1 … v19=5, v21/v23-rc1/v23=6); the image is checked as a "
                   "version with another rev (--format)."),
    "header.rev-unknown": (ERROR, "unknown header rev", "HEADER.rev is none of the revisions "
                           "imgtools knows, so the version cannot be detected: give --format "
                           "to check the image as a given version."),
    "header.arch": (ERROR, "arch id not of this version", "HEADER.arch_id names the "
                    "architecture in the numbering of the image's version (v17..v19-rc2: "
                    "X86_32=1, X86_64=5; v19 on: X86_32=1, X86_64=2)."),
    "header.arch-anachronism": (NOTE, "architecture no kernel of this version wrote",
                                "x86_64 checkpoints exist only from v19-rc2 (Dec 2009); "
                                "older x86_64 layouts are imgtools' reconstruction."),
    "header.const": (WARNING, "unexpected ckpt_const value", "A HEADER.constants field differs "
                     "from what an x86 kernel of this version writes (or v17's padding is not "
                     "zero). Restart validates each constant against the running kernel."),
    "header.const-mismatch": (ERROR, "ckpt_const contradicts the records", "A constant in the "
                              "header disagrees with the records it sizes (uts strings, task "
                              "comm, signal count)."),
    "header.uflags": (WARNING, "unknown checkpoint flags", "HEADER.uflags has bits this version "
                      "does not define (CHECKPOINT_SUBTREE 0x1, CHECKPOINT_NETNS 0x2 from v21)."),
    "head.sequence": (ERROR, "image head out of sequence", "The head is HEADER, 3 uts BUFFERs, "
                      "HEADER_ARCH, [CONTAINER [lsm BUFFER, LSM_INFO]], [PIDS BUFFER (v23)], "
                      "TREE BUFFER [vpids BUFFER], then the tasks."),
}

EXPECT = {"uts": Expect(("buffer",), "head.sequence", "a uts BUFFER after HEADER")}

HEAD_ORDER = ("header", "header_arch", "container", "lsm_info", "pids", "tree")
# x86 kernel values of ckpt_const.
CONSTS = {"task_comm_len": 16, "signal_nsig": 64, "uts_sysname_len": 65,
          "uts_nodename_len": 65, "uts_release_len": 65, "uts_version_len": 65,
          "uts_machine_len": 65, "uts_domainname_len": 65, "rlimit_nlimits": 16,
          "n_tty_buf_size": 4096, "tty_termios_ncc": 8, "tty_termios_nccs": 19}


def revisions() -> dict[int, list[str]]:
    """HEADER.rev -> the versions that write it."""
    out: dict[int, list[str]] = {}
    for v in formats.VERSIONS:
        out.setdefault(formats.abi(v).rev, []).append(v)
    return out


def layout_arch(rev: int, arch_id: int, version: str | None, arch: str | None,
                sink) -> str | None:
    """The architecture to read the image as; None when no version was given and ``rev``
    names none (a finding in ``sink``)."""
    if version is None and rev not in revisions():
        sink.add("header.rev-unknown", 24, "HEADER", None, f"rev {rev} is no known revision "
                 f"({', '.join(f'{r}: {v}' for r, v in revisions().items())}); give --format "
                 f"to check it as one")
        return None
    if arch is None:
        ids = formats.abi(version or revisions()[rev][0]).arch_ids
        arch = next((a for a, n in ids.items() if n == arch_id), None)
        if arch is None:        # reported by the header check; guess the layout
            arch = next((a for v in formats.VERSIONS for a, n in formats.abi(v).arch_ids.items()
                         if n == arch_id), "x86_64")
    return arch


class Head(Pass):
    def __init__(self, reader, sink):
        super().__init__(reader, sink)
        self.head_idx = 0
        self.head_seen: set[str] = {"header"}
        self.in_tasks = False
        self.consts = {}
        self.xstate_size = None

    def head_step(self, name: str) -> None:
        if self.in_tasks:
            self.add("head.sequence", f"{name.upper()} after the first TASK")
            return
        idx = HEAD_ORDER.index(name)
        if idx <= self.head_idx:
            self.add("head.sequence", f"{name.upper()} repeated or out of order in the head")
            return
        self.head_idx = idx
        self.head_seen.add(name)

    def head_done(self, where: str) -> None:
        if self.in_tasks:
            return
        self.in_tasks = True
        need = ["header_arch", "tree"]
        if self.traits["container"]:
            need.append("container")
        if self.traits["pids_model"] == "pids":
            need.append("pids")
        missing = [n.upper() for n in need if n not in self.head_seen]
        if missing:
            self.add("head.sequence", f"the head lacks {', '.join(missing)} before {where}")

    def on_header(self, rec, v, matched):
        if self.nrecords > 1:
            self.add("head.sequence", "a second HEADER record")
            return
        h = self.r.header
        abi = self.abi
        if self.r.rev != abi.rev:
            self.add("header.rev", f"rev {self.r.rev} but checked as {abi.name} (rev {abi.rev})",
                     offset=rec.offset + 24)
        if h.arch_id != abi.arch_id:
            names = {n: a for a, n in abi.arch_ids.items()}
            self.add("header.arch", f"arch_id {h.arch_id} "
                     f"({names.get(h.arch_id, 'unknown in ' + abi.name)}) but checked as "
                     f"{abi.arch} (arch_id {abi.arch_id} in {abi.name})", offset=rec.offset + 16)
        if abi.arch == "x86_64" and abi.name in ("v17", "v18", "v19-rc1"):
            self.add("header.arch-anachronism", f"x86_64 {abi.name} image: x86_64 checkpoints "
                     f"exist only from v19-rc2", offset=rec.offset + 16)
        c = {k: x for k, x in h.constants.items() if not k.startswith("_")}
        self.consts = c
        bad = [f"{k}={c[k]} (expected {want})" for k, want in CONSTS.items()
               if k in c and c[k] != want]
        if any(h.constants.get("_pad", b"")):
            bad.append("non-zero padding after uts_domainname_len")
        aux = c.get("at_vector_size", c.get("mm_saved_auxv_len"))
        if aux is not None and (aux == 0 or aux % (2 if "at_vector_size" in c
                                                   else 2 * abi.auxv_word)):
            bad.append(f"{'at_vector_size' if 'at_vector_size' in c else 'mm_saved_auxv_len'}"
                       f"={aux} is not a whole number of auxv pairs")
        if bad:
            self.add("header.const", "; ".join(bad), offset=rec.offset + 32)
        known, m = 0, abi.module
        while m is not None:
            known |= getattr(m, "CHECKPOINT_SUBTREE", 0) | getattr(m, "CHECKPOINT_NETNS", 0)
            m = m.BASE
        if self.ext_known:
            known |= ext.UFLAG_EXT
        if h.uflags & ~known:
            self.add("header.uflags", f"uflags {h.uflags:#x} has unknown bits "
                     f"{h.uflags & ~known:#x}", offset=rec.offset + 64)
        self.expect += [("uts", i, rec.offset) for i in range(3)]

    def buffer_uts(self, rec, i):
        key = ("uts_release_len", "uts_version_len", "uts_machine_len")[i]
        want = self.consts.get(key)
        if want and rec.size != want:
            self.add("header.const-mismatch", f"uts BUFFER {i + 1} holds {rec.size} bytes, "
                     f"{key} says {want}")

    def on_header_arch(self, rec, v, matched):
        self.head_step("header_arch")
        self.xstate_size = v.get("xstate_size")

    def on_container(self, rec, v, matched):
        self.head_step("container")

    def on_lsm_info(self, rec, v, matched):
        self.head_step("lsm_info")
