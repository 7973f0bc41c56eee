# make run: install everything and start the demo. make test: the whole test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install system-deps run test lint bench bench-chat bench-sale bench-gifts bench-media \
	bench-latency bench-fsync bench-scale clean

install: system-deps $(VENV)/.installed node_modules/.installed

# Chromium, iproute2 and util-linux when missing (apt-get as root; otherwise the exact command).
system-deps:
	@scripts/system-deps

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
	$(VENV)/bin/lint-imports --no-cache

# Every benchmark, short: figures printed, JSON under bench-results/. Each step is bounded by
# `timeout` and runs even when an earlier one failed (make bench then fails at the end); the
# WebRTC ones (media fan-out, edge latency) run in a loopback-only namespace. One step alone:
# make bench-media. BENCH_SECONDS=30 make bench for steadier figures.
BENCH_SECONDS ?= 10
BENCH_STEPS   := bench-chat bench-sale bench-gifts bench-media bench-latency bench-fsync
BENCH_TIMEOUT := timeout --kill-after=20

bench: install
	@$(MAKE) --no-print-directory -k $(BENCH_STEPS)

bench-results:
	mkdir -p $@

bench-chat: install | bench-results
	$(BENCH_TIMEOUT) 600 $(VENV)/bin/live loadtest chat --viewers 1000 --rate 20 \
		--duration $(BENCH_SECONDS) --drain 5 --nodes 1 2 --reference --json bench-results/chat.json

bench-sale: install | bench-results
	@command -v redis-benchmark >/dev/null || echo "bench: redis-benchmark not found \
	(apt-get install redis-tools): the direct baseline uses the Python client instead"
	$(BENCH_TIMEOUT) 600 $(VENV)/bin/live loadtest sale --attempts 200000 \
		--duration $(BENCH_SECONDS) --users 5000 --quantity 10000 --per-user-limit 2 --nodes 1 2 \
		--via http socket --json bench-results/sale.json

# Gifts/s on one node core (a burst from 1,000 Socket.IO gifters), the wallet script alone, and
# gift event delivery to 5,000 viewers.
bench-gifts: install | bench-results
	$(BENCH_TIMEOUT) 600 $(VENV)/bin/live loadtest gifts --gifters 1000 --attempts 10000 \
		--viewers 5000 --gift-rate 4 --duration $(BENCH_SECONDS) --json bench-results/gifts.json

bench-media: install | bench-results
	$(BENCH_TIMEOUT) 600 scripts/loopback-only $(VENV)/bin/live loadtest media --viewers 50 \
		--seconds $(BENCH_SECONDS) --modes forward,aiortc,janus1 --skip-unavailable \
		--json bench-results/media.json

bench-latency: install | bench-results
	$(BENCH_TIMEOUT) 300 scripts/loopback-only $(VENV)/bin/live loadtest latency --viewers 2 \
		--seconds $(BENCH_SECONDS) --json bench-results/latency.json

bench-fsync: install | bench-results
	$(BENCH_TIMEOUT) 300 $(VENV)/bin/live loadtest fsync --calls 50000 --json bench-results/fsync.json

# Not in `make bench`: several minutes (media over 1, 2 and 3 nodes, chat over 1-3 nodes, sales on
# one Valkey and a 3-master cluster); see docs/benchmarks.md and docs/capacity.md.
bench-scale: install | bench-results
	$(BENCH_TIMEOUT) 1200 scripts/loopback-only $(VENV)/bin/live loadtest scale --nodes 1 2 3 \
		--rooms 3 --viewers-per-room 24 --join-rate 40 --seconds $(BENCH_SECONDS) \
		--chat-viewers 1500 --chat-rate 10 40 --json bench-results/scale.json

clean:
	rm -rf $(VENV) node_modules var bench-results
