# Loyalist: `make run` serves the portal on http://127.0.0.1:5000; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app.py
PYTEST_ARGS ?=

.PHONY: run test lint setup setup-dev demo clean

$(BIN)/python:
	@echo "==> Creating the virtual environment in $(VENV)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The runtime packages are installed again only when requirements.txt changes (the stamp file says when).
setup: $(VENV)/.requirements-installed

$(VENV)/.requirements-installed: requirements.txt | $(BIN)/python
	@echo "==> [1/3] Installing the runtime packages into $(VENV) (the first time takes a few minutes)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	@touch $@

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@if command -v npm >/dev/null; then npm ci --silent --no-audit --no-fund; else echo "npm not found: SMS contract tests will be skipped"; fi

demo: setup
	@echo "==> [2/3] Creating the database, loading the demo store and training the models (flask demo)"
	$(BIN)/flask demo

run: demo
	@echo "==> [3/3] Serving http://$${BIND:-127.0.0.1:5000} (another address or port: BIND=0.0.0.0:8080 make run; Ctrl-C stops)"
	$(BIN)/gunicorn --config gunicorn.conf.py "app:create_app()"

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules instance
