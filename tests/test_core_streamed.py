"""to-core from a pipe into a file: the core is written as the image streams in
(``imgtools.core.streamed``), its program headers and notes after the page data.

Each streamed core is checked against the core made from the same image as a file: the
same segments (type, address, sizes, flags, bytes) and the same notes, in the same
order; readelf reads it without a warning; the image came through a real pipe (a
subprocess's stdout), so nothing could be read twice."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import formats
from conftest import kinds_spec, real_pipe, tree_spec
from imgtools.build import build_model
from imgtools.compose import ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.core.streamed import Layout, StreamingBuilder
from imgtools.reader import ImageReader

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096
CLI = [sys.executable, "-m", "imgtools"]


def _run(args: list[str], image: bytes | None = None, **kw) -> subprocess.CompletedProcess:
    """The CLI with the image written into its stdin, a pipe."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(CLI + args, input=image or b"", stdout=kw.pop("stdout",
                          subprocess.PIPE), stderr=subprocess.PIPE, env=env, cwd=ROOT)


def content(path: Path) -> list[tuple]:
    """Every program header's type, address, sizes and flags with its bytes, in order."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        return [(s["p_type"], s["p_vaddr"], s["p_memsz"], s["p_filesz"], s["p_flags"],
                 s.data()) for s in elf.iter_segments()]


def streamed_and_file(tmp_path: Path, image: bytes, *args: str) -> tuple[Path, Path]:
    src = tmp_path / "in.img"
    src.write_bytes(image)
    by_file, streamed = tmp_path / "file.core", tmp_path / "streamed.core"
    r = _run(["to-core", str(src), "-o", str(by_file), *args])
    assert r.returncode == 0, r.stderr
    r = _run(["to-core", "-", "-o", str(streamed), *args], image)
    assert r.returncode == 0, r.stderr
    return by_file, streamed


def assert_same_core(by_file: Path, streamed: Path) -> None:
    a, b = content(by_file), content(streamed)
    assert [x[:5] for x in a] == [x[:5] for x in b]
    assert a == b
    assert os.stat(streamed).st_mode & 0o777 == 0o600
    if shutil.which("readelf"):
        r = subprocess.run(["readelf", "-a", "-W", str(streamed)], capture_output=True,
                           text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr
        assert "Warning" not in r.stdout


@pytest.mark.parametrize("version", formats.VERSIONS)
def test_streamed_core_holds_what_the_file_core_holds(tmp_path, version):
    image = compose_bytes(tree_spec(version), version)
    assert_same_core(*streamed_and_file(tmp_path, image))


def test_another_process_and_extension_files(tmp_path):
    """--pid of the second process (its pages come after the first's, which are spooled),
    and a shared memfd mapping whose contents are the file's extents (copied from the
    spool at the end)."""
    image = compose_bytes(kinds_spec("v23"), "v23")
    assert_same_core(*streamed_and_file(tmp_path, image))
    (tmp_path / "file.core").unlink()
    assert_same_core(*streamed_and_file(tmp_path, image, "--pid", "102"))


def test_pages_with_gaps_and_file_runs(tmp_path):
    """An anonymous VMA with holes between its pages (zeros in the core), a file mapping
    held in two runs (segments with and without bytes), more than one batch."""
    heap = {0x10000000 + i * PAGE: bytes([i % 251 + 1]) * 64 for i in range(700) if i % 3}
    lib = {0x7f0000001000: b"lib1", 0x7f0000002000: b"lib2", 0x7f0000005000: b"lib5"}
    spec = ImageSpec(tasks=[TaskSpec(300, 1, comm="gaps")],
                     mms={"mm": MmSpec([
                         VmaSpec(0x10000000, 0x10000000 + 800 * PAGE, pages=heap),
                         VmaSpec(0x7f0000000000, 0x7f0000008000, kind="file",
                                 path="/usr/lib/libx.so", flags=0x73, pages=lib),
                         VmaSpec(0x7ffd0000, 0x7ffd4000, pages={})])})
    assert_same_core(*streamed_and_file(tmp_path, compose_bytes(spec, "v23")))


def test_sample_dumps(tmp_path):
    for name in ("single", "threads"):
        image = (ROOT / "samples" / "v23" / f"{name}.img").read_bytes()
        assert_same_core(*streamed_and_file(tmp_path / name if (tmp_path / name).mkdir()
                                            is None else tmp_path, image))


def test_stdout_redirected_to_a_file(tmp_path):
    image = compose_bytes(tree_spec("v23"), "v23")
    src = tmp_path / "in.img"
    src.write_bytes(image)
    by_file = tmp_path / "file.core"
    assert _run(["to-core", str(src), "-o", str(by_file)]).returncode == 0
    out = tmp_path / "stdout.core"
    with open(out, "wb") as f:
        f.write(b"x" * 100)             # the core starts where stdout stands
        f.flush()
        r = _run(["to-core", "-"], image, stdout=f)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:100] == b"x" * 100
    (tmp_path / "rest.core").write_bytes(data[100:])
    assert content(tmp_path / "rest.core") == content(by_file)


def test_page_data_is_not_spooled(tmp_path):
    """In process, from a real pipe: the dumped process's pages go to the output only;
    the spool holds the FPU areas and the other process's page."""
    image = compose_bytes(tree_spec("v23", pages=300), "v23")
    out = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT, 0o600)
    layout = Layout(out, 0)
    try:
        with real_pipe(image) as f:
            img = build_model(ImageReader(f), None, lambda rd, on: StreamingBuilder(
                rd, on, layout=layout, pid=None))
        assert layout.placed == 300 * PAGE + PAGE       # heap pages + the stack page
        spooled = sum(n for _, n, fd, _ in layout.kept if fd == layout.spool_fd)
        fpu = sum(t.fpu_size for t in img.tasks if t.tgid == 100)
        assert fpu > 0
        assert spooled == PAGE + fpu        # the child's one page, the threads' FPU areas
    finally:
        layout.close()
        os.close(out)


def test_refusals_and_errors_write_nothing(tmp_path):
    image = compose_bytes(tree_spec("v23"), "v23")
    out = tmp_path / "core"
    r = _run(["to-core", "-", "-o", str(out), "--pid", "999"], image)
    assert r.returncode == 2 and b"no task with pid 999" in r.stderr
    assert not out.exists()
    r = _run(["to-core", "-", "-o", str(out)], image[:len(image) // 2])
    assert r.returncode == 3 and b"Traceback" not in r.stderr, r.stderr
    assert not out.exists()
    out.write_bytes(b"old")
    r = _run(["to-core", "-", "-o", str(out), "--pid", "103"], image)    # a zombie
    assert r.returncode == 3 and out.read_bytes() == b"old"


def _shared_anon_image(pgoff: int) -> bytes:
    """Two mappings of one shared-anonymous object (the image holds its pages under the
    first; the second, ``pgoff`` pages into the object, borrows them), then a heap."""
    import struct
    from imgtools.reader import ImageReader as Reader
    import io
    spec = ImageSpec(tasks=[TaskSpec(300, 1, comm="shm")], mms={"mm": MmSpec([
        VmaSpec(0x10000000, 0x10004000, kind="shm_anon", flags=0xfb,
                pages={0x10001000: b"one", 0x10002000: b"two"}),
        VmaSpec(0x20000000, 0x20004000, kind="shm_anon", flags=0xfb, pgoff=pgoff),
        VmaSpec(0x30000000, 0x30004000, pages={0x30000000: b"heap" * 1024})])})
    image = bytearray(compose_bytes(spec, "v23"))
    r = Reader(io.BytesIO(bytes(image)))
    vmas = [(rec.payload_offset, r.parse(rec)) for rec in r.records()
            if r.name_of(rec) == "vma"]
    (_, first), (at, second) = vmas[:2]
    # the second VMA names the first one's object (the composer gives each its own)
    field = at + 8
    assert struct.unpack_from("<I", image, field)[0] == second.ino_objref
    struct.pack_into("<I", image, field, first.ino_objref)
    return bytes(image)


@pytest.mark.parametrize("pgoff", [0, 1])
def test_shared_anon_mapping_borrows_pages(tmp_path, pgoff):
    """pgoff 0: the borrowed bytes lie in the core as the second mapping needs them (both
    segments point at them); 1: they do not (the second mapping's segment would reach
    past the first's region into the heap's), so they are copied."""
    by_file, streamed = streamed_and_file(tmp_path, _shared_anon_image(pgoff))
    assert_same_core(by_file, streamed)
    second = next(x for x in content(streamed) if x[1] == 0x20000000)
    assert second[5][:3] == (b"one" if pgoff else b"\0\0\0")
    with open(streamed, "rb") as f:
        offsets = {s["p_vaddr"]: s["p_offset"] for s in ELFFile(f).iter_segments()}
    assert (offsets[0x20000000] == offsets[0x10000000]) == (pgoff == 0)
