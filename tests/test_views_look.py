"""The views people expect: ps --tree, show --pid, several images per read command, -h,
shell completion (installed in bash and answering there)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tree_spec
from imgtools.compose import compose_bytes

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "v23" / "threads.img"


def cli(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "imgtools", *map(str, args)], cwd=ROOT,
                          capture_output=True, timeout=60, env=env, **kw)


def test_ps_tree(tmp_path):
    img = tmp_path / "tree.img"
    spec = tree_spec()
    spec.tasks[2].comm = "child\x1b[2J"            # image content never reaches the tty raw
    img.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    r = cli("ps", "--tree", img)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "100 parent (S)",
        "├─ 101 parent [thread] (S)",
        "├─ 102 child\\x1b[2J (S)",
        "└─ 103 zombie (Z)",
    ]


def test_ps_tree_of_a_chain_deeper_than_pythons_recursion_limit(tmp_path):
    """3,000 processes, each the parent of the next, and a second child of the root."""
    from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec
    n = 3000
    tasks = [TaskSpec(1000, 1, comm="root")] + [
        TaskSpec(1000 + i, 999 + i, comm=f"t{i}") for i in range(1, n)] + [
        TaskSpec(9000, 1000, comm="second")]
    spec = ImageSpec(tasks=tasks, mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000)])},
                     files={"files": [FdSpec(0, path="/dev/null")]})
    img = tmp_path / "chain.img"
    img.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    r = cli("ps", "--tree", img)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == n + 1
    assert lines[:3] == ["1000 root (S)", "├─ 1001 t1 (S)", "│  └─ 1002 t2 (S)"]
    assert lines[-2] == "│  " + "   " * (n - 3) + f"└─ {999 + n} t{n - 1} (S)"
    assert lines[-1] == "└─ 9000 second (S)"


def test_show_one_task():
    r = cli("show", "--json", "--pid", 14778, SAMPLE)
    d = json.loads(r.stdout)
    assert [x["pid"] for x in d["detail"]] == [14778]
    assert [x["pid"] for x in d["tasks"]] == [14778]
    assert {m["pid"] for m in d["maps"]} == {14778} and d["maps"]
    text = cli("show", "--pid", 14778, SAMPLE).stdout.decode()
    assert "task 14778" in text and "task 14777" not in text
    r = cli("show", "--pid", 1, SAMPLE)
    assert r.returncode == 2 and b"no task with pid 1" in r.stderr


def test_several_images(tmp_path):
    other = ROOT / "samples" / "v23" / "single.img"
    r = cli("info", SAMPLE, other)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert text.startswith(f"==> {SAMPLE} <==\n") and f"==> {other} <==\n" in text
    r = cli("ps", "--json", SAMPLE, other)
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert docs == [json.loads(cli("ps", "--json", p).stdout) for p in (SAMPLE, other)]
    # one bad image: the others are still shown, the exit code is the bad one's
    bad = tmp_path / "bad.img"
    bad.write_bytes(b"\x7fELF" + bytes(60))
    r = cli("maps", SAMPLE, bad, other)
    assert r.returncode == 3 and f"==> {other} <==" in r.stdout.decode()
    assert b"ELF" in r.stderr
    assert cli("info", "-", "-").returncode == 2


def test_dash_h_is_help():
    for args in (["-h"], ["info", "-h"], ["mem", "-h"]):
        r = cli(*args)
        assert r.returncode == 0 and b"Usage:" in r.stdout, args


def test_completion_installs_in_bash(tmp_path):
    # typer's switch for tests: the shell is the option's value, not guessed from the
    # process tree (whose shape depends on how the suite was started)
    fixed = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    r = cli("--install-completion", "bash",
            env={"HOME": str(tmp_path), "SHELL": "/bin/bash", **fixed})
    assert r.returncode == 0, r.stderr
    script = tmp_path / ".bash_completions" / "imgtools.sh"
    assert script.exists() and str(script) in (tmp_path / ".bashrc").read_text()
    # the installed function completes command names through the real CLI
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "imgtools").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imgtools "$@"\n')
    (bin_dir / "imgtools").chmod(0o755)
    words = subprocess.run(
        ["bash", "-c", f'source "{script}"; COMP_WORDS=(imgtools ma); COMP_CWORD=1; '
                       f'_imgtools_completion imgtools; echo "${{COMPREPLY[@]}}"'],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert words.stdout.split() == ["maps"], words.stderr
    assert b"complete" in cli("--show-completion", "bash", env=fixed).stdout


def test_utc_times_read_as_datetime_writes_them():
    """views._utc (no datetime at start-up) gives datetime's isoformat, None where
    datetime refuses the time (outside years 1-9999, beyond the platform's time_t)."""
    import datetime
    import random
    from imgtools.views import _utc

    def as_datetime_writes(t):
        if not t:
            return None
        try:
            return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    rng = random.Random(11)
    times = [0, 1, -1, 2**31, 2**63 - 1, -2**63, 253402300799, 253402300800,
             -62135596800, -62135596801, *(rng.randrange(-2**40, 2**40) for _ in range(5000)),
             *(rng.randrange(-2**64, 2**64) for _ in range(200))]
    assert [_utc(t) for t in times] == [as_datetime_writes(t) for t in times]


def _tree_as_drawn(rows):
    """ps --tree's drawing told plainly (dicts of lists; the command holds arrays)."""
    pids = {r["pid"] for r in rows}
    kids = {}
    for r in rows:
        up = r["tgid"] if r["thread"] else r["ppid"]
        if up not in pids or (not r["thread"] and up == r["pid"]):
            up = None
        kids.setdefault(up, []).append(r)
    seen, lines = set(), []

    def walk(r, lead, branch, last):
        if r["pid"] in seen:
            return
        seen.add(r["pid"])
        what = " [thread]" if r["thread"] else ""
        lines.append(f"{lead}{branch}{r['pid']} {r['comm'] or '?'}{what} ({r['state']})")
        below = sorted(kids.get(r["pid"], []), key=lambda k: (not k["thread"], k["pid"]))
        inner = lead + ("" if not branch else "   " if last else "│  ")
        for i, k in enumerate(below):
            walk(k, inner, "└─ " if i == len(below) - 1 else "├─ ", i == len(below) - 1)
    for r in sorted(kids.get(None, []), key=lambda k: k["pid"]):
        walk(r, "", "", True)
    for r in rows:
        walk(r, "", "", True)
    return lines


def test_ps_tree_draws_any_tree_as_told():
    """Random trees with repeated pids, loops, orphans, threads whose leader is missing
    and processes that are their own parent."""
    import random
    from imgtools.cli._tree import tree_lines
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randrange(1, 40)
        pool = list(range(1, rng.randrange(2, 2 * n + 3)))
        rows = []
        for _ in range(n):
            p, thread = rng.choice(pool), rng.random() < 0.3
            rows.append({"pid": p, "ppid": rng.choice(pool + [0]),
                         "tgid": rng.choice(pool) if thread else p, "thread": thread,
                         "comm": rng.choice(["a", "bb", None]), "state": "S"})
        assert list(tree_lines(iter(rows))) == _tree_as_drawn(rows), rows
