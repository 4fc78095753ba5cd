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
