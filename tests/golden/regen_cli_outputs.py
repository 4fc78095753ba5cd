"""Rewrite cli_outputs.json from the CLI as it is now: run this only after a change that
is meant to alter what the read commands print (the test then guards the new output).

    python3 tests/golden/regen_cli_outputs.py
"""
import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [["info"], ["info", "--json"], ["show"], ["show", "--json"], ["show", "--records"],
            ["ps"], ["ps", "--json"], ["maps"], ["maps", "--json"], ["files"],
            ["files", "--json"], ["check"], ["check", "--json"]]


def main() -> None:
    import os
    import sys
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from imgtools.cli import app
    runner = CliRunner()
    out = {}
    for img in sorted(p.relative_to(ROOT) for p in ROOT.glob("samples/*/*.img")):
        for c in COMMANDS:
            r = runner.invoke(app, [*c, str(img)])
            out[f"{' '.join(c)} {img}"] = [r.exit_code, hashlib.sha256(r.stdout_bytes).hexdigest()]
    (Path(__file__).parent / "cli_outputs.json").write_text(
        json.dumps(out, indent=0, sort_keys=True))


if __name__ == "__main__":
    main()
