"""Build the C checkpoint engine into the package: build_py runs ``make -C engine`` and
installs the binary as ``imgtools/_engine/imgtools-engine``. Metadata is in pyproject.toml."""
import importlib.util
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent


def _engine_module():
    # loaded by path: the package's dependencies are not installed at build time
    spec = importlib.util.spec_from_file_location("_imgtools_engine", ROOT / "imgtools" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithEngine(build_py):
    def run(self):
        super().run()
        engine = _engine_module()
        try:
            binary = engine.build_engine(ROOT / "engine")
        except engine.EngineError as exc:
            raise SystemExit(f"error: cannot build imgtools-engine: {exc}") from exc
        target = Path(self.build_lib) / "imgtools" / "_engine" / "imgtools-engine"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(binary, target)
        os.chmod(target, 0o755)


class EngineDistribution(Distribution):
    """The wheel carries a native x86_64 binary: tag it for the platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithEngine}, distclass=EngineDistribution)
