"""convert streams (issue 11, item 2): output appears while the input still arrives, no
temporary file or $TMPDIR space is needed, and a refusal on a file costs no page read."""
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

from conftest import tree_spec
from imgtools.compose import compose_bytes

IMGTOOLS = [sys.executable, "-m", "imgtools"]
ROOT = Path(__file__).resolve().parent.parent


def _image(pages: int = 600) -> bytes:
    return compose_bytes(tree_spec("v23", pages=pages), "v23", "x86_64")


def test_convert_to_stdout_writes_while_it_reads(tmp_path):
    data = _image()
    env = dict(os.environ, TMPDIR=str(tmp_path / "no-such-dir"))     # no temp space at all
    p = subprocess.Popen([*IMGTOOLS, "convert", "-", "--to", "v21", "--allow-loss"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        half = len(data) // 2
        p.stdin.write(data[:half])
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready, "no output while the input was still open"
        first = os.read(p.stdout.fileno(), 1 << 16)
        assert first[:4] == data[:4]                # the header, before the input ended
        assert p.poll() is None

        def feed():                 # (while we read: the output pipe must not fill up)
            p.stdin.write(data[half:])
            p.stdin.close()
        writer = threading.Thread(target=feed)
        writer.start()
        rest = p.stdout.read()
        writer.join()
        assert p.wait(60) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = first + rest
    want = subprocess.run([*IMGTOOLS, "convert", "-", "--to", "v21", "--allow-loss"],
                          input=data, capture_output=True, timeout=60)
    assert out == want.stdout and want.returncode == 0
    assert subprocess.run([*IMGTOOLS, "check", "-"], input=out, capture_output=True,
                          timeout=60).returncode == 0


def test_refusal_on_a_file_reads_no_page_data(tmp_path):
    """The loss pass seeks over page data: reading a 40 MiB image to refuse it reads
    only its metadata (rchar of the process, from /proc)."""
    img = tmp_path / "big.img"
    img.write_bytes(_image(pages=10_000))
    probe = ("import sys, typer\n"
             "from imgtools.cli import app\n"
             "try:\n    app(['convert', sys.argv[1], '--to', 'v17'])\n"
             "except SystemExit as e:\n    code = e.code\n"
             "io = dict(l.split(': ') for l in open('/proc/self/io').read().splitlines())\n"
             "print(code, io['rchar'], file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(img)], capture_output=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    code, rchar = r.stderr.decode().strip().splitlines()[-1].split()
    assert r.stdout == b"" and code == "3"
    assert b"nothing was written" in r.stderr
    # the interpreter and its modules read a few MB; the image is 40 MB
    assert int(rchar) < img.stat().st_size / 4


def test_refusal_from_a_pipe_says_the_output_is_partial():
    r = subprocess.run([*IMGTOOLS, "convert", "-", "--to", "v17"], input=_image(3),
                       capture_output=True, timeout=60)
    assert r.returncode == 3
    assert b"only up to the first loss" in r.stderr


def test_every_copy_path_writes_the_same_bytes(tmp_path):
    """Page data moves by splice(2) from a pipe (into a pipe or a file), by
    copy_file_range from a file into a file, by sendfile from a file into a pipe: the
    image written is the same, byte for byte, whichever way it went."""
    data = _image(pages=600)            # batches of 512 and 88 pages: streamed payloads
    src = tmp_path / "in.img"
    src.write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for target in ("v21", "v17"):
        conv = [*IMGTOOLS, "convert", "--to", target, "--allow-loss"]
        outs = {}
        for how, args, stdin in (("file to file", [str(src), "-o", str(tmp_path / "a")], None),
                                 ("file to pipe", [str(src)], None),
                                 ("pipe to pipe", ["-"], data),
                                 ("pipe to file", ["-", "-o", str(tmp_path / "b")], data)):
            r = subprocess.run(conv + args, input=stdin, capture_output=True, timeout=60,
                               env=env, cwd=ROOT)
            assert r.returncode == 0, (how, r.stderr)
            outs[how] = r.stdout if "-o" not in args else Path(args[-1]).read_bytes()
        assert len(outs["file to file"]) > 600 * 4096
        assert all(o == outs["file to file"] for o in outs.values()), \
            {k: len(v) for k, v in outs.items()}
        r = subprocess.run([*IMGTOOLS, "check", "-"], input=outs["pipe to file"],
                           capture_output=True, timeout=60, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_refusal_into_a_new_file_replaces_nothing(tmp_path):
    """Into a file, convert starts at once (no first pass: the file is written aside and
    its page copies are made by a thread); the first loss, found after the first task's
    pages were copied, stops it: the old file stays, nothing is left beside it."""
    src = tmp_path / "in.img"
    src.write_bytes(_image(pages=10_000))
    target = tmp_path / "out.img"
    target.write_bytes(b"old")
    r = subprocess.run([*IMGTOOLS, "convert", str(src), "--to", "v17", "-o", str(target)],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 3, r.stderr
    assert b"nothing was written" in r.stderr and b"Traceback" not in r.stderr
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.img", "out.img"]


def test_a_failed_page_copy_fails_the_command(tmp_path):
    """A write error (here EFBIG: a file size limit of 1 MiB for a 2.5 MiB image) is the
    command's error: exit 1, one line, the old file kept; written to stdout (a regular
    file, copied the same way) likewise.  (The copier thread's own errors, which the
    records written after them would not meet: test_background_copy_errors_reach_the_caller.)"""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    src = tmp_path / "in.img"
    src.write_bytes(_image(pages=600))
    target = tmp_path / "out.img"
    target.write_bytes(b"old")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    conv = [*IMGTOOLS, "convert", str(src), "--to", "v21", "--allow-loss"]
    r = subprocess.run([*conv, "-o", str(target)], capture_output=True, timeout=60, env=env,
                       preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert r.stderr.decode().strip().splitlines()[-1] == "imgtools: File too large"
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.img", "out.img"]
    with open(tmp_path / "stdout.img", "wb") as out:
        r = subprocess.run(conv, stdout=out, stderr=subprocess.PIPE, timeout=60, env=env,
                           preexec_fn=limit)
    assert r.returncode == 1 and b"File too large" in r.stderr, r.stderr
    # the same conversion without the limit succeeds (the limit is what failed it)
    r = subprocess.run([*conv, "-o", str(target)], capture_output=True, timeout=60, env=env)
    assert r.returncode == 0 and target.stat().st_size > 600 * 4096


def test_background_copy_errors_reach_the_caller(tmp_path):
    """SequentialOut(background=True) copies in a thread; what goes wrong there is raised
    to the caller at finish (or its next copy), and an abandoned copier raises nothing.
    A source the kernel refuses to read (a directory: EISDIR) and a source shorter than
    the copy (the image ends inside page data)."""
    import errno

    import pytest

    from imgtools.errors import FramingError
    from imgtools.writer import SequentialOut
    short = tmp_path / "short"
    short.write_bytes(b"x" * 5000)
    cases = ((os.open(tmp_path, os.O_RDONLY), OSError),
             (os.open(short, os.O_RDONLY), FramingError))
    for src, error in cases:
        with open(tmp_path / "out", "wb") as out:
            w = SequentialOut(out, src, background=True)
            assert w._copier is not None          # a regular file: copied by the thread
            w.copy(0, 8192, None)
            with pytest.raises(error) as e:
                w.finish()
            if error is OSError:
                assert e.value.errno == errno.EISDIR
            else:
                assert str(e.value) == ("at byte 5000: image ends inside page data "
                                        "(3192 bytes missing)")
            w = SequentialOut(out, src, background=True)
            w.copy(0, 8192, None)
            w.abandon()
        os.close(src)
    # and the writes and copies land in order, a hole where zeros were asked for, from
    # either source, and the caller's own writes go on after them
    src = os.open(short, os.O_RDONLY)
    other = tmp_path / "other"
    other.write_bytes(b"y" * 100)
    other_fd = os.open(other, os.O_RDONLY)
    with open(tmp_path / "out", "wb") as out:
        out.write(b"head")
        w = SequentialOut(out, src, background=True)
        assert w.background
        w.copy(1000, 3000, None)
        w.write(b"mid")
        w.copy(0, 10, None, src_fd=other_fd)
        w.zeros(5)
        w.write(b"tail")
        w.finish()
        out.write(b"end")
    os.close(src)
    os.close(other_fd)
    assert (tmp_path / "out").read_bytes() == \
        b"head" + b"x" * 3000 + b"mid" + b"y" * 10 + bytes(5) + b"tail" + b"end"
