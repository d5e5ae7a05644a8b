"""Execute every chapter of the book at a given scale, several at once, and record how each went.

``make book`` executes the chapters one after another; at ``full`` on a GPU they are long, and a
short GPU lease cannot wait for them in turn. This script reads each chapter as MyST-NB does
(``book/*.md`` with code cells), runs it with ``nbclient`` in a kernel of its own, all chapters
in parallel until a deadline, and writes ``OUT/chapters.json`` and ``OUT/chapters.md``: per
chapter the status (``ok``, ``error`` with the failing cell's error, ``timeout``), the seconds,
and the cells that wrote to stderr (the strict book build fails on those).

Usage: ``GENCORE_SCALE=full python bench/execute_chapters.py --out DIR [--deadline 300] [--jobs 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
from myst_nb.core.read import read_myst_markdown_notebook
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    """The book's chapters that hold code cells, in the order of the table of contents."""
    order = [line.split("file:")[1].strip() for line in (ROOT / "_toc.yml").read_text().splitlines() if "file:" in line]
    paths = [ROOT / f"{name}.md" for name in order if name.startswith("book/")]
    return [p for p in paths if p.exists() and "{code-cell}" in p.read_text()]


def execute(path: Path, deadline: float) -> dict:
    """Run one chapter in its own kernel until it ends or the deadline passes."""
    notebook = read_myst_markdown_notebook(path.read_text(), path=path)
    client = NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            timeout_func=lambda _cell: max(1, int(deadline - time.time())))  # one deadline for all
    started = time.time()
    record = {"chapter": path.stem, "cells": sum(c.cell_type == "code" for c in notebook.cells)}
    try:
        client.execute()
        record["status"] = "ok"
    except (CellTimeoutError, TimeoutError):
        record["status"] = "timeout"
    except CellExecutionError as error:
        record["status"], record["error"] = "error", str(error).strip().splitlines()[-1][:300]
    except DeadKernelError as error:
        record["status"], record["error"] = "error", f"kernel died: {error}"[:300]
    record["seconds"] = round(time.time() - started, 1)
    done = [c for c in notebook.cells if c.cell_type == "code" and c.get("execution_count")]
    record["cells_run"] = len(done)
    record["stderr_cells"] = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and any(
        o.get("name") == "stderr" for o in c.get("outputs", []))]
    return record


def write(out: Path, records: list[dict], scale: str, deadline_s: float) -> None:
    (out / "chapters.json").write_text(json.dumps(records, indent=2) + "\n")
    lines = [f"Chapters executed in parallel at GENCORE_SCALE={scale}, deadline {deadline_s:.0f} s "
             f"(`bench/execute_chapters.py`).", "",
             "| chapter | status | seconds | code cells run | cells writing to stderr | error |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for r in records:
        lines.append(f"| {r['chapter']} | {r['status']} | {r['seconds']} | {r['cells_run']} of {r['cells']} | "
                     f"{r['stderr_cells'] or '-'} | {r.get('error', '').replace('|', '/')} |")
    (out / "chapters.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds from now; unfinished chapters time out")
    parser.add_argument("--jobs", type=int, default=8, help="chapters running at once")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GENCORE_PROGRESS", "0")
    deadline = time.time() + args.deadline
    paths = chapters()
    records: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:  # a process each: kernel clients share no sockets
        for future in as_completed([pool.submit(execute, p, deadline) for p in paths]):
            records.append(record := future.result())
            write(args.out, records, os.environ.get("GENCORE_SCALE", "default"), args.deadline)
            print(f"{record['chapter']}: {record['status']} in {record['seconds']} s "
                  f"({record['cells_run']} of {record['cells']} cells) {record.get('error', '')}", flush=True)


if __name__ == "__main__":
    main()
