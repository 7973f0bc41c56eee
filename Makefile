# make run: install everything and start the demo. make test: the whole test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install run test lint bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	$(VENV)/bin/live demo

# Tests run in a network namespace holding only loopback (when the system allows it), so no
# WebRTC candidate, browser request or stray client can reach beyond 127.0.0.0/8.
test: install
	scripts/loopback-only $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/live loadtest chat --viewers 2000 --rate 20 --duration 20 --nodes 1 2 --reference \
		--json bench-results/chat.json
	$(VENV)/bin/live loadtest sale --attempts 200000 --duration 20 --users 5000 --quantity 10000 \
		--per-user-limit 2 --nodes 1 2 --json bench-results/sale.json

clean:
	rm -rf $(VENV) node_modules var bench-results
