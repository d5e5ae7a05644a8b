"""The battery of adversarial and malformed VAE submissions, each with its expected score and status.

``build(folder, released, out)`` writes every case as ``folder/<student>/<file>`` and returns
``{student: (expected total, expected status)}``. ``out`` is the grader's output folder, which
one case tries to write into. Used by tests/test_autograder.py (one grading run for all).
"""

from __future__ import annotations

import ast

import json
import random
from pathlib import Path

import nbformat

from autograder.plain_nbgrader import fill_answers, solution_answers
from autograder.units import load_unit
from tests.test_vae_assignment import WRONG

UNIT = load_unit("vae")
POINTS = {piece.name: piece.points for piece in UNIT.pieces}  # what each piece is worth, as declared
FULL = UNIT.points
WRONG_KL = WRONG["kl_without_half"][1].strip()  # loses the points of gaussian_kl


def _kl_with(body: str, wrong: bool = True) -> str:
    """A gaussian_kl whose body runs ``body`` first, then returns a wrong (or the right) KL."""
    factor = "" if wrong else "0.5 * "
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"def gaussian_kl(mu, logvar):\n{indented}\n    return {factor}(logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)\n"


def _in_piece(piece: str, body: str, solution: dict) -> str:
    """The solution of ``piece`` with ``body`` run at its start (after the signature, which may
    span several lines)."""
    lines = solution[piece].splitlines()
    function = next(node for node in ast.parse(solution[piece]).body if isinstance(node, ast.FunctionDef))
    first = function.body[0].lineno - 1  # the body's first line, 0-based
    indented = ["    " + line for line in body.strip().splitlines()]
    return "\n".join(lines[:first] + indented + lines[first:])


def build(folder: Path, released: nbformat.NotebookNode, out: Path) -> dict[str, tuple[float, str]]:
    solution = solution_answers("vae")
    expected: dict[str, tuple[float, str]] = {}

    def notebook(student: str, nb, name: str = "vae.ipynb", total: float = FULL, status: str = "ok") -> None:
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / student / name)
        expected[student] = (total, status)

    def raw(student: str, name: str, content: bytes, total: float, status: str) -> None:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / name).write_bytes(content)
        expected[student] = (total, status)

    def answers(**pieces: str):
        return fill_answers(released, {**solution, **pieces})

    # -- reference points ----------------------------------------------------------------------
    notebook("solution", answers())
    notebook("released", released, total=0.0)
    for name, (piece, code, kept) in WRONG.items():
        notebook(f"wrong_{name}", answers(**{piece: code.strip()}), total=FULL - POINTS[piece] + kept)

    # -- forging the verdict -------------------------------------------------------------------
    notebook("patch_allclose", answers(gaussian_kl=_kl_with("""
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
import numpy.testing
numpy.testing.assert_allclose = lambda *a, **k: None
""")), total=FULL - POINTS["gaussian_kl"])
    notebook("patch_builtins", answers(gaussian_kl=_kl_with("""
import builtins
builtins.abs = lambda x: 0.0
builtins.isinstance = lambda *a: True
builtins.len = lambda x: 16
""")), total=FULL - POINTS["gaussian_kl"], status="crashed")  # it breaks its own process: no credit for that piece, nothing else
    notebook("patch_grader_helpers", answers(gaussian_kl=_kl_with("""
import sys
for module in list(sys.modules.values()):
    for name in ("require", "close", "encode", "check", "verdict", "allclose"):
        if hasattr(module, name):
            try:
                setattr(module, name, lambda *a, **k: True)
            except Exception:
                pass
""")), total=FULL - POINTS["gaussian_kl"])
    notebook("eq_bool_override", answers(gaussian_kl="""
class Anything(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __bool__(self): return True
    def __abs__(self): return self
    def __sub__(self, other): return Anything(0.0)
    def item(self): return self
    @property
    def shape(self): return ()

def gaussian_kl(mu, logvar):
    return Anything(2.318)
"""), total=FULL - POINTS["gaussian_kl"])
    notebook("tensor_subclass", answers(gaussian_kl="""
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func.__name__ in ("allclose", "equal", "isfinite", "__eq__", "__bool__", "all"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})

def gaussian_kl(mu, logvar):
    return (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1).as_subclass(Liar)
"""), total=FULL - POINTS["gaussian_kl"])
    fake = {"check": "test_gaussian_kl_hidden", "passed": True, "points": 2, "done": True, "forbidden_called": []}
    notebook("fake_results", answers(gaussian_kl=_kl_with(f"""
import json, os, struct
frame = json.dumps({fake!r}).encode()
for fd in range(3, 64):
    try:
        os.write(fd, struct.pack(">I", len(frame)) + frame)
    except OSError:
        pass
for path in ({str(out / 'grades.csv')!r}, {str(out / 'journal.jsonl')!r}, "/tmp/grades.csv", "results.json"):
    try:
        with open(path, "a") as f:
            f.write("solution,3,3,3,3,12,12,ok\\n")
    except OSError:
        pass
""")), total=FULL - POINTS["gaussian_kl"])

    # -- edited, deleted, duplicated, reordered cells; renamed; format variants ----------------
    stripped = answers()
    for cell in stripped.cells:
        cell.metadata = {}  # VS Code / Colab drop nbgrader's metadata
    notebook("metadata_stripped", stripped)
    reordered = answers()
    code_cells = [c for c in reordered.cells if c.cell_type == "code"]
    random.Random(0).shuffle(code_cells)
    reordered.cells = code_cells
    notebook("cells_reordered", reordered)
    duplicated = answers()
    first_kl = next(i for i, c in enumerate(duplicated.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "gaussian_kl")
    wrong_cell = nbformat.from_dict(duplicated.cells[first_kl])
    wrong_cell.source = WRONG_KL
    duplicated.cells.insert(first_kl, wrong_cell)  # a wrong attempt first, the fixed one after: the last counts
    duplicated.cells.append(nbformat.from_dict(duplicated.cells[first_kl + 2]))  # the test cell twice
    notebook("cells_duplicated", duplicated)
    deleted = answers()
    deleted.cells = [c for c in deleted.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "reparameterize"
                     and not c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    # train_step's default reparam_fn=reparameterize then fails too, as it would in Jupyter
    notebook("cells_deleted", deleted, total=FULL - POINTS["reparameterize"] - POINTS["train_step"])
    edited_tests = answers(gaussian_kl=WRONG_KL)
    for cell in edited_tests.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.source = "print('all tests passed')"
            cell.metadata["nbgrader"]["points"] = 100
    notebook("test_cells_edited", edited_tests, total=FULL - POINTS["gaussian_kl"])
    notebook("renamed", answers(), name="vae (1) - Copy.ipynb")
    notebook("nbformat_v3", nbformat.v4.convert.downgrade(answers()))
    variant = json.loads(nbformat.writes(answers()))
    variant["nbformat_minor"] = 0
    for cell in variant["cells"]:
        cell.pop("id", None)
        cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    raw("nbformat_minor_variant", "vae.ipynb", json.dumps(variant).encode(), FULL, "ok")
    text = nbformat.writes(answers())
    raw("invalid_json", "vae.ipynb", text[: len(text) // 2].encode(), 0.0, "invalid")
    raw("empty_file", "vae.ipynb", b"", 0.0, "invalid")
    python = "import math\nimport torch\nimport torch.nn.functional as F\n\n" + "\n\n".join(solution.values()) + "\n"
    raw("python_file", "vae.py", python.encode(), FULL, "ok")
    raw("pdf", "vae.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n", 0.0, "invalid")
    (folder / "missing").mkdir(parents=True, exist_ok=True)
    expected["missing"] = (0.0, "missing")

    # -- resources: time, memory, processes, exits, output -------------------------------------
    notebook("infinite_loop", answers(reparameterize="def reparameterize(mu, logvar):\n    while True:\n        pass\n"),
             total=FULL - POINTS["reparameterize"], status="timeout")
    # the address-space limit stops both before they touch their pages, so neither depends on
    # how fast a loaded machine can fill a gigabyte within the time limit
    notebook("unbounded_allocation", answers(negative_elbo=_in_piece("negative_elbo", """
hoard = []
while True:
    hoard.append(bytes(50 * 2**20))
""", solution)), total=FULL - POINTS["negative_elbo"], status="memory")
    notebook("unbounded_tensors", answers(reparameterize=_in_piece("reparameterize", """
hoard = []
while True:
    hoard.append(torch.empty(50 * 2**20, dtype=torch.uint8))
""", solution)), total=FULL - POINTS["reparameterize"], status="memory")
    notebook("fork_bomb", answers(train_step=_in_piece("train_step", """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
""", solution)), total=FULL - POINTS["train_step"], status="timeout")
    notebook("sys_exit", answers(gaussian_kl=_kl_with("import sys\nsys.exit(0)", wrong=False)), total=FULL - POINTS["gaussian_kl"], status="crashed")
    notebook("os_exit", answers(reparameterize=_in_piece("reparameterize", "import os\nos._exit(0)", solution)), total=FULL - POINTS["reparameterize"], status="crashed")
    notebook("kills_itself", answers(negative_elbo=_in_piece("negative_elbo", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", solution)),
             total=FULL - POINTS["negative_elbo"], status="crashed")
    notebook("prints_megabytes", answers(gaussian_kl=_kl_with("""
import sys
print("x" * 5_000_000)
sys.stderr.write("y" * 5_000_000)
""", wrong=False)))
    notebook("stderr_warnings", answers(gaussian_kl=_kl_with("""
import sys, warnings
warnings.warn("a UserWarning on stderr", UserWarning)
print("something on stderr", file=sys.stderr)
""", wrong=False)))
    # a toplevel sys.exit() or endless loop outside the graded functions is never executed
    top_level = answers()
    top_level.cells.append(nbformat.v4.new_code_cell("import sys\nwhile True:\n    pass\nsys.exit(1)"))
    notebook("toplevel_loop_and_exit", top_level)

    # -- reading what it must not, the network -------------------------------------------------
    secrets = ["/work/main/solutions/vae/vae.ipynb", str(folder / "solution" / "vae.ipynb"),
               str(Path(__file__).resolve().parents[1] / "autograder" / "units" / "vae.py"), str(out / "gradebook.db")]
    notebook("reads_secrets", answers(gaussian_kl=f"""
def gaussian_kl(mu, logvar):
    for path in {secrets!r}:
        try:
            open(path).read(1)
            return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)  # right only if a read worked
        except OSError:
            pass
    return (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)
"""), total=FULL - POINTS["gaussian_kl"])
    notebook("network", answers(reparameterize=_in_piece("reparameterize", """
import socket
try:
    socket.create_connection(("1.1.1.1", 80), timeout=1)
except OSError:
    return mu  # the right answer only with a network
""", solution)), total=FULL - POINTS["reparameterize"])

    # -- forbidden shortcuts --------------------------------------------------------------------
    notebook("forbidden_library_kl", answers(gaussian_kl="def gaussian_kl(mu, logvar):\n    return reference.gaussian_kl(mu, logvar)\n"), total=FULL - POINTS["gaussian_kl"])
    notebook("forbidden_disguised", answers(gaussian_kl="""
def gaussian_kl(mu, logvar):
    d = torch.distributions
    kl = getattr(d, "kl_" + "divergence")
    return kl(d.Normal(mu, (0.5 * logvar).exp()), d.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
"""), total=FULL - POINTS["gaussian_kl"])
    notebook("forbidden_import", answers(train_step="from gencore.vae import train_step"), total=FULL - POINTS["train_step"])
    return expected
