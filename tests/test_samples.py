"""Every committed sample reads as its version, checks sound, and upgrades back to v23."""
import io
from pathlib import Path

import pytest

import formats
from converters import convert
from imgtools.build import build_model
from imgtools.check import check_path, has_errors
from imgtools.reader import ImageReader, open_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
IMAGES = sorted(SAMPLES.glob("v*/*.img"))


def test_every_version_has_samples():
    assert {p.parent.name for p in IMAGES} == set(formats.VERSIONS)


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sample(path):
    version = path.parent.name
    with open_image(str(path)) as r:
        img = build_model(r)
    assert (img.version, img.arch) == (version, "x86_64")
    assert img.tail and not img.errors and img.pages > 0
    assert all(t.comm for t in img.tasks)
    findings = check_path(str(path))
    assert not has_errors(findings), [f for f in findings if f.severity == "error"]
    # upgrading to the engine's ABI gives back the same tasks and memory
    out = io.BytesIO()
    with open_image(str(path)) as r:
        convert(r, out, "v23")
    up = build_model(ImageReader(io.BytesIO(out.getvalue())))
    assert [(t.pid, t.tgid, t.comm) for t in up.tasks] == [(t.pid, t.tgid, t.comm) for t in img.tasks]
    assert up.pages == img.pages


def test_upgrade_v17_sample_to_v18_and_show(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "single-v18.img"
    r = subprocess.run([sys.executable, "-m", "imgtools", "upgrade", str(SAMPLES / "v17" /
                        "single.img"), "--to", "v18", "-o", str(out)], capture_output=True,
                       cwd=SAMPLES.parent)
    assert r.returncode == 0, r.stderr
    show = subprocess.run([sys.executable, "-m", "imgtools", "show", str(out)],
                          capture_output=True, text=True, cwd=SAMPLES.parent)
    assert show.returncode == 0
    assert "v18 x86_64" in show.stdout and "single" in show.stdout
