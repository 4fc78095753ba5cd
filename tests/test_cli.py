"""The inspection CLI as a user runs it: a real process, files and pipes, exit codes."""
import json
import struct
import subprocess
import sys

import pytest

from conftest import ALL, tree_spec
from imgtools.compose import compose_bytes

IMGTOOLS = [sys.executable, "-m", "imgtools"]


def run(*args, stdin=None, input_bytes=None):
    return subprocess.run([*IMGTOOLS, *args], stdin=stdin, input=input_bytes,
                          capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    paths = {}
    for v, a in ALL:
        p = d / f"{v}-{a}.img"
        p.write_bytes(compose_bytes(tree_spec(v), v, a))
        paths[(v, a)] = p
    return paths


@pytest.mark.parametrize("version,arch", ALL)
def test_file_and_pipe_give_the_same_json(images, version, arch):
    path = images[(version, arch)]
    for cmd in ("info", "maps"):
        from_file = run(cmd, "--json", str(path))
        piped = subprocess.run(f"cat {path} | {sys.executable} -m imgtools {cmd} --json -",
                               shell=True, capture_output=True, timeout=120)
        assert from_file.returncode == 0, from_file.stderr
        assert piped.returncode == 0, piped.stderr
        assert from_file.stdout == piped.stdout


def test_json_shapes(images):
    path = str(images[("v23", "x86_64")])
    info = json.loads(run("info", "--json", path).stdout)
    assert {"version", "arch", "kernel", "tasks", "records", "pages"} <= info.keys()
    assert (info["version"], info["arch"], info["tasks"]) == ("v23", "x86_64", 4)
    ps = json.loads(run("ps", "--json", path).stdout)
    assert [{k: r[k] for k in ("pid", "ppid", "tgid", "pgid", "sid", "comm")} for r in ps][2] \
        == {"pid": 102, "ppid": 100, "tgid": 102, "pgid": 100, "sid": 100, "comm": "child"}
    maps = json.loads(run("maps", "--json", "--pid", "100", path).stdout)
    assert {"start", "end", "perms", "pgoff", "path", "pages"} <= maps[0].keys()
    assert [m["path"] for m in maps] == ["/usr/bin/prog", "[heap]", "[stack]"]
    files = json.loads(run("files", "--json", "--pid", "102", path).stdout)
    assert [f["fd"] for f in files] == [3, 5]


def test_human_output(images):
    path = str(images[("v19", "i386")])
    show = run("show", path)
    assert show.returncode == 0
    text = show.stdout.decode()
    assert "v19 i386" in text and "/dev/null" in text and "[heap]" in text
    records = run("show", "--records", path).stdout.decode().splitlines()
    assert records[0].split()[:3] == ["@0", "1", "HEADER"]
    assert any("OBJREF" in line and "ref" in line for line in records)
    versions = run("versions", "--json")
    assert [v["version"] for v in json.loads(versions.stdout)][-1] == "v23"


def test_decode_encode_commands(images, tmp_path):
    src = images[("v18", "x86_64")]
    js = tmp_path / "img.json"
    assert run("decode", str(src), "-o", str(js)).returncode == 0
    out = tmp_path / "back.img"
    r = run("encode", str(js), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == src.read_bytes()
    piped = subprocess.run(f"cat {src} | {sys.executable} -m imgtools decode - | "
                           f"{sys.executable} -m imgtools encode - > {tmp_path / 'p.img'}",
                           shell=True, timeout=120)
    assert piped.returncode == 0
    assert (tmp_path / "p.img").read_bytes() == src.read_bytes()


def _assert_one_line_error(r, code=3, *words):
    err = r.stderr.decode()
    assert r.returncode == code, (r.returncode, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def good(images):
    return images[("v23", "x86_64")].read_bytes()


def test_bad_magic(good):
    bad = bytearray(good)
    bad[8] ^= 0xFF
    _assert_one_line_error(run("info", "-", input_bytes=bytes(bad)), 3, "magic", "byte 8")


def test_truncated(good):
    for cut in (5, 100, len(good) // 2, len(good) - 3):
        _assert_one_line_error(run("info", "-", input_bytes=good[:cut]), 3, "truncated")


def test_truncated_file(good, tmp_path):
    p = tmp_path / "cut.img"
    p.write_bytes(good[:len(good) // 3])
    _assert_one_line_error(run("ps", str(p)), 3, "byte")


def test_len_below_header(good):
    bad = bytearray(good)
    struct.pack_into("<I", bad, 72 + 4, 3)     # the first BUFFER claims len 3
    _assert_one_line_error(run("info", "-", input_bytes=bytes(bad)), 3, "len 3", "byte 72")


@pytest.mark.parametrize("via_pipe", [False, True])
def test_hostile_len(good, tmp_path, via_pipe):
    bad = bytearray(good)
    struct.pack_into("<I", bad, 72 + 4, 0xFFFFFFF0)
    p = tmp_path / "hostile.img"
    p.write_bytes(bad)
    r = run("info", "-", input_bytes=bytes(bad)) if via_pipe else run("info", str(p))
    _assert_one_line_error(r, 3, "byte 72")


def test_unknown_revision(good):
    bad = bytearray(good)
    struct.pack_into("<H", bad, 24, 42)
    _assert_one_line_error(run("info", "-", input_bytes=bytes(bad)), 3, "revision 42")
    ok = run("info", "--json", "--format", "v23", "-", input_bytes=bytes(bad))
    assert ok.returncode == 0 and json.loads(ok.stdout)["version"] == "v23"


def test_dangling_objref(good):
    bad = bytearray(good)
    # TASK_CREDS of the first task: type 118, len 16 -> point cred_ref at nothing
    i = bad.find(struct.pack("<II", 118, 16))
    struct.pack_into("<i", bad, i + 8, 999)
    _assert_one_line_error(run("info", "-", input_bytes=bytes(bad)), 3, "999")


def test_not_an_image_and_usage():
    _assert_one_line_error(run("info", "-", input_bytes=b"hello world, not an image"), 3,
                           "not a checkpoint image")
    _assert_one_line_error(run("info", "/nonexistent/img"), 2, "cannot open")
    r = run("info")
    assert r.returncode == 2
    r = run("info", "--format", "v99", "-", input_bytes=b"")
    assert r.returncode in (2, 3) and b"Traceback" not in r.stderr


def test_encode_refuses_garbage(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    _assert_one_line_error(run("encode", str(p), "-o", str(tmp_path / "o.img")), 2)
    assert not (tmp_path / "o.img").exists()
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]     # no temp file left


def test_bad_options_are_usage_errors(images, tmp_path):
    path = str(images[("v23", "x86_64")])
    _assert_one_line_error(run("info", path, "--format", "bogus"), 2, "bogus")
    _assert_one_line_error(run("ps", path, "--arch", "sparc"), 2, "sparc")
    _assert_one_line_error(run("decode", path, "-o", str(tmp_path)), 2, "directory")
    for doc in ("[1, 2]", '{"imgtools": "imgtools-decode/1"}'):
        p = tmp_path / "doc.json"
        p.write_text(doc)
        _assert_one_line_error(run("encode", str(p), "-o", str(tmp_path / "o.img")), 2)
    assert not (tmp_path / "o.img").exists()
