# Fresh machine with only Python 3.11+: `make run` or `make test` sets everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,gcp]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/setlist run

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: $(STAMP)
	$(BIN)/setlist ui

clean:
	rm -rf $(VENV) .setlist
