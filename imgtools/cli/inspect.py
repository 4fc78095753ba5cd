"""info, show, ps, maps, files, versions: small commands over one image model."""
from __future__ import annotations

import itertools
import sys

from .. import views
from ..errors import UsageError
from ._errors import handled
from ._image import load
from ._output import (HeldTexts, JsonText, emit_json, emit_json_fields, emit_json_list, hexa,
                      json_text, plural, say, say_lines, table, table_lines)
from ._params import ArchOpt, FormatOpt, ImageArg, JsonOpt, Option, PidOpt, command


def info(image: ImageArg, json: JsonOpt = False, format: FormatOpt = None,
         arch: ArchOpt = None) -> None:
    """Summary of an image: version, kernel, tasks, records, pages."""
    with load(image, format, arch, views.INFO_READS) as (_, img):
        data = views.info(img)
    if json:
        emit_json(data)
        return
    rows = [("version", f"{data['version']} (rev {data['rev']})"), ("arch", data["arch"]),
            ("kernel", data["kernel"]), ("uts", " ".join(filter(None, data["uts"].values()))),
            ("taken", data["time_utc"]),
            ("tasks", f"{data['tasks']} ({plural(data['processes'], 'process')}, "
                      f"{plural(data['threads'], 'thread')}, "
                      f"{plural(data['zombies'], 'zombie')})"),
            ("records", data["records"]), ("objects", data["objects"]),
            ("pages", f"{data['pages']} ({data['page_bytes'] / 2**20:.1f} MiB)"),
            ("size", f"{data['size']} bytes"), ("tail", "present" if data["tail"] else "MISSING"),
            ("errors", len(data["errors"]))]
    table(({"k": k, "v": v} for k, v in rows), [("k", ""), ("v", "")])
    _errors(data["errors"])


def _errors(errors: list[dict]) -> None:
    for e in errors:
        say(("ERROR", "red"), f" @{e['offset']}: {e['message']}")


# Columns of the listings: (key, heading); and how some cells are shown.
PS_COLUMNS = [("pid", "PID"), ("ppid", "PPID"), ("tgid", "TGID"), ("pgid", "PGID"),
              ("sid", "SID"), ("state", "S"), ("comm", "COMM")]
MAPS_COLUMNS = [("pid", "PID"), ("start", "START"), ("end", "END"), ("perms", "PERM"),
                ("pgoff", "OFFSET"), ("pages", "PAGES"), ("path", "PATH")]
FILES_COLUMNS = [("pid", "PID"), ("fd", "FD"), ("type", "TYPE"), ("flags", "FLAGS"),
                 ("pos", "POS"), ("cloexec", "CLOEXEC"), ("pipe", "PIPE"),
                 ("pipe_bytes", "BUFFERED"), ("path", "PATH")]
CELLS = {"start": hexa, "end": hexa, "pgoff": hexa, "path": lambda p: p or "",
         "pipe": lambda ref: f"pipe:[{ref}]" if ref else "-",     # the pipe's objref
         "flags": lambda f: "-" if f is None else f"{f:#o}"}


def _listing(image, format, arch, json, rows_of, columns, reads, pid=None) -> None:
    """One table (or JSON list) of the rows a view makes from the image's model, as they
    are made: the table holds only the text of its cells; the model only what the view
    ``reads``."""
    with load(image, format, arch, reads) as (_, img):
        if pid is not None and img.task_by_pid(pid) is None:
            raise UsageError(f"no task with pid {pid} in the image")
        if not json:
            table(rows_of(img), columns, fmt=CELLS)
            return
        emit_json_list(rows_of(img))


def ps(image: ImageArg, json: JsonOpt = False, format: FormatOpt = None,
       arch: ArchOpt = None, tree: bool = Option(
           False, "--tree", help="draw the tree (threads under their leader)")) -> None:
    """The task tree: one row per task (threads and zombies included)."""
    if tree and not json:
        from ._tree import tree_lines
        with load(image, format, arch, views.PS_READS) as (_, img):
            lines = tree_lines(views.iter_ps(img))
        for line in lines:
            say(line)
        return
    _listing(image, format, arch, json, views.iter_ps, PS_COLUMNS, views.PS_READS)


def maps(image: ImageArg, pid: PidOpt = None, json: JsonOpt = False,
         format: FormatOpt = None, arch: ArchOpt = None, summary: bool = Option(
             False, "--summary", help="per type of VMA: count, size, pages, share")) -> None:
    """Memory maps of every process (or --pid), with the pages the image holds."""
    if summary:
        from .mem import maps_summary
        return maps_summary(image, pid, json, format, arch)
    _listing(image, format, arch, json, lambda img: views.iter_maps(img, pid), MAPS_COLUMNS,
             views.MAPS_READS, pid)


def files(image: ImageArg, pid: PidOpt = None, json: JsonOpt = False,
          format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Open file descriptors of every process (or --pid)."""
    _listing(image, format, arch, json, lambda img: views.iter_files(img, pid), FILES_COLUMNS,
             views.FILES_READS, pid)


def show(image: ImageArg, records: bool = Option(
             False, "--records", help="list every record with offset, type and length"),
         pid: PidOpt = None,
         json: JsonOpt = False, format: FormatOpt = None, arch: ArchOpt = None) -> None:
    """Everything: header, task tree, and per task creds, memory map, fds, signals."""
    if records:
        return _show_records(image, json, format, arch)
    details = HeldTexts()       # each task's, made as its records pass (see task_done)
    detail = _json_detail if json else _text_detail

    def task_done(img, t):
        if pid in (None, t.pid):
            details.add(t.index, detail(img, t))

    # (text: the registers; --json: fields and the FPU state's size too)
    done_reads = frozenset(("task_records",) if json else ("regs",))
    with load(image, format, arch, views.SHOW_READS, vma_table=True, task_done=task_done,
              done_reads=done_reads) as (_, img):
        chosen = img.tasks
        if pid is not None:
            chosen = [t for t in img.tasks if t.pid == pid]
            if not chosen:
                raise UsageError(f"no task with pid {pid} in the image")
        texts = _in_order(img, chosen, details, detail)
        if not json:
            return _show_text(image, img, chosen, pid, texts)
        emit_json_fields((
            ("info", views.info(img)),
            ("tasks", (r for r in views.iter_ps(img) if pid in (None, r["pid"]))),
            ("detail", (JsonText(text) for text in texts)),
            ("maps", views.iter_maps(img, pid)), ("files", views.iter_files(img, pid))))


def _json_detail(img, t) -> str:
    return json_text(views.task_detail(img, t))


def _text_detail(img, t) -> str:
    return "".join(line + "\n" for line in _detail_lines(img, t))


def _in_order(img, chosen, held: HeldTexts, make):
    """The detail text of each chosen task: held, or (a task whose records never came)
    made now."""
    texts = iter(held)
    nxt = next(texts, None)
    for t in chosen:
        if nxt is not None and nxt[0] == t.index:
            yield nxt[1]
            nxt = next(texts, None)
        else:
            yield make(img, t)
    if nxt is not None:
        raise RuntimeError(f"show: the detail of task {nxt[0]} was made, not shown")


def _show_text(image: str, img, chosen, pid, held) -> None:
    """show for people: each task's section printed as it is made (the details of
    every task are never all held; ``held``: the text of each's, in order)."""
    info_rows = views.info(img)
    say((image, "bold"), f": {info_rows['version']} {info_rows['arch']} kernel "
        f"{info_rows['kernel']}, {plural(info_rows['tasks'], 'task')}, "
        f"{plural(info_rows['pages'], 'page')}, {plural(info_rows['records'], 'record')}")
    table((r for r in views.iter_ps(img) if pid in (None, r["pid"])), PS_COLUMNS,
          title="tasks")
    listed = views.selected_by_pid(img, pid)    # a task's rows are made when it is shown
    fd_columns = [c for c in FILES_COLUMNS if c[0] in ("fd", "type", "pos", "pipe", "path")]
    maps = _SharedTable(lambda u: views.task_maps(img, u), MAPS_COLUMNS[1:])
    fds = _SharedTable(lambda u: views.task_files(img, u), fd_columns)
    creds = (None, None)        # (cred objref, its line): tasks share their creds
    for t in chosen:
        lines = [(), ((f"task {t.pid}", "bold"), f" {t.comm} state {views.state(t)} "
                                                  f"(record at {t.offset})")]
        if creds[0] != t.cred_ref:
            creds = (t.cred_ref, _creds_line(views.creds(img, t)))
        if creds[1]:
            lines.append((creds[1],))
        lines += ((line,) for line in next(held).splitlines())
        say_lines(lines)
        under = [img.tasks[i] for i in listed.get(t.pid, ())]
        maps.write(under, tuple(u.obj("mm") for u in under))
        fds.write(under, tuple(u.obj("files") for u in under))
    next(held, None)            # (that no detail was made for a task not shown)
    _errors(info_rows["errors"])


def _detail_lines(img, t) -> list[str]:
    """The lines of a task's section read from its records: its registers, signals."""
    lines = []
    regs = views.task_regs(t)
    if regs:
        lines.append("  regs:  " + " ".join(f"{k}={v:#x}" for k, v in regs.items()))
    if not t.zombie:
        s = views.signals(img, t)
        handlers = " ".join(f"{sig}={h}" for sig, h in s["handlers"].items())
        lines.append(f"  signals: blocked {_names(s['blocked'])} pending "
                     f"{_names(s['pending'])} shared {_names(s['shared_pending'])} "
                     f"handlers {handlers or '-'}")
    return lines


def _creds_line(c: dict | None) -> str | None:
    if not c:
        return None
    return f"  creds: uid {c['uid']} euid {c['euid']} gid {c['gid']} egid {c['egid']} " \
           f"groups {c['groups']} capeff {c['cap_eff']:#x}"


class _SharedTable:
    """A task's table of show (its maps, its fds), drawn from the rows of the tasks
    listed under it. The tasks of a process, and often its children, share their mm and
    their files: the text of the last table is written again for the same objects
    (``key``: their objrefs) instead of being made again from the rows; a table of more
    than KEPT characters is written as it is made and made again (400,000 fds: its text
    and its lines held took 60 MB)."""
    KEPT = 1 << 20

    def __init__(self, rows_of, columns):
        self.rows_of, self.columns = rows_of, columns
        self.key, self.text = None, None

    def write(self, under, key) -> None:
        if key == self.key and self.text is not None:
            sys.stdout.write(self.text)
            return
        rows = (r for u in under for r in self.rows_of(u))
        first = next(rows, None)
        self.key, self.text = key, ""
        if first is None:
            return
        lines = table_lines(itertools.chain((first,), rows), self.columns, fmt=CELLS)
        if lines is None:                   # drawn by rich (a terminal, escapes)
            self.text = None
            table((r for u in under for r in self.rows_of(u)), self.columns, fmt=CELLS)
            return
        kept, size, write = [], 0, sys.stdout.write
        for line in lines:
            write(line + "\n")
            if kept is not None:
                kept.append(line)
                size += len(line) + 1
                if size > self.KEPT:
                    kept = None
        self.text = None if kept is None else "".join(line + "\n" for line in kept)


def _names(signals: list[str]) -> str:
    return ",".join(signals) or "-"


def _show_records(image, json, format, arch):
    """Every record, like ckptinfo -v: offset, type number and name, length."""
    from ..reader import open_image
    with open_image(image, format, arch) as reader:
        rows = _record_rows(reader)
        if json:
            emit_json_list(rows)        # (written as the records are read)
            return
        for row in rows:
            say(f"@{row['offset']:<10} {row['type'] or '-':>5} {row['name']:<16} len "
                f"{row['len']}{'  ' + row['detail'] if 'detail' in row else ''}")


def _record_rows(reader):
    from ..stream import PIPE_DATA
    for rec in reader.records():
        name = reader.name_of(rec).upper()
        row = {"offset": rec.offset, "type": rec.type, "name": name, "len": rec.len}
        if rec.type == PIPE_DATA:       # v17 pipe bytes: no header, no type
            row.update(type=None, detail="(unframed)")
        if name == "OBJREF":
            v = reader.parse(rec)
            row["detail"] = f"{reader.abi.obj_names.get(v.objtype, v.objtype)} ref " \
                            f"{v.objref}"
        yield row


def versions(json: JsonOpt = False) -> None:
    """The supported ABI versions, oldest first."""
    import formats
    rows = []
    for v in formats.VERSIONS:
        a = formats.abi(v)
        rows.append({"version": v, "rev": a.rev, "kernel": ".".join(map(str, a.kernel)),
                     "arches": list(formats.ARCHES),
                     "aliases": [k for k, x in formats.ALIASES.items() if x == v],
                     "native": v == formats.NATIVE})
    if json:
        emit_json(rows)
        return
    table(rows, [("version", "VERSION"), ("rev", "REV"), ("kernel", "KERNEL"),
                 ("aliases", "ALIASES"), ("native", "ENGINE")],
          fmt={"aliases": lambda a: ", ".join(a) or "-",
               "native": lambda n: "native" if n else ""})


def register(app) -> None:
    from ._several import several
    for fn in (info, show, ps, maps, files):
        command(app, several(handled(fn)))
    command(app, handled(versions))
