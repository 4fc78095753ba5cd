"""AF_INET / AF_INET6 sockets across dump --kill and restore, with real programs.

- `python3 -m http.server` (IPv4 and dual-stack IPv6 listeners) answers HTTP on the same
  port after the restore;
- tests/progs/rst_tcp.c, a client and a server in one tree streaming numbered records to
  each other, checked end to end: dumped mid-stream with bytes queued in both directions,
  restored, and its exit status says whether every record arrived exactly once and in order;
- refusals (exit 3, nothing left running): a listening port taken by another process, a TCP
  peer that is gone (and --tcp-close restoring it closed instead).
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import formats
from formats import ext

from test_restore import IMGTOOLS, build_prog, pytestmark, running, tracer, wait_for  # noqa: F401

V23 = formats.abi("v23").types    # record type numbers (one home: formats/)
SOCKET_QUEUE, SOCKET_BUFFER, BUFFER = (V23[n] for n in ("socket_queue", "socket_buffer", "buffer"))
EXT_TCP = ext.TYPES["ext_tcp"]

@pytest.fixture(scope="module")
def rst_tcp(tmp_path_factory):
    return build_prog(tmp_path_factory, "rst_tcp")


def free_port(family=socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind(("::" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def dump_kill(pid: int, img: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([*IMGTOOLS, "dump", str(pid), "-o", str(img), "--kill", *flags],
                          capture_output=True, text=True, timeout=60)


def restore(img: Path, *flags: str, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*IMGTOOLS, "restore", str(img), *flags], capture_output=True,
                          text=True, timeout=timeout)


def queued_bytes(img: Path) -> int:
    """Bytes of socket queues in the image (the BUFFERs after SOCKET_BUFFER records)."""
    data, off, prev, total = img.read_bytes(), 0, None, 0
    while off + 8 <= len(data):
        rtype, rlen = struct.unpack_from("<II", data, off)
        if rtype == BUFFER and prev == SOCKET_BUFFER:
            total += rlen - 8
        prev, off = rtype, off + rlen
    return total


def http_get(port: int, host="127.0.0.1") -> bytes:
    with urllib.request.urlopen(f"http://{host}:{port}/hello.txt", timeout=10) as r:
        return r.read()


def start_http_server(tmp_path: Path, port: int, bind: list[str]) -> subprocess.Popen:
    (tmp_path / "hello.txt").write_text("hello from before the checkpoint\n")
    p = subprocess.Popen([sys.executable, "-m", "http.server", str(port), *bind],
                         cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    def answers():
        try:
            return http_get(port).startswith(b"hello")
        except OSError:
            return False
    wait_for(answers, what="http.server to answer")
    return p


@pytest.mark.parametrize("bind", ["127.0.0.1", "::"], ids=["ipv4", "dual-stack-ipv6"])
def test_http_server_answers_on_the_same_port_after_restore(tmp_path, bind):
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    port = free_port(family)
    p = start_http_server(tmp_path, port, ["--bind", bind])
    img = tmp_path / "http.img"
    r = dump_kill(p.pid, img)
    assert r.returncode == 0, r.stderr
    p.wait(timeout=10)
    with pytest.raises(OSError):
        http_get(port)                       # killed: nobody listens
    rp = subprocess.Popen([*IMGTOOLS, "restore", str(img), "--detach"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    out, err = rp.communicate(timeout=60)
    assert rp.returncode == 0, err
    root = int(out.split()[-1])
    try:
        assert http_get(port) == b"hello from before the checkpoint\n"
        if family == socket.AF_INET6:        # the dual-stack listener takes IPv6 too
            assert http_get(port, "[::1]") == b"hello from before the checkpoint\n"
    finally:
        os.kill(root, 9)


@pytest.mark.parametrize("family", ["4", "6"], ids=["ipv4", "ipv6"])
def test_tcp_pair_streams_across_the_checkpoint_without_loss(rst_tcp, tmp_path, family):
    ready = tmp_path / "ready"
    p = subprocess.Popen([str(rst_tcp), str(ready), str(1 << 19), family], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ready.exists() and "ready" in ready.read_text(), what="rst_tcp")
    time.sleep(0.15)                         # mid-stream
    img = tmp_path / "tcp.img"
    r = dump_kill(p.pid, img)
    assert r.returncode == 0, r.stderr
    assert p.wait(timeout=10) == -9
    assert queued_bytes(img) > 0             # bytes were in flight in the kernel
    r = restore(img)
    assert r.returncode == 0, r.stderr


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def http_server_image(tmp_path: Path) -> tuple[int, Path]:
    """An http.server on 127.0.0.1, dumped with --kill: its port and image."""
    port = free_port()
    p = start_http_server(tmp_path, port, ["--bind", "127.0.0.1"])
    img = tmp_path / "http.img"
    r = dump_kill(p.pid, img)
    assert r.returncode == 0, r.stderr
    p.wait(timeout=10)
    return port, img


def http_server_runs(port: int) -> bool:
    return any(d.isdigit() and f"http.server\0{port}".encode() in _cmdline(d)
               for d in os.listdir("/proc"))


def test_a_listening_port_taken_at_restore_is_refused(tmp_path):
    port, img = http_server_image(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket(); "
                              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                              f"s.bind(('127.0.0.1', {port})); s.listen(); "
                              "print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert other.stdout.readline() == b"ready\n"
        r = restore(img)
        assert r.returncode == 3, r.stderr
        assert f"127.0.0.1:{port}: address already in use" in r.stderr
        assert not http_server_runs(port)
    finally:
        other.kill()
        other.wait()


# A client in the tree, its server outside: the client answers "ping" with "pong"; a
# failed read exits with 40 + errno's class (ECONNABORTED: 42, ECONNRESET: 43, EOF: 44).
CLIENT = r"""
import errno, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").write("ready\n")
try:
    data = s.recv(16)
except OSError as e:
    sys.exit({errno.ECONNABORTED: 42, errno.ECONNRESET: 43}.get(e.errno, 45))
if not data:
    sys.exit(44)
s.sendall(b"pong" if data == b"ping" else b"what")
sys.exit(0 if data == b"ping" else 46)
"""


def _client_of_outside_server(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", CLIENT, str(server.getsockname()[1]), str(ready)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    conn, _ = server.accept()
    wait_for(lambda: ready.exists(), what="the client")
    img = tmp_path / "client.img"
    r = dump_kill(p.pid, img)
    assert r.returncode == 0, r.stderr
    p.wait(timeout=10)
    return server, conn, img


def test_a_connection_to_a_peer_outside_the_tree_goes_on(tmp_path):
    server, conn, img = _client_of_outside_server(tmp_path)
    with server, conn:
        r = restore(img, "--detach")         # the peer speaks only once the client is back
        assert r.returncode == 0, r.stderr
        conn.sendall(b"ping")
        conn.settimeout(10)
        assert conn.recv(16) == b"pong"
        wait_for(lambda: not _cmdline(r.stdout.split()[-1]),
                 what="the client to end")


def test_a_connection_whose_peer_is_gone_is_refused_or_closed(tmp_path):
    server, conn, img = _client_of_outside_server(tmp_path)
    conn.close()
    server.close()                           # the peer is gone, its port closed
    r = restore(img)
    assert r.returncode == 3, r.stderr
    assert "the peer is gone" in r.stderr and "--tcp-close" in r.stderr
    assert not [d for d in os.listdir("/proc") if d.isdigit() and b"ECONNABORTED" in _cmdline(d)]
    r = restore(img, "--tcp-close")
    assert r.returncode == 42, r.stderr      # the client's read: ECONNABORTED
    assert "restored closed" in r.stderr


def test_a_dump_without_kill_leaves_the_connections_working(rst_tcp, tmp_path):
    """Repair mode is left before the thaw: the original streams on and checks every byte;
    a restore of the image while it runs is refused (its addresses are in use)."""
    ready = tmp_path / "ready"
    p = subprocess.Popen([str(rst_tcp), str(ready)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: ready.exists() and "ready" in ready.read_text(), what="rst_tcp")
    img = tmp_path / "tcp.img"
    r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", str(img)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = restore(img)
    assert r.returncode == 3, r.stderr
    assert "address already in use" in r.stderr or "still open on this host" in r.stderr
    assert p.wait(timeout=60) == 0, p.stderr.read()


def test_a_peer_sending_during_the_dump_fails_it_and_the_program_goes_on(tmp_path):
    """Bytes that arrive after a connection was read would be acknowledged and lost: the
    dump fails (exit 3, not killed) and the connection still works."""
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; "
                          "s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
                          "big = b'x' * (96 << 20); "     # a dump that takes a while
                          "open(sys.argv[2], 'w').write('ready'); time.sleep(2); "
                          "n = 0\nwhile True:\n d = s.recv(65536)\n if not d: break\n n += len(d)\n"
                          "sys.exit(0 if n > 0 else 1)", str(server.getsockname()[1]), str(ready)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wait_for(lambda: ready.exists(), what="the client")
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            conn.send(b"x")
            time.sleep(0.001)
    th = threading.Thread(target=trickle)
    th.start()
    try:
        r = dump_kill(p.pid, tmp_path / "c.img")
    finally:
        stop.set()
        th.join()
    assert r.returncode == 3, r.stderr
    assert "received" in r.stderr and ("while the tree was being dumped" in r.stderr or
                                        "the tree is not killed" in r.stderr)
    conn.close()
    server.close()
    assert p.wait(timeout=30) == 0           # not killed; it read every byte to the end


UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    data, peer = s.recvfrom(100)
    s.sendto(b"echo " + data, peer)
    if data == b"last":
        break
"""


def test_a_udp_socket_keeps_its_port(tmp_path):
    ready = tmp_path / "port"
    p = subprocess.Popen([sys.executable, "-c", UDP_ECHO, str(ready)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ready.exists() and ready.read_text(), what="the UDP server")
    port = int(ready.read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(10)
        c.sendto(b"one", ("127.0.0.1", port))
        assert c.recv(100) == b"echo one"
        img = tmp_path / "udp.img"
        r = dump_kill(p.pid, img)
        assert r.returncode == 0, r.stderr
        p.wait(timeout=10)
        rp = subprocess.Popen([*IMGTOOLS, "restore", str(img)], stderr=subprocess.PIPE, text=True)
        try:
            def answers():
                c.sendto(b"last", ("127.0.0.1", port))
                try:
                    c.settimeout(0.2)
                    return c.recv(100) == b"echo last"
                except OSError:
                    return False
            wait_for(answers, what="the restored UDP server to answer")
            assert rp.wait(timeout=30) == 0, rp.stderr.read()
        finally:
            if rp.poll() is None:
                rp.kill()


def test_a_congestion_control_this_host_lacks_is_refused(tmp_path):
    """The image names TCP_CONGESTION; an unknown name would make the kernel load a module."""
    port, img = http_server_image(tmp_path)
    data, off = bytearray(img.read_bytes()), 0
    while off + 8 <= len(data):
        rtype, rlen = struct.unpack_from("<II", data, off)
        if rtype == EXT_TCP:
            data[off + 32:off + 48] = b"nosuchcc".ljust(16, b"\0")
        off += rlen
    forged = tmp_path / "forged.img"
    forged.write_bytes(bytes(data))
    r = restore(forged)
    assert r.returncode == 3, r.stderr
    assert 'TCP congestion control "nosuchcc" is not available' in r.stderr
    assert not http_server_runs(port)


def test_sigkill_of_the_dumper_at_many_points_leaves_the_connections_working(rst_tcp, tmp_path):
    """The dumper (the CLI, so the engine and its tracer under it) SIGKILLed at 12 points of
    a dump of a live TCP pair: every socket it put in repair mode must be put back before
    the tasks run on, so the pair streams on to the end with every byte once and in order
    (its exit status), and the tree is left untraced."""
    ready = tmp_path / "ready"
    p = subprocess.Popen([str(rst_tcp), str(ready), "400000"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: ready.exists() and "ready" in ready.read_text(), what="rst_tcp")
        t0 = time.monotonic()
        r = subprocess.run([*IMGTOOLS, "dump", str(p.pid), "-o", os.devnull],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        span = time.monotonic() - t0
        for i in range(12):
            d = subprocess.Popen([*IMGTOOLS, "dump", str(p.pid), "-o", os.devnull],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(span * (i + 1) / 13)
            d.kill()
            d.wait()
            for pid in [p.pid, *running(rst_tcp)]:
                wait_for(lambda pid=pid: tracer(pid) <= 0, timeout=10,
                         what=f"pid {pid} to be released")
        assert p.wait(timeout=120) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
