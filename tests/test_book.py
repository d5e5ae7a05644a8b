"""Every chapter of the book executes without error (at the smoke scale), and the table of
contents, the configuration and the pages agree."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from myst_nb.core.read import read_myst_markdown_notebook
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def chapter_paths() -> list[Path]:
    """Book pages that hold code cells (MyST notebooks)."""
    pages = [ROOT / f"{name}.md" for name in toc_files() if (ROOT / f"{name}.md").exists()]
    return [p for p in pages if "{code-cell}" in p.read_text()]


def test_every_toc_entry_exists():
    for name in toc_files():
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), name


def test_chapters_are_found():
    assert any(p.name == "vae.md" for p in chapter_paths())


@pytest.mark.parametrize("path", chapter_paths(), ids=lambda p: p.name)
def test_chapter_executes(path: Path, tmp_path: Path):
    notebook = read_myst_markdown_notebook(path.read_text(), path=path)
    started = time.perf_counter()
    # run where the chapter lives, as the book build does, on the smoke scale set by conftest
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    # the book treats anything on stderr as a build failure: catch it here too
    stderr = [o["text"] for c in notebook.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"{path.name} wrote to stderr:\n" + "\n".join(stderr)
    nbformat.write(notebook, tmp_path / f"{path.stem}.ipynb")
    print(f"{path.name}: {time.perf_counter() - started:.1f} s at the smoke scale")


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
