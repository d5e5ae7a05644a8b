"""Judging one piece: from the frames its sandboxed run sent back to points, status and messages.

The status says how the run ended (``ok``, ``timeout``, ``memory``, ``crashed``, ``missing``,
``forbidden``); each check that got its data is judged by its verdict here, in the grader's
process, on data decoded from untrusted bytes (``wire.decode``).
"""

from __future__ import annotations

import threading

from autograder.spec import Piece
from autograder.verdicts import CheckFailed
from autograder.wire import decode

# the worst status of a piece wins the submission's status, in this order
SEVERITY = ["crashed", "memory", "timeout"]


def submission_status(source_status: str, piece_statuses: list[str]) -> str:
    if source_status != "ok":
        return source_status
    return next((s for s in SEVERITY[::-1] if s in piece_statuses), "ok")


_VERDICT_LOCK = threading.Lock()


def _is_memory_error(error: str) -> bool:
    """Python's MemoryError, or torch's allocator failing ("can't allocate memory")."""
    return "MemoryError" in error or "can't allocate memory" in error


def piece_result(piece: Piece, code, header: dict, messages: list[dict], static: list[str]) -> dict:
    """A piece's points, status and per-check messages from what its sandboxed run sent back."""
    checks = {m["check"]: m for m in messages if isinstance(m.get("check"), str)}
    done = any(m.get("done") is True for m in messages)
    called = next((m.get("forbidden_called") for m in messages if "forbidden_called" in m), None)
    fatal = next((m.get("fatal") for m in messages if "fatal" in m), None)
    status, message = "ok", ""
    ran = bool(messages) or header.get("timed_out") or "exit_code" in header
    errors = " ".join(str(m.get("error", "")) for m in checks.values())
    if _is_memory_error(errors):
        status, message = "memory", "ran out of memory (the limit is per piece)"
    elif header.get("timed_out"):
        status, message = "timeout", f"stopped after {header.get('limit', '?')} s (the time limit of a piece): an endless loop?"
    elif header.get("overflow"):
        status, message = "crashed", "sent back more data than a piece may"
    elif header.get("worker_lost"):
        status, message = "crashed", "the grading worker was lost while running this piece"
    elif ran and not done:
        if "MemoryError" in errors or "allocate" in errors:
            status, message = "memory", "ran out of memory (the limit is per piece)"
        elif header.get("signal") == 9:
            status, message = "crashed", "the process was killed (signal 9): out of memory, or it killed itself"
        elif header.get("signal"):
            status, message = "crashed", f"the process died of signal {header['signal']} (it killed itself or crashed)"
        else:
            status, message = "crashed", f"the process ended early (exit code {header.get('exit_code')}): os._exit()?"
        if fatal:
            message = "the grader's worker failed on this piece"
    elif any(str(m.get("error", "")).startswith(("SystemExit", "KeyboardInterrupt")) for m in checks.values()):
        status, message = "crashed", "the code called sys.exit() (or raised SystemExit)"
    forbidden = sorted(set(static) | set(called or []))
    results = []
    for check in piece.checks:
        entry = {"name": check.grade_id, "max": check.points, "visible": check.visible, "points": 0.0, "passed": False}
        got = checks.get(check.grade_id)
        if piece.name not in code.defined:
            entry["message"] = f"no function {piece.name}() was found in the notebook"
        elif forbidden:
            entry["message"] = f"calls {', '.join(forbidden)}, which earns no credit for this piece"
        elif got is None:
            entry["message"] = message or "not run"
        elif "error" in got:
            where = f" ({got['where'].replace('<', '').replace('>', '')})" if got.get("where") else ""
            if status == "memory" and _is_memory_error(got["error"]):  # not torch's allocator internals
                entry["message"] = f"your code {message}{where}"
            elif got["error"].split(":")[0] == "NotImplementedError":
                entry["message"] = f"{piece.name}() is not written yet: it raises NotImplementedError{where}"
            else:
                entry["message"] = f"your code raised {got['error']}{where}"
        elif not done and not (status in ("timeout", "memory", "crashed")):
            entry["message"] = "the grader could not confirm which functions your code called"
        else:
            try:
                # one verdict at a time: a verdict may seed torch's global generator and build a
                # reference model, and two grading threads doing that at once draw each other's numbers
                with _VERDICT_LOCK:
                    check.verdict(decode(got.get("data")))
                entry.update(points=float(check.points), passed=True, message="passed")
            except CheckFailed as failure:
                entry["message"] = str(failure)
            except Exception as error:  # noqa: BLE001 (the data had an unexpected shape or type)
                entry["message"] = f"the result could not be checked ({type(error).__name__}): does the function return what the exercise asks?"
        results.append(entry)
    if piece.name not in code.defined:
        status = "missing"
    elif forbidden and status == "ok":
        status = "forbidden"
    return {"points": sum(e["points"] for e in results), "max": piece.points, "status": status, "message": message,
            "forbidden": forbidden, "checks": results, "seconds": header.get("seconds", 0.0)}


def partial_credit(text: str | None, points: float) -> float:
    """nbgrader's rule for a test cell's displayed result: a number in [0, points] is the score;
    anything else (or nothing) leaves the full points."""
    if text is None:
        return points
    try:
        value = float(text)
    except ValueError:
        return points
    return value if 0.0 <= value <= points else points


def _notebook_status(header: dict, messages: list[dict]) -> tuple[str, str]:
    """How a whole-notebook run ended, for the cells it did not reach."""
    errors = " ".join(str(m.get("error", "")) for m in messages)
    if header.get("timed_out"):
        return "timeout", f"not run: the notebook was stopped after {header.get('limit', '?')} s (the time limit)"
    if header.get("overflow"):
        return "crashed", "not run: the notebook sent back more data than it may"
    if header.get("worker_lost"):
        return "crashed", "not run: the grading worker was lost while running this notebook"
    if any(m.get("done") is True for m in messages):
        return "ok", "not run"
    if _is_memory_error(errors) or header.get("signal") == 9:
        return "memory", "not run: the notebook ran out of memory (or was killed) before this cell"
    if header.get("signal"):
        return "crashed", f"not run: the notebook's process died of signal {header['signal']} before this cell"
    return "crashed", f"not run: the notebook's process ended early (exit code {header.get('exit_code')}) before this cell"


def notebook_pieces(pieces, cells: list[dict], header: dict, messages: list[dict], ran: bool) -> dict[str, dict]:
    """Points of a plain nbgrader notebook's test cells from its run, as nbgrader scores them: a
    cell that raised or wrote to stderr earns 0; one that displays a number in [0, points] earns
    that number; otherwise the full points. A cell the run did not reach earns 0."""
    by_cell = {m["grade_id"]: m for m in messages if isinstance(m.get("grade_id"), str) and "cell" in m}
    status, unreached = _notebook_status(header, messages) if ran else ("missing", "the notebook was not graded")
    results = {}
    for piece in pieces:
        entries, piece_status = [], "ok" if ran else status
        for check in piece.checks:
            entry = {"name": check.grade_id, "max": check.points, "visible": check.visible, "points": 0.0, "passed": False}
            got = by_cell.get(check.grade_id)
            if got is None:
                entry["message"] = unreached
                piece_status = status if status != "ok" else piece_status
            elif got.get("error"):
                where = f" ({got['where']})" if got.get("where") else ""
                entry["message"] = f"{got['error']}{where}"
            elif got.get("stderr"):
                entry["message"] = f"the cell wrote to stderr, which nbgrader counts as a failed test: {str(got['stderr']).strip()[:200]}"
            else:
                points = partial_credit(got.get("text"), check.points)
                entry.update(points=points, passed=points == check.points,
                             message="passed" if points == check.points else f"partial credit: {points:g} of {check.points:g}")
            entries.append(entry)
        results[piece.name] = {"points": sum(e["points"] for e in entries), "max": piece.points, "status": piece_status,
                               "message": "", "forbidden": [], "checks": entries,
                               "seconds": header.get("seconds", 0.0)}
    return results
