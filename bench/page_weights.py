"""The weight of each page of the built book, and of the interactive demos it holds.

    .venv/bin/python bench/page_weights.py [SITE]     # after `make book`; appends to bench/results.md

SITE is a built site's folder (default: this checkout's _build/html).

For every page with at least one demo (``gencore.interactive``: a ``course-demo`` element, its
pre-rendered frames and its script), the table gives the page's HTML, the image files it loads
from ``_images``, the share of the HTML that is demos, the number of demos and of frames, and
the largest demo. The theme's CSS, JavaScript and fonts, the same for every page and cached after
the first, are left out and given once below the table.
"""

from __future__ import annotations

import datetime
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
DEMO = re.compile(r'<div class="course-demo" id="(demo-[0-9a-f]+)">.*?</script>', re.S)


def kib(n: int) -> str:
    return f"{n / 1024:,.0f}"


def page_weight(page: Path) -> dict:
    text = page.read_text()
    demos = [m.group(0) for m in DEMO.finditer(text)]
    images = {m for m in re.findall(r'<img[^>]+src="([^"]+)"', text) if not m.startswith("data:")}
    image_bytes = sum((page.parent / src).stat().st_size for src in images if (page.parent / src).exists())
    return dict(
        html=len(text.encode()),
        images=image_bytes,
        demos=len(demos),
        demo_bytes=sum(len(d.encode()) for d in demos),
        frames=sum(d.count("data:image/png;base64,") for d in demos),
        largest=max((len(d.encode()) for d in demos), default=0),
    )


def theme_weight() -> int:
    static = HTML / "_static"
    return sum(p.stat().st_size for p in static.rglob("*") if p.is_file() and p.suffix in (".css", ".js", ".woff2"))


def main() -> None:
    global HTML
    if len(sys.argv) > 1:
        HTML = Path(sys.argv[1])
    if not HTML.exists():
        sys.exit("no built book: run `make book` first")
    rows = []
    for page in sorted(HTML.rglob("*.html")):
        name = str(page.relative_to(HTML))
        if name.startswith("_"):
            continue
        weight = page_weight(page)
        if weight["demos"]:
            rows.append((name, weight))
    lines = [
        f"## Page weights with the interactive demos ({datetime.date.today()}, after `make book` at small)",
        "",
        "| page | HTML KiB | its images KiB | demos | frames | demos KiB | largest demo KiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in rows:
        lines.append(
            f"| {name} | {kib(w['html'])} | {kib(w['images'])} | {w['demos']} | {w['frames']} |"
            f" {kib(w['demo_bytes'])} | {kib(w['largest'])} |"
        )
    lines += [
        "",
        f"Theme CSS, JavaScript and fonts shared by every page: {kib(theme_weight())} KiB"
        f" (cached after the first page). Machine: {platform.machine()}, Python {platform.python_version()}.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write("\n" + report)


if __name__ == "__main__":
    main()
