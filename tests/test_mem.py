"""`mem` and `maps --summary` over dumps of a real program (tests/progs/marks.c) that puts
known strings at known addresses: the heap, the main stack, a shared anonymous mapping, a
second thread's stack. Every query runs from the image file (pages by seek) and from a
pipe (pages as they stream), and both must print the same.
"""
from __future__ import annotations

import bisect
import json
import mmap
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from imgtools import engine, mem as M
from test_engine import ROOT, PROGS, Targets, pytestmark, threads_of  # noqa: F401 (skip)

MARKS = {"heap": b"heap marker 9f3a", "stack": b"stack marker 41c2",
         "shared": b"shared marker 0b77", "thread": b"thread stack marker 7e1d"}


def cli(*args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgtools", *map(str, args)], cwd=ROOT,
                          capture_output=True, stdin=stdin, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def piped(image: Path, *args) -> subprocess.CompletedProcess:
    """The same command with the image coming through a pipe (cat IMG | imgtools ... -)."""
    cat = subprocess.Popen(["cat", str(image)], stdout=subprocess.PIPE)
    try:
        return cli(*(a if a != image else "-" for a in args), stdin=cat.stdout)
    finally:
        cat.stdout.close()
        cat.wait()


def both(image: Path, *args) -> subprocess.CompletedProcess:
    """Run from the file and from a pipe; both must agree (output and exit code)."""
    f = cli(*args)
    p = piped(image, *args)
    assert (f.returncode, f.stdout, f.stderr.strip() != b"") == \
        (p.returncode, p.stdout, p.stderr.strip() != b""), f"file and pipe differ for {args}"
    return f


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    """Two dumps of marks: before and after it changed (counter, fd, mapping)."""
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "engine")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    d = tmp_path_factory.mktemp("marks")
    exe = d / "marks"
    r = subprocess.run(["gcc", "-O1", "-Wall", "-pthread", "-o", str(exe),
                        str(PROGS / "marks.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    targets = Targets()
    try:
        p = targets.start([exe])
        line = targets.read_line(p, 5).decode()
        addrs = {k: int(v, 16) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+)", line)}
        child = int(re.search(r"child=(\d+)", line).group(1))
        [thread] = [t for t in threads_of(p.pid) if t != p.pid]
        before, after = d / "before.img", d / "after.img"
        assert engine.dump(p.pid, before) == 0
        os.kill(p.pid, signal.SIGUSR1)
        line = targets.read_line(p, 5).decode()
        changed = dict(re.findall(r"(\w+)=(\w+)", line))
        assert engine.dump(p.pid, after) == 0
        yield SimpleNamespace(pid=p.pid, child=child, thread=thread, addrs=addrs,
                              img=before, after=after,
                              fd=int(changed["fd"]), region=int(changed["region"], 16),
                              dir=d)
    finally:
        targets.cleanup()


def raw(image: Path, addr: int, n: int) -> bytes:
    r = both(image, "mem", image, hex(addr), n, "--raw")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_mem_addr_reads_each_mark(marks):
    for name, mark in MARKS.items():
        assert raw(marks.img, marks.addrs[name], len(mark) + 1) == mark + b"\0", name


def test_mem_hexdump_names_the_vma(marks):
    r = both(marks.img, "mem", marks.img, hex(marks.addrs["stack"]), 32)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2
    first = lines[0]
    assert first.startswith(f"{marks.addrs['stack']:016x}  73 74 61 63 6b 20 6d 61  72 6b")
    assert "|stack marker 41c|" in first and first.endswith(":[stack]")
    r = both(marks.img, "mem", marks.img, hex(marks.addrs["shared"]), 16)
    assert r.stdout.decode().rstrip().endswith(":shm")


def test_untouched_and_outside_say_why(marks):
    r = both(marks.img, "mem", marks.img, hex(marks.addrs["untouched"]), 64)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "not present" in out and "|" not in out
    r = both(marks.img, "mem", marks.img, "0x1000", 16)
    assert r.stdout.decode() == \
        "0000000000001000-0000000000001010  outside every VMA\n"
    # the executable's text is in the file, not the image
    maps = json.loads(cli("maps", "--json", marks.img).stdout)
    text = next(m for m in maps if m["perms"] == "r-xp" and m["path"].endswith("/marks"))
    r = both(marks.img, "mem", marks.img, hex(text["start"]), 16)
    assert "not dumped: unmodified file page" in r.stdout.decode()


def test_shared_memory_is_named_where_it_is_held(marks):
    """The child's view of the shared mapping: its pages are saved once, under the parent."""
    r = both(marks.img, "mem", marks.img, "--pid", marks.child, hex(marks.addrs["shared"]), 16)
    assert r.returncode == 0, r.stderr
    assert f"not dumped here: this shared memory is saved under pid {marks.pid} VMA" in \
        r.stdout.decode()
    assert raw(marks.img, marks.addrs["shared"], 19) == MARKS["shared"] + b"\0"


def test_raw_holes_are_zeros_and_named(marks):
    r = cli("mem", marks.img, hex(marks.addrs["untouched"]), 8192, "--raw")
    assert r.stdout == bytes(8192)
    assert b"not present" in r.stderr


def test_search_finds_each_mark_once(marks):
    for name, mark in MARKS.items():
        r = both(marks.img, "mem", marks.img, "--search", mark.decode())
        assert r.returncode == 0, r.stderr
        [line] = r.stdout.decode().splitlines()
        pid, addr, vma, offset, ctx = line.split("  ", 4)
        assert (int(pid), int(addr, 16)) == (marks.pid, marks.addrs[name])
        assert f"[{mark.decode()}]" in ctx
        # the offset is where the bytes are in the image
        with open(marks.img, "rb") as f:
            f.seek(int(offset[1:]))
            assert f.read(len(mark)) == mark


def test_search_hex_regex_and_json(marks):
    hexed = "0x" + MARKS["heap"].hex()
    r = both(marks.img, "mem", marks.img, "--search", hexed)
    assert int(r.stdout.split()[1], 16) == marks.addrs["heap"]
    spaced = MARKS["heap"].hex(" ")
    assert both(marks.img, "mem", marks.img, "--search", spaced).stdout == r.stdout
    r = both(marks.img, "mem", marks.img, "--search", "marker [0-9a-f]{4}", "--regex",
             "--json")
    hits = [json.loads(x) for x in r.stdout.splitlines()]
    found = {h["address"]: bytes.fromhex(h["match"]) for h in hits}
    for name, mark in MARKS.items():
        a = marks.addrs[name] + mark.index(b"marker")
        assert found.get(a) == mark[mark.index(b"marker"):], name


def test_search_filters(marks):
    def addrs(*args):
        r = both(marks.img, "mem", marks.img, "--search", "marker", *args)
        assert r.returncode == 0, r.stderr
        return {int(x.split()[1], 16) for x in r.stdout.decode().splitlines()}
    everything = addrs()
    assert {marks.addrs[n] + MARKS[n].index(b"marker") for n in MARKS} <= everything
    assert addrs("--type", "stack") == {marks.addrs["stack"] + 6}
    assert addrs("--type", "shm") == {marks.addrs["shared"] + 7}
    assert addrs("--perms", "r-x") == set()
    assert addrs("--path", "[st*") == {marks.addrs["stack"] + 6}
    assert addrs("--path", "*/marks") == set()
    assert addrs("--pid", marks.thread) == everything         # a thread names its process
    assert addrs("--pid", marks.child) == set()   # it shares only memory held by its parent


def test_strings(marks):
    r = both(marks.img, "mem", marks.img, "--strings", "--min", "12")
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.decode().splitlines():
        pid, addr, vma, offset, text = line.split("  ", 4)
        got[int(addr, 16)] = text
    for name, mark in MARKS.items():
        assert got.get(marks.addrs[name], "").startswith(mark.decode()), name
    assert all(len(t) >= 12 for t in got.values())


def test_vma_and_range(marks):
    r = both(marks.img, "mem", marks.img, "--vma", "[stack]")
    assert r.returncode == 0 and b"stack marker 41c" in r.stdout
    lo = marks.addrs["heap"] & ~4095
    r2 = both(marks.img, "mem", marks.img, "--range", f"{lo:#x}-{lo + 8192:#x}")
    assert r2.returncode == 0
    text = "".join(line.split("|")[1] for line in r2.stdout.decode().splitlines()
                   if "|" in line)
    assert "heap marker 9f3a" in text


def test_usage_errors(marks):
    assert cli("mem", marks.img).returncode == 2
    assert cli("mem", marks.img, "0x1000", "--strings").returncode == 2
    assert cli("mem", marks.img, "--search", "x", "--perms", "abc").returncode == 2
    assert cli("mem", marks.img, "--search", "(", "--regex").returncode == 2
    assert cli("mem", marks.img, "0x1000", "--pid", "1").returncode == 2


def test_maps_summary(marks):
    r = cli("maps", "--summary", "--json", marks.img)
    rows = {x["type"]: x for x in json.loads(r.stdout)}
    assert {"anon", "file", "stack", "shm"} <= set(rows)
    info = json.loads(cli("info", "--json", marks.img).stdout)
    assert sum(x["pages"] for x in rows.values()) == info["pages"]
    assert 0 < sum(x["share"] for x in rows.values()) < 1
    assert rows["shm"]["vmas"] == 2 and rows["shm"]["size"] == 2 * 8192   # parent, child
    assert rows["shm"]["pages"] == 1
    assert b"SHARE" in cli("maps", "--summary", marks.img).stdout


# -- the scanner alone: results do not depend on how the bytes are cut ------------------
def _scan(chunks, finder, longest, ctx=4, literal=None, wrap=bytes):
    """Hits over pieces of one run (each piece at its own image offset), or, with
    ``literal``, the in-place literal scanner's; ``wrap`` makes each piece's buffer
    (the page buffers of mem are mmaps, searched by memmem; bytes by find)."""
    hits = []
    region = M.Region(1, 0, None, "anon", None, "rw-p")
    if literal is None:
        s = M.Scanner(finder, longest, ctx, hits.append, M.Filter())
    else:
        s = M.LiteralScanner(literal, ctx, hits.append, M.Filter())
    s.region = region
    addr = BASE
    for k, c in enumerate(chunks):
        padded = wrap(b"#" * k + c + b"#")          # a piece is a slice of a larger buffer
        s.data(region, addr, padded, k, k + len(c), addr + 1000 * k)   # image offsets jump
        addr += len(c)
    s.finish()
    # the offset as it would be in one piece, and whether it was right for the pieces
    starts = [BASE]
    for c in chunks:
        starts.append(starts[-1] + len(c))
    rows = []
    for h in hits:
        k = bisect.bisect_right(starts, h.address) - 1
        assert h.offset == h.address + 1000 * k
        rows.append((h.address, h.match, h.before, h.after))
    return rows


BASE = 0x10000


@pytest.mark.parametrize("seed", range(20))
def test_scanner_is_cut_invariant(seed):
    rnd = random.Random(seed)
    data = bytes(rnd.choice(b"ab \x00xyz") for _ in range(6000)) + b"needle" * 3
    finders = [(M.literal_finder(b"ab"), 2), (M.literal_finder(b"needle"), 6),
               (M.regex_finder(M.strings_regex(3)), M.MATCH_MAX),
               (M.regex_finder(re.compile(rb"a+b")), M.MATCH_MAX)]
    cuts = sorted(rnd.sample(range(1, len(data)), rnd.randint(1, 40)))
    if seed % 2:                                    # many tiny pieces
        cuts = sorted(set(cuts + list(range(rnd.randint(1, 50), len(data), 3))))
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    for finder, longest in finders:
        whole = _scan([data], finder, longest)
        assert _scan(pieces, finder, longest) == whole
    assert _scan([data], M.literal_finder(b"needle"), 6)[-1][3] == b""
    for lit in (b"ab", b"needle", b"a", b"b a", b"\x00x"):
        for ctx in (0, 4, 16):
            whole = _scan([data], M.literal_finder(lit), len(lit), ctx)
            assert whole, lit
            assert _scan([data], None, 0, ctx, literal=lit) == whole, (lit, ctx)
            assert _scan(pieces, None, 0, ctx, literal=lit) == whole, (lit, ctx)
        # the same through memmem (over mmaps and bytearrays, as mem's page buffers are)
        whole = _scan([data], M.literal_finder(lit), len(lit), 16)
        assert _scan(pieces, None, 0, 16, literal=lit, wrap=bytearray) == whole, lit
        assert _scan([data], None, 0, 16, literal=lit, wrap=_mapped) == whole, lit


def _mapped(b: bytes) -> mmap.mmap:
    m = mmap.mmap(-1, len(b))
    m[:] = b
    return m


def test_hex_patterns():
    assert M.hex_bytes("0xdeadbeef") == b"\xde\xad\xbe\xef"
    assert M.hex_bytes("de ad be ef") == b"\xde\xad\xbe\xef"
    assert M.hex_bytes("de:ad") == b"\xde\xad"
    assert M.hex_bytes("deadbeef") is None          # a bare word is a string
    assert M.hex_bytes("hello world") is None
    assert M.esc_text(b"a\x1b[2J\\z\xff") == "a\\x1b[2J\\x5cz\\xff"


# -- hostile content: nothing from the image reaches the terminal raw ------------------
def test_image_bytes_never_reach_the_terminal(tmp_path):
    from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
    evil = b"\x1b]0;pwned\x07\x1b[2J\x9b31m" * 8
    base = 0x400000
    spec = ImageSpec(
        tasks=[TaskSpec(10, 1, comm="x\x1b[31m")],
        mms={"mm": MmSpec([VmaSpec(base, base + 0x3000, kind="file",
                                   path="/tmp/\x1b[31mevil\x07", pages={base: evil}),
                           VmaSpec(base + 0x10000, base + 0x11000, pages={base + 0x10000: evil})])})
    img = tmp_path / "evil.img"
    img.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    runs = [("mem", img, hex(base), 0x3000), ("mem", img, "--strings", "--min", 2),
            ("mem", img, "--search", "pwned"), ("mem", img, "--vma", "0"),
            ("mem", img, "--search", "[0-9]+m", "--regex"), ("ps", "--tree", img),
            ("diff", img, img)]
    for args in runs:
        r = cli(*args)
        assert r.returncode == 0, (args, r.stderr)
        for stream in (r.stdout, r.stderr):
            assert not any(c < 0x20 and c not in b"\n" or c >= 0x7f for c in stream), \
                (args, stream[:200])
    assert b"not dumped: unmodified file page" in cli("mem", img, hex(base + 0x1000), 16).stdout
    r = cli("mem", img, hex(base), 0x2000, "--raw")
    assert r.stdout[:len(evil)] == evil and b"\x1b" not in r.stderr
