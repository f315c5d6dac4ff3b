# Colsum's tooling. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXECUTORS ?= 2
PORT ?= 8000
# Test files run in 3 processes (pytest-xdist), each file in one: the tests mostly wait on
# the processes they start, so 3 fit on 2 cores (6.6 min against 13 in one). PARALLEL= for one.
PARALLEL ?= -n 3 --dist loadfile
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast lint format bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: install it with 'sudo apt-get install python3-venv'"; exit 1; }
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: install
	@mkdir -p data && cp -n sample.csv data/ 2>/dev/null || true
	PORT=$(PORT) $(BIN)/python scripts/services.py --announce -- \
	  $(BIN)/python scripts/supervise.py -c executor=$(EXECUTORS)

test: install
	$(BIN)/python scripts/services.py --optional --tool docker-compose \
	  --tool chromium --tool chromedriver=chromium-driver -- $(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python scripts/services.py -- $(BIN)/python bench/engines.py --e2e $(BENCH_ARGS)
	$(BIN)/python scripts/services.py -- $(BIN)/python bench/s3_vs_local.py

chaos: install
	$(BIN)/python scripts/services.py -- $(BIN)/python scripts/chaos.py --restart-broker $(CHAOS_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache *.egg-info
