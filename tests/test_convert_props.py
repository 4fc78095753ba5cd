"""Random images (tasks, threads, zombies, memory, pages, descriptors, pipes, signal
state) in a random version, converted along random paths.

* every hop is read back as its target version and keeps every task, register,
  mapping, page, descriptor and pipe byte (or reports a loss);
* a loss is reported exactly when the image holds something a version on the
  path cannot (FIFO, signal state below v18, cwd below v19, sigaltstack below
  v23-rc1);
* with no loss along the way, coming back to the start version gives the very
  same bytes.
"""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import formats
from imgtools.compose import FdSpec, ImageSpec, MmSpec, TaskSpec, VmaSpec, compose_bytes
from imgtools.reader import ImageReader

from test_convert import canonical, conv, needs, summary

V = formats.VERSIONS


def at_least(version: str, than: str) -> bool:
    return V.index(version) >= V.index(than)


def older_than(version: str, than: str) -> bool:
    return V.index(version) < V.index(than)


@st.composite
def image_specs(draw, version: str) -> ImageSpec:
    signals = at_least(version, "v18")
    tasks: list[TaskSpec] = []
    mms: dict[str, MmSpec] = {}
    files: dict[str, list[FdSpec]] = {}
    pipes: dict[str, bytes] = {}
    nproc = draw(st.integers(1, 3))
    pid = draw(st.integers(2, 5000))
    pipe_keys = [f"p{i}" for i in range(draw(st.integers(0, 2)))]
    for key in pipe_keys:
        pipes[key] = draw(st.binary(max_size=300))
    for p in range(nproc):
        leader = pid
        pid += draw(st.integers(1, 50))
        zombie = p > 0 and draw(st.booleans())
        ppid = 1 if p == 0 else tasks[0].pid
        sid = draw(st.sampled_from([leader, tasks[0].pid] if tasks else [leader]))
        mm, fk = f"mm{p}", f"files{p}"
        vmas = []
        for i in range(draw(st.integers(1, 3))):
            start = 0x400000 + i * 0x100000
            n = draw(st.integers(1, 4))
            present = draw(st.sets(st.integers(0, n - 1), max_size=n))
            pages = {start + k * 4096: draw(st.binary(min_size=1, max_size=64)) for k in present}
            vmas.append(VmaSpec(start, start + n * 4096, flags=draw(st.sampled_from(
                [0x73, 0x75, 0x100173])), pages=pages))
        mms[mm] = MmSpec(vmas, brk=(0x600000, 0x600000 + draw(st.integers(0, 8)) * 4096))
        fds = []
        for fd in range(draw(st.integers(0, 4))):
            kinds = ["generic"] + (["pipe"] if pipe_keys else []) + \
                (["fifo"] if signals and pipe_keys else [])
            kind = draw(st.sampled_from(kinds))
            fds.append(FdSpec(fd, kind=kind, path=f"/f/{p}/{fd}" if kind != "pipe" else None,
                              pipe=draw(st.sampled_from(pipe_keys)) if kind != "generic" else None,
                              flags=draw(st.sampled_from([0, 1, 2, 0o4000])),
                              pos=draw(st.integers(0, 1 << 20)), cloexec=draw(st.booleans())))
        files[fk] = fds
        regs = {"ip": draw(st.integers(0, 2**47)), "sp": draw(st.integers(0, 2**47)),
                "ax": draw(st.integers(0, 2**64 - 1))}

        def state(t: TaskSpec) -> TaskSpec:
            if signals:
                t.blocked = draw(st.sampled_from([0, 0, 1 << 1, (1 << 9) | (1 << 14)]))
                t.pending = draw(st.lists(st.sampled_from([10, 12, 15]), max_size=2,
                                          unique=True))
            if at_least(version, "v23-rc1") and draw(st.integers(0, 4)) == 0:
                t.sas = (0x7f0000000000, 8192)
            return t
        tasks.append(state(TaskSpec(leader, ppid, pgid=sid, sid=sid, comm=f"p{p}", mm=mm,
                                    files=fk, zombie=zombie, exit_code=p, regs=regs)))
        if not zombie:
            for _ in range(draw(st.integers(0, 2))):
                tid = pid
                pid += 1
                tasks.append(state(TaskSpec(tid, ppid, tgid=leader, pgid=sid, sid=sid,
                                            comm=f"p{p}", mm=mm, files=fk,
                                            regs={"ip": draw(st.integers(0, 2**47))})))
    cwd = draw(st.sampled_from(["/", "/", "/home/x"])) if at_least(version, "v19") else "/"
    errors = draw(st.lists(st.text("abc: ", min_size=1, max_size=20), max_size=1))
    return ImageSpec(tasks=tasks, mms=mms, files=files, pipes=pipes, cwd=cwd, errors=errors,
                     tail=draw(st.booleans()) or not errors, time=draw(st.integers(0, 2**40)))


def core(s: dict) -> dict:
    """What survives any conversion: tasks, registers, memory and pages."""
    return {"arch": s["arch"], "tasks": [{k: t.get(k) for k in ("ids", "comm", "zombie",
                                                                 "regs", "mm")}
                                         for t in s["tasks"]]}


# derandomized: the same examples on every run, so CI's verdict is the change's. To look
# for more, run a copy with derandomize=False and more examples (2,000 of each found
# nothing more after the fix tested below).
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(st.data())
def test_random_images_along_random_paths(data):
    version = data.draw(st.sampled_from(V), label="version")
    arch = data.draw(st.sampled_from(formats.ARCHES), label="arch")
    spec = data.draw(image_specs(version), label="spec")
    hops = data.draw(st.lists(st.sampled_from(V), min_size=1, max_size=3), label="hops")
    src = canonical(spec, version, arch)
    base = summary(src)
    held = needs(spec)
    cur, lossy = src, False
    for target in hops:
        out, rep = conv(cur, target)
        r = ImageReader(io.BytesIO(out))
        assert (r.version, r.arch) == (target, arch)
        lost_here = not rep.lossless
        # a loss exactly when the target cannot hold something still in the image
        dropped = {f for f, v in held.items() if V.index(target) < V.index(v)}
        assert lost_here == bool(dropped), (dropped, [str(lo) for lo in rep.losses])
        held = {f: v for f, v in held.items() if f not in dropped}
        lossy |= lost_here
        got = summary(out)
        if lossy:
            assert core(got) == core(base)
        else:
            assert got == base
        cur = out
    back, rep = conv(cur, version)
    if not lossy:
        assert rep.lossless and back == src


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.data())
def test_down_then_up_restores_the_composed_image(data):
    """For an image only using what the older version holds, down then up gives back the
    newer image, and the older image is the one built for that version (below v19:
    exactly what the composer writes)."""
    hi = data.draw(st.sampled_from(V[1:]), label="newer")
    lo = data.draw(st.sampled_from(V[:V.index(hi)]), label="older")
    arch = data.draw(st.sampled_from(formats.ARCHES), label="arch")
    spec = data.draw(image_specs(lo), label="spec")
    newer = canonical(spec, hi, arch)
    down, rep = conv(newer, lo, allow_loss=False)
    assert down == canonical(spec, lo, arch)
    if older_than(lo, "v19"):
        assert down == compose_bytes(spec, lo, arch)
    up, rep = conv(down, hi, allow_loss=False)
    assert up == newer


@pytest.mark.parametrize("tail", [True, False])
def test_an_error_ending_the_last_task_stays_after_its_records(tail):
    """Found by random runs: v17 -> v18 owes each task SIGPENDING and SIGNAL_TASK at the end
    of its section; an ERROR record right before the section's end (TAIL, or the end of an
    image written without one) must stay the last thing of the task, as v18 writes it."""
    spec = ImageSpec(tasks=[TaskSpec(pid=2, ppid=1, pgid=2, sid=2, comm="p0", mm="mm0",
                                     files="files0")],
                     mms={"mm0": MmSpec(vmas=[VmaSpec(start=0x400000, end=0x401000)])},
                     files={"files0": []}, errors=["it went wrong"], tail=tail)
    up, rep = conv(compose_bytes(spec, "v17", "x86_64"), "v18", allow_loss=False)
    assert up == compose_bytes(spec, "v18", "x86_64")
    down, rep = conv(up, "v17", allow_loss=False)
    assert down == compose_bytes(spec, "v17", "x86_64")
