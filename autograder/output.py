"""What a grading run writes: grades.csv, one feedback page per student, and the class report.

Feedback shows, per piece: its points, each check's pass/fail and message, and a link to the
section of the published book with the equation it implements (the book's address comes from
``--book-url`` or ``html.baseurl`` in ``_config.yml``; never a file on the grader's disk). A
hidden check shows its description and its failure message, written for students; its code never
leaves the grader. The report links every student's feedback page.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import re
from pathlib import Path

from autograder import ROOT

STYLE = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}.pass{color:#176b2c}.fail{color:#a4161a}.status{font-weight:bold}h2{margin-top:1.5em}
img{max-width:100%}.piece td{background:#f4f4f4;font-weight:bold}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n")


def book_address(book_url: str | None, root: Path = ROOT) -> str | None:
    """The published book's address: ``--book-url``, else ``html.baseurl`` in ``_config.yml``."""
    if book_url:
        return book_url.rstrip("/")
    config = root / "_config.yml"
    if config.is_file():
        found = re.search(r"^\s+baseurl:\s*['\"]?(https?://[^\s'\"]+)", config.read_text(), flags=re.M)
        if found:
            return found.group(1).rstrip("/")
    return None


def feedback_name(target) -> str:
    return f"{target.assignment}.html"


def _piece_link(target, piece, book: str | None) -> str:
    # an anchor is a section of the unit's chapter, or "book/<page>.html#<section>" elsewhere
    page, _, section = piece.anchor.rpartition("#") if "#" in piece.anchor else ("", "", piece.anchor)
    page = page or target.chapter
    if not section or not page:
        return ""
    if book is None:
        return f"<p>The equation: the section <em>{html.escape(section)}</em> of the book's {html.escape(Path(page).stem)} chapter.</p>"
    link = f"{book}/{page}#{section}"
    return f"<p>The equation: <a href='{html.escape(link)}'>{html.escape(Path(page).stem)}, {html.escape(section)}</a>.</p>"


def feedback_html(target, record: dict, book: str | None) -> str:
    e = html.escape
    parts = [f"<h1>{e(target.assignment)}: feedback for {e(record['student'])}</h1>",
             f"<p class='status'>Score {record['total']:g} / {record['max']:g} &mdash; status: {e(record['status'])}</p>"]
    if record.get("penalty"):
        parts.append(f"<p>Late penalty: {record['penalty']:g} points (before it: {record['raw_total']:g}).</p>")
    if record["notes"]:
        parts.append("<ul>" + "".join(f"<li>{e(note)}</li>" for note in record["notes"]) + "</ul>")
    checks = {c.grade_id: c for c in target.checks()}
    for piece in target.pieces:
        result = record["pieces"].get(piece.name)
        if result is None:
            continue
        parts.append(f"<h2>{e(piece.title)} (<code>{e(piece.name)}</code>): {result['points']:g} / {result['max']:g}</h2>")
        parts.append(_piece_link(target, piece, book))
        if result["message"]:
            parts.append(f"<p class='fail'>{e(result['message'])}</p>")
        rows = []
        for entry in result["checks"]:
            check = checks[entry["name"]]
            kind = "visible test" if check.visible else "hidden test"
            verdict = "<span class='pass'>pass</span>" if entry["passed"] else "<span class='fail'>fail</span>"
            rows.append(f"<tr><td>{kind}: {e(check.description)}</td><td>{verdict}</td>"
                        f"<td class='num'>{entry['points']:g} / {entry['max']:g}</td><td>{e(entry.get('message', ''))}</td></tr>")
        parts.append("<table><tr><th>check</th><th></th><th class='num'>points</th><th>message</th></tr>" + "".join(rows) + "</table>")
    return _page(f"{target.assignment} feedback: {record['student']}", "".join(parts))


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "<img alt='' src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode() + "'>"


def pass_rates(target, records: dict[str, dict]) -> dict[str, float]:
    rates = {}
    for check in target.checks():
        graded = [c for r in records.values() for p in r["pieces"].values() for c in p["checks"] if c["name"] == check.grade_id]
        rates[check.grade_id] = sum(c["passed"] for c in graded) / max(len(graded), 1)
    return rates


def report_html(target, records: dict[str, dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from autograder.submissions import safe_name

    e = html.escape
    totals = [r["total"] for r in records.values()]
    statuses: dict[str, int] = {}
    for r in records.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    parts = [f"<h1>{e(target.assignment)}: class report</h1>",
             f"<p>{len(records)} submissions; mean {sum(totals) / max(len(totals), 1):.2f} / {target.points:g}; "
             + ", ".join(f"{e(k)}: {v}" for k, v in sorted(statuses.items())) + "</p>"]
    rates = pass_rates(target, records)
    names = [c.grade_id for c in target.checks()]
    # two figures one above the other: long check names get the width they need
    figure, ax = plt.subplots(figsize=(8, 3))
    ax.hist(totals, bins=[x - 0.5 for x in range(int(target.points) + 2)], color="#3a6ea5", edgecolor="white")
    ax.set(xlabel="total points", ylabel="submissions", title="score histogram")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    parts.append(_png(figure))
    plt.close(figure)
    figure, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * len(names)))
    ax.barh(names[::-1], [rates[n] for n in names][::-1], color="#6a9f58")
    ax.set(xlim=(0, 1), xlabel="pass rate", title="pass rate per check (in the notebook's order)")
    figure.tight_layout()
    parts.append(_png(figure))
    plt.close(figure)
    rows = []
    for piece in target.pieces:
        rows.append(f"<tr class='piece'><td colspan='2'>{e(piece.title)} (<code>{e(piece.name)}</code>)</td></tr>")
        for check in sorted(piece.checks, key=lambda c: rates[c.grade_id]):
            rows.append(f"<tr><td>{e(check.grade_id)}</td><td class='num'>{rates[check.grade_id]:.0%}</td></tr>")
    parts.append("<h2>Pass rate per check</h2><p>Grouped by piece, hardest first within each.</p>"
                 "<table><tr><th>check</th><th class='num'>pass rate</th></tr>" + "".join(rows) + "</table>")
    header = "".join(f"<th class='num'>{e(p.name)}</th>" for p in target.pieces)
    students = []
    for student, r in records.items():
        link = f"feedback/{safe_name(student)}/{feedback_name(target)}"
        cells = "".join(f"<td class='num'>{r['pieces'].get(p.name, {}).get('points', 0.0):g}</td>" for p in target.pieces)
        students.append(f"<tr><td><a href='{e(link)}'>{e(student)}</a></td>{cells}<td class='num'>{r['total']:g}</td>"
                        f"<td>{e(r['status'])}</td></tr>")
    parts.append("<h2>Students</h2><table><tr><th>student</th>" + header + "<th class='num'>total</th><th>status</th></tr>"
                 + "".join(students) + "</table>")
    slowest = sorted(records.values(), key=lambda r: -r.get("seconds", 0))[:10]
    parts.append("<h2>Slowest submissions</h2><table><tr><th>student</th><th class='num'>seconds</th><th>status</th></tr>"
                 + "".join(f"<tr><td>{e(r['student'])}</td><td class='num'>{r.get('seconds', 0):.2f}</td><td>{e(r['status'])}</td></tr>"
                           for r in slowest) + "</table>")
    failed = [r for r in records.values() if r["status"] != "ok"]
    rows = "".join(f"<tr><td>{e(r['student'])}</td><td>{e(r['status'])}</td><td class='num'>{r['total']:g}</td>"
                   f"<td>{e('; '.join(r['notes'] + [p['message'] for p in r['pieces'].values() if p['message']]))}</td></tr>"
                   for r in failed)
    parts.append("<h2>Failed submissions</h2>" + ("<table><tr><th>student</th><th>status</th><th class='num'>points</th><th>why</th></tr>"
                                                   + rows + "</table>" if failed else "<p>None: every submission ran to the end.</p>"))
    return _page(f"{target.assignment}: class report", "".join(parts))


def write_outputs(target, records: dict[str, dict], out: Path, book_url: str | None = None) -> None:
    from autograder.submissions import safe_name

    write_csv(target, records, out / "grades.csv")
    book = book_address(book_url)
    for student, record in records.items():
        atomic_write(out / "feedback" / safe_name(student) / feedback_name(target), feedback_html(target, record, book))
    atomic_write(out / "report.html", report_html(target, records))


def write_csv(target, records: dict[str, dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *[p.name for p in target.pieces], "total", "max", "status", "late_seconds", "penalty", "notes"])
    for student, record in records.items():
        pieces = [f"{record['pieces'].get(p.name, {}).get('points', 0.0):g}" for p in target.pieces]
        writer.writerow([student, *pieces, f"{record['total']:g}", f"{record['max']:g}", record["status"],
                         f"{record.get('late_seconds', 0.0):g}", f"{record.get('penalty', 0.0):g}", "; ".join(record["notes"])])
    atomic_write(path, buffer.getvalue())


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
