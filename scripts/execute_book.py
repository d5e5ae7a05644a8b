"""Execute the book's chapters side by side into the build's execution cache.

`make book` runs this before `jupyter-book build`. Jupyter Book executes the chapters one after
the other; this script executes the chapters whose code is not in the cache yet in parallel
(one process per core, each kernel on one thread) and stores them in the same cache,
``_build/.jupyter_cache``, in the form MyST-NB looks for. The build then finds every chapter
there and only renders.

It is an accelerator and nothing more: a chapter that fails here is left out of the cache, and
the build executes it again and reports its error the usual way.

Usage: ``python scripts/execute_book.py [--jobs N] [--root BOOK] [--check]`` (default: one job per core,
this repository).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Seconds each chapter took at the small scale on 2 cores, two chapters at a time (a clean
# `make book`, 2026-12-07). They only order a build with an empty cache, longest first; with a
# cache, the last run's times take over. In the order of the table of contents, the longest
# chapter comes last and runs alone at the end: about 60 s of a clean build.
TYPICAL_SECONDS = {
    "foundations": 27, "ssl": 70, "autoregressive": 52, "gan": 67, "vae": 120, "diffusion": 124,
    "guidance": 42, "flow": 167, "lm": 80, "reward": 105, "dpo": 28, "rl": 70,
}


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_files(node) -> list[str]:
    """Every `file:` entry of the table of contents, in order."""
    found = []
    if isinstance(node, dict):
        if "file" in node:
            found.append(node["file"])
        for value in node.values():
            found += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


def chapters() -> list[Path]:
    """The pages the build executes: MyST notebooks in the toc, minus execute.exclude_patterns."""
    from myst_nb.core.read import is_myst_markdown_notebook

    excluded = config().get("execute", {}).get("exclude_patterns", [])
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = []
    for name in [toc["root"]] + toc_files(toc.get("parts", [])):
        path = ROOT / f"{name}.md"
        if any(fnmatch.fnmatch(f"{name}.md", pattern) for pattern in excluded):
            continue
        if path.exists() and is_myst_markdown_notebook(path.read_text()):
            pages.append(path)
    return pages


def read(path: Path):
    """The notebook exactly as MyST-NB reads it during the build (so that the cache matches)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    extensions = config().get("parse", {}).get("myst_enable_extensions", [])
    return read_myst_markdown_notebook(path.read_text(), config=MdParserConfig(enable_extensions=set(extensions)),
                                       add_source_map=True, path=path)


def execute(path: Path, timeout: int):
    """Run one chapter in its own folder, as the build does; returns (path, notebook, error, seconds)."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = read(path)
    result = single_nb_execution(notebook, cwd=str(path.parent), allow_errors=False, timeout=timeout,
                                 meta_override=True)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    return path, notebook, error, result.time


def one_thread() -> None:
    # two kernels on two cores: each gets one thread, instead of both fighting over both cores
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def main(argv: list[str] | None = None) -> int:
    global ROOT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="chapters executed at once (default: the number of cores)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book's folder (with _config.yml and _toc.yml)")
    parser.add_argument("--check", action="store_true",
                        help="execute nothing; list the chapters not in the cache and exit 1 if there are any")
    args = parser.parse_args(argv)
    ROOT = args.root.resolve()
    if not (ROOT / "_toc.yml").exists():
        parser.error(f"{ROOT} has no _toc.yml")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    folder = ROOT / "_build" / ".jupyter_cache"  # where _config.yml's execute: cache puts it
    folder.parent.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(folder))
    todo = []
    for path in chapters():
        try:
            cache.match_cache_notebook(read(path))
        except KeyError:
            todo.append(path)
    if not todo:
        print("execute_book: every chapter is in the execution cache")
        return 0
    if args.check:
        print("execute_book: not in the execution cache: " + ", ".join(str(p.relative_to(ROOT)) for p in todo))
        return 1
    # longest first (from earlier runs of the same page, else TYPICAL_SECONDS; a page never
    # timed counts as long), so that one long chapter does not start last and run alone
    last = {record.uri: (record.data or {}).get("execution_seconds", 0) for record in
            sorted(cache.list_cache_records(), key=lambda record: record.created)}
    todo.sort(key=lambda path: -last.get(str(path), TYPICAL_SECONDS.get(path.stem, float("inf"))))
    timeout = int(config().get("execute", {}).get("timeout", 900))
    jobs = min(args.jobs, len(todo))
    print(f"execute_book: {len(todo)} chapter(s) to execute, {jobs} at a time", flush=True)
    start = time.perf_counter()
    failed = []
    with ProcessPoolExecutor(max_workers=jobs, initializer=one_thread if jobs > 1 else None) as pool:
        futures = [pool.submit(execute, path, timeout) for path in todo]
        for done, future in enumerate(as_completed(futures), 1):
            path, notebook, error, seconds = future.result()
            name = path.relative_to(ROOT)
            if error is None:
                cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path), data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
                print(f"  [{done}/{len(todo)}] {name}: {seconds:.1f} s", flush=True)
            else:
                failed.append(name)
                print(f"  [{done}/{len(todo)}] {name}: failed ({error.splitlines()[0][:200]}); "
                      "the build will execute it again and show the error", flush=True)
    print(f"execute_book: done in {time.perf_counter() - start:.1f} s" +
          (f"; failed: {', '.join(map(str, failed))}" if failed else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
