"""The grader's structure: declarations, the verdict toolkit, the source notebook kept in step
with the declarations, the hidden-test cell's footprint in a student's kernel, and no import
cycles in ``autograder/``. Fast: nothing here grades a submission."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from autograder import ROOT
from autograder.assignment import read_source, sync_test_cells
from autograder.spec import DeclarationError, Piece, Unit, hidden, visible
from autograder.units import check_unit, load_unit, names
from autograder.verdicts import CheckFailed, assert_close, close, scalar, tensor

PACKAGE = ROOT / "autograder"


# -- import graph --------------------------------------------------------------------------------


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (at any depth of the code, function-level
    imports included; importing ``a.b`` runs the package ``a`` first, so both count)."""
    modules = {}
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join((package, *parts))
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the target and every package above it
                    prefix = ".".join(parts[:i])
                    if prefix in modules and prefix != name:
                        edges.add(prefix)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node.rpartition(".")[0] and node in graph.get(nxt, ()):
                pass  # a package importing its own submodule that imports the package: counted below
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.sub import c\n")  # a function-level import counts
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from .. import a\n")
    cycle = find_cycle(import_graph(package, "pkg"))
    assert cycle is not None and set(cycle) >= {"pkg.a", "pkg.b", "pkg.sub.c"}
    (package / "sub" / "c.py").write_text("import json\n")
    assert find_cycle(import_graph(package, "pkg")) is None


def test_autograder_has_no_import_cycles():
    graph = import_graph(PACKAGE, "autograder")
    assert "autograder.grade" in graph and "autograder.units.vae" in graph
    assert find_cycle(graph) is None, f"import cycle in autograder/: {' -> '.join(find_cycle(graph))}"


def test_sandbox_side_files_import_nothing_of_the_grader():
    graph = import_graph(PACKAGE, "autograder")
    assert graph["autograder.worker"] == set() and graph["autograder.wire"] == set()
    for unit in names():
        assert graph[f"autograder.units.{unit}_probes"] == set(), unit


# -- the hidden-test cell in a student's kernel ----------------------------------------------------

KERNEL = textwrap.dedent('''
    import json, random, sys, warnings
    import numpy as np, torch
    from autograder.plain_nbgrader import solution_answers
    from autograder.assignment import setup_source
    from autograder.units import load_unit
    namespace = {}
    exec(setup_source(load_unit("vae")), namespace)
    answers = solution_answers("vae")
    if WRONG:
        answers["gaussian_kl"] = answers["gaussian_kl"].replace("0.5 *", "1.0 *")
    for code in answers.values():
        exec(code, namespace)
    loaded = set(sys.modules)
    torch.set_num_threads(2)
    random.seed(7); np.random.seed(7); torch.manual_seed(7)
    warnings.simplefilter("default")
    before = (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist(),
              torch.get_num_threads(), list(warnings.filters), torch.get_default_dtype(), torch.is_grad_enabled())
    from autograder.notebook import run_in_notebook
    try:
        run_in_notebook("vae", "test_gaussian_kl_hidden", namespace)
        message = None
    except AssertionError as failure:
        message = str(failure)
    after = (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist(),
             torch.get_num_threads(), list(warnings.filters), torch.get_default_dtype(), torch.is_grad_enabled())
    new = sorted(m for m in set(sys.modules) - loaded if m.startswith(("autograder", "nbgrader")))
    print(json.dumps({"same": before == after, "message": message, "new": new}))
''')


@pytest.mark.parametrize("wrong", [False, True])
def test_a_hidden_cell_imports_only_what_it_needs_and_leaves_the_kernel_as_it_was(wrong):
    result = subprocess.run([sys.executable, "-c", f"WRONG = {wrong}\n" + KERNEL], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same"], "run_in_notebook changed the kernel's seeds, threads, warning filters, dtype or grad mode"
    assert set(report["new"]) <= {"autograder.notebook", "autograder.wire", "autograder.verdicts",
                                  "autograder.units.vae", "autograder.units.vae_probes"}, report["new"]
    if wrong:
        assert report["message"] and "reference" in report["message"]
    else:
        assert report["message"] is None


# -- declarations -------------------------------------------------------------------------------


def _probes_module(tmp_path, body: str):
    import importlib.util

    path = tmp_path / "fake_probes.py"
    path.write_text(textwrap.dedent(body))
    spec = importlib.util.spec_from_file_location("fake_probes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unit(probes, library="gencore.vae", probe_name="answer"):
    @visible(getattr(probes, probe_name))
    def shown(d):
        """the answer is 42"""

    @hidden(getattr(probes, probe_name), points=5)
    def secret(d):
        """the answer is still 42"""

    @hidden(getattr(probes, probe_name))
    def secret_again(d):
        """once more"""

    return Unit("fake", library, "book/x.html", (Piece("f", "F", "f", (shown, secret, secret_again)),))


def test_a_declaration_derives_grade_ids_points_and_descriptions(tmp_path):
    unit = _unit(_probes_module(tmp_path, "def answer(student, ref):\n    return 42\n"))
    assert [(c.grade_id, c.points, c.visible, c.description) for c in unit.checks()] == [
        ("test_f_visible", 1.0, True, "the answer is 42"),
        ("test_f_hidden", 5.0, False, "the answer is still 42"),
        ("test_f_hidden_2", 2.0, False, "once more"),
    ]
    assert unit.notebook == "fake" and unit.points == 8.0
    with pytest.raises(DeclarationError, match="docstring"):
        visible(lambda s, r: 0)(lambda d: None)
    with pytest.raises(TypeError, match="library"):
        Unit("fake", chapter="book/x.html", pieces=())  # the reference module cannot be left out


def test_check_unit_names_what_is_wrong(tmp_path):
    good = _probes_module(tmp_path, "def answer(student, ref):\n    return 42\n")
    check_unit(_unit(good), good)
    with pytest.raises(DeclarationError, match="gencore.nothing_here"):
        check_unit(_unit(good, library="gencore.nothing_here"), good)
    nested = _probes_module(tmp_path, "def outer():\n    def answer(student, ref):\n        return 42\n    return answer\n"
                                      "inner = outer()\n")
    with pytest.raises(DeclarationError, match="not a top-level function"):
        check_unit(_unit(nested, probe_name="inner"), nested)
    one_argument = _probes_module(tmp_path, "def answer(student):\n    return 42\n")
    with pytest.raises(DeclarationError, match=r"\(student, ref\)"):
        check_unit(_unit(one_argument), one_argument)
    leaky = _probes_module(tmp_path, "def answer(student, ref):\n    from autograder.units import vae\n    return 42\n")
    with pytest.raises(DeclarationError, match="must not import the grader"):
        check_unit(_unit(leaky), leaky)
    with pytest.raises(DeclarationError, match="write autograder/units/homework3.py"):
        load_unit("homework3")


def test_every_unit_loads_with_a_visible_and_a_hidden_check_per_piece():
    for name in names():
        unit = load_unit(name)
        assert unit.library.startswith("gencore."), name
        for piece in unit.pieces:
            ids = [c.grade_id for c in piece.checks]
            assert f"test_{piece.name}_visible" in ids and f"test_{piece.name}_hidden" in ids, (name, ids)


# -- the verdict toolkit --------------------------------------------------------------------------


def test_close_follows_the_tolerance_policy():
    expected = torch.tensor([1.0, 0.0, -3.0], dtype=torch.float64)
    assert close(expected * (1 + 5e-6), expected)  # relative 5e-6 < RTOL
    assert not close(expected * (1 + 5e-5), expected)  # relative 5e-5 > RTOL
    assert close(torch.tensor([1.0, 5e-7, -3.0]), expected)  # an exact zero within ATOL
    assert not close(torch.tensor([1.0, 5e-6, -3.0]), expected)
    assert not close(expected[:2], expected)  # shapes must agree, no broadcasting
    assert not close(expected.reshape(3, 1), expected)


def test_toolkit_messages_name_what_came():
    with pytest.raises(CheckFailed, match="an object of type Generator"):
        tensor({"__object__": "Generator"}, "f(x)")
    with pytest.raises(CheckFailed, match="got None"):
        tensor(None, "f(x)")
    assert tensor(2.5, "f(x)").shape == () and tensor(np.ones((2, 3), np.float32), "f(x)").dtype == torch.float64
    with pytest.raises(CheckFailed, match=r"0-d tensor"):
        scalar(np.ones(1), "loss", zero_dim=True)
    assert scalar(np.ones(1), "loss") == 1.0
    with pytest.raises(CheckFailed, match="not all finite"):
        assert_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), "f(x)")
    with pytest.raises(CheckFailed, match=r"expected \[0.0, 1.0\], got \[0.5, 1.0\]"):
        assert_close(np.array([0.5, 1.0]), np.array([0.0, 1.0]), "f(x)")


# -- the source notebook and the declaration ------------------------------------------------------


def test_sync_writes_points_hidden_cells_and_stated_points_and_refuses_undeclared_cells():
    unit = load_unit("vae")
    notebook = read_source(unit)
    assert sync_test_cells(unit, nbformat.from_dict(notebook)) == []
    edited = nbformat.from_dict(notebook)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in edited.cells]
    edited.cells[ids.index("test_gaussian_kl_visible")].metadata.nbgrader.points = 4
    del edited.cells[ids.index("test_reparameterize_hidden")]
    changes = sync_test_cells(unit, edited)
    assert any("points 4 -> 1" in c for c in changes) and any("added the hidden test cell test_reparameterize_hidden" in c for c in changes)

    def content(nb):
        return [(c.cell_type, c.source, json.dumps(c.metadata, sort_keys=True)) for c in nb.cells]

    assert content(edited) == content(notebook)  # restored where it was, as it was
    # one more hidden check on a piece: its cell, and the points the text states, follow
    first = unit.pieces[0]
    extra = hidden(first.checks[1].probe, description="more")(lambda d: None)
    bigger = Unit(unit.assignment, unit.library, unit.chapter,
                  (Piece(first.name, first.title, first.anchor, (*first.checks, extra)), *unit.pieces[1:]))
    added = bigger.pieces[0].checks[-1].grade_id
    assert added == f"test_{first.name}_hidden_{sum(not c.visible for c in first.checks) + 1}"
    grown = nbformat.from_dict(notebook)
    changes = sync_test_cells(bigger, grown)
    total = first.points + 2
    assert f"added the hidden test cell {added} (2 points)" in changes
    assert any(f"heading above {first.name} says {total:g} points" in c for c in changes)
    assert any(f"overview table gives {first.name} {total:g} points" in c for c in changes)
    assert f"({total:g} points)" in "".join(c.source for c in grown.cells if c.cell_type == "markdown")
    stray = nbformat.from_dict(notebook)
    stray.cells[ids.index("test_train_step_hidden")].metadata.nbgrader.grade_id = "test_extra"
    with pytest.raises(DeclarationError, match="test_extra is declared nowhere"):
        sync_test_cells(unit, stray)
