"""Fuzz every command over mutated images: no crash, and what check calls sound every
consumer accepts.

Used by tests/test_fuzz_commands.py (a few dozen cases per run, a new seed each run) and by
hand for long runs:

    PYTHONPATH=. python3 tests/fuzz_commands.py CASES [SEED]

which prints each failure as "seed case: command -> what" and saves the input under
tests/fuzz/regressions/ (commit the ones that reproduce a fixed bug).

A run of a command *fails* when it exits 1 (internal error) or 2 (usage: the command
line is fine, so an image condition must be 3), or prints a traceback. A *disagreement*
is an image check calls sound (exit 0) that a consumer refuses (exit != 0)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from typer.testing import CliRunner  # noqa: E402

from imgtools.cli import app  # noqa: E402
from test_check_fuzz import BASES, KIND_BASES, WORDS, _base, _kind_spans, mutate  # noqa: E402

REGRESSIONS = os.path.join(HERE, "fuzz", "regressions")
TYPES = [1, 2, 3, 4, 5, 6, 101, 102, 103, 104, 301, 302, 303, 304, 305, 401, 402, 403, 404,
         405, 601, 602, 9001, 9999, 777]
QWORDS = [1 << 31, 1 << 32, (1 << 63) - 4096, 1 << 63, (1 << 64) - 4096, (1 << 64) - 1,
          0x7fffffff000]
TARGETS = {"v17": "v18", "v18": "v19", "v19-rc2": "v19", "v19": "v23", "v21": "v18",
           "v23-rc1": "v18", "v23": "v18"}


@dataclass
class Problem:
    command: str
    what: str
    data: bytes

    def line(self) -> str:
        return f"{self.command} -> {self.what}"


def random_ops(rng: random.Random, nspans: int) -> list[tuple]:
    """What test_check_fuzz's hypothesis strategy draws, drawn with a plain RNG."""
    if rng.random() < 0.6:          # one field changed: the image often stays sound
        size = rng.choice([4, 8])
        val = rng.choice(WORDS + QWORDS + [rng.getrandbits(8 * size)])
        return [("qword" if size == 8 else "word", rng.randrange(nspans),
                 rng.randrange(0, 121, size), val)]
    ops = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["flip", "truncate", "len", "type", "word", "word", "swap", "dup",
                           "delete"])
        i, j = rng.randrange(nspans), rng.randrange(nspans)
        ops.append({"flip": ("flip", rng.randrange(1 << 20), rng.randrange(8)),
                    "truncate": ("truncate", rng.randrange(1 << 20)),
                    "len": ("len", i, rng.choice(WORDS + [-8, -1, 1, 8])),
                    "type": ("type", i, rng.choice(TYPES)),
                    "word": ("word", i, rng.randrange(0, 121, rng.choice([1, 4, 8])),
                             rng.choice(WORDS + [rng.getrandbits(32)])),
                    "swap": ("swap", i, j), "dup": ("dup", i), "delete": ("delete", i)}[kind])
    return ops


class Runner:
    """The commands, run in this process (the real typer app) on files in a temp dir."""

    def __init__(self):
        self.cli = CliRunner()
        self.dir = tempfile.mkdtemp(prefix="imgtools-fuzz-")

    def run(self, *args: str, stdin: bytes | None = None):
        r = self.cli.invoke(app, list(args), input=stdin, catch_exceptions=True)
        return r.exit_code, (r.stdout_bytes or b"") + (r.stderr_bytes or b""), r.exception

    def commands(self, version: str, arch: str) -> list[tuple[str, list[str]]]:
        d = self.dir
        cmds = [("show", ["show", "{img}"]), ("show --records", ["show", "--records", "{img}"]),
                ("info", ["info", "--json", "{img}"]), ("ps", ["ps", "{img}"]),
                ("maps", ["maps", "{img}"]), ("files", ["files", "{img}"]),
                ("convert", ["convert", "{img}", "--to", TARGETS[version], "--allow-loss",
                             "-o", f"{d}/conv.img"]),
                ("decode", ["decode", "{img}", "-o", f"{d}/img.json"])]
        if arch == "x86_64":
            cmds.append(("to-core", ["to-core", "{img}", "-o", f"{d}/core"]))
        return cmds

    def case(self, data: bytes, version: str, arch: str) -> list[Problem]:
        path = os.path.join(self.dir, "img")
        with open(path, "wb") as f:
            f.write(data)
        problems = []
        code, out, exc = self.run("check", path)
        sound = code == 0
        if code not in (0, 3) or b"internal error" in out:
            problems.append(Problem("check", _what(code, out, exc), data))
        for name, argv in self.commands(version, arch):
            code, out, exc = self.run(*(a.format(img=path) for a in argv))
            if code in (1, 2) or b"internal error" in out or b"Traceback" in out:
                problems.append(Problem(name, _what(code, out, exc), data))
            elif sound and code != 0:
                problems.append(Problem(name, "check calls it sound, but " +
                                        _what(code, out, exc), data))
            if name == "decode" and code == 0:
                problems += self._encode_back(data)
        return problems

    def _encode_back(self, data: bytes) -> list[Problem]:
        """What decode wrote, encode turns back into the same bytes."""
        back = os.path.join(self.dir, "back.img")
        code, out, exc = self.run("encode", os.path.join(self.dir, "img.json"), "-o", back)
        if code != 0:
            return [Problem("encode", _what(code, out, exc), data)]
        with open(back, "rb") as f:
            if f.read() != data:
                return [Problem("encode", "encode(decode(x)) != x", data)]
        return []


def _what(code: int, out: bytes, exc) -> str:
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
    tail = lines[-1] if lines else ""
    if exc is not None and not isinstance(exc, SystemExit):
        tail = f"{type(exc).__name__}: {exc}"
    return f"exit {code}: {tail[:300]}"


IMAGES = None


def images():
    global IMAGES
    if IMAGES is None:
        IMAGES = [(v, a, *_base(v, a)) for v, a in BASES] + \
            [(v, a, *_kind_spans(v, a)) for v, a in KIND_BASES]
    return IMAGES


def fuzz(cases: int, seed: int, runner: Runner | None = None) -> list[Problem]:
    rng = random.Random(seed)
    runner = runner or Runner()
    problems = []
    for _ in range(cases):
        version, arch, data, spans = rng.choice(images())
        problems += runner.case(mutate(data, spans, random_ops(rng, len(spans))), version,
                                arch)
    return problems


def save(p: Problem) -> str:
    os.makedirs(REGRESSIONS, exist_ok=True)
    name = hashlib.sha1(p.data).hexdigest()[:12] + ".img"
    path = os.path.join(REGRESSIONS, name)
    with open(path, "wb") as f:
        f.write(p.data)
    return path


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 32)
    seen = set()
    runner = Runner()
    for case in range(cases):
        for p in fuzz(1, seed * 1_000_003 + case, runner):
            key = (p.command, p.what.split(":")[0], p.what[-60:])
            if key in seen:
                continue
            seen.add(key)
            print(f"{seed} {case}: {p.line()}  [{save(p)}]", flush=True)
    print(json.dumps({"seed": seed, "cases": cases, "distinct": len(seen)}))


if __name__ == "__main__":
    main()
