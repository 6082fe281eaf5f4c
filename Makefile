# Notebook Observatory — the two commands: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# HOST, PORT and DB are optional: given (`make run PORT=9000`), they become serve's --host/--port/--db; left out, the
# OBSERVATORY_HOST/PORT/DB variables or the defaults of collector/settings.py apply (defaults are written only there).
SERVE_FLAGS := $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) $(if $(DB),--db $(DB))
APT_PACKAGES := prometheus prometheus-alertmanager chromium

.PHONY: run test install install-test system-deps check-generated generate bench clean

## run: install, backfill 30 days of demo history, serve the collector with live demo traffic
run: install
	$(BIN)/observatory serve $(SERVE_FLAGS) --demo --demo-days 30

## test: install everything the tests need (pip + Debian packages when missing), then run the whole suite on two
## workers (most tests wait on real servers; tests/conftest.py sends each module, the engines and the security
## package to one worker whole)
test: install-test system-deps check-generated
	$(BIN)/python -m pytest -n 2

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install-test: $(VENV)/.installed-test
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## system-deps: Debian's prometheus (promtool), prometheus-alertmanager (amtool), chromium and a Java runtime for
## Spark (openjdk-17-jre-headless), when missing
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

## generate: regenerate the committed generated files (Prometheus rules, dashboards, README's settings table)
generate: install
	$(BIN)/python -m collector.settings --write README.md
	@if $(BIN)/observatory slo --help >/dev/null 2>&1; then $(BIN)/observatory slo generate; fi
	@if $(BIN)/observatory dashboards --help >/dev/null 2>&1; then $(BIN)/observatory dashboards build; fi

## check-generated: fail when regenerating would change a committed generated file
check-generated: install
	@if $(BIN)/observatory slo --help >/dev/null 2>&1; then $(BIN)/observatory slo generate --check; fi
	@if $(BIN)/observatory dashboards --help >/dev/null 2>&1; then $(BIN)/observatory dashboards build --check; fi
	$(BIN)/python -m collector.contract.docs_gen --check
	$(BIN)/python -m collector.settings --check README.md

## bench: run the benchmarks (figures into docs/performance.md)
bench: install-test
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
