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
