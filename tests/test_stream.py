"""Framing in bounded memory: page data is skipped on files and drained on pipes."""
import io

from conftest import real_pipe, tree_spec
from imgtools.build import build_model
from imgtools.compose import compose_bytes
from imgtools.reader import ImageReader


class CountingFile(io.RawIOBase):
    """A real file whose read() calls are counted (seeks are not reads)."""

    def __init__(self, path):
        self.f = open(path, "rb", buffering=0)
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def fileno(self):
        return self.f.fileno()

    def read(self, n=-1):
        b = self.f.read(n)
        self.bytes_read += len(b)
        return b

    def seek(self, off, whence=0):
        return self.f.seek(off, whence)

    def tell(self):
        return self.f.tell()


def test_model_of_a_file_does_not_read_page_bytes(tmp_path):
    data = compose_bytes(tree_spec("v23", pages=2000), "v23")
    p = tmp_path / "big.img"
    p.write_bytes(data)
    f = CountingFile(p)
    img = build_model(ImageReader(f, str(p)))
    assert img.pages == 2002
    page_bytes = img.pages * 4096
    assert f.bytes_read < len(data) - page_bytes + 64 * 1024, (f.bytes_read, len(data))


def test_pipe_gives_same_model(tmp_path):
    data = compose_bytes(tree_spec("v19", pages=300), "v19")
    with real_pipe(data) as src:
        piped = build_model(ImageReader(src, "<pipe>"))
    direct = build_model(ImageReader(io.BytesIO(data)))
    assert piped.pages == direct.pages == 302
    assert [(t.pid, t.comm) for t in piped.tasks] == [(t.pid, t.comm) for t in direct.tasks]
    pv = piped.get(piped.tasks[0].obj("mm"), "mm").vmas
    dv = direct.get(direct.tasks[0].obj("mm"), "mm").vmas
    assert [list(v.page_offsets()) for v in pv] == [list(v.page_offsets()) for v in dv]


def test_a_read_thread_gives_the_pipes_bytes_in_order_whatever_the_reads():
    """A pipe read by a thread (mem --search): reads, reads into buffers and skips
    of every size, across the ring's buffers and past its capacity, see the pipe's bytes."""
    import random
    from imgtools.stream import CHUNK, ReadThread, Source
    rnd = random.Random(7)
    data = rnd.randbytes(ReadThread.RING * CHUNK * 3 + 12345)
    got, pos = [], 0
    with real_pipe(data) as f:
        src = Source(f, "<pipe>")
        src.read(10)
        pos = 10
        src.read_in_thread()
        while pos < len(data):
            n = min(rnd.choice([1, 7, 4096, CHUNK - 3, CHUNK + 5, 3 * CHUNK]), len(data) - pos)
            how = rnd.randrange(3)
            if how == 0:
                got.append(src.read_exact(n, "piece"))
            elif how == 1:
                buf = bytearray(n)
                src.readinto_exact(memoryview(buf), "piece")
                got.append(bytes(buf))
            else:
                src.skip(n, "piece")
                got.append(data[pos:pos + n])        # (skipped: compared by position)
            pos += n
            assert src.pos == pos
        assert src.read(1) == b""
    assert b"".join(got) == data[10:]


def test_a_read_threads_truncation_and_read_errors_reach_the_reader():
    import pytest
    from imgtools.errors import FramingError
    from imgtools.stream import Source
    with real_pipe(b"x" * 5000) as f:
        src = Source(f, "<pipe>")
        src.read_in_thread()
        assert src.read_exact(4000, "head") == b"x" * 4000
        with pytest.raises(FramingError, match="needs 2000 bytes, stream ends after 1000"):
            src.read_exact(2000, "the rest")

    class Failing(io.RawIOBase):
        """A stream whose second read fails, as a dying disk or a reset socket does."""
        reads = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.reads += 1
            if self.reads > 1:
                raise OSError(5, "Input/output error")
            b[:3] = b"abc"
            return 3

    src = Source(Failing(), "<failing>")
    src.read_in_thread()
    assert src.read(3) == b"abc"
    with pytest.raises(OSError, match="Input/output error"):
        src.read(1)
def test_records_from_a_pipe_come_as_they_are_written():
    """The read-ahead takes what a pipe holds: a record written is handed over while the
    writer still holds the pipe open (no wait for a full read-ahead buffer or EOF)."""
    import os
    import struct
    import threading

    from imgtools.stream import RecordReader, Source
    r, w = os.pipe()
    got: list = []
    with os.fdopen(r, "rb") as src:
        frames = RecordReader(Source(src, "<pipe>"))

        def read_three():
            for _ in range(3):
                got.append(next(frames).payload)
        t = threading.Thread(target=read_three, daemon=True)
        t.start()
        os.write(w, b"".join(struct.pack("<II", 4, 8 + n) + bytes([n]) * n for n in (1, 2, 3)))
        t.join(10)
        alive = t.is_alive()
        os.close(w)
        t.join(10)
    assert not alive and got == [b"\1", b"\2\2", b"\3\3\3"]


def test_read_ahead_and_large_payloads_interleave(tmp_path):
    """Small records framed out of the read-ahead buffer, large payloads read, copied or
    skipped past it: the same records and bytes from a file, a pipe and memory."""
    import struct

    from imgtools.stream import READ_AHEAD, RecordReader, Source
    sizes = [0, 5, READ_AHEAD - 8, READ_AHEAD, 3, 100_000, 7, 2 << 20, 1, READ_AHEAD * 3 + 1]
    data = b"".join(struct.pack("<II", 4, 8 + n) + bytes([i]) * n for i, n in enumerate(sizes))
    p = tmp_path / "frames"
    p.write_bytes(data)

    def seen(f, read_every: int):
        out = []
        for i, rec in enumerate(RecordReader(Source(f))):
            if rec.streamed and i % read_every:
                out.append((rec.offset, rec.size, None))      # skipped
            else:
                out.append((rec.offset, rec.size, b"".join(rec.chunks())))
        return out
    want = [(sum(8 + m for m in sizes[:i]), n, bytes([i]) * n) for i, n in enumerate(sizes)]
    for read_every in (1, 2):
        expect = [(o, n, b if not (n > 65536 and i % read_every) else None)
                  for i, (o, n, b) in enumerate(want)]
        with open(p, "rb") as f:
            assert seen(f, read_every) == expect
        with real_pipe(data) as f:
            assert seen(f, read_every) == expect
        assert seen(io.BytesIO(data), read_every) == expect
