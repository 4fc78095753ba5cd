"""Images composed through the schemas parse back to the model they describe."""

import pytest

from conftest import ALL, read_model, tree_spec
from imgtools.compose import compose_bytes


@pytest.mark.parametrize("version,arch", ALL)
def test_model_matches_spec(version, arch):
    spec = tree_spec(version)
    data = compose_bytes(spec, version, arch)
    img = read_model(data)
    assert (img.version, img.arch) == (version, arch)
    assert [(t.pid, t.ppid, t.tgid, t.pgid, t.sid, t.comm) for t in img.tasks] == \
        [(t.pid, t.ppid, t.tgid, t.pgid, t.sid, t.comm) for t in spec.tasks]
    assert [t.zombie for t in img.tasks] == [t.zombie for t in spec.tasks]
    assert img.tail and not img.errors
    parent = img.tasks[0]
    mm = img.get(parent.obj("mm"), "mm")
    spec_mm = spec.mms["mm"]
    assert [(v.start, v.end, v.vm_flags) for v in mm.vmas] == \
        [(v.start, v.end, v.flags) for v in spec_mm.vmas]
    # every page is where the model says, with the bytes the spec gave it
    for v, sv in zip(mm.vmas, spec_mm.vmas):
        assert v.pages == len(sv.pages)
        for addr, off in v.page_offsets():
            assert data[off:off + 4096] == sv.pages[addr].ljust(4096, b"\0")
    assert img.get(mm.exe_ref, "file").path == "/usr/bin/prog"
    # threads share the leader's objects
    assert img.tasks[1].objs == parent.objs
    table = img.get(parent.obj("files"), "file_table")
    assert [(fd.fd, fd.close_on_exec) for fd in table.fds] == [(0, False), (3, False), (4, True)]
    dev_null = img.get(table.fds[0].file_ref, "file")
    assert dev_null.path == "/dev/null" and dev_null.f_type == "generic"
    ends = [img.get(fd.file_ref, "file") for fd in table.fds[1:]]
    assert ends[0].pipe_ref == ends[1].pipe_ref != 0
    pipe = img.get(ends[0].pipe_ref, "inode")
    assert data[pipe.data_offset:pipe.data_offset + pipe.data_len] == b"hello through the pipe"
    if arch == "x86_64":
        assert parent.regs["ip"] == 0x401000 and parent.regs["ax"] == 7
    child = img.tasks[2]
    if img.version != "v17":
        assert child.blocked == 1 << 11 and [p["csi_signo"] for p in child.pending] == [12]


def test_pages_batched_over_512():
    spec = tree_spec("v23", pages=1100)
    img = read_model(compose_bytes(spec, "v23"))
    heap = img.get(img.tasks[0].obj("mm"), "mm").vmas[1]
    assert heap.pages == 1100 and [len(b.addrs) for b in heap.batches] == [512, 512, 76]


def test_error_records_are_read():
    spec = tree_spec("v18")
    spec.errors = ["[pid 100 tsk parent err -16]: unsupported socket"]
    img = read_model(compose_bytes(spec, "v18"))
    assert [e.message for e in img.errors] == spec.errors[:1]


def test_format_override_and_detection():
    data = compose_bytes(tree_spec("v21"), "v21")
    assert read_model(data).version == "v21"
    assert read_model(compose_bytes(tree_spec("v23-rc1"), "v23-rc1")).version == "v23-rc1"
    img = read_model(data, version="v20")
    assert img.version == "v21"


def _shortened(data: bytes, name: str, abi) -> tuple[bytes, int]:
    """The image with the first ``name`` record's payload one byte short (re-framed),
    and that record's offset."""
    import struct
    out, off, at = bytearray(), 0, None
    while off < len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        rec = data[off:off + length]
        if at is None and rtype == abi.types[name]:
            at = len(out)
            rec = struct.pack("<II", rtype, length - 1) + rec[8:-1]
        out += rec
        off += length
    return bytes(out), at


@pytest.mark.parametrize("name", ["task", "cpu", "signal", "thread", "restart_block",
                                  "task_objs", "fs", "sigpending", "mm", "file"])
def test_records_refused_when_they_do_not_parse(name):
    """TASK, CPU, SIGNAL, THREAD and RESTART_BLOCK are held as bytes (parsed when read),
    TASK_OBJS, FS, SIGPENDING, MM and FILE parsed by the builder's own fast path: one too
    short for its struct is refused while the model is built, naming the record and its
    offset, as a record parsed through formats is."""
    import formats
    from imgtools.errors import SchemaError
    abi = formats.abi("v23")
    data, at = _shortened(compose_bytes(tree_spec("v23"), "v23"), name, abi)
    with pytest.raises(SchemaError) as e:
        read_model(data)
    assert e.value.offset == at and e.value.record == name.upper()


def test_held_records_read_back_as_parsed():
    """What a task holds as bytes reads back as the plain fields of its records."""
    import formats
    from imgtools.reader import ImageReader
    import io
    data = compose_bytes(tree_spec("v23"), "v23")
    img = read_model(data)
    r = ImageReader(io.BytesIO(data))
    want: dict = {}
    task = -1
    for rec in r.records():
        name = r.name_of(rec)
        task += name == "task"
        if name in ("task", "cpu", "thread", "restart_block") and task >= 0:
            want.setdefault(task, {})[name] = {k: v for k, v in r.parse(rec).items()
                                               if not k.startswith("_")}
    abi = formats.abi("v23")
    assert abi.has("cpu")
    for i, t in enumerate(img.tasks):
        w = want.get(i, {})
        assert t.fields == w.get("task", {}) and t.regs == w.get("cpu")
        assert t.thread == w.get("thread") and t.restart_block == w.get("restart_block")
        assert (t.state, t.exit_state) == (t.fields.get("state", 0),
                                           t.fields.get("exit_state", 0))
