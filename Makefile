# Two entry points a newcomer needs: `make demo` and `make test`.
# Both create .venv when missing and install the project into it (quickfix
# builds from source the first time, ~6 min on 2 cores; pip's wheel cache
# makes later installs fast).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck imports unit e2e perf soak install clean deps-system promtool

# Debian's prometheus package provides promtool and the prometheus server,
# which tests/unit/test_deploy.py and tests/e2e/test_prometheus.py run.
# apt-get needs root: sudo is used when not root and sudo exists.
SUDO := $(shell if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sor demo

lint: $(STAMP)
	$(BIN)/ruff check router fix sim models tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The import map of docs/architecture.md (contracts in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports

test: $(STAMP) deps-system lint typecheck imports
	$(BIN)/python -m pytest -q

# Debian's postgresql package provides initdb and pg_ctl, which the
# PostgreSQL journal tests run (tests/pgserver.py starts a throwaway server
# on a free port). Debian keeps them in /usr/lib/postgresql/<version>/bin,
# not on PATH: PG_BINDIR (a shell command) looks in both; the package is
# installed only when neither has them, and its own cluster (:5432) is
# stopped the same way as prometheus's server.
PG_BINDIR := for d in $$(dirname "$$(command -v pg_ctl 2>/dev/null)" 2>/dev/null) \
	$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do \
	if [ -x "$$d/initdb" ] && [ -x "$$d/pg_ctl" ]; then echo "$$d"; break; fi; done

# Debian's chromium package is the headless browser the operator console's
# test drives (tests/e2e/test_console.py, through Playwright for Python from
# the dev extras; Playwright's own browser downloads are never used). It is
# installed only when missing, like the two above.
#
# Installs the package only when promtool or prometheus is missing. Where
# systemd runs, the package starts its own server on :9090 after install; it
# is stopped and disabled here so that nothing of ours listens there (the
# tests start their own on free ports either way).
deps-system:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  echo "installing Debian's prometheus package (promtool, prometheus) for the deploy tests"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus && \
	  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	    $(SUDO) systemctl disable --now prometheus.service || true; \
	  fi; \
	fi
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && echo "promtool: $$(command -v promtool)"
	@if [ -z "$$($(PG_BINDIR))" ]; then \
	  echo "installing Debian's postgresql package (initdb, pg_ctl) for the PostgreSQL journal tests"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql && \
	  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	    $(SUDO) systemctl disable --now postgresql.service || true; \
	  elif command -v service >/dev/null 2>&1; then \
	    $(SUDO) service postgresql stop >/dev/null 2>&1 || true; \
	  fi; \
	fi
	@d="$$($(PG_BINDIR))"; [ -n "$$d" ] && echo "postgresql: $$d"
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium package for the operator console test"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi
	@c="$$(command -v chromium || echo /usr/bin/chromium)"; [ -x "$$c" ] && echo "chromium: $$c"

# Validates the deploy/ Prometheus files (the unit tests run the same checks).
promtool: deps-system
	promtool check config deploy/prometheus.yml
	promtool check config deploy/compose-prometheus.yml
	promtool check rules deploy/alerts.yml
	promtool test rules deploy/alerts_test.yml

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/e2e

perf: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/perf

# The chaos soak, full size (not part of `make test`, which runs a short one:
# tests/e2e/test_soak.py): 100,000 parents at 100/s over the sim venues while
# venues, the daemon and the OMS are killed or dropped on a seeded schedule,
# then the accounting share for share; exits 1 on FAIL. The run's logs,
# journal and FIX stores stay in SOAK_DIR.
SOAK_PARENTS ?= 100000
SOAK_RATE ?= 100
SOAK_SEED ?= 1
SOAK_DIR ?= var/soak
soak: $(STAMP)
	@echo "sor soak: $(SOAK_PARENTS) parents at $(SOAK_RATE)/s: about $$(( $(SOAK_PARENTS) / $(SOAK_RATE) / 60 + 3 )) min (flow, fault recoveries, audit)"
	rm -rf $(SOAK_DIR)
	$(BIN)/sor soak --parents $(SOAK_PARENTS) --rate $(SOAK_RATE) --seed $(SOAK_SEED) --workdir $(SOAK_DIR)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
