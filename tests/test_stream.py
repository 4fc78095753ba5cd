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
