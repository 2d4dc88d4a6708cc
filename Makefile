# Two commands on a fresh machine: `make demo` and `make test` (see README).
# uv is installed into .tools/ with the system pip; the project environment is .venv/,
# built from uv.lock exactly (`--frozen`), so every machine gets the same versions.
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
PORTFOLIO ?= data/demo
ACCOUNTS ?= 5000
SEED ?= 7
TRIALS ?= 5

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: env browser postgres demo test lint format contracts-doc bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --extra dev --python $(PYTHON) --compile-bytecode
	touch $@

env: $(VENV)/.synced

# headless Chromium from the system packages: the audit report's test renders it in a browser
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing headless Chromium (Debian package chromium) for the report test"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
	  || { $(SUDO) apt-get update -q >/dev/null && \
	       $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }; }

# PostgreSQL from the system packages: the import tests start a private server of their own
# (initdb into a temporary folder, a free loopback port), so no service is configured here
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (Debian package postgresql) for the import tests"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null \
	  || { $(SUDO) apt-get update -q >/dev/null && \
	       $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null; }; }

demo: env
	$(VENV)/bin/cobranza simulate --accounts $(ACCOUNTS) --seed $(SEED) --out $(PORTFOLIO) --overwrite
	$(VENV)/bin/cobranza validate $(PORTFOLIO)
	$(VENV)/bin/cobranza features build $(PORTFOLIO) --every 7d
	$(VENV)/bin/cobranza features materialize $(PORTFOLIO)
	$(VENV)/bin/cobranza train --data $(PORTFOLIO) --experiment experiments/default.yaml --trials $(TRIALS)
	# exit status 1 means the challenger did not earn promotion: a normal outcome here
	$(VENV)/bin/cobranza promote --data $(PORTFOLIO) --experiment experiments/default.yaml || test $$? -eq 1
	# the champion's fairness audit and KPIs (reports/); exit status 1 means a check is flagged
	$(VENV)/bin/cobranza audit --model champion --data $(PORTFOLIO) --experiment experiments/default.yaml || test $$? -eq 1
	# starts the scoring service on the portfolio, fetches today's worklist from it, stops it
	$(VENV)/bin/cobranza worklist --portfolio $(PORTFOLIO)

test: env browser postgres
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy data_contracts serving
	$(VENV)/bin/lint-imports
	# both cores (a serial run keeps one busy); a test module runs in one worker, slow ones first
	$(VENV)/bin/pytest -n 2 --dist loadfile

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# rewrites the README's contract reference from `cobranza contracts` (a test fails when stale)
contracts-doc: env
	$(VENV)/bin/python -m tests.data_contracts.test_reference

bench: env
	$(VENV)/bin/python -m benchmarks.simulate --accounts 1000000

clean:
	rm -rf .venv .tools data/demo data/mlflow reports
