# The README's two commands are `make run` and `make test`; each installs what it needs.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format bench prove clean

# Idempotent and quick when nothing changed: uv sync only re-syncs when pyproject.toml
# or uv.lock are newer than the stamp. --compile-bytecode: where PYTHONDONTWRITEBYTECODE
# is set (as on our machines) nothing would ever be cached, and every bindery process
# would spend about 4 s of CPU compiling its dependencies at start.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || test -x $(UV) || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --all-groups --compile-bytecode
	@touch $@

run: install
	$(BIN)/bindery dev

# bandit: findings are fixed or justified in place (`# nosec BXXX` with the reason above
# it); pyproject.toml says why B101 and B404 are skipped. Dependencies: .ci/audit-dependencies.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -c pyproject.toml -q -r workers tasks scheduler .ci/audit_latest_releases.py
	.ci/audit-dependencies

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# pytest's exit status 5 ("no tests collected") is a failure here, like any other.
define pytest
	$(BIN)/pytest $(1); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make $@: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status
endef

# Debian's Chromium, which Playwright drives in the console's browser tests (it downloads
# no browser of its own).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

test: lint $(CHROMIUM)
	$(call pytest,$(PYTEST_ARGS))

# The privacy promises and the fault scenarios alone, ending with one table of results.
prove: install
	$(call pytest,-p tests.prove tests/privacy tests/faults $(PYTEST_ARGS))

# wrk (Debian) is the load generator when it can be installed; else bench/load.py's asyncio client.
bench: install
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
		echo "make bench: wrk not available; using the asyncio load generator" >&2
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
