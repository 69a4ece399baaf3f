# PolyArb-X. `make run` and `make test` set everything up on a fresh machine
# that has only Python, Node and npm.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
ANVIL_VERSION := 1.7.1
SOLC_VERSION := 0.8.30
PY_STAMP := $(VENV)/.installed
ANVIL_STAMP := $(TOOLS)/.npm-anvil-$(ANVIL_VERSION)-solc-$(SOLC_VERSION)
UPLOT_VERSION := 1.6.32
WEB_STAMP := $(TOOLS)/.npm-uplot-$(UPLOT_VERSION)
CONTRACTS := $(wildcard sandbox/contracts/*.sol)
CONTRACTS_STAMP := $(TOOLS)/contracts/.built
CONFIG ?= $(CURDIR)/config/sandbox.yaml
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install browser run live paper doctor test test-unit test-integration chaos lint docs bench clean reset

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(PY_STAMP) $(ANVIL_STAMP) $(WEB_STAMP) $(CONTRACTS_STAMP) browser ## Create .venv (editable, dev extras), install anvil, solc and the dashboard's chart library locally, compile the contracts

$(PY_STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import zmq, msgspec, web3, websockets, coincurve, py_clob_client_v2, prometheus_client, pytest, hypothesis"
	@touch $@

$(ANVIL_STAMP):
	@mkdir -p $(TOOLS)
	@test -f $(TOOLS)/package.json || echo '{"private": true}' > $(TOOLS)/package.json
	cd $(TOOLS) && npm install --no-audit --no-fund --loglevel=error @foundry-rs/anvil@$(ANVIL_VERSION) solc@$(SOLC_VERSION)
	$(BIN)/python -c "from sandbox.chain import anvil_path; print('anvil:', anvil_path())" || \
	  $(PYTHON) -c "import pathlib,sys; sys.exit(0 if list(pathlib.Path('$(TOOLS)').glob('node_modules/@foundry-rs/anvil-*/bin/anvil')) else 1)"
	@touch $@

# The dashboard's chart library, served by the dashboard itself: nothing is fetched at run time.
$(WEB_STAMP):
	@mkdir -p $(TOOLS)
	@test -f $(TOOLS)/package.json || echo '{"private": true}' > $(TOOLS)/package.json
	cd $(TOOLS) && npm install --no-audit --no-fund --loglevel=error uplot@$(UPLOT_VERSION)
	@touch $@

# Debian's chromium and chromium-driver, for the dashboard's headless-browser test, when
# this machine lets us (root and apt-get); without them that test is skipped, except in CI.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver (the dashboard's browser test)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
	      >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; } \
	  || echo "chromium could not be installed: the dashboard's browser test will be skipped"; \
	else echo "no chromium/chromedriver (installing them needs root and apt-get): the dashboard's browser test will be skipped"; fi

$(CONTRACTS_STAMP): $(CONTRACTS) sandbox/contracts/build.py $(PY_STAMP) $(ANVIL_STAMP)
	$(BIN)/python -m sandbox.contracts.build --out $(TOOLS)/contracts
	@touch $@

run: install ## Start the whole system under supervisord (Ctrl-C stops it)
	@mkdir -p run/logs run/state
	@$(BIN)/polyarb --config $(CONFIG) keys init  # the bus's CurveZMQ keys, once: created when missing
	POLYARB_CONFIG=$(CONFIG) $(BIN)/supervisord -n -c supervisord.conf

LIVE_CONFIG ?= $(CURDIR)/config/polygon.yaml
live: install ## Trade for real (docs/going-live.md): polyarb doctor first, then only the trader's programs
	@mkdir -p run/live/logs run/live/state
	@$(BIN)/polyarb --config $(LIVE_CONFIG) keys init
	$(BIN)/polyarb --config $(LIVE_CONFIG) doctor
	@$(BIN)/polyarb supervisor-conf --live --out run/live/supervisord.conf
	POLYARB_CONFIG=$(LIVE_CONFIG) $(BIN)/supervisord -n -c run/live/supervisord.conf

PAPER_CONFIG ?= $(CURDIR)/config/paper.yaml
paper: install ## Paper trading on Polymarket's live data (docs/paper-trading.md): no wallet, nothing sent
	@mkdir -p run/paper/logs run/paper/state
	@$(BIN)/polyarb --config $(PAPER_CONFIG) keys init
	@$(BIN)/polyarb supervisor-conf --paper --out run/paper/supervisord.conf
	POLYARB_CONFIG=$(PAPER_CONFIG) $(BIN)/supervisord -n -c run/paper/supervisord.conf

doctor: install ## The preflight of a config (CONFIG=...): every check OK or FAIL with its fix
	$(BIN)/polyarb --config $(CONFIG) doctor

test: install ## Run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install ## Run the unit tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install ## Run the integration tests only
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

SEED ?= 1
CHAOS_SECONDS ?= 600
chaos: install ## The whole-system chaos run (10 min; SEED=N, CHAOS_SECONDS=S); report under run/chaos/
	$(BIN)/python -m tests.chaos --seconds $(CHAOS_SECONDS) --seed $(SEED)

lint: install ## Lint with ruff
	$(BIN)/ruff check .

docs: install ## Regenerate docs/configuration.md and docs/metrics.md from the code
	$(BIN)/python -m config.reference --write
	$(BIN)/python -m actors.cli.metrics_doc --write

bench: install ## Run the benchmarks; JSON results in bench/results/
	$(BIN)/python -m bench

clean: ## Remove the logs; keeps the sandbox world (see reset), .venv and .tools
	rm -rf run/logs

reset: install ## Wipe the sandbox world (chain state and run/state), after listing what goes
	$(BIN)/polyarb --config $(CONFIG) sandbox reset
