"""`diff` prints what it printed before it was made to read both images in bounded memory
(issue 11): ``golden/diff_outputs.json`` holds the exit code and the SHA-256 of stdout of
diff (text, --pages, --json, --json --pages) on pairs of samples that differ in many
ways (other programs, other versions of one dump, an image and itself), recorded from
the whole-model diff before the rework; every pair as a small image's lean model holds
its tasks, files and fds (as objects) and as a large one's does (in columns)."""
import hashlib
import json
from itertools import product
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("v17", "v19-rc2", "v21", "v23")
NAMES = ("pipes", "signals", "single", "threads")
# each sample against itself and each other program of its version; each program of one
# version against it in the others
PAIRS = sorted({(f"samples/{v}/{a}.img", f"samples/{v}/{b}.img")
                for v in VERSIONS for a, b in product(NAMES, NAMES)} |
               {(f"samples/{v}/{n}.img", f"samples/{w}/{n}.img")
                for v, w in product(VERSIONS, VERSIONS) if v != w for n in NAMES})
FORMS = ((), ("--pages",), ("--json",), ("--json", "--pages"))
GOLDEN = ROOT / "tests" / "golden" / "diff_outputs.json"
GOLDEN_OUTPUTS = json.loads(GOLDEN.read_text())


pytestmark = pytest.mark.usefixtures("lean_tables")   # (conftest: every pair twice)


def test_every_pair_and_form_is_recorded():
    assert set(GOLDEN_OUTPUTS) == {" ".join(("diff", *f, a, b)) for a, b in PAIRS
                                   for f in FORMS}


@pytest.mark.parametrize("a", sorted({a for a, _ in PAIRS}))
def test_diff_prints_what_the_whole_model_diff_printed(a, monkeypatch):
    from imgtools.cli import app
    monkeypatch.chdir(ROOT)             # the keys name the samples
    runner = CliRunner()
    for key, (code, digest) in GOLDEN_OUTPUTS.items():
        if key.split(" ")[-2] != a:
            continue
        r = runner.invoke(app, key.split(" "))
        assert (r.exit_code, hashlib.sha256(r.stdout_bytes).hexdigest()) == (code, digest), \
            (key, r.output[-2000:])


def test_shared_values_are_held_once_and_only_equal_ones_are_shared():
    """One value for equal tasks' facts; never for values that are equal in Python but
    print differently (True and 1, 1 and 1.0, a list and a tuple)."""
    from imgtools.diff import _Interned
    shared = _Interned()
    a = shared.add({"x": 1, "y": [1, 2]})
    assert shared.add({"x": 1, "y": [1, 2]}) == a
    others = [shared.add(v) for v in ({"x": True, "y": [1, 2]}, {"x": 1.0, "y": [1, 2]},
                                      {"x": 1, "y": (1, 2)}, {"y": [1, 2], "x": 1})]
    assert len({a, *others}) == 5
    assert [shared.values[i] for i in others][0] == {"x": True, "y": [1, 2]}


def test_objref_values_near_and_far():
    from imgtools.diff import _ByRef
    by = _ByRef()
    for ref, n in ((1000, 1), (999, 2), (1 << 40, 3), (1002, 4), (70000, 5), (1002, 6)):
        by.set(ref, n)
    assert [by.get(r) for r in (1000, 999, 1 << 40, 1002, 70000, 1001, 5, None)] == \
        [1, 2, 3, 6, 5, None, None, None]


def _image_with_fds(tmp_path, name: str, tables: dict, pids: dict) -> str:
    """An image of processes (pid -> the key of its fd table) holding these fd tables."""
    from conftest import tree_spec
    from imgtools.compose import FdSpec, TaskSpec, compose_bytes
    spec = tree_spec("v23")
    spec.tasks = [TaskSpec(pid, 1, comm=f"p{pid}", mm="mm2", files=key)
                  for pid, key in pids.items()]
    spec.files = {key: [FdSpec(fd, path=path, **opts) for fd, path, opts in fds]
                  for key, fds in tables.items()}
    out = tmp_path / name
    out.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    return str(out)


def test_diff_of_fds_opened_closed_moved_changed_in_any_order(tmp_path):
    """The second image's descriptors are compared with the first's as it is read (only
    those that differ held): its tables in any order, a number twice (the last counts, as
    in ``files``), one table two processes share against two tables of the first."""
    from imgtools.cli import app
    a = _image_with_fds(tmp_path, "a.img", {
        "one": [(0, "/dev/null", {}), (3, "/a", {}), (5, "/b", {}), (6, "/gone", {})],
        "two": [(0, "/dev/null", {}), (4, "/c", {"pos": 7})]},
        {200: "one", 300: "two", 400: "two"})
    b = _image_with_fds(tmp_path, "b.img", {
        "one": [(5, "/b", {"pos": 10}), (0, "/dev/null", {}), (9, "/new", {}),
                (3, "/x", {"file": "x"}), (3, "/a", {"flags": 1, "file": "a"})],
        "two": [(0, "/dev/null", {}), (4, "/c", {"pos": 7})]},
        {200: "one", 300: "one", 400: "two", 500: "two"})
    r = CliRunner().invoke(app, ["diff", a, b])
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines() == [
        "task 500 appeared (p500)",
        "task 200 (p200):",
        "  fd 9 opened: generic /new",
        "  fd 6 closed: generic /gone",
        "  fd 5 offset 0 -> 10",
        "  fd 3 changed: flags 0 -> 1",
        "task 300 (p300):",             # the table of 200 now: against its own of before
        "  fd 3 opened: generic /a",
        "  fd 5 opened: generic /b",
        "  fd 9 opened: generic /new",
        "  fd 4 closed: generic /c",
    ]
    r = CliRunner().invoke(app, ["diff", "--json", a, b])
    fds = {t["pid"]: t["fds"] for t in json.loads(r.stdout)["tasks"]}
    assert fds[200] == {
        "opened": [{"fd": 9, "type": "generic", "path": "/new", "pos": 0}],
        "closed": [{"fd": 6, "type": "generic", "path": "/gone", "pos": 0}],
        "moved": [{"fd": 5, "pos": [0, 10], "path": "/b"}],
        "changed": [{"fd": 3, "flags": [0, 1]}]}
    # and the other way round: what was opened is closed
    r = CliRunner().invoke(app, ["diff", b, a])
    assert "  fd 9 closed: generic /new" in r.stdout.splitlines()
    assert CliRunner().invoke(app, ["diff", b, b]).stdout == ""
