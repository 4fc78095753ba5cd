"""Lossless image <-> JSON.

The JSON is one object whose ``records`` array holds one record per line, so
both directions stream: ``decode`` writes record by record (large payloads as
base64 in chunks) and ``encode`` reads line by line.  Each record carries its
type number and name, its byte offset, and either its parsed fields (bytes as
``{"hex": …}``; padding only when not zero) or its raw payload
(``{"b64": …}``, or ``{"text": …}`` for NUL-terminated strings).  A page
BUFFER is split into its addresses and its page images.  ``encode(decode(x))``
is byte-identical to ``x``: a record whose fields would not rebuild exactly is
written raw.
"""
from __future__ import annotations

import base64
import json
import struct
from typing import Callable, Iterable, TextIO

import formats

from .errors import UsageError
from .reader import ImageReader
from .stream import DATA_MAX, HDR_SIZE, PIPE_DATA, Record
from .writer import ImageWriter

FORMAT_TAG = "imgtools-decode/1"
B64_CHUNK = 3 * (1 << 18)           # multiple of 3: chunks concatenate to valid base64


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()
                if not (k.startswith("_") and k != "_tail" and _is_zero(x))
                and k not in ("_io",)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _is_zero(v) -> bool:
    return isinstance(v, (bytes, bytearray)) and not any(v)


def _from_json(v):
    if isinstance(v, dict):
        if len(v) == 1 and "hex" in v:
            return bytes.fromhex(v["hex"])
        if len(v) == 1 and "b64" in v:
            return base64.b64decode(v["b64"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def _text(payload: bytes) -> dict | None:
    """A NUL-terminated (and possibly NUL-padded) string as {"text", "size"}."""
    text = payload.rstrip(b"\0")
    if len(text) == len(payload) or b"\0" in text:
        return None
    try:
        body = {"text": text.decode("utf-8")}
    except UnicodeDecodeError:
        return None
    if len(payload) != len(text) + 1:
        body["size"] = len(payload)
    return body


def decode(reader: ImageReader, write: Callable[[str], object], pages: bool = True,
           on_record: Callable[[Record], None] | None = None) -> None:
    abi = reader.abi
    head = {"imgtools": FORMAT_TAG, "version": abi.name, "arch": abi.arch}
    write(json.dumps(head)[:-1] + ', "records": [\n')
    expect_pages = 0
    first = True
    for rec in reader.records():
        name = reader.name_of(rec)
        if not first:
            write(",\n")
        first = False
        prefix = {"offset": rec.offset, "type": rec.type, "name": name.upper()}
        if rec.type == PIPE_DATA:
            del prefix["type"]
        is_pages = name == "buffer" and expect_pages
        if is_pages:
            _decode_pages(rec, prefix, expect_pages, abi.word, pages, write)
        else:
            body = _decode_body(reader, rec, name)
            if body is None:
                _write_b64_record(prefix, rec, write)
            else:
                write(json.dumps(prefix | body))
        if name == "pgarr":
            # an oversized PGARR (streamed, already written raw) announces no page batch:
            # the BUFFER after it is kept raw too, which encodes back the same
            expect_pages = struct.unpack_from("<Q", rec.data())[0] \
                if 8 <= rec.size and not rec.streamed else 0
        elif name == "buffer":
            expect_pages = 0
        if on_record:
            on_record(rec)
    write("\n]}\n")


def _decode_body(reader: ImageReader, rec: Record, name: str) -> dict | None:
    """Fields of a small record, or None when it is to be written raw."""
    if rec.streamed:
        return None
    payload = rec.data()
    st = reader.abi.struct(name)
    if st is not None:
        try:
            value = reader.abi.parse(name, payload)
            if reader.abi.build(name, value) == payload:
                return {"fields": _jsonable(dict(value))}
        except formats.PayloadError:
            pass
    if name in ("string", "file_name"):
        text = _text(payload)
        if text is not None:
            return text
    return {"data": {"b64": base64.b64encode(payload).decode()}}


def _write_b64_record(prefix: dict, rec: Record, write) -> None:
    write(json.dumps(prefix)[:-1] + ', "data": {"b64": "')
    _b64_chunks(rec, write)
    write('"}}')


def _b64_chunks(rec: Record, write, limit: int | None = None) -> None:
    left = rec.size if limit is None else limit
    while left:
        chunk = rec.read(min(B64_CHUNK, left))
        left -= len(chunk)
        write(base64.b64encode(chunk).decode())


def _decode_pages(rec: Record, prefix: dict, n: int, word: int, pages: bool, write) -> None:
    if rec.size != n * (word + 4096):
        if rec.streamed:
            _write_b64_record(prefix, rec, write)
        else:
            write(json.dumps(prefix | {"data": {"b64": base64.b64encode(rec.data()).decode()}}))
        return
    addrs = struct.unpack(f"<{n}{'Q' if word == 8 else 'I'}", rec.read(n * word))
    head = prefix | {"addrs": list(addrs)}
    if not pages:
        write(json.dumps(head | {"pages_omitted": n}))
        return
    write(json.dumps(head)[:-1] + ', "pages": {"b64": "')
    _b64_chunks(rec, write, n * 4096)
    write('"}}')


# -- encode ---------------------------------------------------------------------------
# Bounds on what encode holds at once: one line of the line layout (the largest record
# decode writes is a page BUFFER of a 512-page batch, ~2.7 MiB of base64), a document in
# any other layout, parsed whole, and the size a STRING may claim (padding is allocated).
LINE_MAX = 256 << 20
WHOLE_MAX = 64 << 20
U32 = 1 << 32


class _Bad(ValueError):
    """A record of the document that cannot be encoded."""


def iter_json_records(f: TextIO) -> tuple[dict, Iterable[dict]]:
    """The head and the records of a decode document, line by line when it has
    the layout ``decode`` writes, else parsed whole (up to WHOLE_MAX)."""
    first = _line(f, 1)
    if first.rstrip().endswith('"records": ['):
        head = _loads(first.rstrip()[:-len(', "records": [')] + "}", "the first line")

        def lines():
            lineno = 1
            while line := _line(f, lineno + 1):
                lineno += 1
                s = line.strip()
                if not s or s in ("]}", "]"):
                    continue
                yield _loads(s.rstrip(","), f"line {lineno}")
        return head, lines()
    rest = f.read(WHOLE_MAX + 1 - len(first))
    if len(first) + len(rest) > WHOLE_MAX:
        raise UsageError(f"not a decode document in its line layout, and larger than "
                         f"{WHOLE_MAX >> 20} MiB: write it with 'imgtools decode'")
    doc = _loads(first + rest, "the document")
    if not isinstance(doc, dict):
        raise UsageError("not a decode document: not a JSON object")
    records = doc.pop("records", None)
    if not isinstance(records, list):
        raise UsageError("not a decode document: no 'records' list")
    return doc, records


def _line(f: TextIO, lineno: int) -> str:
    try:
        line = f.readline(LINE_MAX + 1)
    except UnicodeDecodeError:
        raise UsageError(f"line {lineno}: not UTF-8 text (a decode document is JSON)") \
            from None
    if len(line) > LINE_MAX:
        raise UsageError(f"line {lineno}: longer than {LINE_MAX >> 20} MiB")
    return line


def _loads(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not JSON: {e.msg} (line {e.lineno}, column {e.colno})") \
            from None
    except RecursionError:
        raise UsageError(f"{where}: JSON nested too deeply") from None


def encode(f: TextIO, out, version: str | None = None) -> None:
    head, records = iter_json_records(f)
    if not isinstance(head, dict) or head.get("imgtools") != FORMAT_TAG:
        raise UsageError(f"not a decode document (expected \"imgtools\": \"{FORMAT_TAG}\")")
    try:
        abi = formats.abi(formats.canonical(version or head["version"]),
                          head.get("arch", "x86_64"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"the document names no usable version/arch: {e}") from None
    w = ImageWriter(out, abi)
    n = 0
    for n, r in enumerate(records, start=1):
        where = r.get("offset") if isinstance(r, dict) else None
        name = r.get("name") if isinstance(r, dict) else None
        try:
            if not isinstance(r, dict):
                raise _Bad("a record is a JSON object")
            _encode_record(w, abi, r)
        except (_Bad, KeyError, TypeError, ValueError, AttributeError, OverflowError,
                struct.error, RecursionError, formats.PayloadError) as e:
            what = f"{name}" if isinstance(name, str) else "?"
            at = f" at byte {where}" if isinstance(where, int) else ""
            raise UsageError(f"record {n - 1} ({what}{at}): {e}") from None
    if not n:
        raise UsageError("the document holds no records: nothing to encode")


def _int(v, what: str, limit: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < limit:
        raise _Bad(f"{what} must be an integer in [0, {limit:#x}), not {json.dumps(v)[:40]}")
    return v


def _bytes(v, what: str) -> bytes:
    if not isinstance(v, dict) or len(v) != 1 or not isinstance(next(iter(v.values())), str):
        raise _Bad(f"{what} must be {{\"b64\": …}} or {{\"hex\": …}}")
    b = _from_json(v)
    if not isinstance(b, bytes):
        raise _Bad(f"{what} must be {{\"b64\": …}} or {{\"hex\": …}}")
    return b


def _encode_record(w: ImageWriter, abi, r: dict) -> None:
    name = r.get("name")
    if not isinstance(name, str):
        raise _Bad("no \"name\": every record names its type (e.g. \"TASK\")")
    name = name.lower()
    if name == "pipe_data":
        w.unframed(_bytes(r.get("data"), "data"))
        return
    rtype = _int(r.get("type", abi.types.get(name)), "type", U32) \
        if "type" in r or name in abi.types else None
    if rtype is None:
        raise _Bad(f"{abi.name} has no record {name.upper()}")
    if "addrs" in r:
        if "pages_omitted" in r:
            raise UsageError("page data was left out (decode --no-pages); such a document "
                             "cannot be encoded back into an image")
        addrs = r["addrs"]
        if not isinstance(addrs, list):
            raise _Bad("addrs must be a list of page addresses")
        fmt = "Q" if abi.word == 8 else "I"
        for a in addrs:
            _int(a, "a page address", 1 << 8 * abi.word)
        page_bytes = _bytes(r.get("pages"), "pages")
        if len(page_bytes) != len(addrs) * abi.page_size:
            raise _Bad(f"{len(addrs)} page addresses but {len(page_bytes)} bytes of pages")
        payload = struct.pack(f"<{len(addrs)}{fmt}", *addrs) + page_bytes
    elif "fields" in r:
        if not isinstance(r["fields"], dict):
            raise _Bad("fields must be a JSON object")
        if abi.struct(name) is None:
            raise _Bad(f"{abi.name} has no fields for {name.upper()}: give its data")
        payload = abi.build(name, _from_json(r["fields"]))
    elif "text" in r:
        if not isinstance(r["text"], str):
            raise _Bad("text must be a string")
        text = r["text"].encode()
        size = _int(r.get("size", len(text) + 1), "size", DATA_MAX + 1)
        if size <= len(text):
            raise _Bad(f"size {size} leaves no room for the text and its NUL "
                       f"({len(text) + 1} bytes)")
        payload = text.ljust(size, b"\0")
    else:
        payload = _bytes(r.get("data", {"b64": ""}), "data")
    if len(payload) + HDR_SIZE >= U32:
        raise _Bad(f"a payload of {len(payload)} bytes does not fit a record")
    w.raw(rtype, payload)
