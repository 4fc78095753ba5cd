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
