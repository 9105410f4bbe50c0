# Vanishing Tails — the two commands a reader needs:
#   make book   build the HTML book at the `book` scale into _build/html
#   make test   lint (ruff) and the whole test suite (library, chapters through papermill at `smoke`,
#               null controls, strict book build)
# Both create .venv and install the pinned environment (constraints.txt) first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The scale: an explicit SCALE=... wins, else $$VANISHING_TAILS_SCALE, else book (the runner's rule).
SCALE  ?=
SCALE_ARG := $(if $(SCALE),--scale $(SCALE))
# One BLAS/torch thread per process: the test suite runs two workers on two cores.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYTHONHASHSEED=0

.PHONY: book test lint install reproduce list bench clean linkcheck notebooks

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,test]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (vanishing-tails)" > /dev/null
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(PY) -m vanishing_tails book $(SCALE_ARG)

# ruff on the library, tests and benchmarks, and on every chapter's code cells.
lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks
	$(VENV)/bin/ruff format --check lib tests benchmarks
	$(PY) -m vanishing_tails.book.lint

test: lint
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadgroup -q

reproduce: $(STAMP)
	$(PY) -m vanishing_tails reproduce $(SCALE_ARG)

list: $(STAMP)
	$(PY) -m vanishing_tails list

# Every external link of the built book (references' DOIs and arXiv ids included). Needs the
# network; non-blocking: a dead link is reported in _build/linkcheck/output.txt, never an error.
linkcheck: book
	-$(VENV)/bin/jupyter-book build _build/stage --builder linkcheck --path-output _build/linkcheck

# The notebooks the Binder and Colab buttons open (repository.path_to_book in _config.yml):
# every page with code as .ipynb whose first cell installs the library where it is missing.
notebooks: $(STAMP)
	$(PY) -c "import sys; from vanishing_tails.book.build import notebooks_command as c; sys.exit(c())"

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf _build
