"""`diff` of two dumps of tests/progs/marks.c taken before and after it added one to a
counter, opened a file and mapped a region; of an image with itself; of an image and its
round trip through v18."""
from __future__ import annotations

import json

from test_mem import both, cli, marks  # noqa: F401 (the fixture)
from test_engine import pytestmark  # noqa: F401 (skip conditions)


def test_diff_reports_exactly_the_changes(marks):
    r = cli("diff", "--json", "--pages", marks.img, marks.after)
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    assert d["equal"] is False and d["appeared"] == [] and d["exited"] == []
    by_pid = {t["pid"]: t for t in d["tasks"]}
    main = by_pid[marks.pid]
    # the descriptor it opened, nothing else about descriptors
    assert main["fds"] == {"opened": [{"fd": marks.fd, "type": "generic",
                                       "path": "/etc/hostname", "pos": 0}]}
    # the region it mapped, and no other VMA changed
    assert main["vmas"] == {"added": [{"start": marks.region,
                                       "end": marks.region + 4 * 4096, "perms": "rw-p",
                                       "path": None}]}
    pages = main["pages"]
    assert [marks.region, marks.region + 4 * 4096] in pages["ranges"]["added"]
    counter_page = marks.addrs["counter"] & ~4095
    assert any(s <= counter_page < e for s, e in pages["ranges"]["changed"])
    assert pages["gone"] == 0
    # nothing happened to credentials or signal state
    assert "creds" not in main and "signals" not in main
    # the thread (blocked in pause) changed nothing at all
    thread = marks.addrs["thread"]
    assert all("fds" not in t and "vmas" not in t for p, t in by_pid.items()
               if p != marks.pid), thread
    # the text form says the same
    text = cli("diff", "--pages", marks.img, marks.after)
    assert text.returncode == 1
    lines = text.stdout.decode().splitlines()
    assert f"  fd {marks.fd} opened: generic /etc/hostname" in lines
    assert f"  vma added {marks.region:#x}-{marks.region + 4 * 4096:#x} rw-p" in lines
    assert any(x.startswith(f"    added {marks.region:#x}-") for x in lines)


def test_diff_same_image_is_empty(marks):
    r = cli("diff", marks.img, marks.img)
    assert (r.returncode, r.stdout) == (0, b""), r.stderr
    # one side on a pipe: pages hashed as they stream
    r = both(marks.img, "diff", marks.img, marks.after)
    assert r.returncode == 1


def _losses(stderr: bytes) -> list[str]:
    return [x for x in stderr.decode().splitlines() if x.startswith("loss:")]


def test_diff_across_a_v18_round_trip_reports_only_the_losses(marks, tmp_path):
    """v23 -> v18 -> v23 of the real dump: convert lists the losses (the thread's task
    flags, the cwd: v19-rc2 has no fs_struct; the extension records: file stats, rseq);
    diff reports exactly those."""
    v18, back = tmp_path / "v18.img", tmp_path / "back.img"
    r = cli("convert", marks.img, "--to", "v18", "--allow-loss", "-o", v18)
    assert r.returncode == 0, r.stderr
    # the imgtools extension records (clocks, rseq) are whole records v18 lacks: diff
    # compares the tasks' fields, so those losses are not among its findings
    losses = _losses(r.stderr)
    r = cli("convert", v18, "--to", "v23", "-o", back)
    assert r.returncode == 0, r.stderr
    r = cli("diff", "--json", marks.img, back)
    d = json.loads(r.stdout)
    found = []
    for t in d["tasks"]:
        assert set(t) - {"pid", "comm"} <= {"fields", "fs", "fds", "rseq", "vmas"}, t
        found += [f"{t['pid']}: {k}" for k in t.get("fields", {})]
        found += [f"{t['pid']}: {k}" for k in t.get("fs", {})]
        if "rseq" in t:
            found.append(f"{t['pid']}: EXT_RSEQ")
        for fd in t.get("fds", {}).get("changed", []):
            assert set(fd) - {"fd"} and all(k.startswith("stat.") for k in fd if k != "fd"), fd
            found.append(f"{t['pid']}: EXT_FILE_STAT")
        assert set(t.get("vmas", {})) <= {"restat"}, t
        found += [f"{t['pid']}: EXT_FILE_STAT" for _ in t.get("vmas", {}).get("restat", [])]

    def what(loss: str) -> str:
        pid = loss.split(" pid ")[1].split(":")[0]
        record = loss.split("] ", 1)[1].split(" @")[0]
        # extension records go whole (one loss per record): one entry per kind and task
        return f"{pid}: {record}" if record.startswith("EXT_") else \
            f"{pid}: {loss.split(': ', 2)[2].split(' = ')[0]}"
    # EXT_CLOCKS (image-wide, no task) differs between any two dumps: diff does not
    # compare the clocks
    expected = [what(x) for x in losses if " pid " in x]
    # a file object is written once (its loss names the first task holding it); diff
    # names every task that holds or maps it: the kinds must agree
    assert {x.split(": ")[1] for x in found if "EXT_" in x} == \
        {x.split(": ")[1] for x in expected if "EXT_" in x}, (found, losses)
    assert sorted(x for x in found if "EXT_" not in x) == \
        sorted(x for x in expected if "EXT_" not in x), (found, losses)
    # against the v18 image itself, which has neither a task flags field nor an fs: what
    # a version cannot hold at all is not compared
    r = cli("diff", marks.img, v18)
    assert (r.returncode, r.stdout) == (0, b"versions: v23 and v18\n"), r.stdout


def test_diff_lossless_round_trip_is_empty(tmp_path):
    """An image that v18 holds completely: its round trip through v23 diffs empty."""
    from conftest import tree_spec
    from imgtools.compose import compose_bytes
    a, up, back = tmp_path / "a.img", tmp_path / "up.img", tmp_path / "back.img"
    a.write_bytes(compose_bytes(tree_spec("v18"), "v18", "x86_64"))
    assert cli("convert", a, "--to", "v23", "-o", up).returncode == 0
    r = cli("convert", up, "--to", "v18", "-o", back)
    assert r.returncode == 0 and not _losses(r.stderr), r.stderr
    r = cli("diff", a, back)
    assert (r.returncode, r.stdout) == (0, b""), r.stdout
    r = cli("diff", a, up)
    assert (r.returncode, r.stdout) == (0, b"versions: v18 and v23\n"), r.stdout


def test_diff_usage(marks):
    assert cli("diff", "-", "-").returncode == 2
    assert cli("diff", marks.img, "/nonexistent").returncode == 2
