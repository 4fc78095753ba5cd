"""Unix sockets dumped (--kill) and restored: real processes that check themselves.

tests/progs/rst_unix.c holds a stream pair between parent and child with bytes queued both
ways, a datagram and a seqpacket pair with messages queued, a socket whose peer wrote and
closed, a pair shut down one way, a listener on a path and an abstract-name socket; after
the restore each side reads every byte once, every message whole, and the listener accepts
the test's connection. Real programs nobody here wrote: Python's socketserver
(UnixStreamServer) and multiprocessing.Pipe (a socketpair between parent and child). And
the promises: the dump reads queues without consuming them, what cannot be saved is an
ERROR record (a peer outside the tree, descriptors in flight), restore refuses an address
in use and never removes a file that is not a stale socket.
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from imgtools.reader import open_image

import pytest

from test_restore import IMGTOOLS, build_prog, dump_kill, frames, pytestmark, restore, running, start  # noqa: F401

REAL_SERVER = r"""
import os, socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"echo " + line)
srv = socketserver.UnixStreamServer(sys.argv[1], Echo)
print("ready", flush=True)
srv.serve_forever()
"""

REAL_PIPE = r"""
import multiprocessing as mp, os, sys, time
def child(conn, go):
    conn.send({"from": "child", "n": 1})
    conn.send(list(range(1000)))
    conn.send_bytes(b"x" * 70000)
    while not os.path.exists(go):
        time.sleep(0.01)
    got = conn.recv()
    conn.send(("child got", got))
if __name__ == "__main__":
    mp.set_start_method("fork")
    here, there = mp.Pipe()
    p = mp.Process(target=child, args=(there, sys.argv[2]))
    p.start()
    here.send("queued to the child before the dump")
    while not here.poll():
        time.sleep(0.01)
    time.sleep(0.3)                       # everything the child sends before go is queued
    open(sys.argv[1], "w").write("ready\n")
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    ok = (here.recv() == {"from": "child", "n": 1} and here.recv() == list(range(1000))
          and here.recv_bytes() == b"x" * 70000
          and here.recv() == ("child got", "queued to the child before the dump"))
    p.join()
    sys.exit(0 if ok and p.exitcode == 0 else 1)
"""


@pytest.fixture(scope="module")
def rst_unix(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_unix")


def connect_retry(path: Path, timeout=15.0) -> socket.socket:
    end = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            s.settimeout(10)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


def ping_until_pong(path: Path, timeout=15.0) -> bytes:
    """A connection to a listener being restored: one made before the restore has
    remade the connections the listener had accepted is closed by the restorer (as a
    server that is not up yet would), so a closed one is tried again."""
    end = time.monotonic() + timeout
    while True:
        with connect_retry(path, timeout) as s:
            try:
                s.sendall(b"ping")
                got = s.recv(4)
            except ConnectionError:
                got = b""
        if got or time.monotonic() > end:
            return got
        time.sleep(0.02)


def dump(pid: int, img: Path, *flags: str):
    return subprocess.run([*IMGTOOLS, "dump", str(pid), "-o", str(img), *flags],
                          capture_output=True, text=True)


def test_pairs_queues_listener_and_abstract_name_survive(rst_unix, tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "unix.img"
    p = start([rst_unix, out, go, tmp_path], out)
    dump_kill(p, img)
    assert (tmp_path / "listen.sock").exists()          # left behind, stale: restore rebinds
    go.touch()
    r = subprocess.Popen([*IMGTOOLS, "restore", str(img)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert ping_until_pong(tmp_path / "listen.sock") == b"pong"
        _, err = r.communicate(timeout=60)
    finally:
        r.kill()
    report = out.read_text()
    assert r.returncode == 0, (err, report)
    assert "FAIL" not in report and "done 0" in report
    for who, name in (("child", "stream-queued"), ("parent", "stream-queued"),
                      ("parent", "dgram-1"), ("parent", "dgram-2"), ("parent", "dgram-3"),
                      ("parent", "dgram-nothing-more"), ("child", "dgram-queued"),
                      ("parent", "seqpacket-creds"), ("parent", "seqpacket-1"), ("parent", "seqpacket-2"),
                      ("parent", "dead-peer-data"), ("parent", "dead-peer-eof"),
                      ("parent", "half-eof"), ("parent", "half-shut"), ("parent", "half-other-way"),
                      ("parent", "abstract-1"), ("parent", "abstract-2"), ("parent", "abstract-name"),
                      ("parent", "abstract-bound"), ("parent", "rcvbuf"), ("parent", "passcred"),
                      ("parent", "rcvtimeo"), ("child", "nonblock"), ("parent", "stream-after"),
                      ("parent", "dgram-after"), ("parent", "listener-accepts"),
                      ("parent", "listener-ping"), ("parent", "relative-name"),
                      ("parent", "relative-bound"), ("parent", "unlinked-name"),
                      ("parent", "one-way-queued"), ("parent", "one-way-after"),
                      ("child", "one-way-after"), ("parent", "accepted-name"),
                      ("parent", "accepted-queued"), ("child", "client-peer-name"),
                      ("child", "client-queued")):
        assert f"ok {who} {name}" in report


def test_the_records_are_the_kernels(rst_unix, tmp_path):
    """One SOCK object per socket, the peer nested, queues at the end of the file table."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "unix.img"
    p = start([rst_unix, out, go, tmp_path], out)
    dump_kill(p, img)
    types = []
    with open_image(str(img)) as reader:
        for rec in reader.records():
            types.append(rec.type)
    sock, unix, queue, ftable, fdesc = 701, 705, 702, 301, 302
    # the stream pair: SOCKET SOCKET SOCKET_UNIX SOCKET_UNIX (the peer nested in the first)
    i = types.index(sock)
    assert types[i + 1:i + 4] == [6, sock, unix] and types[i + 4] == unix
    # queues come after the last FILE_DESC of the first file table
    first_q = types.index(queue)
    assert types[first_q - 1] == fdesc and ftable not in types[types.index(ftable) + 1:first_q]
    # 8 sockets in the parent's table with queues: 2 SOCKET_QUEUE records each, the listener none
    assert types.count(sock) == 17 and types.count(unix) == 17


def test_the_dump_leaves_every_queued_byte_to_the_target(tmp_path):
    img, go = tmp_path / "a.img", tmp_path / "go"
    code = ("import socket, os, sys, time\n"
            "a, b = socket.socketpair(); b.sendall(b'q' * 5000)\n"
            "d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "d2.send(b'm1'); d2.send(b'm22')\n"
            "print('ready', flush=True)\n"
            "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
            "a.setblocking(False); d1.setblocking(False)\n"
            "ok = a.recv(10000) == b'q' * 5000 and d1.recv(9) == b'm1' and d1.recv(9) == b'm22'\n"
            "try:\n a.recv(1); ok = False\nexcept BlockingIOError: pass\n"
            "sys.exit(0 if ok else 1)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(go)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    r = dump(p.pid, img)
    assert r.returncode == 0, r.stderr
    go.touch()
    assert p.wait(timeout=10) == 0                       # the target read it all, once


def test_after_a_dump_without_kill_the_program_still_passes_its_own_checks(rst_unix, tmp_path):
    """Nothing the dump peeked at is gone, nothing is doubled, every option is as it was."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "unix.img"
    p = start([rst_unix, out, go, tmp_path], out)
    try:
        r = dump(p.pid, img)
        assert r.returncode == 0, r.stderr
        go.touch()
        with connect_retry(tmp_path / "listen.sock") as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"pong"
        assert p.wait(timeout=30) == 0, out.read_text()
        assert "done 0" in out.read_text()
    finally:
        for pid in running(rst_unix):
            os.kill(pid, 9)
        p.wait()


FULL_QUEUES = r"""
import os, socket, sys, time
a, b = socket.socketpair()
d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
for s in (a, d2):
    s.setblocking(False)
sent = 0
try:
    while True:
        sent += a.send(bytes([sent % 251]) * 4096)   # until the writer would block
except BlockingIOError:
    pass
msgs = 0
try:
    while True:
        d2.send(msgs.to_bytes(4, "little")); msgs += 1
except BlockingIOError:
    pass
a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # lowered after the queue filled
bufs = [s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for s in (a, d2)]
open(sys.argv[1], "w").write(f"ready {sent} {msgs}\n")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
got = bytearray()
b.setblocking(False)
try:
    while True:
        chunk = b.recv(65536)
        if not chunk:
            break
        got += chunk
except BlockingIOError:
    pass
ok = len(got) == sent and all(got[i] == (i // 4096 * 4096) % 251 for i in range(0, sent, 4096))
d1.setblocking(False)
seen = []
try:
    while True:
        seen.append(int.from_bytes(d1.recv(16), "little"))
except BlockingIOError:
    pass
ok = ok and seen == list(range(msgs))
ok = ok and bufs == [s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for s in (a, d2)]
open(sys.argv[1], "a").write(f"got {len(got)} {len(seen)} {bufs}\n")
sys.exit(0 if ok else 1)
"""


def test_queues_full_at_the_dump_fit_again(tmp_path):
    """A writer that would block (then lowered its SO_SNDBUF): every byte and every datagram
    back, the buffer sizes as they were."""
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "full.img"
    p = start([sys.executable, "-c", FULL_QUEUES, out, go], out)
    dump_kill(p, img)
    _, sent, msgs = out.read_text().split()
    assert int(sent) > 100_000 and int(msgs) > 10
    go.touch()
    r = restore(img)
    assert r.returncode == 0, (r.stderr, out.read_text())


def test_a_real_unix_stream_server_answers_after_restore(tmp_path):
    path, img = tmp_path / "echo.sock", tmp_path / "srv.img"
    p = subprocess.Popen([sys.executable, "-c", REAL_SERVER, str(path)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    with connect_retry(path) as s:
        s.sendall(b"before\n")
        assert s.recv(100) == b"echo before\n"
    time.sleep(0.2)                                     # the handler is done with it
    dump_kill(p, img)
    r = subprocess.Popen([*IMGTOOLS, "restore", str(img)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        for word in (b"one", b"two"):
            with connect_retry(path) as s:
                s.sendall(word + b"\n")
                assert s.recv(100) == b"echo " + word + b"\n"
    finally:
        r.terminate()
        r.communicate(timeout=20)


def test_multiprocessing_pipe_between_parent_and_child_keeps_its_data(tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "mp.img"
    p = start([sys.executable, "-c", REAL_PIPE, out, go], out)
    dump_kill(p, img)
    go.touch()
    r = restore(img)
    assert r.returncode == 0, r.stderr


def test_an_address_in_use_is_refused_and_nothing_runs(rst_unix, tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "unix.img"
    p = start([rst_unix, out, go, tmp_path], out)
    try:
        r = dump(p.pid, img)                             # no --kill: the listener stays
        assert r.returncode == 0, r.stderr
        r = restore(img)
        assert r.returncode == 3 and "address already in use" in r.stderr, r.stderr
        assert "listen.sock" in r.stderr
        assert len(running(rst_unix)) == 2               # the original parent and child only
    finally:
        for pid in running(rst_unix):
            os.kill(pid, 9)
        p.wait()


def test_a_file_at_the_socket_path_is_never_removed(rst_unix, tmp_path):
    out, go, img = tmp_path / "out", tmp_path / "go", tmp_path / "unix.img"
    p = start([rst_unix, out, go, tmp_path], out)
    dump_kill(p, img)
    (tmp_path / "listen.sock").unlink()
    (tmp_path / "listen.sock").write_text("precious")
    r = restore(img)
    assert r.returncode == 3 and "exists and is not a socket" in r.stderr, r.stderr
    assert (tmp_path / "listen.sock").read_text() == "precious"
    time.sleep(0.2)
    assert not running(rst_unix)


def test_a_peer_outside_the_tree_is_an_error_record(tmp_path):
    path, img = tmp_path / "outside.sock", tmp_path / "o.img"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    code = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(100)")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        conn, _ = srv.accept()
        r = dump(p.pid, img)
        assert r.returncode == 3
        assert "connected to a peer outside the tree" in r.stderr and str(path) in r.stderr
        r = restore(img)
        assert r.returncode == 3 and "outside the tree" in r.stderr
        conn.close()
    finally:
        p.kill()
        p.wait()
        srv.close()


def test_a_connection_not_accepted_yet_is_an_error_record(tmp_path):
    """Its peer has no inode yet, like a peer that is gone -- but it is not gone."""
    path, img = tmp_path / "slow.sock", tmp_path / "n.img"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)                                       # and never accepts
    code = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "s.send(b'waiting'); print('ready', flush=True); time.sleep(100)")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        r = dump(p.pid, img)
        assert r.returncode == 3 and "has not accepted it yet" in r.stderr, r.stderr
        assert str(path) in r.stderr
    finally:
        p.kill()
        p.wait()
        srv.close()


def test_a_datagram_socket_connected_to_a_name_outside_reconnects(tmp_path):
    """Like a logger's connection to /dev/log: restore connects it to the name again."""
    path, img, go = tmp_path / "log.sock", tmp_path / "d.img", tmp_path / "go"
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(str(path))
    log.settimeout(20)
    code = ("import os, socket, sys, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "s.connect(sys.argv[1]); s.send(b'before'); print('ready', flush=True)\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
            "s.send(b'after restore')")
    p = subprocess.Popen([sys.executable, "-c", code, str(path), str(go)],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        assert log.recv(100) == b"before"
        dump_kill(p, img)
        go.touch()
        r = restore(img)
        assert r.returncode == 0, r.stderr
        assert log.recv(100) == b"after restore"
    finally:
        p.kill()
        p.wait()
        log.close()


def test_descriptors_in_flight_are_an_error_record(tmp_path):
    img = tmp_path / "f.img"
    code = ("import socket, time; a, b = socket.socketpair(); "
            "socket.send_fds(b, [b'with an fd'], [0]); print('ready', flush=True); time.sleep(100)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        r = dump(p.pid, img)
        assert r.returncode == 3 and "SCM_RIGHTS" in r.stderr, r.stderr
        r = restore(img)
        assert r.returncode == 3 and "SCM_RIGHTS" in r.stderr
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("what,field_off,fmt,value,message", [
    ("SOCKET_UNIX", 12, "<i", 9999, "SOCKET_UNIX at offset"),       # peer: no such socket
    ("SOCKET_UNIX", 24, "<I", 200, "SOCKET_UNIX at offset"),        # laddr_len beyond sun_path
    ("SOCKET", 106, "<B", 0x10, "shutdown bits"),                 # sock.shutdown
    ("SOCKET_BUFFER", 8 + 12, "<I", 5, "SOCKET_BUFFER at offset"),   # lin_len != its BUFFER
])
def test_a_forged_socket_record_is_refused_in_one_line(tmp_path, what, field_off, fmt, value, message):
    img = tmp_path / "s.img"
    code = ("import socket, time; a, b = socket.socketpair(); b.send(b'queued!'); "
            "print('ready', flush=True); time.sleep(100)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.stdout.readline() == b"ready\n"
    dump_kill(p, img)
    data = bytearray(img.read_bytes())
    rtype = {"SOCKET": 701, "SOCKET_BUFFER": 703, "SOCKET_UNIX": 705}[what]
    off = next(o for o, t, _ in frames(data) if t == rtype)
    struct.pack_into(fmt, data, off + field_off, value)
    img.write_bytes(bytes(data))
    r = restore(img)
    assert r.returncode == 3 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
