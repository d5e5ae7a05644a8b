"""What a grading run writes: grades.csv, one feedback page per student, and the class report.

Feedback shows, per piece: its points, each check's pass/fail and message, and a link to the
book section with the equation it implements. A hidden check shows only its description and
its failure message (written for students in ``units/<unit>.py``); its code never leaves the
grader.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from pathlib import Path

from autograder import ROOT
from autograder.spec import Unit

STYLE = """body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.pass{color:#176b2c}.fail{color:#a4161a}.status{font-weight:bold}h2{margin-top:1.5em}img{max-width:100%}"""


def _page(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"


def feedback_html(unit: Unit, record: dict, book_url: str) -> str:
    e = html.escape
    parts = [f"<h1>{e(unit.assignment)}: feedback for {e(record['student'])}</h1>",
             f"<p class='status'>Score {record['total']:g} / {record['max']:g} &mdash; status: {e(record['status'])}</p>"]
    if record["notes"]:
        parts.append("<ul>" + "".join(f"<li>{e(note)}</li>" for note in record["notes"]) + "</ul>")
    checks = {c.grade_id: c for c in unit.checks()}
    for piece in unit.pieces:
        result = record["pieces"].get(piece.name)
        if result is None:
            continue
        # an anchor is a section of the unit's chapter, or "book/<page>.html#<section>" elsewhere
        page, _, section = piece.anchor.rpartition("#")
        link = f"{book_url.rstrip('/')}/{page or unit.chapter}#{section}"
        parts.append(f"<h2>{e(piece.title)} (<code>{e(piece.name)}</code>): {result['points']:g} / {result['max']:g}</h2>")
        parts.append(f"<p>The equation: <a href='{e(link)}'>{e(link.rsplit('/', 1)[-1])}</a>.</p>")
        if result["message"]:
            parts.append(f"<p class='fail'>{e(result['message'])}</p>")
        rows = []
        for entry in result["checks"]:
            check = checks[entry["name"]]
            kind = "visible test" if check.visible else "hidden test"
            verdict = "<span class='pass'>pass</span>" if entry["passed"] else "<span class='fail'>fail</span>"
            rows.append(f"<tr><td>{kind}: {e(check.description)}</td><td>{verdict}</td><td>{entry['points']:g} / {entry['max']:g}</td>"
                        f"<td>{e(entry.get('message', ''))}</td></tr>")
        parts.append("<table><tr><th>check</th><th></th><th>points</th><th>message</th></tr>" + "".join(rows) + "</table>")
    return _page(f"{unit.assignment} feedback: {record['student']}", "".join(parts))


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "<img src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode() + "'>"


def report_html(unit: Unit, records: dict[str, dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = html.escape
    totals = [r["total"] for r in records.values()]
    statuses: dict[str, int] = {}
    for r in records.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    parts = [f"<h1>{e(unit.assignment)}: class report</h1>",
             f"<p>{len(records)} submissions; mean {sum(totals) / max(len(totals), 1):.2f} / {unit.points:g}; "
             + ", ".join(f"{e(k)}: {v}" for k, v in sorted(statuses.items())) + "</p>"]
    figure, (ax_hist, ax_rate) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax_hist.hist(totals, bins=[x - 0.5 for x in range(int(unit.points) + 2)], color="#3a6ea5", edgecolor="white")
    ax_hist.set(xlabel="total points", ylabel="submissions", title="score histogram")
    names = [c.grade_id for c in unit.checks()]
    rates = []
    for name in names:
        graded = [c for r in records.values() for p in r["pieces"].values() for c in p["checks"] if c["name"] == name]
        rates.append(sum(c["passed"] for c in graded) / max(len(graded), 1))
    ax_rate.barh(names[::-1], rates[::-1], color="#6a9f58")
    ax_rate.set(xlim=(0, 1), xlabel="pass rate", title="pass rate per check")
    parts.append(_png(figure))
    plt.close(figure)
    parts.append("<h2>Pass rate per check</h2><table><tr><th>check</th><th>pass rate</th></tr>"
                 + "".join(f"<tr><td>{e(n)}</td><td>{r:.0%}</td></tr>" for n, r in zip(names, rates)) + "</table>")
    slowest = sorted(records.values(), key=lambda r: -r.get("seconds", 0))[:10]
    parts.append("<h2>Slowest submissions</h2><table><tr><th>student</th><th>seconds</th><th>status</th></tr>"
                 + "".join(f"<tr><td>{e(r['student'])}</td><td>{r.get('seconds', 0):.2f}</td><td>{e(r['status'])}</td></tr>" for r in slowest)
                 + "</table>")
    failed = [r for r in records.values() if r["status"] != "ok"]
    parts.append("<h2>Failed submissions</h2><table><tr><th>student</th><th>status</th><th>points</th><th>why</th></tr>"
                 + "".join(f"<tr><td>{e(r['student'])}</td><td>{e(r['status'])}</td><td>{r['total']:g}</td>"
                           f"<td>{e('; '.join(r['notes'] + [p['message'] for p in r['pieces'].values() if p['message']]))}</td></tr>" for r in failed)
                 + "</table>")
    return _page(f"{unit.assignment}: class report", "".join(parts))


def write_outputs(unit: Unit, records: dict[str, dict], out: Path, book_url: str | None = None) -> None:
    from autograder.submissions import safe_name

    write_csv(unit, records, out / "grades.csv")
    book = book_url or (ROOT / "_build" / "html").as_uri()  # the course's built book; --book-url for a web copy
    for student, record in records.items():
        atomic_write(out / "feedback" / safe_name(student) / f"{unit.notebook}.html", feedback_html(unit, record, book))
    atomic_write(out / "report.html", report_html(unit, records))


def write_csv(unit: Unit, records: dict[str, dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *[p.name for p in unit.pieces], "total", "max", "status", "notes"])
    for student, record in records.items():
        pieces = [f"{record['pieces'].get(p.name, {}).get('points', 0.0):g}" for p in unit.pieces]
        writer.writerow([student, *pieces, f"{record['total']:g}", f"{record['max']:g}", record["status"], "; ".join(record["notes"])])
    atomic_write(path, buffer.getvalue())


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
