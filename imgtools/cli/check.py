"""check: is an image sound?  One line per finding, exit 3 when any is an error."""
from __future__ import annotations

import difflib
from typing import Annotated, Optional


from ..errors import UsageError
from ._errors import EXIT_INVALID, EXIT_OK, Exit, handled
from ._output import emit_json, say
from ._params import Argument, ArchOpt, FormatOpt, JsonOpt, Option, command

OptImageArg = Annotated[Optional[str], Argument(
    help="image file, '-' = stdin", metavar="IMG", show_default=False)]
ExplainOpt = Annotated[Optional[str], Option(
    "--explain", help="describe a finding code (e.g. objref.forward) and exit",
    metavar="CODE")]
CodesOpt = Annotated[bool, Option("--codes", help="list every finding code and exit")]

_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def check(image: OptImageArg = None, json: JsonOpt = False, format: FormatOpt = None,
          arch: ArchOpt = None, explain: ExplainOpt = None, codes: CodesOpt = False) -> None:
    """Check an image: framing, objrefs, loops, task tree, memory, files, ERROR records.

    Exit 0 when sound (notes and warnings allowed), 3 when any finding is an error."""
    from .. import check as checker         # here: start-up builds no checker
    if codes:
        _codes(json)
        return
    if explain is not None:
        _explain(explain, json)
        return
    if image is None:
        raise UsageError("missing IMG (or --explain CODE / --codes)")
    try:
        findings = checker.check_path(image, format, arch)
    except ValueError as e:             # an unknown --format / --arch
        raise UsageError(str(e)) from None
    bad = checker.has_errors(findings)
    if json:
        emit_json([f.to_dict() for f in findings])
    else:
        _print(image, findings)
    raise Exit(EXIT_INVALID if bad else EXIT_OK)


def _print(image: str, findings: list) -> None:
    for f in findings:
        style = _STYLE[f.severity]
        off = "-" if f.offset is None else str(f.offset)
        task = "-" if f.task is None else str(f.task)
        say((f"{f.severity:<7}", style), f" @{off:<10} {f.record or '-':<14} pid {task:<7} ",
            (f.code, "bold"), f": {f.message}")
    from ..check import SEVERITIES
    n = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    verdict = ("NOT SOUND", "bold red") if n["error"] else ("sound", "bold green")
    say(f"{image}: ", verdict, f" ({n['error']} errors, {n['warning']} warnings, "
        f"{n['note']} notes)")


def _explain(code: str, json: bool) -> None:
    from .. import check as checker
    if code not in checker.CODES:
        near = difflib.get_close_matches(code, checker.CODES, n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else " (see --codes)"
        raise UsageError(f"unknown finding code {code!r}{hint}")
    sev, title, text = checker.CODES[code]
    if json:
        emit_json({"code": code, "severity": sev, "title": title, "explanation": text})
        return
    say((code, "bold"), " (", (sev, _STYLE[sev]), f"): {title}")
    say(text)


def _codes(json: bool) -> None:
    from .. import check as checker
    if json:
        emit_json([{"code": c, "severity": s, "title": t}
                   for c, (s, t, _) in checker.CODES.items()])
        return
    for c, (s, t, _) in checker.CODES.items():
        say(f"{c:<26} ", (f"{s:<7}", _STYLE[s]), f" {t}")


def register(app) -> None:
    command(app, handled(check), "check")
