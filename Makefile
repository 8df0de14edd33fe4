# patron: two commands on a fresh machine with Python 3.11+ and make.
#   make demo   install, create ./patron.db, load demo data, serve http://127.0.0.1:8000
#   make test   install everything the tests need, then lint, type-check and run the suite
#               on SQLite and on PostgreSQL

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy
# Compiled bytecode is kept: with PYTHONDONTWRITEBYTECODE set (as on the CI machines) every
# process the suite starts (servers, workers, Spark, benches) recompiled pandas and friends
# from source, about 10 s per process on a loaded 2-core machine.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test install system-deps lint pytest pytest-sqlite pytest-postgres serve clean bench

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode

demo: install
	$(BIN)/patron db upgrade
	$(BIN)/patron demo --seed 42
	$(BIN)/patron serve

serve: install
	$(BIN)/patron serve

# Debian's Chromium and CJK fonts for the browser tests; PostgreSQL started if it is down.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium chromium-driver fonts-noto-cjk >/dev/null; }
	@fc-list 2>/dev/null | grep -qi "noto.*cjk" || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  fonts-noto-cjk >/dev/null; }
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start

lint: install
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/mypy src

pytest-sqlite: install
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

pytest-postgres: install system-deps
	PATRON_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

test: install system-deps lint pytest-sqlite pytest-postgres

bench: install
	$(BIN)/python bench/member_lookup.py

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache patron.db patron.db-wal patron.db-shm
