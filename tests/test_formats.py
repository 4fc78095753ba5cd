"""Record layouts against the sizes measured from the kernel headers (reference §3, §4)."""
import pytest

import formats

# record -> {version: record length incl. the 8-byte header}, x86_64; measured values.
SIZES = {
    "header": {v: 72 for v in formats.VERSIONS},
    "task": {"v17": 72, "v18": 72, "v19-rc1": 72, "v19-rc2": 72, "v19": 64, "v21": 64,
             "v23-rc1": 80, "v23": 80},
    "task_objs": {"v17": 24, "v18": 24, "v19-rc2": 24, "v19": 32, "v23-rc1": 32, "v23": 32},
    "cpu": {"v17": 240, "v19-rc2": 240, "v19": 192, "v23": 192},
    "cred": {"v18": 88, "v19-rc1": 88, "v19-rc2": 96, "v23": 96},
    "vma": {"v17": 72, "v23-rc1": 72, "v23": 80},
    "mm": {v: 120 for v in formats.VERSIONS},
    "signal": {"v18": 328, "v23": 328},
    "sigpending": {},
    "ns": {"v17": 16, "v19": 16, "v21": 24, "v23": 24},
    "tty": {"v18": 72},
    "ipc_shm": {"v17": 112, "v19-rc2": 120, "v23": 120},
    "ipc_msg_msg": {"v18": 16, "v19-rc2": 24, "v19": 24},
    "uts_ns": {v: 400 for v in formats.VERSIONS},
    "ipc_ns": {v: 56 for v in formats.VERSIONS},
    "file_desc": {v: 24 for v in formats.VERSIONS},
    "objref": {v: 16 for v in formats.VERSIONS},
    "user": {v: 16 for v in formats.VERSIONS},
    "tail": {v: 16 for v in formats.VERSIONS},
    "pids": {"v23": 24},
    "tree": {v: 16 for v in formats.VERSIONS},
    "restart_block": {v: 56 for v in formats.VERSIONS},
    "mm_context": {v: 24 for v in formats.VERSIONS},
    "fs": {"v19": 8, "v21": 8, "v23-rc1": 16, "v23": 16},
}
CASES = [(r, v, n) for r, per in SIZES.items() for v, n in per.items()]


@pytest.mark.parametrize("record,version,length", CASES)
def test_record_sizes(record, version, length):
    assert formats.abi(version).sizeof(record) + 8 == length


def test_i386_task_record_before_v19():
    for v in ("v17", "v18", "v19-rc1", "v19-rc2"):
        assert formats.abi(v, "i386").sizeof("task") + 8 == 64
    assert formats.abi("v19", "i386").sizeof("task") == formats.abi("v19").sizeof("task")


def test_word_sizes():
    assert formats.abi("v17", "i386").word == 4 and formats.abi("v17", "i386").auxv_word == 4
    assert formats.abi("v19", "i386").word == 4 and formats.abi("v19", "i386").auxv_word == 8
    assert formats.abi("v23").word == 8


# (record, version) -> type number: the renumberings of §3.
NUMBERS = [("buffer", "v18", 3), ("buffer", "v19-rc1", 4), ("objref", "v17", 5),
           ("objref", "v19-rc1", 6), ("tree", "v23-rc1", 101), ("tree", "v23", 102),
           ("pids", "v23", 101), ("task_creds", "v19-rc2", 116), ("task_creds", "v19", 117),
           ("task_creds", "v23", 118), ("mnt_ns", "v19", 111), ("socket_unix", "v18", 704),
           ("socket_unix", "v19-rc2", 705), ("socket_inet", "v19-rc2", 706),
           ("mm_context", "v23-rc1", 404), ("mm_context", "v23", 405), ("file_pipe", "v17", 305),
           ("pipe_buf", "v18", 305), ("cpu", "v23", 108), ("thread", "v23", 107)]


@pytest.mark.parametrize("record,version,number", NUMBERS)
def test_record_numbers(record, version, number):
    assert formats.abi(version).types[record] == number


OBJS = [("signal", "v17", None), ("ns", "v17", 6), ("ns", "v18", 7), ("fs", "v19", 5),
        ("sighand", "v19", 6), ("mnt_ns", "v19", 11), ("groupinfo", "v19", 15),
        ("sem_undo", "v23-rc1", 22), ("pid", "v23", 1), ("sem_undo", "v23", 23),
        ("net_ns", "v21", 20), ("security", "v19-rc2", 17)]


@pytest.mark.parametrize("obj,version,number", OBJS)
def test_object_numbers(obj, version, number):
    assert formats.abi(version).objs.get(obj) == number


def test_tables_are_one_to_one():
    for v in formats.VERSIONS:
        a = formats.abi(v)
        assert len(set(a.types.values())) == len(a.types), v
        assert len(set(a.objs.values())) == len(a.objs), v


def test_alias_and_unknown():
    assert formats.canonical("v20") == "v21"
    assert formats.canonical("23-rc1") == "v23-rc1"
    with pytest.raises(ValueError):
        formats.canonical("v16")


def test_delta_leaves_predecessor_alone():
    assert "signal_objref" not in [s.name for s in formats.abi("v17").struct("task_objs").subcons]
    assert formats.abi("v18").struct("task_objs").sizeof() == 16
