"""Sphinx extension: the built book works with no network at all, and fits the screen.

1. MathJax ships with the site. The MathJax 3 files come from the ``sphinx-mathjax-offline``
   package (installed from requirements.txt); only what the CHTML output needs is copied to
   ``_static/mathjax`` (the TeX input, its extensions, the CHTML fonts and the menu), not the
   package's 24 MB of alternatives, and Sphinx is pointed at the local copy.
2. A little CSS of the course's own (``static/course_site.css``): a folded code cell opens as wide
   as an unfolded one, so that code formatted to ruff.toml's line length fits both; on a phone a
   wide table scrolls inside itself and a long inline literal wraps, instead of widening the page.
3. Each script is included once per page: sphinx-thebe registers its configuration script once
   per read phase, and a build with execution has two, which declares a ``const`` twice and
   raises a JavaScript error on every page.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx

MATHJAX_ENTRY = "tex-chtml.js"
# what tex-chtml.js may load lazily: TeX extensions (autoload), CHTML fonts, accessibility menu
MATHJAX_KEEP = ("input/tex/extensions", "output/chtml/fonts/woff-v2", "a11y", "ui", "sre/mathmaps/en.json",
                "sre/mathmaps/base.json", "adaptors")


def mathjax_source() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("sphinx-mathjax-offline is not installed: run `make setup` (it is in requirements.txt)")
    return Path(spec.origin).parent / "static" / "mathjax"


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_ENTRY, target / MATHJAX_ENTRY)
    for relative in MATHJAX_KEEP:
        src, dst = source / relative, target / relative
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def unique_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        # the same file or inline body (an inline script's filename is None or ""), whatever its priority
        key = (getattr(script, "filename", None) or "", getattr(script, "attributes", {}).get("body"))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    # in place: later handlers (MathJax's among them) append to this same list
    context["script_files"][:] = scripts


def no_colab_for_markdown(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if pagename not in app.env.all_docs or not str(app.env.doc2path(pagename)).endswith(".md"):
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") != "Colab"]


def add_static(app: Sphinx) -> None:
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app: Sphinx) -> dict:
    mathjax_source()  # fail early, with the fix in the message
    app.connect("builder-inited", add_static)
    app.add_css_file("course_site.css")
    app.config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"
    app.connect("build-finished", copy_mathjax)
    # early: html-page-context stops at the first handler that returns a template name
    app.connect("html-page-context", unique_scripts, priority=100)
    app.connect("html-page-context", no_colab_for_markdown, priority=502)  # after the theme adds them
    return {"parallel_read_safe": True, "parallel_write_safe": True}
