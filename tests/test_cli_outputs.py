"""The read commands print what they printed before the performance work (issue 11):
``golden/cli_outputs.json`` holds the exit code and the SHA-256 of stdout of every
command on every sample, recorded from the CLI before start-up, tables and streaming
were reworked (rich tables then; plain text written directly now)."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((Path(__file__).parent / "golden" / "cli_outputs.json").read_text())


@pytest.fixture(scope="module")
def app():
    from imgtools.cli import app
    return app


def test_every_sample_and_command_is_covered():
    samples = {str(p.relative_to(ROOT)) for p in ROOT.glob("samples/*/*.img")}
    assert samples and {k.rsplit(" ", 1)[1] for k in GOLDEN} == samples


@pytest.mark.parametrize("sample", sorted({k.rsplit(" ", 1)[1] for k in GOLDEN}))
def test_outputs_are_byte_identical(app, sample, monkeypatch):
    monkeypatch.chdir(ROOT)             # the key (and the show header) name the sample
    runner = CliRunner()
    for key, (code, digest) in GOLDEN.items():
        if key.rsplit(" ", 1)[1] != sample:
            continue
        r = runner.invoke(app, key.split(" "))
        assert (r.exit_code, hashlib.sha256(r.stdout_bytes).hexdigest()) == (code, digest), key


def test_start_up_imports_only_what_the_command_uses():
    """--version imports no CLI library; info or maps into a pipe imports neither rich,
    nor pydantic, nor typer (a plain command line runs without it: cli/_direct.py), nor
    construct's parser (the ABI tables are cached: formats/_abi.py), but --help is
    typer's."""
    probe = ("import sys; sys.argv = ['imgtools'] + sys.argv[1:]\n"
             "from imgtools.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted({m.split('.')[0] for m in sys.modules if m != "
             "'construct.lib.containers' and not m.startswith('construct.lib.py3')} & "
             "{'typer', 'rich', 'pydantic', 'construct'}), file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)

    def loaded(*args):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                           env=env, timeout=60)
        return r.stderr.decode().strip().splitlines()[-1]
    assert loaded("--version") == "[]"
    sample = str(ROOT / "samples" / "v23" / "single.img")
    loaded("info", sample)              # the ABI tables made (and cached) if they were not
    assert loaded("info", sample) == "[]"
    assert loaded("maps", sample) == "[]"
    assert "'typer'" in loaded("info", "--help")


def test_module_of_names_every_command_where_it_is_registered():
    """The command line imports only the module MODULE_OF names for its command."""
    import typer.main

    from imgtools.cli import _app
    for module in _app.MODULES:
        names = set(typer.main.get_command(_app.make_app((module,))).commands)
        assert names == {c for c, m in _app.MODULE_OF.items() if m == module}, module
    assert set(typer.main.get_command(_app.app).commands) == set(_app.MODULE_OF)
