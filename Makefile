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
CONTRACTS := $(wildcard sandbox/contracts/*.sol)
CONTRACTS_STAMP := $(TOOLS)/contracts/.built
CONFIG ?= $(CURDIR)/config/sandbox.yaml
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration chaos lint docs bench clean reset

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(PY_STAMP) $(ANVIL_STAMP) $(CONTRACTS_STAMP) ## Create .venv (editable, dev extras), install anvil and solc locally, compile the contracts

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

$(CONTRACTS_STAMP): $(CONTRACTS) sandbox/contracts/build.py $(PY_STAMP) $(ANVIL_STAMP)
	$(BIN)/python -m sandbox.contracts.build --out $(TOOLS)/contracts
	@touch $@

run: install ## Start the whole system under supervisord (Ctrl-C stops it)
	@mkdir -p run/logs run/state
	POLYARB_CONFIG=$(CONFIG) $(BIN)/supervisord -n -c supervisord.conf

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
