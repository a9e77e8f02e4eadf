# The two front doors: `make run` (the whole fleet on a laptop) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test drill lint format bench bench-fire bench-timing bench-api clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/python scripts/devstack.py run

# PYTEST_ARGS lets you narrow a run: make test PYTEST_ARGS="tests/unit -x"
test: install
	$(BIN)/python scripts/devstack.py test $(PYTEST_ARGS)

# The fault drills alone, with their figures printed (they also run in `make test`).
drill: install
	$(BIN)/python scripts/devstack.py test tests/faults -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/beat.py

# A herd through the real fleet roles on PostgreSQL (BENCH_DATABASE_URL), beside the empty-task ceiling.
bench-fire: install
	$(BIN)/python benchmarks/fire_path.py

# Every API list, filter, search, deep page and admin changelist at 1M triggers / 10M runs (PostgreSQL).
bench-api: install
	$(BIN)/python benchmarks/api.py

# What one next slot costs where DST makes it hard (pure CPU, no services), beside the same expression in UTC.
bench-timing: install
	DEBUG=1 $(BIN)/python benchmarks/timing.py

clean:
	rm -rf $(VENV) staticfiles var .pytest_cache test-artifacts
