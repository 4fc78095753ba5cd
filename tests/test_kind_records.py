"""The records of sockets, event files, ttys and imgtools' extension records, read side:
check, files, show, decode/encode, diff, to-core and every conversion step, on composed
images holding each kind (conftest.kinds_spec) and on images the check must refuse."""
from __future__ import annotations

import io
import json
import struct

import pytest
from typer.testing import CliRunner

import formats
from conftest import kinds_spec, read_model
from converters import convert
from imgtools import check as ck
from imgtools import views
from imgtools.cli import app
from imgtools.compose import compose_bytes
from imgtools.reader import ImageReader

KIND_VERSIONS = ("v18", "v19-rc1", "v19-rc2", "v19", "v21", "v23-rc1", "v23")


def image(version="v23", ext=None, arch="x86_64") -> bytes:
    return compose_bytes(kinds_spec(version, ext=version == "v23" if ext is None else ext),
                         version, arch)


def codes(data: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in ck.check_bytes(data):
        out[f.code] = out.get(f.code, 0) + 1
    return out


def errors(data: bytes) -> list[str]:
    return [f.line() for f in ck.check_bytes(data) if f.severity == ck.ERROR]


def conv(data: bytes, to: str, allow_loss: bool = True):
    out = io.BytesIO()
    rep = convert(ImageReader(io.BytesIO(data)), out, to, allow_loss=allow_loss)
    return out.getvalue(), rep


def records(data: bytes):
    r = ImageReader(io.BytesIO(data))
    return r, [(rec, r.name_of(rec)) for rec in r.records()]


def patch(data: bytes, name: str, at: int, fmt: str, value, nth: int = 0) -> bytes:
    """``value`` packed at payload offset ``at`` of the nth record called ``name``."""
    _, recs = records(data)
    rec = [rec for rec, n in recs if n == name][nth]
    b = bytearray(data)
    struct.pack_into(fmt, b, rec.payload_offset + at, value)
    return bytes(b)


# -- every version's image of every kind is sound -------------------------------------------

@pytest.mark.parametrize("version", KIND_VERSIONS)
@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_images_of_every_kind_are_sound(version, arch):
    assert errors(image(version, arch=arch)) == []


def test_pure_v23_image_has_no_extension_record_and_no_flag():
    data = image("v23", ext=False)
    r, recs = records(data)
    assert not r.header.uflags & formats.ext.UFLAG_EXT
    assert not [n for _, n in recs if n.startswith("ext_")]
    assert errors(data) == []


# -- what files and show say ----------------------------------------------------------------

FILES = {
    5: ("socket", "socket unix stream peer=#{b} queued=11"),
    6: ("socket", "socket unix stream peer=#{a}"),
    7: ("socket", "socket unix stream '/tmp/srv.sock'"),
    8: ("socket", "tcp 127.0.0.1:8000 -> 127.0.0.1:40000 ESTABLISHED"),
    9: ("socket", "tcp 0.0.0.0:8000 LISTEN"),
    10: ("eventfd", "eventfd count=3"),
    11: ("epoll", "epoll (2 items)"),
    12: ("tty", "pty master 4"),
    13: ("tty", "pty slave 4"),
    14: ("signalfd", "signalfd CHLD"),
    15: ("timerfd", "timerfd next=1000000000ns"),
    16: ("memfd", "memfd:buf"),
    17: ("ghost", "deleted /tmp/log.txt"),
    18: ("inotify", "inotify (1 watches)"),
}


def test_files_names_every_kind():
    img = read_model(image())
    rows = {r["fd"]: r for r in views.files(img, 100)}
    socks = {f.sub["sock_objref"]: fd for fd, f in
             ((r["fd"], img.get(r["objref"], "file")) for r in rows.values())
             if f.f_type == "socket"}
    refs = {"a": next(k for k, v in socks.items() if v == 5),
            "b": next(k for k, v in socks.items() if v == 6)}
    got = {fd: (rows[fd]["type"], rows[fd]["path"]) for fd in FILES}
    assert got == {fd: (t, p.format(**refs)) for fd, (t, p) in FILES.items()}


def test_model_holds_the_kinds_state():
    img = read_model(image())
    by_fd = {fd.fd: img.get(fd.file_ref, "file")
             for fd in img.get(img.tasks[0].obj("files"), "file_table").fds}
    assert [i["fd"] for i in by_fd[11].sub["items"]] == [3, 10]
    memfd_inode = img.get(by_fd[16].sub["ino_objref"], "inode")
    assert sum(e.size for e in memfd_inode.extents) == 10000
    assert by_fd[18].sub["watches"][0]["path"] == "/etc"
    assert by_fd[0].sub["stat"]["mode"] == 0o100644
    assert img.clocks["monotonic_ns"] == 5 * 10**9
    assert img.tasks[0].rseq["signature"] == 0x53053053
    assert img.get(by_fd[12].sub["tty_objref"], "tty")["datalen"] == 3


def test_cli_show_files_and_records_of_a_kinds_image(tmp_path):
    p = tmp_path / "k.img"
    p.write_bytes(image())
    r = CliRunner()
    out = r.invoke(app, ["files", str(p)])
    assert out.exit_code == 0 and "tcp 0.0.0.0:8000 LISTEN" in out.stdout
    show = r.invoke(app, ["show", str(p)])
    assert show.exit_code == 0 and "deleted /tmp/log.txt" in show.stdout
    recs = r.invoke(app, ["show", "--records", str(p)])
    assert recs.exit_code == 0 and "EXT_FILE_MEMFD" in recs.stdout and "SOCKET_UNIX" in recs.stdout
    js = json.loads(r.invoke(app, ["files", "--json", str(p)]).stdout)
    assert {x["type"] for x in js} >= {"socket", "eventfd", "epoll", "tty", "memfd", "ghost"}


# -- decode / encode ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v18", "v19-rc2", "v23"])
def test_decode_encode_is_byte_identical(tmp_path, version):
    data = image(version)
    src, js, back = tmp_path / "a.img", tmp_path / "a.json", tmp_path / "b.img"
    src.write_bytes(data)
    r = CliRunner()
    assert r.invoke(app, ["decode", str(src), "-o", str(js)]).exit_code == 0
    assert r.invoke(app, ["encode", str(js), "-o", str(back)]).exit_code == 0
    assert back.read_bytes() == data


# -- check refuses what is wrong ------------------------------------------------------------

def test_extension_record_without_the_flag_is_an_error():
    data = patch(image(), "header", 56, "<Q", 1)
    assert codes(data).get("ext.flag", 0) >= 10


def test_unknown_extension_type_is_a_warning_and_commands_go_on(tmp_path):
    data = patch(image(), "ext_clocks", -8, "<I", 8999)     # the type of EXT_CLOCKS
    c = codes(data)
    assert c.get("ext.unknown") == 1 and "record.unknown" not in c
    assert not errors(data)
    p = tmp_path / "u.img"
    p.write_bytes(data)
    for argv in (["show", str(p)], ["files", str(p)], ["decode", str(p), "-o",
                                                        str(tmp_path / "u.json")],
                 ["convert", str(p), "--to", "v21", "--allow-loss", "-o",
                  str(tmp_path / "c.img")]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 0, (argv, res.output)


def test_extent_past_the_file_size_and_unended_run():
    data = image()
    # the memfd's first extent claims an offset far past its 10000 bytes
    bad = patch(data, "ext_extent", 0, "<Q", 1 << 20)
    assert "ext.layout" in codes(bad)
    # the run's last extent (no data) removed: the run never ends
    r, recs = records(data)
    last = [rec for rec, n in recs if n == "ext_extent" and rec.size == 8][0]
    cut = data[:last.offset] + data[last.offset + last.len:]
    assert "ext.layout" in codes(cut)


def test_annotation_out_of_place():
    data = image()
    r, recs = records(data)
    rseq = [rec for rec, n in recs if n == "ext_rseq"][0]
    tail = [rec for rec, n in recs if n == "tail"][0]
    moved = data[:rseq.offset] + data[rseq.offset + rseq.len:tail.offset] + \
        data[rseq.offset:rseq.offset + rseq.len] + data[tail.offset:]
    assert "ext.place" in codes(moved)


def test_socket_queue_count_and_length():
    data = image()
    assert "socket.queue" in codes(patch(data, "socket_queue", 0, "<I", 2))
    assert "socket.queue" in codes(patch(data, "socket_buffer", 12, "<I", 99))  # lin_len


def test_epoll_items_buffer_and_refs():
    data = image()
    assert "epoll.items" in codes(patch(data, "epoll_items", 4, "<I", 3))       # num_items
    r, recs = records(data)
    buf = [rec for (rec, n), (_, prev) in zip(recs[1:], recs) if prev == "epoll_items"][0]
    b = bytearray(data)
    struct.pack_into("<i", b, buf.payload_offset + 12, 9999)      # items[0].file_objref
    assert "objref.undefined" in codes(bytes(b))


def test_socket_family_record_missing():
    data = image()
    r, recs = records(data)
    un = [rec for rec, n in recs if n == "socket_unix"][-1]
    cut = data[:un.offset] + data[un.offset + un.len:]
    assert "socket.family" in codes(cut)


def test_tty_ldisc_buffer():
    assert "tty.ldisc" in codes(patch(image(), "tty_ldisc", 4, "<I", 5000))   # datalen


# -- conversions ----------------------------------------------------------------------------

def _losses(rep) -> list[tuple[str, str, str]]:
    return sorted((lo.step, lo.record, lo.field) for lo in rep.losses)


def test_v23_to_v18_loses_exactly_what_v18_cannot_hold():
    data = image("v23", ext=False)
    old, rep = conv(data, "v18")
    assert errors(old) == []
    got = _losses(rep)
    assert got == sorted([
        *[("v23-rc1->v21", "TTY", "termios.c_cc")] * 2,
        *[("v19-rc2->v19-rc1", "SOCKET_INET", f) for f in ("tcp.rcv_nxt", "tcp.snd_nxt")] * 2,
        ("v19-rc2->v19-rc1", "FILE", "record"), ("v19-rc2->v19-rc1", "FILE_DESC", "fd"),
        ("v19-rc2->v19-rc1", "FILE", "record"), ("v19-rc2->v19-rc1", "FILE_DESC", "fd"),
        ("v19-rc2->v19-rc1", "EPOLL_ITEMS", "record"),
        ("v19-rc2->v19-rc1", "EPOLL_ITEMS", "epoll item"),
        *[("v19-rc1->v18", "FILE", "record"), ("v19-rc1->v18", "OBJREF", "objref"),
          ("v19-rc1->v18", "FILE_DESC", "fd")] * 2,
        ("v23-rc1->v21", "OBJREF", "objtype"), ("v23-rc1->v21", "TASK_SEM_UNDO_LIST", "record"),
        ("v23-rc1->v21", "TASK_SEM_UNDO", "record"), ("v23-rc1->v21", "TASK_OBJS",
                                                      "sem_undo_objref"),
    ]), got
    # what v18 holds comes back: unix sockets with their queue, the pty pair
    back, rep2 = conv(old, "v23", allow_loss=False)
    assert errors(back) == []
    rows = {r["fd"]: r["path"] for r in views.files(read_model(back), 100)}
    assert rows[7] == "socket unix stream '/tmp/srv.sock'" and "queued=11" in rows[5]
    assert (rows[12], rows[13]) == ("pty master 4", "pty slave 4")
    assert not set(rows) & {8, 9, 10, 11}


def test_extension_records_are_dropped_below_v23_with_what_names_them():
    data = image("v23", ext=True)
    old, rep = conv(data, "v23-rc1")
    assert errors(old) == []
    lost = _losses(rep)
    kinds = ["EXT_CLOCKS", "EXT_FILE_GHOST", "EXT_FILE_INOTIFY", "EXT_FILE_MEMFD",
             "EXT_FILE_SIGNALFD", "EXT_FILE_TIMERFD"]
    assert [r for _, r, f in lost if f == "record"] == sorted(
        kinds + ["EXT_FILE_STAT"] * 3 + ["EXT_RSEQ"] * 3)
    assert sorted(lo.value for lo in rep.losses if lo.field == "fd") == [14, 15, 16, 17, 18]
    memfd = next(o.ref for o in read_model(data).objects.values()
                 if o.kind == "file" and o.value.f_type == "memfd")
    assert [lo.value for lo in rep.losses if lo.field == "vma_objref"] == [memfd]
    r, recs = records(old)
    assert not r.header.uflags & formats.ext.UFLAG_EXT
    assert not [n for _, n in recs if n.startswith("ext_") or n.startswith("type_8")]
    img = read_model(old)
    mm = img.get(img.tasks[0].obj("mm"), "mm")
    assert mm.fields["map_count"] == len(mm.vmas) == 4
    kept = next(v for v in mm.vmas if v.start == 0x30000000)
    assert (kept.vma_type, kept.file_ref, kept.pages, kept.vm_flags & 0x88) == ("anon", 0, 0, 0)
    fds = [fd.fd for fd in img.get(img.tasks[0].obj("files"), "file_table").fds]
    assert not set(fds) & {14, 15, 16, 17, 18} and 13 in fds


def test_pure_images_of_every_kind_round_trip_through_every_step():
    """v23 (strict) -> each older version holding the same kinds -> v23: no loss where
    nothing is lost, and the same bytes back."""
    data = image("v23", ext=False)
    down, rep = conv(data, "v23-rc1", allow_loss=False)
    assert conv(down, "v23", allow_loss=False)[0] == data
    for v in ("v21", "v19", "v19-rc2"):
        src = image(v)
        up, rep = conv(src, "v23")
        assert not rep.losses, (v, rep.losses)
        assert errors(up) == []


def test_downgrade_refuses_without_allow_loss():
    from converters import LossRefused
    with pytest.raises(LossRefused):
        conv(image("v23"), "v23-rc1", allow_loss=False)


def test_peercred_becomes_the_creds_of_the_cred_object():
    """v23-rc1's SOCKET_UNIX.peercred (a CRED objref) -> v21's uid/gid pair."""
    data = image("v23-rc1")
    r, recs = records(data)
    cred_ref = next(r.parse(rec).objref for rec, n in recs if n == "objref"
                    and r.abi.obj_names[r.parse(rec).objtype] == "cred")
    data = patch(data, "socket_unix", 8, "<i", cred_ref)
    old, rep = conv(data, "v21")
    assert not [lo for lo in rep.losses if lo.record == "SOCKET_UNIX"]
    r2, recs2 = records(old)
    u = r2.parse([rec for rec, n in recs2 if n == "socket_unix"][0])
    assert (u.peercred_uid, u.peercred_gid) == (0, 0)
    u2 = r2.parse([rec for rec, n in recs2 if n == "socket_unix"][1])
    assert (u2.peercred_uid, u2.peercred_gid) == (0xFFFFFFFF, 0xFFFFFFFF)


# -- diff, to-core ------------------------------------------------------------------------

def test_diff_sees_a_descriptor_change_kind(tmp_path):
    a = image()
    r, recs = records(a)
    files = [rec for rec, n in recs if n == "file"]
    eventfd = next(i for i, rec in enumerate(files) if r.parse(rec).f_type == 7)
    b = patch(a, "file", 40, "<Q", 7, nth=eventfd)          # the count after FILE common
    pa, pb = tmp_path / "a.img", tmp_path / "b.img"
    pa.write_bytes(a)
    pb.write_bytes(b)
    res = CliRunner().invoke(app, ["diff", "--json", str(pa), str(pb)])
    assert res.exit_code == 1, res.output
    assert "eventfd count=7" in res.stdout and "eventfd count=3" in res.stdout


def test_to_core_maps_a_memfd_from_its_contents(tmp_path):
    """The shared mapping of the memfd holds the memfd's bytes (whole pages of its
    EXT_EXTENTs); the short last page is zeros, with a warning."""
    from elftools.elf.elffile import ELFFile
    p = tmp_path / "k.img"
    p.write_bytes(image())
    res = CliRunner().invoke(app, ["to-core", str(p), "-o", str(tmp_path / "core")])
    assert res.exit_code == 0, res.output
    assert "memfd mapping 0x30000000-0x30003000: 1 page(s)" in res.output
    with open(tmp_path / "core", "rb") as f:
        loads = {s["p_vaddr"]: s.data() for s in ELFFile(f).iter_segments()
                 if s["p_type"] == "PT_LOAD" and 0x30000000 <= s["p_vaddr"] < 0x30003000}
    assert loads[0x30000000] == b"M" * 8192 and loads[0x30002000] == b""


def test_diff_sees_rseq_and_file_stat_changes(tmp_path):
    a = image()
    b = patch(patch(a, "ext_rseq", 8, "<I", 64), "ext_file_stat", 0, "<Q", 12345)
    pa, pb = tmp_path / "a.img", tmp_path / "b.img"
    pa.write_bytes(a)
    pb.write_bytes(b)
    res = CliRunner().invoke(app, ["diff", "--json", str(pa), str(pb)])
    assert res.exit_code == 1, res.output
    d = json.loads(res.stdout)
    t = d["tasks"][0]
    assert t["rseq"] == {"rseq_len": [32, 64]}
    assert t["fds"]["changed"][0]["stat.size"][1] == 12345
    text = CliRunner().invoke(app, ["diff", str(pa), str(pb)])
    assert text.exit_code == 1 and "rseq: rseq_len 32 -> 64" in text.stdout, text.output
    assert "changed: stat.size" in text.stdout
    assert CliRunner().invoke(app, ["diff", str(pa), str(pa)]).exit_code == 0


def test_maps_and_mem_name_a_memfd_mapping(tmp_path):
    p = tmp_path / "k.img"
    p.write_bytes(image())
    r = CliRunner()
    maps = r.invoke(app, ["maps", str(p)])
    assert "0x30000000  0x30003000  rw-s  0x0     0      /memfd:buf (deleted)" in maps.stdout
    mem = r.invoke(app, ["mem", str(p), "0x30000000", "16"])
    assert mem.exit_code == 0 and "EXT_EXTENT records" in mem.stdout, mem.output


def test_sem_undo_lists():
    data = image("v23-rc1")
    img = read_model(data)
    assert img.get(img.tasks[0].obj("sem_undo"), "sem_undo") == {"count": 1}
    assert "ipc.sem-undo" in codes(patch(data, "task_sem_undo", 4, "<I", 5))  # semadj_count
    assert "ipc.sem-undo" in codes(patch(data, "task_sem_undo_list", 0, "<I", 2))
    old, rep = conv(data, "v21")
    assert errors(old) == []
    assert ("TASK_OBJS", "sem_undo_objref") in [(lo.record, lo.field) for lo in rep.losses]
    assert [n for _, n in records(old)[1]].count("buffer") == \
        [n for _, n in records(data)[1]].count("buffer") - 1         # its adjustments


def test_diff_of_a_conversion_does_not_compare_objref_numbers(tmp_path):
    """peer=#N names an objref, which a conversion renumbers: not a change."""
    a = image("v23", ext=False)
    b, rep = conv(a, "v21")          # pid objects go: every objref moves down
    pa, pb = tmp_path / "a.img", tmp_path / "b.img"
    pa.write_bytes(a)
    pb.write_bytes(b)
    res = CliRunner().invoke(app, ["diff", "--json", str(pa), str(pb)])
    fds = [t.get("fds") for t in json.loads(res.stdout)["tasks"]]
    assert not any(fds), fds


def test_unknown_extension_object_record_defines_its_file(tmp_path):
    """A newer imgtools' extension file (an unknown type right after OBJREF(FILE)): check
    warns, files shows the descriptor, a downgrade drops it with its descriptor."""
    data = patch(image(), "ext_file_timerfd", -8, "<I", 8077)
    c = codes(data)
    assert c.get("ext.unknown") == 1 and not errors(data)
    rows = {r["fd"]: r for r in views.files(read_model(data), 100)}
    assert rows[15]["type"] == "ext_8077"
    old, rep = conv(data, "v23-rc1")
    assert errors(old) == []
    assert 15 in [lo.value for lo in rep.losses if lo.field == "fd"]
