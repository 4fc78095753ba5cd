"""Compressed images (zstd, gzip, xz) are read by every read command, from a file and from
a pipe, with the output of the plain image; files that are not images say what they are."""
from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "v23" / "threads.img"
HAVE_ZSTD = shutil.which("zstd") is not None

# read commands and the arguments they need after IMG (none when the list is empty)
READS = [("info", "--json"), ("show", "--json"), ("ps", "--json"), ("maps", "--json"),
         ("maps", "--summary"), ("files", "--json"), ("check", "--json"), ("decode",),
         ("mem", "--strings"), ("mem", "--search", "ready"), ("diff", str(SAMPLE)),
         ("to-core", "-o", "-")]


def cli(*args, stdin=None, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgtools", *map(str, args)], cwd=ROOT,
                          capture_output=True, stdin=stdin, input=input, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("packed")
    raw = SAMPLE.read_bytes()
    out = {"gz": gzip.compress(raw), "xz": lzma.compress(raw)}
    if HAVE_ZSTD:
        out["zst"] = _zstd(raw)
    paths = {}
    for ext, data in out.items():
        p = d / f"threads.img.{ext}"
        p.write_bytes(data)
        paths[ext] = p
    return paths


def _cmd(cmd, image):
    name, *rest = cmd
    return [name, image, *rest]


@pytest.mark.parametrize("cmd", READS, ids=[" ".join(c[:2]) for c in READS])
def test_every_read_command_takes_zstd(packed, cmd):
    if "zst" not in packed:
        pytest.skip("no zstd binary to make the test image")
    plain = cli(*_cmd(cmd, SAMPLE))
    assert plain.returncode == 0, plain.stderr
    zst = cli(*_cmd(cmd, packed["zst"]))
    assert zst.returncode == 0, zst.stderr
    # (show names its input in the first line)
    assert zst.stdout.replace(str(packed["zst"]).encode(), str(SAMPLE).encode()) == \
        plain.stdout
    with open(packed["zst"], "rb") as f:
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        piped = cli(*_cmd(cmd, "-"), stdin=cat.stdout)
        cat.stdout.close()
        cat.wait()
    assert piped.returncode == 0, piped.stderr
    if cmd[0] != "show":
        assert piped.stdout == plain.stdout


@pytest.mark.parametrize("ext", ["gz", "xz"])
def test_gzip_and_xz(packed, ext):
    plain = cli("show", "--json", SAMPLE).stdout
    assert cli("show", "--json", packed[ext]).stdout == plain
    assert cli("show", "--json", "-", input=packed[ext].read_bytes()).stdout == plain


@pytest.mark.parametrize("ext", ["gz", "xz", "zst"])
def test_truncated_compressed_input_is_invalid(packed, ext, tmp_path):
    if ext not in packed:
        pytest.skip("no zstd binary")
    data = packed[ext].read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[:len(data) // 2])
    r = cli("info", cut)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
    r = cli("check", cut)
    assert r.returncode == 3 and b"Traceback" not in r.stderr


def test_not_an_image_says_what_it_is(tmp_path):
    def said(path, stdin_bytes=None):
        r = cli("info", path) if stdin_bytes is None else cli("info", "-", input=stdin_bytes)
        assert r.returncode == 3, r.stderr
        assert r.stderr.count(b"\n") == 1
        return r.stderr.decode()
    assert "is an ELF shared object or PIE executable" in said(sys.executable) or \
        "is an ELF executable" in said(sys.executable)
    assert "is an ELF" in said("-", Path(sys.executable).read_bytes()[:4096])
    js = tmp_path / "img.json"
    assert cli("decode", SAMPLE, "-o", js).returncode == 0
    assert "JSON of `imgtools decode`" in said(js)
    criu = tmp_path / "criu"
    criu.mkdir()
    (criu / "inventory.img").write_bytes(bytes.fromhex("19435654" "16313158") + bytes(8))
    assert "directory of CRIU images" in said(criu)
    assert "CRIU image file" in said(criu / "inventory.img")
    assert "record type 1179403647" not in said(sys.executable)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("info", empty)
    assert r.returncode == 2 and b"is a directory" in r.stderr
