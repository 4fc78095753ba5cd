"""Files the engine saves as imgtools extension records, dumped (--kill) and restored.

Deleted files still open or mapped (ghosts), memfds with their names and seals, a
/dev/zero mapping shared by two processes: tests/progs/rst_files.c sets each up, goes on
using it across the checkpoint and checks itself after the restore (the restore's exit
status is its verdict). Also the check that refuses a file changed since the dump, the
ghost size limit, and `dump --strict` (no extension record, ERROR records instead).
"""
from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

import formats
from formats import ext
from test_restore import (  # noqa: F401
    IMGTOOLS, build_prog, dump_kill, frames, pytestmark, restore, running, start, wait_for)

EXT_FIRST, EXT_LAST, UFLAG_EXT = ext.FIRST, ext.LAST, ext.UFLAG_EXT
EXT_FILE_STAT, EXT_FILE_MEMFD, EXT_FILE_GHOST, EXT_EXTENT = (ext.TYPES[n] for n in (
    "ext_file_stat", "ext_file_memfd", "ext_file_ghost", "ext_extent"))
ERROR, STRING, FILE_NAME = (formats.abi("v23").types[n] for n in ("error", "string", "file_name"))
HEADER_UFLAGS = 64          # offset of HEADER.uflags in its record (engine/include/ckpt_hdr.h)


@pytest.fixture(scope="module")
def rst_files(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_files")


def records(img: Path):
    """(type, payload) of every record."""
    return ((t, p) for _, t, p in frames(img.read_bytes()))


def strings_after(img: Path, first: int, second: int) -> list[str]:
    """The text of every `second` record that follows a `first` record."""
    recs = list(records(img))
    return [s.strip(b"\0").decode() for (t, _), (t2, s) in zip(recs, recs[1:])
            if t == first and t2 == second]


def error_messages(img: Path) -> list[str]:
    return strings_after(img, ERROR, STRING)


def run_prog(rst_files, tmp_path, mode, settle=0.0):
    """rst_files MODE dumped with --kill while it works, GO created, restored: the report."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / f"{mode}.img"
    p = start([rst_files, mode, out, go, tmp_path], out)
    time.sleep(settle)
    dump_kill(p, img)
    go.touch()
    r = restore(img)
    report = out.read_text()
    assert r.returncode == 0, (r.stderr, report)
    assert "FAIL" not in report and "done 0" in report, report
    return report, img


def test_a_deleted_log_file_goes_on_being_appended(rst_files, tmp_path):
    report, img = run_prog(rst_files, tmp_path, "ghostlog", settle=0.1)
    for name in ("ghost-name", "ghost-stat", "ghost-append-flag", "ghost-contents", "ghost-offset"):
        assert f"ok {name}" in report
    n = int(next(l for l in report.splitlines() if l.startswith("lines ")).split()[1])
    assert n > 40                               # lines written before and after the dump
    types = [t for t, _ in records(img)]
    assert types.count(EXT_FILE_GHOST) == 1 and EXT_EXTENT in types
    assert not (tmp_path / "log").exists()      # named for a moment only, unlinked again


def test_a_deleted_log_file_across_a_live_migration_through_a_pipe(rst_files, tmp_path):
    """dump -o - | restore -: the contents arrive in the stream, read once, in order."""
    out, go = tmp_path / "out", tmp_path / "go"
    p = start([rst_files, "ghostlog", out, go, tmp_path], out)
    time.sleep(0.1)
    mig = subprocess.Popen(f"{' '.join(IMGTOOLS)} dump {p.pid} --kill -o - | {' '.join(IMGTOOLS)} restore -",
                           shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.wait(timeout=30)
    go.touch()
    _, err = mig.communicate(timeout=60)
    report = out.read_text()
    assert mig.returncode == 0, (err, report)
    assert "FAIL" not in report and "ok ghost-contents" in report and "ok ghost-name" in report


def test_a_deleted_file_mapped_shared_and_written(rst_files, tmp_path):
    report, img = run_prog(rst_files, tmp_path, "ghostmap")
    for name in ("map-contents", "map-hole", "map-shared", "map-name"):
        assert f"ok {name}" in report
    recs = list(records(img))
    ghosts = [p for t, p in recs if t == EXT_FILE_GHOST]
    assert len(ghosts) == 2                     # the descriptor and the mapping: one inode
    assert len({struct.unpack_from("<i", p, 40)[0] for p in ghosts}) == 1
    # contents once, the hole left out: page 0 and page 2, then the end at 3 pages
    extents = [(struct.unpack_from("<Q", p)[0], len(p) - 8) for t, p in recs if t == EXT_EXTENT]
    assert extents == [(0, 4096), (8192, 4096), (12288, 0)]


def test_a_sealed_memfd_keeps_name_seals_contents_and_descriptions(rst_files, tmp_path):
    report, img = run_prog(rst_files, tmp_path, "memfd")
    for name in ("memfd-seals", "memfd-name", "memfd-cloexec", "memfd-contents", "memfd-hole",
                 "memfd-second-description", "memfd-sealed", "plain-seals",
                 "plain-private-copy", "plain-name", "noexec-seal"):
        assert f"ok {name}" in report
    assert sum(len(p) - 8 for t, p in records(img) if t == EXT_EXTENT) < 3 * 4096   # holes skipped


def test_a_dev_zero_mapping_shared_by_parent_and_child(rst_files, tmp_path):
    report, _ = run_prog(rst_files, tmp_path, "devzero")
    assert "ok devzero-contents" in report and "ok devzero-shared" in report


def _holder(tmp_path, path: Path):
    """sleep holding path open on descriptor 3, dumped with --kill: the image."""
    img = tmp_path / "holder.img"
    p = subprocess.Popen(["sh", "-c", f'exec 3<"{path}"; exec sleep 100'], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep")
             and os.path.exists(f"/proc/{p.pid}/fd/3"), what="sleep")
    dump_kill(p, img)
    return img


def _restored_sleeps(img: Path) -> list[int]:
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{d}/fd/3") and os.readlink(f"/proc/{d}/exe").endswith("/sleep") \
                    and str(img.parent) in os.readlink(f"/proc/{d}/fd/3"):
                found.append(int(d))
        except OSError:
            pass
    return found


def test_a_file_changed_since_the_dump_is_refused_unless_allowed(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"12345")
    img = _holder(tmp_path, data)
    assert EXT_FILE_STAT in [t for t, _ in records(img)]
    with open(data, "ab") as f:
        f.write(b"6789")
    r = restore(img)
    assert r.returncode == 3
    assert f"file {data} changed since the dump: size 5 -> 9, mtime" in r.stderr
    assert "--allow-changed-files" in r.stderr and not _restored_sleeps(img)
    # the same size, another mtime: refused too; from a pipe, after the tree exists
    data.write_bytes(b"54321")
    os.utime(data, (1, 1))
    with open(img, "rb") as f:
        r = restore("-", stdin=f)
    assert r.returncode == 3 and "size 5 -> 5, mtime" in r.stderr and "1970-01-01 00:00:01" in r.stderr
    time.sleep(0.2)
    assert not _restored_sleeps(img)
    r = restore(img, "--allow-changed-files", "--detach")
    assert r.returncode == 0, r.stderr
    root = int(r.stdout.split()[-1])
    try:
        wait_for(lambda: _restored_sleeps(img), what="the restored sleep")
    finally:
        os.kill(root, 9)


def test_a_deleted_file_over_the_ghost_limit_is_an_error_record(tmp_path):
    big, sparse = tmp_path / "big", tmp_path / "sparse"
    big.write_bytes(os.urandom(2 << 20))
    with open(sparse, "wb") as f:           # 10 MiB of which 4 KiB are data
        f.truncate(10 << 20)
        f.seek(5 << 20)
        f.write(b"s" * 4096)
    img = tmp_path / "limit.img"
    p = subprocess.Popen(["sh", "-c", f'exec 3<"{big}" 4<"{sparse}"; rm "{big}" "{sparse}"; '
                          'exec sleep 100'], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep") and not big.exists(),
             what="sleep")
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--ghost-limit", "1M"],
                       capture_output=True, text=True)
    assert r.returncode == 3
    assert f"deleted file {big} not saved: 2097152 bytes of contents, over the --ghost-limit " \
           f"of 1048576 bytes" in r.stderr
    msgs = error_messages(img)
    assert len(msgs) == 1 and str(big) in msgs[0]
    recs = list(records(img))
    assert [t for t, _ in recs].count(EXT_FILE_GHOST) == 1          # the sparse one fits
    assert sum(len(p) - 8 for t, p in recs if t == EXT_EXTENT) == 4096
    r = restore(img)
    assert r.returncode == 3 and "could not save everything" in r.stderr
    p.kill()
    p.wait()
    assert subprocess.run([*IMGTOOLS, "dump", "1", "--ghost-limit", "lots"],
                          capture_output=True, text=True).returncode == 2


def test_strict_writes_a_pure_v23_image_with_error_records(tmp_path):
    script = ("import os, time\n"
              "m = os.memfd_create('strictly'); os.write(m, b'x')\n"
              f"g = open('{tmp_path}/gone', 'w'); os.unlink('{tmp_path}/gone')\n"
              "print('ready', flush=True); time.sleep(100)\n")
    p = subprocess.Popen(["python3", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        loose, strict = tmp_path / "loose.img", tmp_path / "strict.img"
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(loose)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(strict), "--strict"],
                           capture_output=True, text=True)
        assert r.returncode == 3                # partial: what only an extension holds
    finally:
        p.kill()
        p.wait()
    head = next(records(loose))[1]
    assert struct.unpack_from("<Q", head, HEADER_UFLAGS - 8)[0] & UFLAG_EXT
    assert {EXT_FILE_STAT, EXT_FILE_MEMFD, EXT_FILE_GHOST, EXT_EXTENT} <= {t for t, _ in records(loose)}
    head = next(records(strict))[1]
    assert not struct.unpack_from("<Q", head, HEADER_UFLAGS - 8)[0] & UFLAG_EXT
    assert not [t for t, _ in records(strict) if EXT_FIRST <= t <= EXT_LAST]
    msgs = error_messages(strict)
    # nothing but regular files: their EXT_FILE_STAT is a check only, left out without an
    # ERROR record; glibc's rseq registration is state, and v23 has no record for it
    plain = tmp_path / "plain.img"
    p = subprocess.Popen(["sleep", "100"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(plain), "--strict"],
                           capture_output=True, text=True)
        assert r.returncode in (0, 3), r.stderr
    finally:
        p.kill()
        p.wait()
    assert not [t for t, _ in records(plain) if EXT_FIRST <= t <= EXT_LAST]
    assert all("rseq area" in m for m in error_messages(plain)), error_messages(plain)
    assert any("memfd strictly not saved (--strict" in m for m in msgs), msgs
    assert any(f"deleted file {tmp_path}/gone not saved (--strict" in m for m in msgs), msgs


def test_a_deleted_file_whose_directory_is_gone_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("contents")
    img = tmp_path / "nodir.img"
    p = subprocess.Popen(["sh", "-c", f'exec 3<"{d}/f"; rm "{d}/f"; exec sleep 100'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep") and not (d / "f").exists(),
             what="sleep")
    dump_kill(p, img)
    d.rmdir()
    r = restore(img)
    assert r.returncode == 3
    assert f"deleted file {d}/f: its directory {d} is gone" in r.stderr
    assert not _restored_sleeps(img)


def test_a_new_file_in_the_ghosts_place_is_left_alone(tmp_path):
    """A log rotated after the dump: the restored ghost is unnamed, the new file untouched."""
    log = tmp_path / "log"
    log.write_text("old contents\n")
    img = tmp_path / "rotated.img"
    p = subprocess.Popen(["sh", "-c", f'exec 3<"{log}"; rm "{log}"; exec sleep 100'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep") and not log.exists(),
             what="sleep")
    dump_kill(p, img)
    log.write_text("new file\n")
    before = os.stat(log)
    r = restore(img, "--detach")
    assert r.returncode == 0, r.stderr
    root = int(r.stdout.split()[-1])
    try:
        wait_for(lambda: _restored_sleeps(img), what="the restored sleep")
        pid = _restored_sleeps(img)[0]
        assert log.read_text() == "new file\n" and os.stat(log).st_ino == before.st_ino
        link = os.readlink(f"/proc/{pid}/fd/3")
        assert link.startswith(f"{tmp_path}/#") and link.endswith(" (deleted)")
        with open(f"/proc/{pid}/fd/3") as f:
            assert f.read() == "old contents\n"
    finally:
        os.kill(root, 9)


def test_a_deleted_executable_runs_on(rst_files, tmp_path):
    """The program's own binary deleted (as by an upgrade): saved and mapped as a ghost."""
    exe, out, go, img = tmp_path / "upgraded", tmp_path / "out", tmp_path / "go", tmp_path / "exe.img"
    exe.write_bytes(rst_files.read_bytes())
    exe.chmod(0o755)
    p = start([exe, "ghostlog", out, go, tmp_path], out)
    exe.unlink()
    dump_kill(p, img)
    assert str(exe) in strings_after(img, EXT_FILE_GHOST, FILE_NAME)
    go.touch()
    r = restore(img)
    report = out.read_text()
    assert r.returncode == 0, (r.stderr, report)
    assert "FAIL" not in report and "ok ghost-contents" in report and not exe.exists()


def test_a_forged_extent_is_invalid_and_nothing_runs(rst_files, tmp_path):
    """Contents outside the file's size, or out of order: exit 3 before anything runs."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "memfd.img"
    p = start([rst_files, "memfd", out, go, tmp_path], out)
    dump_kill(p, img)
    data, pos, first = bytearray(img.read_bytes()), 0, None
    while pos < len(data):
        rtype, rlen = struct.unpack_from("<II", data, pos)
        if rtype == EXT_EXTENT and rlen > 16 and first is None:
            first = pos
        pos += rlen
    assert first is not None
    for offset, what in ((2 << 20, "bytes at 2097152"), (1 << 63, "bytes at 9223372036854775808")):
        forged = tmp_path / "forged.img"
        struct.pack_into("<Q", data, first + 8, offset)
        forged.write_bytes(data)
        go.touch()
        r = restore(forged)
        assert r.returncode == 3 and "EXT_EXTENT at offset" in r.stderr and what in r.stderr, r.stderr
        assert not running(rst_files)
