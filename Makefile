# The two commands: `make book` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# pytest workers: one per core by default
WORKERS ?= auto
# chapters executed at once by `make book` (scripts/execute_book.py): one per core by default
BOOK_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: setup book test release student lab bench clean format

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml autograder/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

## book: build the book into _build/html, executing every chapter (BOOK_JOBS at once); warnings are errors
book: $(STAMP)
	GENCORE_PROGRESS=0 $(BIN)/python scripts/execute_book.py --jobs $(BOOK_JOBS)
	GENCORE_PROGRESS=0 $(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going

## test: the whole test suite (models at the smoke scale)
test: $(STAMP)
	GENCORE_SCALE=smoke $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --durations=15

## format: format the code cells of the chapters and solution notebooks to the page width (ruff.toml); then `make release`
format: $(STAMP)
	$(BIN)/python scripts/format_code.py

## release: regenerate the student notebooks in notebooks/ from solutions/
release: $(STAMP)
	$(BIN)/python -m autograder release --all

## student: the student edition (book, notebooks, gencore; no solutions, no grader) in _build/student
student: $(STAMP)
	rm -rf _build/student
	$(BIN)/python -m autograder publish _build/student

## lab: JupyterLab on the assignment notebooks
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## bench: time the solution notebook, the test suite and a clean book build (see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/timings.py

clean:
	rm -rf _build
