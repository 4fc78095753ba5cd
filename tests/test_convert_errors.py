"""Every converter step on images with ERROR records (issue 10, item 11).

The engine writes an ERROR record (+ its message STRING) in place of state it cannot
save and goes on, so an ERROR may sit anywhere in a task section. Each step, either
way, must keep the image sound apart from the ERROR itself: the per-task order
changes (objs-first <-> cpu-first, v17's SIGNAL_TASK) must not treat an ERROR as the
end of the section."""
from __future__ import annotations

import io

import pytest

import formats
from conftest import tree_spec
from converters import convert
from imgtools.check import check_bytes
from imgtools.compose import compose_bytes
from imgtools.reader import ImageReader
from imgtools.stream import HDR

MILESTONES = ("after_comm", "task_creds", "task_ns", "objref", "task_objs", "thread",
              "restart_block", "cpu", "signal_task")
STEPS = [(a, b) for a, b in zip(formats.VERSIONS, formats.VERSIONS[1:])]


def _error_records(message: str, abi) -> bytes:
    text = message.encode() + b"\0"
    return (HDR.pack(abi.types["error"], HDR.size) +
            HDR.pack(abi.types["string"], HDR.size + len(text)) + text)


def with_error(version: str, where: str) -> bytes | None:
    """The tree image of ``version`` with an ERROR before the first ``where`` record of
    the first task section (or right after its comm); None when the version has none."""
    abi = formats.abi(version)
    data = compose_bytes(tree_spec(version), version, "x86_64")
    r = ImageReader(io.BytesIO(data), version=version, arch="x86_64")
    recs = [(rec.offset, r.name_of(rec)) for rec in r.records()]
    first = next(i for i, (_, n) in enumerate(recs) if n == "task")
    end = next(i for i, (_, n) in enumerate(recs) if i > first and n == "task")
    if where == "after_comm":
        at = recs[first + 2][0]
    else:
        found = [off for off, n in recs[first:end] if n == where]
        if not found:
            return None
        at = found[0]
    return data[:at] + _error_records(f"not saved: before {where}", abi) + data[at:]


def _errors(data: bytes, version: str) -> list[str]:
    return [f.line() for f in check_bytes(data, version=version, arch="x86_64")
            if f.severity == "error" and f.code != "error.record"]


def _converted(data: bytes, src: str, dst: str) -> bytes:
    out = io.BytesIO()
    convert(ImageReader(io.BytesIO(data), version=src, arch="x86_64"), out, dst,
            allow_loss=True)
    return out.getvalue()


@pytest.mark.parametrize("src,dst", STEPS + [(b, a) for a, b in STEPS],
                         ids=[f"{a}->{b}" for a, b in STEPS] + [f"{b}->{a}" for a, b in STEPS])
def test_step_keeps_an_image_with_error_records_sound(src, dst):
    tried = 0
    for where in MILESTONES:
        data = with_error(src, where)
        if data is None:
            continue
        tried += 1
        assert _errors(data, src) == [], where         # only the ERROR itself
        out = _converted(data, src, dst)
        assert _errors(out, dst) == [], (where, _errors(out, dst))
        n_in = sum(f.code == "error.record" for f in check_bytes(data, version=src))
        n_out = sum(f.code == "error.record" for f in check_bytes(out, version=dst))
        assert n_out == n_in == 1, where
    assert tried >= 6


def test_down_to_v18_from_v23_with_an_error_record():
    """The issue's case: v23 (cpu-first) with an ERROR among the task's objects, to v18."""
    data = with_error("v23", "objref")
    out = _converted(data, "v23", "v18")
    assert _errors(out, "v18") == []


@pytest.mark.parametrize("src,dst", [("v23", "v21"), ("v21", "v23"), ("v21", "v19"),
                                     ("v19", "v21")])
def test_a_tree_buffer_a_row_short_is_refused_where_it_is(src, dst):
    """The TREE's rows are made one at a time as a step reads them; a buffer that cannot
    hold nr_tasks rows is still refused before any row, naming the BUFFER's offset."""
    from imgtools.errors import SchemaError
    data = compose_bytes(tree_spec(src), src, "x86_64")
    r = ImageReader(io.BytesIO(data), version=src, arch="x86_64")
    recs = [(rec.offset, rec.len, r.name_of(rec)) for rec in r.records()]
    i = next(i for i, (_, _, n) in enumerate(recs) if n == "tree")
    at, length, name = recs[i + 1]
    assert name == "buffer"
    row = formats.abi(src).sizeof("ckpt_task_pids" if src == "v23" else "ckpt_pids")
    bad = (data[:at] + HDR.pack(formats.abi(src).types["buffer"], length - row) +
           data[at + HDR.size:at + length - row] + data[at + length:])
    with pytest.raises(SchemaError) as e:
        _converted(bad, src, dst)
    assert e.value.offset == at and "too short for" in str(e.value), str(e.value)
    _converted(data, src, dst)                  # (the image as made converts)
