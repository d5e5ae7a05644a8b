"""The book as readers get it.

One session fixture builds the book the way `make book` does (every chapter executed, warnings
as errors), at the smoke scale, from a copy of the book's sources in a temporary folder. The
tests then check the table of contents, the execution cache (an unchanged rebuild executes
nothing; a changed chapter is the only one re-executed) and the site in a real browser:
Debian's Chromium, driven by Playwright, with every request that is not to localhost blocked.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "_build" / "screenshots"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")


def toc_files(root: Path = ROOT) -> list[str]:
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def build(source: Path) -> subprocess.CompletedProcess:
    """`make book`'s build command, run on ``source``; returns the finished process."""
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source),
               "--warningiserror", "--nitpick", "--keep-going"]
    env = {**os.environ, "GENCORE_PROGRESS": "0", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=1500)


def executed_pages(log: str) -> list[str]:
    """The pages MyST-NB executed in a build, from its log."""
    return sorted(set(re.findall(r"([\w/.-]+)\.(?:md|ipynb): Executing notebook", log)))


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """The student edition (``python -m autograder publish``), whose book is built once as
    ``make book`` builds it; returns the edition's root. The instructor's book has the same
    sources: building the edition checks both, and that the edition needs nothing it lacks."""
    from autograder.edition import publish

    source = publish(tmp_path_factory.mktemp("edition"))
    assert all((source / name).exists() for name in BOOK_SOURCES)
    done = build(source)
    assert done.returncode == 0, f"the book build failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    source.joinpath("first_build.log").write_text(done.stdout + done.stderr)
    return source


# ---------------------------------------------------------------------------- sources
def test_every_toc_entry_exists():
    for name in toc_files():
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name


def heading_slug(heading: str) -> str:
    """GitHub's anchor for a heading, as MyST's ``myst_heading_anchors`` makes it."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_assignment_links_point_to_chapter_sections():
    """The assignment's links to the book (../../book/vae.md#heading) name headings that exist."""
    notebook = nbformat.read(ROOT / "solutions" / "vae" / "vae.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    links = re.findall(r"book/(\w+)\.md#([\w-]+)", text)
    assert len(links) == 4
    for page, anchor in links:
        headings = re.findall(r"^#+ (.+)$", (ROOT / "book" / f"{page}.md").read_text(), flags=re.M)
        assert anchor in {heading_slug(h) for h in headings}, f"{page}.md has no heading with anchor {anchor}"


# ---------------------------------------------------------------------------- the build
def test_build_executes_every_chapter_and_not_the_assignments(book: Path):
    log = (book / "first_build.log").read_text()
    pages = [book / f"{name}.md" for name in toc_files(book)]
    chapters = [p for p in pages if p.exists() and "{code-cell}" in p.read_text()]
    assert chapters and executed_pages(log) == sorted(str(p.with_suffix("")) for p in chapters)
    assert (book / "_build" / "html" / "notebooks" / "vae" / "vae.html").exists()


def test_execution_report_lists_every_chapter(book: Path):
    report = (book / "_build" / "html" / "book" / "execution.html").read_text()
    assert "book/vae" in report and "✅" in report and "❌" not in report


def test_rebuild_is_cached_and_reexecutes_only_the_changed_chapter(book: Path):
    unchanged = build(book)
    assert unchanged.returncode == 0 and executed_pages(unchanged.stdout + unchanged.stderr) == []

    # add a second chapter, build, then change only its code: only it runs again
    probe = book / "book" / "probe.md"
    probe.write_text((ROOT / "book" / "vae.md").read_text().split("(vae)=")[0]
                     + "# Probe\n\n```{code-cell} ipython3\nprint(1 + 1)\n```\n")
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    toc["parts"][0]["chapters"].append({"file": "book/probe"})
    (book / "_toc.yml").write_text(yaml.safe_dump(toc))
    try:
        added = build(book)
        assert added.returncode == 0, added.stdout[-3000:]
        assert executed_pages(added.stdout + added.stderr) == [str(book / "book" / "probe")]
        probe.write_text(probe.read_text().replace("print(1 + 1)", "print(2 + 2)"))
        changed = build(book)
        assert changed.returncode == 0, changed.stdout[-3000:]
        assert executed_pages(changed.stdout + changed.stderr) == [str(book / "book" / "probe")]
    finally:  # leave the built site as the first build made it, for the browser tests
        probe.unlink()
        shutil.copy2(ROOT / "_toc.yml", book / "_toc.yml")
        assert build(book).returncode == 0


def test_parallel_executor_reads_chapters_as_the_build_does(book: Path):
    """`make book` first executes the chapters side by side (scripts/execute_book.py) into the
    cache the build reads. After a build it must find every chapter there: a notebook read in any
    other way than MyST-NB reads it would hash differently, miss, and be executed twice."""
    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "execute_book.py"), "--root", str(book),
                               "--check"], capture_output=True, text=True, timeout=300)

    done = check()
    assert done.returncode == 0 and "every chapter is in the execution cache" in done.stdout, done.stdout + done.stderr
    chapter = book / "book" / "foundations.md"
    original = chapter.read_text()
    try:  # a change to a chapter's code is seen
        chapter.write_text(original + "\n```{code-cell} ipython3\nprint(3)\n```\n")
        changed = check()
        assert changed.returncode == 1 and "book/foundations.md" in changed.stdout, changed.stdout + changed.stderr
    finally:
        chapter.write_text(original)


# ---------------------------------------------------------------------------- the site in a browser
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(book: Path):
    """The built site served on localhost; yields its base URL and folder."""
    html = book / "_build" / "html"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", html
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, site):
    """A browser page that can reach the site and nothing else; records what it had to block."""
    base, _ = site
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.blocked, page.errors = [], []

    def route(request_route):
        if request_route.request.url.startswith(base + "/"):
            request_route.continue_()
        else:
            page.blocked.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda error: page.errors.append(f"JavaScript error: {error}"))
    page.on("console", lambda message: page.errors.append(f"console: {message.text}") if message.type == "error" else None)
    yield page
    context.close()


def is_redirect(path: Path) -> bool:
    return 'http-equiv="Refresh"' in path.read_text()[:300]


def html_pages(html: Path) -> list[str]:
    """Every page of the site but the redirect stubs (index.html) and the theme's own files."""
    pages = [p for p in html.rglob("*.html") if not p.relative_to(html).parts[0].startswith("_") and not is_redirect(p)]
    return sorted(str(p.relative_to(html)) for p in pages)


def test_front_page_leads_to_the_introduction(page, site):
    base, _ = site
    page.goto(f"{base}/index.html")
    page.wait_for_url("**/book/intro.html")
    assert "Deep Generative Models" in page.title()


UNTYPESET_MATH = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, code, script, style, textarea, .highlight")) continue;
    const text = node.textContent;
    if (text.includes("$$") || text.includes("\\\\(") || text.includes("\\\\[")) raw.push(text.trim().slice(0, 80));
  }
  return raw;
}"""


def load(page, url: str) -> None:
    page.goto(url, wait_until="load")
    # MathJax typesets after load; wait for it where the page has math
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")


def test_pages_load_offline_with_images_and_typeset_math(page, site):
    base, html = site
    pages = html_pages(html)
    assert {"book/intro.html", "book/vae.html", "notebooks/vae/vae.html", "book/bibliography.html"} <= set(pages)
    for name in pages:
        load(page, f"{base}/{name}")
        assert not page.errors, f"{name}: {page.errors}"
        broken = page.evaluate("() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))")
        assert not broken, f"{name}: images that did not load: {broken}"
        if page.locator(".math").count():
            assert page.locator("mjx-container").count() >= page.locator(".math").count(), f"{name}: math not typeset"
            assert page.locator("mjx-merror").count() == 0, f"{name}: MathJax errors"
        assert not page.evaluate(UNTYPESET_MATH), f"{name}: raw TeX left on the page"
    assert not page.blocked, f"the site tried to reach the network: {sorted(set(page.blocked))}"


def test_internal_links_resolve(page, site):
    base, html = site
    missing = []
    for name in html_pages(html):
        load(page, f"{base}/{name}")
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        for href in hrefs:
            url = urlparse(href)
            if not href.startswith(base + "/") or url.path.endswith("/_sources/"):
                continue
            target = html / unquote(url.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                missing.append(f"{name} -> {href}")
            elif url.fragment and target.suffix == ".html" and f'id="{url.fragment}"' not in target.read_text():
                missing.append(f"{name} -> {href} (no such anchor)")
    assert not missing, "\n".join(missing)


DEMO_STATE = """(root) => {
  const canvas = root.querySelector('canvas');
  let ink = null;
  if (canvas) {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    ink = Array.from(data).join(',');
  }
  return {frame: root.dataset.frame, src: root.querySelector('img.demo-frame').src.slice(-200),
          labels: [...root.querySelectorAll('[data-control] output')].map(o => o.textContent),
          z: root.dataset.z || null, ink: ink};
}"""


def exercise_demo(page, demo, where: str) -> list[str]:
    """Move every control of one demo, press play, point into a latent explorer; what failed."""
    problems = []
    spec = demo.evaluate("(root) => ({controls: root.demoSpec.controls, play: root.demoSpec.play, interval: root.demoSpec.interval, decode: !!root.demoSpec.decode})")
    demo.scroll_into_view_if_needed()
    for i, control in enumerate(spec["controls"]):
        if len(control["labels"]) < 2:
            continue  # nothing to move (a demo with one frame at the smoke scale)
        box = demo.locator(f'[data-control="{i}"]')
        before = demo.evaluate(DEMO_STATE)
        if control["kind"] == "slider":
            current = int(box.locator("input").input_value())
            box.locator("input").fill(str(0 if current else len(control["labels"]) - 1))  # fires "input"
        else:
            box.locator("input:not(:checked)").first.check()
        after = demo.evaluate(DEMO_STATE)
        if after["frame"] == before["frame"] or after["src"] == before["src"]:
            problems.append(f"{where}: control {control['name']!r} did not change the picture")
        if after["labels"][i] == before["labels"][i]:
            problems.append(f"{where}: control {control['name']!r} did not change its label")
    if spec["play"] is not None and len(spec["controls"][spec["play"]]["labels"]) > 1:
        slider = demo.locator(f'[data-control="{spec["play"]}"] input')
        slider.fill("0")
        before = demo.evaluate(DEMO_STATE)
        demo.locator("button.demo-play").click()
        page.wait_for_timeout(spec["interval"] * 2.5)
        after, position = demo.evaluate(DEMO_STATE), int(slider.input_value())
        demo.locator("button.demo-play").click()  # pause (or restart, if it finished)
        if position == 0 or after["frame"] == before["frame"]:
            problems.append(f"{where}: play did not advance the frames")
    if spec["decode"]:
        img = demo.locator("img.demo-frame")
        img.scroll_into_view_if_needed()
        inks = []
        for u, v in ((0.25, 0.3), (0.7, 0.8)):
            frame = int(demo.get_attribute("data-frame"))
            left, top, right, bottom = demo.evaluate(f"(root) => root.demoSpec.decode.boxes[{frame}]")
            e = demo.evaluate("(root) => root.demoSpec.decode.extent")
            rect = img.bounding_box()
            page.mouse.move(rect["x"] + (left + u * (right - left)) * rect["width"],
                            rect["y"] + (top + v * (bottom - top)) * rect["height"])
            expected = (e[0] + u * (e[1] - e[0]), e[3] - v * (e[3] - e[2]))
            try:
                page.wait_for_function(
                    "([root, z]) => root.dataset.z && root.dataset.z.split(',').every((c, j) => Math.abs(+c - z[j]) < 0.1)",
                    arg=[demo.element_handle(), list(expected)], timeout=5000)
            except Exception:
                problems.append(f"{where}: pointing at z = {expected} decoded at {demo.get_attribute('data-z')}")
                continue
            inks.append(demo.evaluate(DEMO_STATE)["ink"])
            caption = demo.locator(".demo-decoded figcaption").inner_text()
            if f"{expected[0]:.1f}"[:3] not in caption:
                problems.append(f"{where}: caption {caption!r} does not name z = {expected}")
        if len(inks) == 2 and inks[0] == inks[1]:
            problems.append(f"{where}: two points of the latent space decoded to the same picture")
    return problems


def test_interactive_figures_respond_without_a_kernel(page, site):
    """Every demo on every page, with the network cut: each control changes the picture and its
    label, play advances, and a latent explorer decodes the point under the pointer."""
    base, html = site
    problems, seen = [], {}
    for name in html_pages(html):
        if 'class="course-demo"' not in (html / name).read_text():
            continue  # a page without demos (test_pages_load_offline_with_images_and_typeset_math loads it)
        load(page, f"{base}/{name}")
        demos = page.locator(".course-demo")
        for i in range(demos.count()):
            problems += exercise_demo(page, demos.nth(i), f"{name} demo {i + 1}")
        seen[name] = (demos.count(), page.locator(".course-demo .demo-decoded").count())
        assert not page.errors, f"{name}: {page.errors}"
    assert not page.blocked, f"the site tried to reach the network: {sorted(set(page.blocked))}"
    # the four demos of the lecture page, at least
    assert seen["book/foundations.html"][0] >= 2 and seen["book/autoregressive.html"][0] >= 1
    assert seen["book/vae.html"][0] >= 3 and seen["book/vae.html"][1] >= 1
    assert not problems, "\n".join(problems)


# what sticks out of its box on a page: code lines wider than their cell's text column (folded
# cells opened first, so that a hidden line counts too) and display equations wider than their
# block; each as a line of text naming it
TOO_WIDE = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const found = [];
  for (const pre of document.querySelectorAll('div.cell_input pre')) {
    const style = getComputedStyle(pre);
    const room = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const lines = pre.textContent.split('\\n');
    const probe = document.createElement('span');
    probe.style.whiteSpace = 'pre';
    pre.appendChild(probe);
    probe.textContent = 'x'.repeat(100);
    const perChar = probe.getBoundingClientRect().width / 100;
    for (const line of lines) {
      if (line.length * perChar < room - 4 * perChar) continue;  // clearly fits: skip the layout
      probe.textContent = line;
      const width = probe.getBoundingClientRect().width;
      if (width > room + 1) found.push(`code line ${Math.round(width)} px > ${Math.round(room)} px: ${line.trim().slice(0, 80)}`);
    }
    probe.remove();
  }
  const items = (window.MathJax && MathJax.startup && MathJax.startup.document) ? [...MathJax.startup.document.math] : [];
  for (const container of document.querySelectorAll('mjx-container[display="true"]')) {
    const box = container.parentElement;
    const width = (container.firstElementChild || container).getBoundingClientRect().width;
    if (width > box.clientWidth + 1) {
      const item = items.find(i => i.typesetRoot === container);
      const name = box.id || (item ? item.math.trim().replace(/\\s+/g, ' ').slice(0, 80) : box.className);
      found.push(`equation ${Math.round(width)} px > ${box.clientWidth} px: ${name}`);
    }
  }
  return found;
}"""

PAGE_OVERFLOW = """() => {
  const over = document.documentElement.scrollWidth - window.innerWidth;
  if (over <= 0) return null;
  const culprits = [...document.body.querySelectorAll('*')].filter(e => {
    if (e.parentElement.closest('pre, mjx-container, .cell_output')) return false;  // scrolls inside its box
    const r = e.getBoundingClientRect();
    return r.right > window.innerWidth + 1 && e.parentElement.getBoundingClientRect().right <= window.innerWidth + 1;
  }).slice(0, 5).map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : ''));
  return `${over} px wider than the screen; sticking out: ${culprits.join(', ')}`;
}"""


def test_pages_fit_the_screen(page, site, browser):
    """At 1280x900 no code line and no display equation is wider than its box (the code is
    formatted to ruff.toml's line length, long equations are split over aligned lines); on a
    phone (390x844) the page itself does not scroll sideways (a code cell may, inside itself)."""
    base, html = site
    problems = []
    # not is_mobile: mobile emulation widens the layout viewport to fit the content, which would
    # hide the very overflow looked for
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    phone.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base + "/") else r.abort())
    small = phone.new_page()
    try:
        for name in html_pages(html):
            load(page, f"{base}/{name}")
            problems += [f"{name} at 1280 px: {problem}" for problem in page.evaluate(TOO_WIDE)]
            load(small, f"{base}/{name}")
            overflow = small.evaluate(PAGE_OVERFLOW)
            if overflow:
                problems.append(f"{name} at 390 px: {overflow}")
    finally:
        phone.close()
    assert not problems, f"{len(problems)} thing(s) wider than the screen:\n" + "\n".join(problems)


def test_full_text_search_works_offline(page, site):
    base, _ = site
    load(page, f"{base}/search.html?q=reparameterization")
    page.wait_for_selector("ul.search li", timeout=20_000)
    assert "vae" in page.locator("ul.search").inner_html()


def test_notebook_page_offers_download_and_launch(page, site):
    base, _ = site
    load(page, f"{base}/notebooks/vae/vae.html")
    content = page.content()
    assert "_sources/notebooks/vae/vae.ipynb" in content  # the download button's target
    assert "colab.research.google.com" in content and "hub/user-redirect" in content
    # a chapter is MyST Markdown, which Colab cannot open: JupyterHub only
    load(page, f"{base}/book/vae.html")
    chapter = page.content()
    assert "colab.research.google.com" not in chapter and "hub/user-redirect" in chapter


def test_screenshots_for_people(page, site):
    base, _ = site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, shot in (("book/intro.html", "intro.png"), ("book/vae.html", "vae.png")):
        load(page, f"{base}/{name}")
        page.screenshot(path=str(SCREENSHOTS / shot), full_page=False)
        assert (SCREENSHOTS / shot).stat().st_size > 10_000
