"""The listings print what they printed before the large-tables work (issue 11, item 4),
on images the samples do not resemble: hundreds of tasks, VMAs and descriptors, text
that must be escaped (control, non-ASCII, wide characters), a path too long for a plain
line; into a pipe (plain text, or rich where plain text cannot say it) and on a terminal
(rich, FORCE_COLOR). ``golden/cli_tables.json`` holds the SHA-256 of each image and of
stdout of each command, recorded with the code of commit a8c7080 (before the work):

    git archive a8c7080 | tar -x -C /tmp/base && \\
        PYTHONPATH=$PWD python3 tests/test_cli_tables.py /tmp/base

(the images are made by this checkout, the commands run by the other one)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "cli_tables.json"
VERSIONS = ("v23", "v18")
PIPE = ["ps", "show", "files", "maps", "show --pid 1004", "files --pid 1005",
        "maps --pid 1001", "show --json"]
TERMINAL = ["ps", "show --pid 1004", "files --pid 1005", "maps --pid 1001"]
ODD = ["caf\u00e9", "a\x1bb", "\u65e5\u672c\u8a9e", "tab\there", "x" * 15]


def _spec():
    """Tasks, VMAs and descriptors with names to escape (rich draws their tables into a
    pipe too), and a small mm and file table with a path too long for a plain line."""
    from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec
    tasks = [TaskSpec(1000, 1, comm="root", mm="mm2", files="f2")]
    for i in range(1, 60):
        pid = 1000 + i
        mm, files = "mm" if i % 20 == 1 else "mm2", "files" if i % 20 == 5 else "f2"
        tasks.append(TaskSpec(pid, 1000 + (i - 1) // 3, comm=ODD[i % len(ODD)] + str(i),
                              mm=mm, files=files, zombie=i % 17 == 0))
        if i % 7 == 0:
            tasks.append(TaskSpec(pid + 5000, 1000, tgid=pid, comm=f"th{i}", mm=mm,
                                  files=files))
    base = 0x10000000
    vmas = [VmaSpec(base + i * 0x3000, base + i * 0x3000 + 0x1000 * (1 + i % 2),
                    kind="file" if i % 3 == 0 else "anon",
                    path=f"/usr/lib/{ODD[i % len(ODD)]}{i}.so" if i % 3 == 0 else None,
                    pages={base + i * 0x3000: bytes([i % 256])} if i % 2 == 0 else {})
            for i in range(150)]
    fds = [FdSpec(i, path=f"/tmp/{ODD[i % len(ODD)]}-{i}", flags=i % 4, pos=i * 7,
                  cloexec=i % 2 == 1) for i in range(3, 150)]
    fds += [FdSpec(400, kind="pipe", pipe="p"), FdSpec(401, kind="pipe", pipe="p",
                                                       flags=1)]
    long_path = "/" + "long" * 110
    return ImageSpec(tasks=tasks,
                     mms={"mm": MmSpec(vmas, exe="/usr/bin/prog", brk=(0x9000000, 0x9001000)),
                          "mm2": MmSpec([VmaSpec(0x400000, 0x401000),
                                         VmaSpec(0x500000, 0x501000, kind="file",
                                                 path=long_path)])},
                     files={"files": [FdSpec(0, path="/dev/null")] + fds,
                            "f2": [FdSpec(0, path="/dev/tty"), FdSpec(1, path=long_path)]},
                     pipes={"p": b"buffered bytes"}, time=1_700_000_000)


def _images(where: Path) -> dict[str, Path]:
    from imgtools.compose import compose_bytes
    out = {}
    for v in VERSIONS:
        p = where / f"tables-{v}.img"
        p.write_bytes(compose_bytes(_spec(), v))
        out[v] = p
    return out


def _digest(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _run(src: Path, cmd: str, image: Path, terminal: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(src)
    if terminal:
        env.update(FORCE_COLOR="1", COLUMNS="100", LINES="40", TERM="xterm-256color")
    argv = cmd.split(" ")
    r = subprocess.run([sys.executable, "-m", "imgtools", argv[0], image.name, *argv[1:]],
                       capture_output=True, env=env, cwd=image.parent, timeout=120)
    return r.returncode, _digest(r.stdout)


def _cases():
    return [(v, mode, cmd) for v in VERSIONS
            for mode, cmds in (("pipe", PIPE), ("terminal", TERMINAL)) for cmd in cmds]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("tables"))


@pytest.mark.parametrize("version", VERSIONS)
def test_listings_are_byte_identical(images, version):
    golden = json.loads(GOLDEN.read_text())
    image = images[version]
    assert _digest(image.read_bytes()) == golden["images"][version], \
        "the composed image changed: the recorded outputs no longer apply"
    for v, mode, cmd in _cases():
        if v == version:
            got = _run(ROOT, cmd, image, mode == "terminal")
            assert list(got) == golden["outputs"][f"{v} {mode} {cmd}"], (mode, cmd)


def _record(src: Path) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        imgs = _images(Path(d))
        doc = {"images": {v: _digest(p.read_bytes()) for v, p in imgs.items()},
               "outputs": {f"{v} {mode} {cmd}": _run(src, cmd, imgs[v], mode == "terminal")
                           for v, mode, cmd in _cases()}}
    GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    _record(Path(sys.argv[1]).resolve())
