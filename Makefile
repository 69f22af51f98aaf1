# The front door: `make run` serves a ready sandbox, `make test` proves it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export BHUKTANI_DATABASE_URL ?= sqlite:///./bhuktani.db
export BHUKTANI_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev run test test-sqlite lint clean soak

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Dependencies come from the lock files, checked against their hashes; the project itself
# (and in dev, the SDK of clients/python, which its tests call) is installed over them
# without resolving.
$(VENV)/.installed: requirements/run.txt pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --require-hashes -r requirements/run.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements/dev.txt pyproject.toml clients/python/pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -e . -e clients/python
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

# The lock files, written anew from pyproject.toml's ranges: run after changing a dependency.
LOCK_ARGS := -q --strip-extras --allow-unsafe --generate-hashes --no-emit-index-url --no-emit-find-links
.PHONY: lock
lock: | $(BIN)/activate
	$(BIN)/pip install -q pip-tools
	$(BIN)/pip-compile $(LOCK_ARGS) -o requirements/run.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_ARGS) --extra dev -c requirements/run.txt -o requirements/dev.txt pyproject.toml

dev: $(VENV)/.dev-installed

run: install
	$(BIN)/bhuktani migrate
	$(BIN)/bhuktani demo --base-url http://$(HOST):$(PORT)
	$(BIN)/bhuktani serve --host $(HOST) --port $(PORT)

lint: dev
	$(BIN)/ruff check src tests scripts bench clients/python
	$(BIN)/ruff format --check src tests scripts bench clients/python
	$(BIN)/mypy
	$(BIN)/mypy --strict clients/python/src

# The whole suite on SQLite and on the PostgreSQL of BHUKTANI_TEST_POSTGRES_URL, two
# processes at once; the long soak is `make soak`.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: lint
	$(BIN)/pytest $(PYTEST_ARGS) -m "not slow"

# Without PostgreSQL, by explicit choice.
test-sqlite: dev
	BHUKTANI_TEST_DATABASES=sqlite $(BIN)/pytest $(PYTEST_ARGS) -m "not slow"

# A new service group: its module, tests and fixtures, and its registry line
# (docs/DESIGN.md, "How to add a service group").
.PHONY: new-service
new-service: dev
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=<slug> [SINGLE_STEP=1]"; exit 2; }
	$(BIN)/python scripts/new_service.py $(NAME) $(if $(SINGLE_STEP),--single-step)

clean:
	rm -rf $(VENV) bhuktani.db bhuktani.db-wal bhuktani.db-shm .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The bank test at length: thousands of payments under faults and kills, on SQLite and
# PostgreSQL. BHUKTANI_SOAK_PAYMENTS scales it; BHUKTANI_BANK_SEED replays a run.
.PHONY: soak
soak: dev
	BHUKTANI_SOAK=1 $(BIN)/pytest -m slow -s tests/test_bank.py

# The benchmark against a ceiling (bench/README.md): about an hour; BENCH_QUICK=1 for a
# two-minute pass; more options through BENCH_ARGS (see .venv/bin/python bench/run.py -h).
# Then the books over a long history (bench/books.py; options through BOOKS_ARGS).
.PHONY: bench
bench: install
	$(BIN)/python bench/run.py $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)
	$(BIN)/python bench/books.py $(if $(BENCH_QUICK),--quick) $(BOOKS_ARGS)
