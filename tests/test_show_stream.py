"""show reads each task's records as they pass (build_model's task_done) and holds what it
makes of them compressed until it is written (issue 11: show --json of 100,000 tasks held
the whole model, 780 MB): its output is the whole model's, for every task and for each
--pid, with the lean tables held as objects and in columns."""
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgtools import views
from imgtools.build import build_model
from imgtools.cli._output import HeldTexts, _jsonable
from imgtools.reader import ImageReader

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("samples/*/*.img"))


def _whole_show_json(img, pid=None) -> str:
    """What show --json printed from the whole model before it streamed."""
    chosen = [t for t in img.tasks if pid in (None, t.pid)]
    data = {"info": views.info(img),
            "tasks": [r for r in views.ps(img) if pid in (None, r["pid"])],
            "detail": [views.task_detail(img, t) for t in chosen],
            "maps": views.maps(img, pid), "files": views.files(img, pid)}
    return json.dumps(data, default=_jsonable) + "\n"


def test_show_json_is_the_whole_models_for_each_pid(lean_tables, monkeypatch):
    from imgtools.cli import app
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for sample in SAMPLES:
        whole = build_model(ImageReader(io.BytesIO((ROOT / sample).read_bytes())))
        for pid in [None, *{t.pid for t in whole.tasks}]:
            args = ["show", "--json", sample] + ([] if pid is None else ["--pid", str(pid)])
            r = runner.invoke(app, args)
            assert r.exit_code == 0, (args, r.output)
            assert r.stdout == _whole_show_json(whole, pid), args


def test_show_text_of_a_pid_is_its_section_of_the_whole(lean_tables, monkeypatch):
    """A task's section (its header, creds, registers and signals lines) reads the same
    in show and in show --pid."""
    from imgtools.cli import app
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for sample in ("samples/v23/threads.img", "samples/v23/signals.img",
                   "samples/v18/pipes.img"):
        everything = runner.invoke(app, ["show", sample]).stdout
        sections = [s for s in everything.split("\n\n")[1:]]
        for section in sections:
            pid = section.split()[1]
            one = runner.invoke(app, ["show", sample, "--pid", pid])
            assert one.exit_code == 0
            head = "\n".join(line for line in section.splitlines()
                             if line.startswith(("task ", "  ")))
            assert head and head in one.stdout, (sample, pid)


def test_held_texts_come_back_in_order_as_they_were():
    held = HeldTexts()
    texts = [("", 0), ("x", 1), ("\udcff bytes that were not UTF-8, é", 2),
             ("y" * 3_000_000, 5), *((f"{i} " * (i % 97), 10 + i) for i in range(20_000))]
    for text, key in texts:
        held.add(key, text)
    assert [(t, k) for k, t in held] == texts


def test_show_records_json_lists_what_the_text_lists(monkeypatch):
    """show --records --json is written as the records are read: one item per line of
    show --records, with its offset, type, name and length."""
    from imgtools.cli import app
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for sample in SAMPLES[::4]:
        rows = json.loads(runner.invoke(app, ["show", "--records", "--json", sample]).stdout)
        lines = runner.invoke(app, ["show", "--records", sample]).stdout.splitlines()
        assert len(rows) == len(lines) > 10, sample
        for row, line in zip(rows, lines):
            offset, rtype, name, _, length = line.split()[:5]
            assert (f"@{row['offset']}", str(row["type"] or "-"), row["name"],
                    str(row["len"])) == (offset, rtype, name, length), sample
