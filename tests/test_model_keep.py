"""A model built with ``keep`` (what a listing reads: views.*_READS) gives that listing
the rows the whole model gives, and refuses the images the whole model refuses, with the
same error (issue 11: ps, info, maps and files hold only what they read)."""
import io
import json
from pathlib import Path

import pytest

from imgtools import codec, views
from imgtools.build import build_model
from imgtools.errors import ImageError
from imgtools.model import NOT_KEPT
from imgtools.reader import ImageReader, open_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("samples/*/*.img"))
LISTINGS = [("info", views.INFO_READS, views.info),
            ("ps", views.PS_READS, views.ps),
            ("maps", views.MAPS_READS, views.maps),
            ("files", views.FILES_READS, views.files)]


def _model(data: bytes, keep=None):
    return build_model(ImageReader(io.BytesIO(data)), keep=keep)


pytestmark = pytest.mark.usefixtures("lean_tables")   # (conftest: every test twice)


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_listing_reads_the_same_rows_from_its_model(sample):
    data = (ROOT / sample).read_bytes()
    whole = _model(data)
    for name, keep, view in LISTINGS:
        lean = _model(data, keep)
        assert view(lean) == view(whole), (sample, name)
        for t in whole.tasks:       # --pid selects from the lean model as from the whole
            if name in ("maps", "files"):
                assert view(lean, t.pid) == view(whole, t.pid), (sample, name, t.pid)


def test_what_is_not_kept_is_not_held_and_cannot_be_read():
    lean = _model((ROOT / "samples/v23/single.img").read_bytes(), views.PS_READS)
    kinds = {o.kind for o in lean.objects.values()}
    assert {"mm", "file", "file_table"} <= kinds
    assert all(o.value is None for o in lean.objects.values())
    t = lean.tasks[0]
    assert t._regs is NOT_KEPT and not t.zombie and t.objs == {}
    with pytest.raises(RuntimeError, match="keep"):
        t.regs
    maps = _model((ROOT / "samples/v23/single.img").read_bytes(), views.MAPS_READS)
    assert all(not o.value.fds for o in maps.objects.values() if o.kind == "file_table"
               and o.value is not None)
    files = _model((ROOT / "samples/v23/single.img").read_bytes(), views.FILES_READS)
    assert all(not o.value.vmas for o in files.objects.values() if o.kind == "mm"
               and o.value is not None)


def _patched(sample: str, patch) -> bytes:
    """The sample with its records, decoded to JSON, changed by ``patch(records)``."""
    with open_image(str(ROOT / sample)) as r:
        text = io.StringIO()
        codec.decode(r, text.write)
    text.seek(0)
    head, records = codec.iter_json_records(text)
    recs = list(records)
    patch(recs)
    doc = json.dumps({**head, "records": recs})
    out = io.BytesIO()
    codec.encode(io.StringIO(doc), out)
    return out.getvalue()


def _named(recs, name):
    return [r for r in recs if r["name"] == name]


def _outcome(data: bytes, keep):
    try:
        img = _model(data, keep)
    except ImageError as e:
        return type(e), str(e), e.offset
    return "ok", views.info(img), views.files(img), views.maps(img)


@pytest.mark.parametrize("patch, refused", [
    # an fd naming no object, then one naming an object that is no file
    (lambda recs: _named(recs, "FILE_DESC")[1]["fields"].update(fd_objref=999_999), True),
    (lambda recs: _named(recs, "FILE_DESC")[2]["fields"].update(
        fd_objref=_named(recs, "TASK_OBJS")[0]["fields"]["mm_objref"]), True),
    # a task's mm naming no object; one task's fs naming another's (defined later)
    (lambda recs: _named(recs, "TASK_OBJS")[1]["fields"].update(mm_objref=999_998), True),
    (lambda recs: _named(recs, "TASK_OBJS")[0]["fields"].update(
        fs_objref=_named(recs, "TASK_OBJS")[2]["fields"]["fs_objref"]), False),
    # an fd naming a file defined later in the image (by the next process)
    (lambda recs: _named(recs, "FILE_DESC")[0]["fields"].update(
        fd_objref=_named(recs, "FILE_DESC")[-1]["fields"]["fd_objref"]), False),
], ids=["fd-names-nothing", "fd-names-no-file", "mm-names-nothing", "fs-defined-later",
        "fd-file-defined-later"])
def test_a_lean_model_refuses_and_accepts_what_the_whole_one_does(patch, refused):
    data = _patched("samples/v23/pipes.img", patch)
    whole = _outcome(data, None)
    assert (whole[0] != "ok") == refused, whole
    for name, keep, _ in LISTINGS:
        lean = _outcome(data, keep)
        if whole[0] == "ok":
            assert lean[0] == "ok", (name, lean)
            _, info, files, maps = lean
            assert info == whole[1], name
            if name == "files":
                assert files == whole[2]
            if name == "maps":
                assert maps == whole[3]
        else:
            assert lean == whole, name


def test_lean_tables_read_as_the_objects_they_hold():
    """What does not fit a column (an objref far from the others or below the first, a
    number too large, a file with sub fields) stays an object, and reads the same."""
    from imgtools.lean import Fds, Objects
    from imgtools.model import Fd, File
    objs = Objects()
    objs.define(100, "cred", None, 8, None)
    objs.define(5, "cred", None, 16, 0)                     # below the first
    objs.define(1 << 40, "mm", None, 24, 1)                 # far above the others
    big = File(101, "generic", 1 << 70, 0, 0, 0, path="/big")   # flags too large
    objs.define(101, "file", big, 32, 0)
    objs.define(102, "file", File(102, "generic", 2, 0, 7, 100, path="/é"), 40, 0)
    objs.define(103, "file", File(103, "socket", 2, 0, 0, 0, sub={"sock_objref": 9}), 48, 0)
    objs.define(104, "file", File(104, "generic", 0, 0, 0, 0), 56, None)
    objs.freeze()
    assert len(objs) == 7 and set(objs) == {100, 5, 1 << 40, 101, 102, 103, 104}
    assert 106 not in objs and -1 not in objs and objs.get(99) is None
    assert [objs.kind_of(r) for r in (100, 5, 1 << 40, 102, 106)] == \
        ["cred", "cred", "mm", "file", None]
    assert objs[102].value == File(102, "generic", 2, 0, 7, 100, path="/é")
    assert objs[102].offset == 40 and objs[102].task == 0 and objs[104].task is None
    assert objs[101].value is big and objs[103].value.sub == {"sock_objref": 9}
    assert objs[104].value.path is None
    for kind in ("cred", "mm", "file", "inode"):    # (one kind: in the order of values())
        assert list(objs.of_kind(kind)) == [o for o in objs.values() if o.kind == kind]
    with pytest.raises(KeyError):
        objs[106]
    fds = Fds()
    fds.append(Fd(0, 102, True))
    fds.append(Fd(1, 1 << 70, False))                       # spills into a list
    fds.append(Fd(2, 104, False))
    assert list(fds) == [Fd(0, 102, True), Fd(1, 1 << 70, False), Fd(2, 104, False)]
    assert len(fds) == 3 and fds[1].file_ref == 1 << 70


def test_read_once_tables_hold_no_item_as_an_object():
    """build_model's read_once (diff's): the lean tables put every task, file and fd in
    their columns from the first (none held as an object, whatever lean.HOLD_*, which
    stay as they are), and read as the whole model does."""
    from imgtools import lean
    data = (ROOT / "samples/v23/threads.img").read_bytes()
    thresholds = lean.HOLD_TASKS, lean.HOLD_FILES, lean.HOLD_FDS
    once = build_model(ImageReader(io.BytesIO(data)), keep=views.FILES_READS,
                       read_once=True)
    assert (lean.HOLD_TASKS, lean.HOLD_FILES, lean.HOLD_FDS) == thresholds
    assert once.tasks.lean and not once.tasks.held
    assert once.objects.lean and not [o for o in once.objects.held.values()
                                      if o.kind == "file" and not o.value.sub]
    tables = [o.value.fds for o in once.objects_of_kind("file_table")]
    assert tables and all(fds.spilt is None for fds in tables)
    assert views.files(once) == views.files(_model(data))


def test_lean_signals_hold_their_shared_mask(lean_tables):
    """A signal of which the lean model holds only its shared mask (show: no signal
    fields, no siginfo) goes into the columns once the next is defined (its SIGPENDING
    comes between); the others stay objects."""
    from imgtools.lean import Objects
    from imgtools.model import Held, Signal
    objs = Objects()
    objs.define(10, "signal", Signal(10, NOT_KEPT, ()), 8, 0)
    objs[10].value.shared_mask = 0x4002         # (the builder: its SIGPENDING)
    objs.define(11, "signal", Signal(11, NOT_KEPT, (), (1 << 64) - 1), 16, 1)
    objs.define(12, "signal", Signal(12, Held(b"x", bytes), ()), 24, 2)
    objs.define(13, "signal", Signal(13, NOT_KEPT, [{"si_signo": 10}], 5), 32, None)
    assert objs[11].value.shared_mask == (1 << 64) - 1
    objs.freeze()
    got = [(objs[r].value.shared_mask, objs[r].kind, objs[r].offset, objs[r].task)
           for r in (10, 11, 12, 13)]
    assert got == [(0x4002, "signal", 8, 0), ((1 << 64) - 1, "signal", 16, 1),
                   (0, "signal", 24, 2), (5, "signal", 32, None)]
    assert objs[12].value.fields == b"x" and objs[13].value.shared_pending == [{"si_signo": 10}]
    assert (set(objs.held) == {12, 13}) == (lean_tables == "columns")


@pytest.mark.parametrize("keep", [views.SHOW_READS, views.SHOW_READS - {"regs"}, None])
def test_task_done_sees_each_task_as_the_whole_model_holds_it(keep):
    """build_model's task_done gets each task with records, in order, as complete as the
    whole model holds it at the end (the objects of the kinds ``keep`` names: the ones
    task_detail reads); a lean model without task_records then forgets the records
    (as one built without them holds them: the listings read the same rows)."""
    for sample in SAMPLES:
        data = (ROOT / sample).read_bytes()
        whole = _model(data)
        seen = []

        def task_done(img, t):
            seen.append((t.index, views.task_detail(img, t)))

        lean = build_model(ImageReader(io.BytesIO(data)), keep=keep, task_done=task_done)
        assert seen == [(t.index, views.task_detail(whole, t)) for t in whole.tasks
                        if t.offset is not None], sample
        if keep is not None:
            plain = _model(data, keep)
            for name, _, view in LISTINGS:
                assert view(lean) == view(plain), (sample, name)
            assert all(t._fields is NOT_KEPT and t.fpu_size == 0 for t in lean.tasks
                       if t.offset is not None), sample
        else:
            assert [views.task_detail(lean, t) for t in lean.tasks] == \
                [views.task_detail(whole, t) for t in whole.tasks], sample


def test_task_done_holds_only_the_parts_it_reads():
    """With done_reads={"regs"} task_done reads each task's registers (and what the lean
    model keeps: signals, creds) and nothing more is held, before or after."""
    for sample in SAMPLES:
        data = (ROOT / sample).read_bytes()
        whole = _model(data)
        seen = []

        def task_done(img, t):
            seen.append((views.task_regs(t), views.signals(img, t), views.creds(img, t),
                         t._fields is NOT_KEPT, t.fpu_size))

        lean = build_model(ImageReader(io.BytesIO(data)), keep=views.SHOW_READS,
                           task_done=task_done, done_reads=frozenset(("regs",)))
        assert seen == [(views.task_regs(t), views.signals(whole, t), views.creds(whole, t),
                         True, 0) for t in whole.tasks if t.offset is not None], sample
        assert all(t._regs in (None, NOT_KEPT) for t in lean.tasks), sample
        assert [t.zombie for t in lean.tasks] == [t.zombie for t in whole.tasks], sample


@pytest.mark.parametrize("sample", SAMPLES)
def test_maps_summary_reads_the_same_from_mems_lean_model(sample):
    from imgtools import mem
    from imgtools.vmatable import CompactBuilder
    data = (ROOT / sample).read_bytes()
    whole = _model(data)
    lean = build_model(ImageReader(io.BytesIO(data)), None, CompactBuilder, keep=views.MAPS_READS)
    for pid in [None, *{t.pid for t in whole.tasks}]:
        filters = [mem.Filter(pids=None if pid is None else {pid}) for _ in range(2)]
        for f, img in zip(filters, (whole, lean)):
            f.resolve(img)
        assert mem.summary(lean, filters[1]) == mem.summary(whole, filters[0]), (sample, pid)


def test_kept_objects_are_held_compact_and_read_back_as_parsed():
    """A kernel's image may hold a SIGHAND (64 actions, 2 KB; 17 KB parsed) and creds for
    each process: they are held as their bytes (SIGHAND compressed) and read back as the
    parsed records, in the whole model and in show's. 10,000 processes with handlers of
    their own took 174 MB to show before; with creds of their own, 54 MB (now 35 MB)."""
    import struct

    import formats
    from imgtools.build import plain
    from imgtools.compose import CredSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
    from imgtools.model import Held
    tasks = [TaskSpec(100 + i, 99 + i if i else 1, comm=f"p{i}", sighand=f"sh{i % 5}",
                      cred=f"c{i % 4}", files=None) for i in range(12)]
    spec = ImageSpec(tasks=tasks, mms={"mm": MmSpec([VmaSpec(0x400000, 0x401000)])},
                     handlers={2: 0x401000, 10: 0x402000, 15: 1},
                     creds={f"c{i}": CredSpec(uid=1000 + i, gid=100, groups=[4, 27 + i])
                            for i in range(4)})
    data = compose_bytes(spec, "v23")
    abi = formats.abi("v23")
    kinds = {abi.types[k]: k for k in ("sighand", "cred", "groupinfo")}
    parsed, off = {}, 0     # objref -> (kind, its record parsed), read from the stream
    pending: dict[str, list] = {}   # kind -> objrefs announced (a record takes the last)
    while off < len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        payload = data[off + 8:off + length]
        if rtype == abi.types["objref"]:
            objtype, objref = struct.unpack_from("<Ii", payload)
            pending.setdefault(abi.obj_names.get(objtype), []).append(objref)
        elif rtype in kinds:
            ref = pending[kinds[rtype]].pop()
            parsed[ref] = (kinds[rtype], plain(abi.parse(kinds[rtype], payload)))
        off += length
    assert sorted(k for k, _ in parsed.values()).count("sighand") == 5
    assert sorted(k for k, _ in parsed.values()).count("cred") == 4
    for keep in (None, views.SHOW_READS):
        img = _model(data, keep)
        for ref, (kind, value) in parsed.items():
            held = img.objects[ref].value
            assert type(held) is Held and len(held.payload) < 200
            assert img.get(ref, kind) == value
        for t in img.tasks:
            assert views.signals(img, t)["handlers"] == {"INT": "0x401000",
                                                         "USR1": "0x402000",
                                                         "TERM": "ignore"}
            c = views.creds(img, t)
            i = (t.pid - 100) % 4
            assert (c["uid"], c["gid"], c["groups"]) == (1000 + i, 100, [4, 27 + i])


@pytest.mark.parametrize("sample", SAMPLES)
def test_tasks_with_an_id_are_found_as_a_scan_finds_them(sample):
    """A lean model's tasks of a pid or tgid (to-core: each process's threads) are those a
    scan of the whole model's tasks finds, in order, before the table is frozen (a scan)
    and after (its index)."""
    from imgtools.core.build import CORE_READS
    data = (ROOT / sample).read_bytes()
    whole = _model(data)
    lean = _model(data, CORE_READS)
    assert lean.tasks.frozen
    numbers = {n for t in whole.tasks for n in (t.pid, t.tgid)} | {0, -1, 1 << 40}
    for n in sorted(numbers):
        want = [t.index for t in whole.tasks if t.pid == n or t.tgid == n]
        assert [t.index for t in lean.tasks.with_id(n)] == want, (sample, n)
    assert lean.tasks.by_id             # (made: the numbers fit)
    lean.tasks.frozen, lean.tasks.by_id = False, None   # (as while it is built: a scan)
    for n in sorted(numbers):
        want = [t.index for t in whole.tasks if t.pid == n or t.tgid == n]
        assert [t.index for t in lean.tasks.with_id(n)] == want, (sample, n)
