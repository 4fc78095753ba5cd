"""Every command over mutated images (issue 10, item 7): no internal error, no usage exit
for an image condition, and what check calls sound every consumer accepts.

A bounded number of cases per run with a new seed each run (IMGTOOLS_FUZZ_SEED=N
repeats one; the seed is in the failure message); crashes found are kept under
tests/fuzz/regressions/ and run every time. Long runs: tests/fuzz_commands.py."""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys

import pytest

import fuzz_commands as F
from imgtools.reader import ImageReader

CASES = 8
REGRESSIONS = sorted(os.listdir(F.REGRESSIONS)) if os.path.isdir(F.REGRESSIONS) else []


@pytest.fixture(scope="module")
def runner():
    return F.Runner()


def _version_of(data: bytes) -> tuple[str, str]:
    try:
        r = ImageReader(io.BytesIO(data))
        return r.version, r.abi.arch
    except Exception:           # noqa: BLE001 - an unreadable header: any version will do
        return "v23", "x86_64"


@pytest.mark.parametrize("name", REGRESSIONS)
def test_regression_input(runner, name):
    with open(os.path.join(F.REGRESSIONS, name), "rb") as f:
        data = f.read()
    problems = runner.case(data, *_version_of(data))
    assert not problems, [p.line() for p in problems]


def test_fuzz_every_command(runner):
    seed = int(os.environ.get("IMGTOOLS_FUZZ_SEED") or random.randrange(1 << 32))
    problems = F.fuzz(CASES, seed, runner)
    saved = [F.save(p) for p in problems]
    assert not problems, (f"IMGTOOLS_FUZZ_SEED={seed}: " +
                          "; ".join(f"{p.line()} [{s}]" for p, s in zip(problems, saved)))


def test_regressions_are_not_sound_or_accepted(runner):
    """The inputs of the bugs this suite fixed, with what now happens to them."""
    expect = {"vma-end-near-2p63.img": ("mm.vma-range", 3),
              "task-objs-no-mm.img": ("objref.null", None),
              "cpu-gsindex-0x10.img": ("task.cpu-segment", 3),
              "pids-section-dup-buffer.img": ("head.sequence", None),
              "pgarr-over-64k.img": ("record.size", 0),
              "vma-ino-objref-0x7fffffff.img": ("objref.bad-number", None)}
    from imgtools.check import check_path
    for name, (code, to_core) in expect.items():
        path = os.path.join(F.REGRESSIONS, name)
        assert code in {f.code for f in check_path(path) if f.severity == "error"}, name
        if to_core is not None:
            got, out, _ = runner.run("to-core", path, "-o", os.path.join(runner.dir, "c"))
            assert got == to_core, (name, out)
    assert runner.run("decode", os.path.join(F.REGRESSIONS, "pgarr-over-64k.img"), "-o",
                      os.path.join(runner.dir, "j"))[0] == 0


def test_zombie_root_is_an_image_condition(tmp_path, runner):
    from conftest import tree_spec
    from imgtools.compose import compose_bytes
    spec = tree_spec("v23")
    spec.tasks = [t for t in spec.tasks if t.pid == 103]
    spec.tasks[0].ppid = 1
    p = tmp_path / "zombie.img"
    p.write_bytes(compose_bytes(spec, "v23", "x86_64"))
    code, out, _ = runner.run("to-core", str(p), "-o", str(tmp_path / "core"))
    assert code == 3 and b"zombie" in out


# -- encode: bad documents are one-line usage errors, in bounded memory -----------------
HEAD = {"imgtools": "imgtools-decode/1", "version": "v23", "arch": "x86_64"}
STRING = {"name": "STRING", "type": 4, "text": "a"}


BAD_DOCUMENTS = [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", b"not UTF-8"),
    (json.dumps(HEAD | {"records": []}).encode(), b"no records"),
    (b'{"imgtools": "imgtools-decode/1", "version": "v23", "records": [' + b"[" * 100_000
     + b"]" * 100_000 + b"]}", b"nested too deeply"),
    (json.dumps(HEAD | {"records": [{"type": 1}]}).encode(), b'no "name"'),
    (json.dumps(HEAD | {"records": [STRING | {"size": 2**31}]}).encode(), b"size must be"),
    (json.dumps(HEAD | {"records": [STRING | {"size": 2**32}]}).encode(), b"size must be"),
    (json.dumps(HEAD | {"records": [STRING | {"type": 2**32}]}).encode(), b"type must be"),
    (json.dumps(HEAD | {"records": [STRING | {"type": "x"}]}).encode(), b"type must be"),
    (json.dumps(HEAD | {"records": [{"name": "BUFFER", "addrs": [0.5], "pages": {
        "b64": ""}}]}).encode(), b"page address must be"),
    (json.dumps(HEAD | {"records": [{"name": "TASK", "fields": [1]}]}).encode(),
     b"fields must be"),
    (json.dumps(HEAD | {"records": [{"name": "STRING", "data": 5}]}).encode(), b"data must be"),
]


@pytest.mark.parametrize("doc,says", BAD_DOCUMENTS, ids=[
    "binary", "no-records", "deep", "no-name", "size-2p31", "size-2p32", "type-2p32",
    "type-str", "addr-float", "fields-list", "data-int"])
def test_encode_rejects_bad_documents(tmp_path, runner, doc, says):
    src = tmp_path / "doc.json"
    src.write_bytes(doc)
    code, out, exc = runner.run("encode", str(src), "-o", str(tmp_path / "out.img"))
    assert code == 2, (out, exc)
    assert says in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "out.img").exists()


def test_encode_claimed_sizes_allocate_nothing(tmp_path):
    """A STRING claiming 4 GiB is refused under a 512 MiB address-space limit."""
    src = tmp_path / "doc.json"
    src.write_bytes(json.dumps(HEAD | {"records": [STRING | {"size": 2**32 - 1}]}).encode())
    r = subprocess.run([sys.executable, "-m", "imgtools", "encode", str(src), "-o",
                        str(tmp_path / "out.img")], capture_output=True, timeout=60,
                       preexec_fn=lambda: _limit_memory(512 << 20))
    assert r.returncode == 2 and b"size must be" in r.stderr, r.stderr


def _limit_memory(limit: int) -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_enospc_is_reported_as_what_it_is(tmp_path):
    from conftest import tree_spec
    from imgtools.compose import compose_bytes
    img = tmp_path / "img"
    img.write_bytes(compose_bytes(tree_spec("v23"), "v23", "x86_64"))
    for cmd in (["decode", str(img)], ["to-core", str(img)], ["convert", str(img), "--to",
                                                              "v21"]):
        with open("/dev/full", "wb") as full:
            r = subprocess.run([sys.executable, "-m", "imgtools", *cmd], stdout=full,
                               stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr == b"imgtools: No space left on device\n", r.stderr
