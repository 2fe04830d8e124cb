# Loyalist: `make run` serves the portal on http://127.0.0.1:5000; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app.py
PYTEST_ARGS ?=

.PHONY: run test lint setup setup-dev demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@if command -v npm >/dev/null; then npm ci --silent --no-audit --no-fund; else echo "npm not found: SMS contract tests will be skipped"; fi

demo: setup
	$(BIN)/flask demo

run: demo
	$(BIN)/gunicorn --config gunicorn.conf.py "app:create_app()"

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules instance
