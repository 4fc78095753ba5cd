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


def test_read_ahead_gives_the_pipes_bytes_in_order_whatever_the_reads():
    """A pipe read ahead by a thread (mem --search): reads, reads into buffers and skips
    of every size, across the ring's buffers and past its capacity, see the pipe's bytes."""
    import random
    from imgtools.stream import CHUNK, ReadAhead, Source
    rnd = random.Random(7)
    data = rnd.randbytes(ReadAhead.RING * CHUNK * 3 + 12345)
    got, pos = [], 0
    with real_pipe(data) as f:
        src = Source(f, "<pipe>")
        src.read(10)
        pos = 10
        src.read_ahead()
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


def test_read_ahead_truncation_and_read_errors_reach_the_reader():
    import pytest
    from imgtools.errors import FramingError
    from imgtools.stream import Source
    with real_pipe(b"x" * 5000) as f:
        src = Source(f, "<pipe>")
        src.read_ahead()
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
    src.read_ahead()
    assert src.read(3) == b"abc"
    with pytest.raises(OSError, match="Input/output error"):
        src.read(1)
