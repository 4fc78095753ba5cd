"""`ps --tree`: the task tree drawn with box characters, threads under their leader."""
from __future__ import annotations

from ..mem import esc_text


def tree_lines(rows: list[dict]) -> list[str]:
    """Rows of views.ps -> lines; a task whose parent is not in the image is a root."""
    pids = {r["pid"] for r in rows}
    kids: dict[int | None, list[dict]] = {}
    for r in rows:
        if r["thread"]:
            parent = r["tgid"] if r["tgid"] in pids else None
        else:
            parent = r["ppid"] if r["ppid"] in pids and r["ppid"] != r["pid"] else None
        kids.setdefault(parent, []).append(r)
    lines: list[str] = []
    seen: set[int] = set()

    def walk(r: dict, lead: str, branch: str, last: bool) -> None:
        if r["pid"] in seen:                # a loop in a broken tree: drawn once
            return
        seen.add(r["pid"])
        what = " [thread]" if r["thread"] else ""
        lines.append(f"{lead}{branch}{r['pid']} {esc_text(r['comm'] or '?')}{what} "
                     f"({r['state']})")
        below = kids.get(r["pid"], [])
        # threads first, then child processes, each by pid
        below = sorted(below, key=lambda k: (not k["thread"], k["pid"]))
        inner = lead + ("" if not branch else "   " if last else "│  ")
        for i, k in enumerate(below):
            end = i == len(below) - 1
            walk(k, inner, "└─ " if end else "├─ ", end)

    for r in sorted(kids.get(None, []), key=lambda k: k["pid"]):
        walk(r, "", "", True)
    for r in rows:                          # whatever a cycle kept from the roots
        if r["pid"] not in seen:
            walk(r, "", "", True)
    return lines
