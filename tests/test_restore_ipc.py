"""SysV IPC across dump (--kill) and restore: shm segments, message queues, semaphore sets.

tests/progs/rst_ipc.c makes the objects, writes "ready <id>", waits for a GO file, then checks
them (contents, order, values, sharing between two processes) and exits 0 only if every check
passed; `imgtools restore` (without --detach) exits with the root's status, so its exit code
is the program's verdict. "private": the program has an ipc namespace of its own (the dump
saves all of it); otherwise it shares the host's (the dump saves the objects the tree uses,
and the original's objects stay behind in the host namespace when it is killed).
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import formats

from test_restore import IMGTOOLS, build_prog, frames, pytestmark, running, wait_for  # noqa: F401

V23 = formats.abi("v23").types    # record type numbers (one home: formats/)
IPC_SECTION, IPC_SHM, IPC_MSG, IPC_SEM, PGARR, BUFFER = (V23[n] for n in (
    "ipc", "ipc_shm", "ipc_msg", "ipc_sem", "pgarr", "buffer"))

@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_ipc", "-pthread")


def ipcrm(kind: str, ident: int) -> None:
    subprocess.run(["ipcrm", f"-{kind}", str(ident)], capture_output=True)


def dumped(prog, tmp_path, kind, *mode):
    """rst_ipc KIND started, ready, dumped with --kill: (out, go, image, the object's id)."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / f"{kind}.img"
    p = subprocess.Popen([str(prog), kind, str(out), str(go), *mode], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_ipc ready")
    ident = int(out.read_text().split()[1])
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img), "--kill"],
                       capture_output=True, text=True)
    p.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    return out, go, img, ident


def restore(img, *flags):
    return subprocess.run([*IMGTOOLS, "restore", str(img), *flags], capture_output=True,
                          text=True, timeout=60)


def verdict(out: Path) -> tuple[list[str], list[str]]:
    text = out.read_text().splitlines()
    return [l for l in text if l.startswith("ok ")], [l for l in text if l.startswith("FAIL")]


def sections(img: Path) -> dict[int, int]:
    """IPC section type -> ipc_count, of the image's (first) ipc namespace."""
    data, found = img.read_bytes(), {}
    for pos, t, _ in frames(img.read_bytes()):
        if t == IPC_SECTION:
            kind, count = struct.unpack_from("<II", data, pos + 8)
            found.setdefault(kind, count)
    return found


@pytest.mark.parametrize("mode", [("private",), ()], ids=["own-ns", "host-ns"])
def test_shm_segment_shared_by_two_processes(prog, tmp_path, mode):
    """Old contents kept (a never-touched page stays zero); the child writes, the parent sees."""
    out, go, img, ident = dumped(prog, tmp_path, "shm", *mode)
    try:
        assert sections(img) == {IPC_SHM: 1, IPC_MSG: 0, IPC_SEM: 0}
        go.touch()
        r = restore(img)
        ok, fail = verdict(out)
        assert r.returncode == 0 and not fail, (r.stderr, fail)
        assert {"ok shm-contents", "ok shm-shared", "ok shm-child", "ok shm-stat"} <= set(ok)
    finally:
        if not mode:
            ipcrm("m", ident)   # the killed original's segment, left in the host namespace


def test_shm_segment_removed_while_attached_goes_with_its_processes(prog, tmp_path):
    """SHM_DEST: the restored segment is marked again (after the tasks attached it)."""
    out, go, img, _ = dumped(prog, tmp_path, "shmdest", "private")
    go.touch()
    r = restore(img)
    ok, fail = verdict(out)
    assert r.returncode == 0 and not fail, (r.stderr, fail)
    assert {"ok shm-contents", "ok shm-shared", "ok shm-stat"} <= set(ok)


@pytest.mark.parametrize("mode", [("private",), ()], ids=["own-ns", "host-ns"])
def test_message_queue_keeps_its_messages_in_order(prog, tmp_path, mode):
    out, go, img, ident = dumped(prog, tmp_path, "msg", *mode)
    try:
        assert sections(img) == {IPC_SHM: 0, IPC_MSG: 1, IPC_SEM: 0}
        go.touch()
        r = restore(img)
        ok, fail = verdict(out)
        assert r.returncode == 0 and not fail, (r.stderr, fail)
        assert ok.count("ok msg-order") == 3 and "ok msg-empty" in ok
    finally:
        if not mode:
            ipcrm("q", ident)


def test_live_migration_through_a_pipe(prog, tmp_path):
    """dump -o - | restore -: the IPC sections are read as they arrive (no metadata pass)."""
    out, go = tmp_path / "out", tmp_path / "go"
    p = subprocess.Popen([str(prog), "msg", str(out), str(go), "private"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_ipc ready")
    dump = subprocess.Popen([*IMGTOOLS, "dump", str(p.pid), "-o", "-", "--kill"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = dump.stdout.read(8)      # written once the tree is frozen
    go.touch()                      # so only the restored process sees it
    restorer = subprocess.Popen([*IMGTOOLS, "restore", "-"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    restorer.stdin.write(head)
    shutil.copyfileobj(dump.stdout, restorer.stdin, 1 << 16)
    restorer.stdin.close()
    err = restorer.stderr.read()
    restorer.wait(timeout=60)
    assert dump.wait(timeout=30) == 0, dump.stderr.read()
    p.wait(timeout=10)
    ok, fail = verdict(out)
    assert restorer.returncode == 0 and not fail, (err, fail)
    assert ok.count("ok msg-order") == 3


def test_semaphore_values_kept(prog, tmp_path):
    out, go, img, _ = dumped(prog, tmp_path, "sem", "private")
    go.touch()
    r = restore(img)
    ok, fail = verdict(out)
    assert r.returncode == 0 and not fail, (r.stderr, fail)
    assert {"ok sem-values", "ok sem-op"} <= set(ok)


def test_no_pidns_refuses_a_taken_id_then_restores_in_the_host_namespace(prog, tmp_path):
    """The killed original's set still holds its id: refused, nothing runs, nothing is made."""
    out, go, img, ident = dumped(prog, tmp_path, "sem", )
    go.touch()
    try:
        before = subprocess.run(["ipcs", "-s"], capture_output=True, text=True).stdout
        r = restore(img, "--no-pidns")
        assert r.returncode == 3, r.stderr
        assert f"SysV semaphore set id {ident} is taken" in r.stderr
        assert running(prog) == []
        assert subprocess.run(["ipcs", "-s"], capture_output=True, text=True).stdout == before
        ipcrm("s", ident)
        r = restore(img, "--no-pidns")
        ok, fail = verdict(out)
        assert r.returncode == 0 and not fail, (r.stderr, fail)
        assert "ok sem-values" in ok
    finally:
        ipcrm("s", ident)


def test_host_namespace_dump_takes_only_what_the_tree_uses(prog, tmp_path):
    other = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, check=True)
    other_id = int(other.stdout.split()[-1])
    try:
        out, go, img, ident = dumped(prog, tmp_path, "shm")
        ipcrm("m", ident)
        assert sections(img) == {IPC_SHM: 1, IPC_MSG: 0, IPC_SEM: 0}
    finally:
        ipcrm("q", other_id)


# An ipc namespace of its own (gone with its objects when the script ends) holding the
# script, the process it forks and the dumper: segment A is attached by that child, then
# by the script (its shm_cpid and shm_lpid are the script's: only the child's maps show the
# attach), B only by the script, C by nobody. Prints "A B C exit-code-of-the-dump".
SEGMENTS_SEEN_BY_MAPS = r"""
import ctypes, os, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
def attach(seg):
    assert libc.shmat(seg, None, 0) != ctypes.c_void_p(-1).value, os.strerror(ctypes.get_errno())
a, b, c = (libc.shmget(0, 4096, 0o1600) for _ in range(3))
assert min(a, b, c) >= 0
r, w = os.pipe()
child = os.fork()
if child == 0:
    attach(a)
    os.write(w, b"x")
    while True:
        signal.pause()
os.read(r, 1)
attach(a)
attach(b)
dump = subprocess.run([sys.executable, "-m", "imgtools", "dump", str(child), "--single",
                       "-o", sys.argv[1]])
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print(a, b, c, dump.returncode)
"""


def test_shared_namespace_dump_takes_a_segment_only_the_tree_s_maps_show(tmp_path):
    """Of a namespace the dumper shares, a segment the tree has attached is saved though
    another process created it and attached it last; segments attached only elsewhere,
    or nowhere, are not."""
    img = tmp_path / "seg.img"
    r = subprocess.run(["unshare", "--ipc", sys.executable, "-c", SEGMENTS_SEEN_BY_MAPS, str(img)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    a, b, c, code = map(int, r.stdout.split())
    assert code == 0, r.stderr
    saved = [struct.unpack_from("<i", body, 8)[0] for _, t, body in frames(img.read_bytes())
             if t == IPC_SHM]
    assert saved == [a], (saved, a, b, c)


def test_semaphore_undo_list_survives_and_is_applied_at_exit(prog, tmp_path):
    """A child's SEM_UNDO adjustments (+2, -1) come back: the kernel applies them when it exits."""
    out, go, img, _ = dumped(prog, tmp_path, "semundo", "private")
    kinds = [t for _, t, _ in frames(img.read_bytes())]
    assert kinds.count(506) == 1 and kinds.count(507) == 1     # one list, one set
    go.touch()
    r = restore(img)
    ok, fail = verdict(out)
    assert r.returncode == 0 and not fail, (r.stderr, fail)
    assert {"ok semundo-child", "ok semundo-applied"} <= set(ok)


def test_undo_list_of_a_thread_is_its_process_s(prog, tmp_path):
    """Threads share one list: one object, restored once, named by both TASK_OBJS."""
    out, go, img, _ = dumped(prog, tmp_path, "semthread", "private")
    assert [t for _, t, _ in frames(img.read_bytes())].count(506) == 1
    go.touch()
    r = restore(img)
    ok, fail = verdict(out)
    assert r.returncode == 0 and not fail, (r.stderr, fail)
    assert {"ok semthread-child", "ok semthread-applied"} <= set(ok)


def test_undo_list_of_a_task_that_cannot_be_probed_is_an_error_record(prog, tmp_path):
    """Under seccomp the dump runs nothing in the task: the list is reported, not dropped."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "sc.img"
    p = subprocess.Popen([str(prog), "semseccomp", str(out), str(go), "private"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_ipc ready")
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img)],
                           capture_output=True, text=True)
        assert r.returncode == 3
        assert f"pid {p.pid}: SysV semaphore undo list not read" in r.stderr
        go.touch()
        assert p.wait(timeout=10) == 0     # left running, and unharmed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_dump_probing_undo_lists_leaves_the_values_alone(prog, tmp_path):
    """The probe's semops all fail: values, and the target, are as they were."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "undo.img"
    p = subprocess.Popen([str(prog), "semundo", str(out), str(go)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ident = None
    try:
        wait_for(lambda: out.exists() and "ready" in out.read_text(), what="rst_ipc ready")
        ident = int(out.read_text().split()[1])
        for _ in range(3):
            r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        go.touch()
        assert p.wait(timeout=20) == 0, out.read_text()
        ok, fail = verdict(out)
        assert not fail and "ok semundo-applied" in ok
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if ident is not None:
            ipcrm("s", ident)


def test_segment_page_outside_the_segment_is_refused(prog, tmp_path):
    """A page offset past the segment's end: invalid image (exit 3), nothing left running."""
    out, go, img, _ = dumped(prog, tmp_path, "shm", "private")
    data = bytearray(img.read_bytes())
    recs = list(frames(img.read_bytes()))
    shm = next(i for i, (_, t, _) in enumerate(recs) if t == IPC_SHM)
    assert recs[shm + 1][1] == PGARR and recs[shm + 2][1] == BUFFER
    struct.pack_into("<Q", data, recs[shm + 2][0] + 8, 1 << 30)
    bad = tmp_path / "bad.img"
    bad.write_bytes(bytes(data))
    go.touch()
    r = restore(bad)
    assert r.returncode == 3, r.stderr
    assert "outside the segment" in r.stderr
    assert running(prog) == []
