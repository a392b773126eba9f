# `make demo` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint format lock clean bench

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/checkoutlab demo

serve: install
	$(BIN)/checkoutlab serve

test: install
	$(BIN)/ruff check checkoutlab tests
	node --test --test-reporter=dot widget/tests
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check checkoutlab tests
	$(BIN)/ruff format --check checkoutlab tests

format: install
	$(BIN)/ruff format checkoutlab tests
	$(BIN)/ruff check --fix checkoutlab tests

# Re-pin after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

# Benchmarks (benchmarks/RESULTS.md, plots next to it): about 10 minutes on 2 cores.
# Installs the `bench` extra (Vowpal Wabbit, matplotlib) and, as root, Debian's wrk.
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_PG ?= postgresql://postgres@127.0.0.1:5432/bench_tmp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "wrk is needed for the HTTP benchmarks: apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/decision_path.py --pg-url $(BENCH_PG)
	$(BIN)/python benchmarks/http_profile.py --pg-url $(BENCH_PG)
	$(BIN)/python benchmarks/event_ingestion.py --pg-url $(BENCH_PG)
	$(BIN)/python benchmarks/fraud_training.py
	$(BIN)/python benchmarks/bandit_throughput.py
	$(BIN)/python benchmarks/stats_engine.py --pg-url $(BENCH_PG)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
