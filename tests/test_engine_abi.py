"""The engine's C header and formats.v23 describe the same ABI.

The header is compiled with -g and its DWARF read with pyelftools: every struct the
engine writes must have the size and member offsets of the v23 struct of the same
record; the CKPT_HDR_* and CKPT_OBJ_* values are printed by a compiled program."""
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import formats

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "engine" / "include" / "ckpt_hdr.h"
CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")

# record name -> C struct name where the kernel header does not say ckpt_hdr_<record>
C_NAMES = {"uts_ns": "ckpt_hdr_utsns", "ipc_ns": "ckpt_hdr_ipcns",
           "ckpt_task_pids": "ckpt_task_pids", "socket_frag": "ckpt_hdr_socket_buffer_frag",
           "tty_ldisc": "ckpt_hdr_ldisc_n_tty", "epoll_items": "ckpt_hdr_eventpoll_items"}


@pytest.fixture(scope="module")
def dwarf_structs(tmp_path_factory):
    d = tmp_path_factory.mktemp("abi")
    src = d / "abi.c"
    src.write_text(f'#include "{HEADER}"\nint main(void) {{ return 0; }}\n')
    obj = d / "abi.o"
    subprocess.run([CC, "-g", "-fno-eliminate-unused-debug-types", "-c", str(src), "-o",
                    str(obj)], check=True)
    structs = {}
    with open(obj, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag != "DW_TAG_structure_type" or "DW_AT_name" not in die.attributes:
                    continue
                if "DW_AT_byte_size" not in die.attributes:
                    continue
                members = {}
                for m in die.iter_children():
                    if m.tag == "DW_TAG_member" and "DW_AT_name" in m.attributes:
                        loc = m.attributes.get("DW_AT_data_member_location")
                        members[m.attributes["DW_AT_name"].value.decode()] = \
                            loc.value if loc is not None else 0
                structs[die.attributes["DW_AT_name"].value.decode()] = \
                    (die.attributes["DW_AT_byte_size"].value, members)
    return structs


def field_offsets(st) -> dict[str, int]:
    """Offsets of the fixed-size leading fields of a construct Struct."""
    out, pos = {}, 0
    for sc in st.subcons:
        out[sc.name] = pos
        try:
            pos += sc.sizeof()
        except Exception:
            break
    return out


def test_engine_structs_match_formats(dwarf_structs):
    abi = formats.abi("v23", "x86_64")
    compared = 0
    for name in abi.types:
        st = abi.struct(name)
        c_name = C_NAMES.get(name, f"ckpt_hdr_{name}")
        if st is None or c_name not in dwarf_structs:
            continue
        size, members = dwarf_structs[c_name]
        py_size = abi.sizeof(name)
        flexible = any(off == size for off in members.values())   # trailing array[]
        if py_size is not None and not flexible:
            assert size == 8 + py_size, f"{c_name}: C {size} bytes, formats {8 + py_size}"
        offsets = field_offsets(st)
        common = [f for f in offsets if f in members and not f.startswith("_")]
        for f in common:
            assert members[f] == 8 + offsets[f], f"{c_name}.{f}: C @{members[f]}, " \
                                                  f"formats @{8 + offsets[f]}"
        compared += 1
    assert compared >= 45, f"only {compared} records compared"


def test_engine_numbers_match_formats(tmp_path):
    abi = formats.abi("v23", "x86_64")
    names = [("CKPT_HDR_" + n.upper(), v) for n, v in abi.types.items()] + \
            [("CKPT_OBJ_" + n.upper(), v) for n, v in abi.objs.items()]
    lines = [f'#include "{HEADER}"', "#include <stdio.h>", "int main(void) {"]
    for macro, _ in names:
        lines.append(f'#ifdef {macro}\nprintf("{macro} %d\\n", (int){macro});\n#endif')
    lines.append("return 0; }")
    src = tmp_path / "numbers.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "numbers"
    subprocess.run([CC, str(src), "-o", str(exe)], check=True)
    got = dict(line.split() for line in subprocess.run(
        [str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    got = {k: int(v) for k, v in got.items()}
    missing = [m for m, _ in names if m not in got]
    assert not missing, f"engine header lacks {missing}"
    assert {m: got[m] for m, _ in names} == dict(names)
