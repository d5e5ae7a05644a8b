"""Time the three things the course promises to keep fast, on this machine, in one run.

1. every solution notebook (``solutions/<unit>/<unit>.ipynb``), end to end, at the ``small``
   scale (target: under 90 s each);
2. ``make test`` (target: under 20 minutes);
3. ``make book`` from a clean checkout, installation excluded (target: under 10 minutes):
   the repository is cloned to a temporary folder and built there with this ``.venv``'s
   ``jupyter-book``, with an empty execution cache.

Usage: ``make bench`` (or ``.venv/bin/python bench/timings.py [--skip-test] [--skip-book]``).
Results are printed and appended to ``bench/results.md`` with the machine's description.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def machine() -> str:
    import torch

    cpus = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {cpus} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def time_notebook(path: Path, scale: str) -> float:
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(GENCORE_SCALE=scale, GENCORE_PROGRESS="0")
    started = time.perf_counter()
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - started


def time_command(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-test", action="store_true", help="do not time `make test`")
    parser.add_argument("--skip-book", action="store_true", help="do not time the clean book build")
    parser.add_argument("--only", default=None, help="time only the solution notebooks whose unit contains this")
    args = parser.parse_args()

    rows = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        if args.only and args.only not in path.parent.name:
            continue
        seconds = time_notebook(path, "small")
        name = path.relative_to(ROOT)
        rows.append((f"{name} at GENCORE_SCALE=small", seconds, 90))
        print(f"{name}: {seconds:.1f} s", flush=True)

    if not args.skip_test:
        seconds = time_command(["make", "test"], ROOT)
        rows.append(("make test", seconds, 20 * 60))
        print(f"make test: {seconds:.1f} s", flush=True)

    if not args.skip_book:
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(tmp) / "course"
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
            # make book's two steps with this .venv: the chapters side by side, then the build
            execute = [str(BIN / "python"), str(ROOT / "scripts" / "execute_book.py"), "--root", str(clone)]
            build = [str(BIN / "jupyter-book"), "build", str(clone), "--warningiserror", "--nitpick", "--keep-going"]
            env = {"GENCORE_PROGRESS": "0", "GENCORE_SCALE": "small"}
            seconds = time_command(execute, clone, env) + time_command(build, clone, env)
            rows.append(("make book from a clean clone (small scale, install excluded)", seconds, 10 * 60))
            print(f"clean book build: {seconds:.1f} s", flush=True)
            seconds = time_command(execute, clone, env) + time_command(build, clone, env)
            rows.append(("make book again, nothing changed (cached)", seconds, 30))
            print(f"cached book build: {seconds:.1f} s", flush=True)

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp}: {machine()}\n", "| what | seconds | target |", "| --- | ---: | ---: |"]
    for what, seconds, target in rows:
        verdict = "" if target is None else (f"< {target} ok" if seconds < target else f"< {target} MISSED")
        lines.append(f"| {what} | {seconds:.1f} | {verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write(text)


if __name__ == "__main__":
    main()
