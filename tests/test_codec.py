"""decode/encode: lossless for every version, streaming."""
import io
import json

import pytest

from imgtools.codec import decode, encode
from imgtools.errors import UsageError
from imgtools.reader import ImageReader


def _decode(data, pages=True):
    out = io.StringIO()
    decode(ImageReader(io.BytesIO(data)), out.write, pages=pages)
    return out.getvalue()


def test_roundtrip_byte_identical(any_image):
    version, arch, data = any_image
    text = _decode(data)
    doc = json.loads(text)
    assert (doc["version"], doc["arch"]) == (version, arch)
    back = io.BytesIO()
    encode(io.StringIO(text), back)
    assert back.getvalue() == data


def test_roundtrip_from_whole_json_document(any_image):
    """A document re-serialised by another tool (one line) still encodes."""
    _, _, data = any_image
    doc = json.loads(_decode(data))
    back = io.BytesIO()
    encode(io.StringIO(json.dumps(doc)), back)
    assert back.getvalue() == data


def test_fields_are_readable(any_image):
    version, _, data = any_image
    doc = json.loads(_decode(data))
    tasks = [r for r in doc["records"] if r["name"] == "TASK"]
    assert len(tasks) == 4
    comms = [r["text"] for r in doc["records"] if r["name"] == "STRING"]
    assert comms[:2] == ["parent", "parent"] or comms[0].startswith("parent")
    pages = [r for r in doc["records"] if "addrs" in r]
    assert pages and all(isinstance(a, int) for r in pages for a in r["addrs"])


def test_nonzero_padding_survives():
    from conftest import tree_spec
    from imgtools.compose import compose_bytes
    data = bytearray(compose_bytes(tree_spec("v23"), "v23"))
    # TREE is at a fixed place after the head: corrupt its padding
    i = data.find(bytes.fromhex("66000000" "10000000"))   # type 102, len 16
    data[i + 12:i + 16] = b"\xde\xad\xbe\xef"
    text = _decode(bytes(data))
    back = io.BytesIO()
    encode(io.StringIO(text), back)
    assert back.getvalue() == bytes(data)


def test_no_pages_cannot_be_encoded(any_image):
    _, _, data = any_image
    text = _decode(data, pages=False)
    assert '"pages_omitted"' in text and len(text) < len(_decode(data))
    with pytest.raises(UsageError):
        encode(io.StringIO(text), io.BytesIO())
