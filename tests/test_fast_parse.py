"""Abi.parse takes a struct.Struct path (formats._abi._Layout): it must give what
construct gives, for every struct of every version and arch on random payloads, and for
every record of every sample image (counts, lengths and switches read from the data)."""
import io
import random
from pathlib import Path

import pytest

import formats
from formats._abi import _Layout
from imgtools.reader import open_image

ALL = [(v, a) for v in formats.VERSIONS for a in formats.ARCHES]
SAMPLES = sorted(str(p) for p in (Path(__file__).parent.parent / "samples").glob("*/*.img"))


def _plain(x):
    if isinstance(x, dict):
        return [(k, _plain(v)) for k, v in x.items() if k != "_io"]
    if isinstance(x, list):
        return (type(x).__name__, [_plain(i) for i in x])
    return (type(x).__name__, x)


def _by_construct(abi, name, data):
    st = abi.structs[name]
    stream = io.BytesIO(data)
    v = st.parse_stream(stream)
    if stream.tell() < len(data):
        v["_tail"] = data[stream.tell():]
    return v


@pytest.mark.parametrize("version,arch", ALL)
def test_fixed_layouts_parse_as_construct_does(version, arch):
    abi = formats.abi(version, arch)
    rnd = random.Random(f"{version}-{arch}")
    fixed = 0
    for name, st in abi.structs.items():
        layout = _Layout.of(st)
        if layout is None or layout.size is None:
            continue
        fixed += 1
        assert layout.size == st.sizeof(), name
        for extra in (0, 0, 5):
            data = rnd.randbytes(layout.size + extra)
            assert _plain(abi.parse(name, data)) == _plain(_by_construct(abi, name, data))
    assert fixed > len(abi.structs) * 0.8


def _struct_records(sample):
    """(abi, record name, payload, offset) of every record of a sample that has a struct
    and is held whole."""
    with open_image(sample) as r:
        for rec in r.records():
            name = r.name_of(rec)
            if r.abi.struct(name) is not None and not rec.streamed:
                yield r.abi, name, rec.data(), rec.offset


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_every_record_of_the_samples_parses_as_construct_does(sample):
    for abi, name, data, offset in _struct_records(sample):
        fast, used = _Layout(abi.structs[name]).parse(data)      # no fallback here
        if used < len(data):
            fast["_tail"] = data[used:]
        assert _plain(fast) == _plain(_by_construct(abi, name, data)), (name, offset)


def test_short_payload_is_still_a_payload_error():
    abi = formats.abi("v23")
    with pytest.raises(formats.PayloadError, match="VMA payload"):
        abi.parse("vma", b"\0" * 10)


def _public(value) -> dict:
    return {k: v for k, v in value.items() if not k.startswith("_")}


@pytest.mark.parametrize("version,arch", ALL)
def test_plain_and_getters_give_the_public_fields_parse_gives(version, arch):
    """Abi.plain (the model builder's dicts) and Abi.getter (its tuples of named fields)
    against parse on random payloads of every struct: same keys in the same order, same
    values; a payload too short for the struct is the PayloadError parse raises."""
    abi = formats.abi(version, arch)
    rnd = random.Random(f"plain-{version}-{arch}")
    for name, st in abi.structs.items():
        layout = _Layout.of(st)
        size = layout.size if layout is not None and layout.size is not None else None
        if size is None:
            continue
        scalars = [sub.name for sub in st.subcons
                   if sub.name and not sub.name.startswith("_")
                   and isinstance(abi.parse(name, bytes(size))[sub.name], (int, bytes))]
        picked = tuple(rnd.sample(scalars, min(3, len(scalars))))
        get = abi.getter(name, picked + ("no_such_field",), {"no_such_field": 7})
        for extra in (0, 3):
            data = rnd.randbytes(size + extra)
            want = _public(abi.parse(name, data))
            got = abi.plain(name, data)
            assert list(got.items()) == list(want.items()), name
            assert get(data) == (*(want[f] for f in picked), 7), name
            assert abi.checker(name)(data) is data
        if size:
            short = rnd.randbytes(size - 1)
            for call in (lambda: abi.parse(name, short), lambda: abi.plain(name, short),
                         lambda: get(short), lambda: abi.checker(name)(short)):
                with pytest.raises(formats.PayloadError):
                    call()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_plain_of_every_record_of_the_samples_is_parse_without_private_fields(sample):
    for abi, name, data, offset in _struct_records(sample):
        want = _public(abi.parse(name, data))
        assert list(abi.plain(name, data).items()) == list(want.items()), (name, offset)
        assert abi.checker(name)(data) is data


def test_check_refuses_a_variable_payload_that_does_not_parse():
    """THREAD's tls_array is as long as its sizeof_tls_array says: a payload without
    those bytes is refused, as parse refuses it."""
    abi = formats.abi("v17")
    head = abi.getter("thread", ("sizeof_tls_array",))
    ok = (b"\0" * 6 + (16).to_bytes(2, "little")) + bytes(16)
    abi.checker("thread")(ok)
    with pytest.raises(formats.PayloadError):
        abi.checker("thread")(ok[:-1])
    with pytest.raises(formats.PayloadError):
        abi.parse("thread", ok[:-1])
    assert head(ok) == (16,)


def _by_construct_build(abi, name, value) -> bytes | str:
    import construct
    try:
        return abi.structs[name].build(value) + bytes(value.get("_tail", b""))
    except (construct.ConstructError, KeyError, TypeError, ValueError) as e:
        return f"error: {type(e).__name__}"


@pytest.mark.parametrize("version,arch", ALL)
def test_build_packs_what_construct_builds(version, arch):
    """Abi.build packs structs of fixed layout with one struct.pack (formats._abi._Packer):
    on random values of every struct, with a pad left out (its default), a field missing,
    a value out of range, a byte string of the wrong length and an array one short, it
    builds what construct builds and fails where construct fails."""
    abi = formats.abi(version, arch)
    rnd = random.Random(f"build-{version}-{arch}")
    packed = nested = 0
    for name in abi.structs:
        fields = abi.tables["packs"][name]
        if fields is None or abi.sizeof(name) is None:     # (variable: the test below)
            continue
        packed += 1
        nested += any(not isinstance(node, str) for _, _, node in fields)
        value = {k: v for k, v in abi.parse(name, rnd.randbytes(abi.sizeof(name))).items()
                 if k != "_io"}
        variants = [value, dict(value, _tail=b"xyz")]
        for n, default, node in fields:
            without = {k: v for k, v in value.items() if k != n}
            if default is not None:
                variants.append(without)
            elif node == "I" or node == "Q":
                variants += [without, dict(value, **{n: -1}), dict(value, **{n: 1 << 64})]
            elif isinstance(node, str):
                variants.append(dict(value, **{n: b"\1"}))
            elif node[0] == "a":
                variants.append(dict(value, **{n: list(value[n])[1:]}))
        _builds_as_construct(abi, name, variants)
    assert packed > len(abi.structs) * 0.5 and nested


def _builds_as_construct(abi, name, variants, *where) -> None:
    """Abi.build gives construct's bytes for each value, or fails where construct does."""
    for v in variants:
        want = _by_construct_build(abi, name, v)
        if isinstance(want, str):
            with pytest.raises(formats.PayloadError):
                abi.build(name, v)
        else:
            assert abi.build(name, v) == want, (name, *where, v)


def test_build_packs_variable_structs_as_construct_does():
    """Structs whose layout depends on an earlier field (THREAD's tls_array, SIGPENDING's
    siginfo array, FILE's switch on f_type) are packed part by part, without construct:
    on every such record of the samples, and with a count, length or key changed, an
    array or byte string one short and a field missing, Abi.build gives construct's
    bytes, or a PayloadError where construct fails."""
    seen = set()
    for sample in SAMPLES:
        for abi, name, data, offset in _struct_records(sample):
            fields = abi.tables["packs"][name]
            if fields is None or abi.sizeof(name) is not None:
                continue
            value = {k: v for k, v in abi.parse(name, data).items() if k != "_io"}
            abi.build(name, value)
            assert abi._packers[name].pack(value) is not None, (name, offset)  # no fallback
            seen.add(name)
            variants = [value, dict(value, _tail=b"xyz")]
            for n, default, node in fields:
                if default is None:
                    variants.append({k: v for k, v in value.items() if k != n})
                if isinstance(node, str) or node[0] in "sa":
                    continue
                if node[0] == "n":
                    variants += [dict(value, **{n: list(value[n])[1:]}),
                                 dict(value, **{node[1]: value[node[1]] + 1})]
                elif node[0] == "b":
                    variants += [dict(value, **{n: value[n][1:]}),
                                 dict(value, **{node[1]: value[node[1]] + 1})]
                else:
                    variants += [dict(value, **{node[1]: key}) for key in (*node[2], 0xdead)]
            _builds_as_construct(abi, name, variants, offset)
    assert {"thread", "sigpending", "file"} <= seen, seen
