# The two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup systems demo test lint faults bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The real systems the launcher tests use (OpenMPI, Slurm, Grid Engine, sshd, tcpdump):
# installed with apt when run as root; otherwise those tests skip and say why.
systems:
	./.ci/install-systems.sh

demo: setup
	$(PY) examples/demo.py

lint: setup
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/mypy

test: lint systems
	$(VENV)/bin/pytest

# The fault tests (@pytest.mark.fault), then their rows and results into the tables of
# docs/reliability.md (tests/fault_table.py). The tables are written even when a test
# fails (its row says so); the target then fails too.
faults: setup
	$(VENV)/bin/pytest -m fault; status=$$?; $(PY) tests/fault_table.py && exit $$status

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/compare.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
