# `make demo` and `make test` work on a fresh clone: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint format lock clean

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

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
