"""A plain command line runs without typer (cli/_direct.py, issue 11 start-up): it must
do exactly what typer's parse of the same line does (same stdout, stderr and exit code),
and leave every other line (help, errors, completion, what it cannot parse) to typer."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "samples/v23/single.img"
THREADS = "samples/v23/threads.img"
OLD = "samples/v17/single.img"
ENV = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
ENV.pop("IMGTOOLS_DEBUG", None)
# The same command line through typer's parse: _app.run(), as main() calls it.
THROUGH_TYPER = "import sys; sys.argv[0] = 'imgtools'; from imgtools.cli._app import run; run()"


def _run(argv: list[str], typer: bool, cwd: Path) -> tuple[int, bytes, bytes]:
    cmd = [sys.executable, "-c", THROUGH_TYPER, *argv] if typer else \
        [sys.executable, "-m", "imgtools", *argv]
    r = subprocess.run(cmd, capture_output=True, env=ENV, cwd=cwd, timeout=120,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def _out(tmp: Path, name: str) -> str:
    return str(tmp / name)


# Plain command lines: taken directly; output, errors and exit code as typer's.
PLAIN = [
    ["info", SAMPLE], ["info", "--json", SAMPLE], ["info", SAMPLE, THREADS],
    ["info", SAMPLE, "--format", "v23"], ["info", "--format=v21", SAMPLE],
    ["info", "--arch", "i386", SAMPLE], ["info", "--format", "v99", SAMPLE],
    ["info", "/no/such/file"], ["info", SAMPLE, SAMPLE, "--json"], ["info", "-", "-"],
    ["show", THREADS], ["show", "--records", OLD], ["show", "--json", "--pid", "1", SAMPLE],
    ["ps", "--tree", THREADS], ["ps", THREADS], ["maps", "--pid", "1", SAMPLE],
    ["maps", "--pid=999", SAMPLE], ["maps", "--summary", THREADS], ["files", SAMPLE],
    ["versions"], ["versions", "--json"], ["check", SAMPLE], ["check", "--json", OLD],
    ["check", "--codes"], ["dump", "abc"], ["dump", "0", "--ghost-limit", "12Q"],
    ["convert", SAMPLE, "--to", "v21", "-o", "OUT1"], ["convert", OLD, "--to", "v99"],
    ["upgrade", OLD, "-o", "OUT2", "--json"], ["to-core", SAMPLE, "-o", "OUT3"],
    ["decode", SAMPLE, "--no-pages"], ["diff", SAMPLE, THREADS], ["mem", SAMPLE],
]
# Left to typer: help, usage errors, what the direct parser does not take.
TYPERS = [
    ["info"], ["info", "--help"], ["info", "-h"], ["info", "--js", SAMPLE],
    ["info", "--", SAMPLE], ["info", "--json", "--json", SAMPLE], ["maps", "--pid", "x", SAMPLE],
    ["maps", "--pid", "-1", SAMPLE], ["info", "--format=", SAMPLE], ["info", "--format"],
    ["info", "--json=1", SAMPLE], ["convert", SAMPLE], ["check", SAMPLE, SAMPLE],
    ["debug", SAMPLE, "--", "-q"], ["dump", "-o"], ["versions", "extra"], ["nosuch"],
]


def _materialise(argv: list[str], tmp: Path) -> list[str]:
    return [_out(tmp, a) if a.startswith("OUT") else a for a in argv]


@pytest.mark.parametrize("argv", PLAIN + TYPERS, ids=" ".join)
def test_direct_run_is_typers_run(argv, tmp_path):
    argv = _materialise(argv, tmp_path)
    direct = _run(argv, typer=False, cwd=ROOT)
    for a in argv:                      # the outputs are written again by typer's run
        if a.startswith(str(tmp_path)) and os.path.exists(a):
            os.rename(a, a + ".direct")
    through_typer = _run(argv, typer=True, cwd=ROOT)
    assert direct == through_typer
    for a in argv:
        if os.path.exists(a + ".direct"):
            assert Path(a + ".direct").read_bytes() == Path(a).read_bytes()
            assert os.stat(a + ".direct").st_mode == os.stat(a).st_mode


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_lines_are_taken_directly(argv, tmp_path):
    from imgtools.cli import _direct
    assert _direct.plan(["imgtools", *_materialise(argv, tmp_path)]) is not None


@pytest.mark.parametrize("argv", TYPERS, ids=" ".join)
def test_other_lines_are_left_to_typer(argv):
    from imgtools.cli import _direct
    assert _direct.plan(["imgtools", *argv]) is None


def test_completion_and_debug_are_left_to_typer(monkeypatch):
    from imgtools.cli import _direct
    assert _direct.plan(["imgtools", "info", SAMPLE]) is not None
    monkeypatch.setenv("_IMGTOOLS_COMPLETE", "bash_complete")
    assert _direct.plan(["imgtools", "info", SAMPLE]) is None
    monkeypatch.delenv("_IMGTOOLS_COMPLETE")
    monkeypatch.setenv("IMGTOOLS_DEBUG", "1")
    assert _direct.plan(["imgtools", "info", SAMPLE]) is None


def test_the_direct_values_are_typers():
    """The keyword arguments the direct parse gives are those typer calls with."""
    from imgtools.cli import _direct
    fn, kwargs = _direct.plan(["imgtools", "maps", "--pid=7", "x.img", "--format", "v21"])
    assert kwargs == {"image": ["x.img"], "pid": 7, "json": False, "format": "v21",
                      "arch": None, "summary": False}
    fn, kwargs = _direct.plan(["imgtools", "restore", "--no-pidns", "-"])
    assert kwargs["pidns"] is False and kwargs["image"] == "-" and kwargs["detach"] is False
    fn, kwargs = _direct.plan(["imgtools", "dump", "12", "-o", "-", "--single"])
    assert (kwargs["pid"], kwargs["output"], kwargs["single"], kwargs["ghost_limit"]) == \
        ("12", "-", True, "64M")


def test_every_command_is_found_where_typer_finds_it():
    import typer.main

    from imgtools.cli import _app, _direct
    for module in _direct.MODULES:
        commands = _direct.Commands()
        __import__(f"imgtools.cli.{module}", fromlist=["register"]).register(commands)
        typers = typer.main.get_command(_app.make_app((module,))).commands
        assert set(commands.functions) == set(typers), module
