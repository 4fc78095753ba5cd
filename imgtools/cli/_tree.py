"""`ps --tree`: the task tree drawn with box characters, threads under their leader."""
from __future__ import annotations

from typing import Iterator

from ..mem import esc_text


def tree_lines(rows: list[dict]) -> Iterator[str]:
    """Rows of views.ps -> lines, as they are drawn; a task whose parent is not in the
    image is a root."""
    pids = {r["pid"] for r in rows}
    kids: dict[int | None, list[dict]] = {}
    for r in rows:
        if r["thread"]:
            parent = r["tgid"] if r["tgid"] in pids else None
        else:
            parent = r["ppid"] if r["ppid"] in pids and r["ppid"] != r["pid"] else None
        kids.setdefault(parent, []).append(r)
    seen: set[int] = set()

    def walk(root: dict) -> Iterator[str]:
        # depth first with a stack of its own: a chain of 10,000 processes is no deeper
        # for this than one process (Python's recursion limit is 1,000)
        todo = [(root, "", "", True)]
        while todo:
            r, lead, branch, last = todo.pop()
            if r["pid"] in seen:            # a loop in a broken tree: drawn once
                continue
            seen.add(r["pid"])
            what = " [thread]" if r["thread"] else ""
            yield f"{lead}{branch}{r['pid']} {esc_text(r['comm'] or '?')}{what} ({r['state']})"
            # threads first, then child processes, each by pid
            below = sorted(kids.get(r["pid"], []), key=lambda k: (not k["thread"], k["pid"]))
            inner = lead + ("" if not branch else "   " if last else "│  ")
            for i in range(len(below) - 1, -1, -1):     # (popped in order)
                end = i == len(below) - 1
                todo.append((below[i], inner, "└─ " if end else "├─ ", end))

    for r in sorted(kids.get(None, []), key=lambda k: k["pid"]):
        yield from walk(r)
    for r in rows:                          # whatever a cycle kept from the roots
        if r["pid"] not in seen:
            yield from walk(r)
