"""The ABI tables (formats/_abi.py Abi.tables): what the structs are, as plain data cached
in the user's cache folder, so a command that only parses starts without construct's
parser. They must say what construct says, survive the cache file, and a stale, corrupt or
unwritable cache must cost only time."""
from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

import formats
from formats._abi import Abi, _Layout, _tables_key
from imgtools.reader import open_image

ROOT = Path(__file__).resolve().parent.parent
ALL = [(v, a) for v in formats.VERSIONS for a in formats.ARCHES]
SAMPLES = sorted(str(p) for p in (ROOT / "samples").glob("*/*.img"))


@pytest.mark.parametrize("version,arch", ALL)
def test_tables_say_what_construct_says(version, arch):
    abi = Abi(__import__(formats.module_name(version), fromlist=["NAME"]), arch)
    tables = marshal.loads(marshal.dumps(abi._make_tables(_tables_key())))    # as cached
    structs = abi.structs.built()
    assert tables["names"] == list(structs)
    for name, st in structs.items():
        try:
            size = st.sizeof()
        except Exception:       # noqa: BLE001 - construct: no fixed size
            size = None
        assert tables["sizes"][name] == size, name
        layout = _Layout.of(st)
        assert (tables["layouts"][name] is None) == (layout is None), name
        if layout is not None:
            assert _Layout.described(tables["layouts"][name]).size == layout.size, name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_records_parse_from_the_cached_tables_as_construct_parses_them(sample):
    with open_image(sample) as r:
        cached = marshal.loads(marshal.dumps(r.abi._make_tables(_tables_key())))
        for rec in r.records():
            name = r.name_of(rec)
            if name not in r.abi.structs or rec.streamed:
                continue
            data = rec.data()
            fast, used = _Layout.described(cached["layouts"][name]).parse(data)
            st = r.abi.structs[name]
            assert used == len(st.build(st.parse(data))), (name, rec.offset)
            slow = st.parse(data)
            assert {k: v for k, v in fast.items() if k != "_io"} == \
                {k: v for k, v in slow.items() if k != "_io"}, (name, rec.offset)


def _info(cache: Path) -> tuple[bytes, list[str]]:
    """`imgtools info` in a fresh interpreter with this cache folder: its output and the
    construct modules it loaded."""
    code = ("import sys; sys.argv = ['imgtools', 'info', sys.argv[1]]\n"
            "from imgtools.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stdout.flush()\n"
            "print(sorted(m for m in sys.modules if m.startswith('construct')), "
            "file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cache))
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "samples/v23/single.img")],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr.decode().strip().splitlines()[-1]


CONTAINERS_ONLY = "['construct.lib.containers', 'construct.lib.py3compat']"


def test_a_warm_cache_parses_without_construct(tmp_path):
    cold, cold_modules = _info(tmp_path)
    assert "'construct.core'" in cold_modules           # the tables were made
    files = sorted(p.name for p in tmp_path.rglob("*.marshal"))
    assert "abi-tables.v23.x86_64.marshal" in files
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in tmp_path.rglob("*.marshal"))
    warm, warm_modules = _info(tmp_path)
    assert warm == cold and warm_modules == CONTAINERS_ONLY


def test_stale_or_corrupt_tables_are_made_again(tmp_path):
    expected, _ = _info(tmp_path)
    (table,) = tmp_path.rglob("abi-tables.v23.x86_64.marshal")
    good = table.read_bytes()
    stale = marshal.loads(good) | {"key": "another formats package",
                                   "layouts": {}, "sizes": {}, "names": []}
    for bad in (marshal.dumps(stale), b"\x00garbage", b"", marshal.dumps([1, 2])):
        table.write_bytes(bad)
        out, modules = _info(tmp_path)
        assert out == expected and "'construct.core'" in modules
        assert table.read_bytes() == good                # made again, and kept
        assert _info(tmp_path) == (expected, CONTAINERS_ONLY)


def test_an_unwritable_cache_costs_only_time(tmp_path):
    expected, _ = _info(tmp_path / "ok")
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")                            # a file where the folder would be
    assert _info(blocker)[0] == expected
    assert _info(blocker)[0] == expected
