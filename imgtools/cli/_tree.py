"""`ps --tree`: the task tree drawn with box characters, threads under their leader."""
from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterable, Iterator

from ..mem import esc_text


def tree_lines(rows: Iterable[dict]) -> Iterator[str]:
    """Rows of views.ps -> lines, as they are drawn; a task whose parent is not in the
    image is a root. Of each row only its numbers are held, in arrays, and its label in
    one buffer (100,000 rows held as dicts took 110 MB)."""
    pid, ppid, tgid = array("q"), array("q"), array("q")
    thread = bytearray()
    labels, label_end = bytearray(), array("q")
    for r in rows:
        pid.append(r["pid"])
        ppid.append(r["ppid"])
        tgid.append(r["tgid"])
        thread.append(bool(r["thread"]))
        what = " [thread]" if r["thread"] else ""
        labels += f"{r['pid']} {esc_text(r['comm'] or '?')}{what} ({r['state']})".encode(
            "utf-8", "surrogateescape")
        label_end.append(len(labels))
    pids = array("q", sorted(set(pid)))     # the pids there are, each once

    def known(p: int) -> bool:
        i = bisect_left(pids, p)
        return i < len(pids) and pids[i] == p

    # each task's parent (a pid, where it has one), and the tasks in the order they are
    # drawn under their parent: threads first, then child processes, each by pid
    parent = array("q", (tgid[i] if thread[i] else ppid[i] for i in range(len(pid))))
    rooted = bytearray(not known(parent[i]) or (not thread[i] and parent[i] == pid[i])
                       for i in range(len(pid)))
    below = array("q", sorted((i for i in range(len(pid)) if not rooted[i]),
                              key=lambda i: (parent[i], not thread[i], pid[i])))
    below_parent = array("q", (parent[i] for i in below))
    seen = bytearray(len(pids))             # by the pid's place in pids: drawn once

    def label(i: int) -> str:
        return labels[label_end[i - 1] if i else 0:label_end[i]].decode(
            "utf-8", "surrogateescape")

    def walk(root: int) -> Iterator[str]:
        # depth first with a stack of its own: a chain of 10,000 processes is no deeper
        # for this than one process (Python's recursion limit is 1,000)
        todo = [(root, "", "", True)]
        while todo:
            i, lead, branch, last = todo.pop()
            at = bisect_left(pids, pid[i])
            if seen[at]:                    # a loop in a broken tree: drawn once
                continue
            seen[at] = 1
            yield f"{lead}{branch}{label(i)}"
            first = bisect_left(below_parent, pid[i])
            end = bisect_left(below_parent, pid[i] + 1, first)
            inner = lead + ("" if not branch else "   " if last else "│  ")
            for k in range(end - 1, first - 1, -1):     # (popped in order)
                todo.append((below[k], inner, "└─ " if k == end - 1 else "├─ ",
                             k == end - 1))

    for i in sorted((i for i in range(len(pid)) if rooted[i]), key=pid.__getitem__):
        yield from walk(i)
    for i in range(len(pid)):               # whatever a cycle kept from the roots
        if not seen[bisect_left(pids, pid[i])]:
            yield from walk(i)
