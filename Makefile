# Threadline: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
# make run serves with one process per core (threadline serve's default); WORKERS=1 serves with one.
WORKERS ?=
# make test runs one pytest worker per core (pytest-xdist); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
PYTEST_ARGS ?= -n $(TEST_WORKERS)

.PHONY: run test install install-dev browser dovecot espeak migrate demo bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

# Browser tests drive Debian's Chromium (never a downloaded browser); install it when we can.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }; }; } || \
	  echo "note: $(CHROMIUM) is missing; browser tests will skip (install Debian's chromium package)"

# The IMAP poller's tests drive Debian's Dovecot on loopback; install it when we can.
DOVECOT ?= /usr/sbin/dovecot
dovecot:
	@test -x $(DOVECOT) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y --no-install-recommends dovecot-imapd >/dev/null 2>&1 || \
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends dovecot-imapd >/dev/null; }; }; } || \
	  echo "note: $(DOVECOT) is missing; IMAP tests will skip (install Debian's dovecot-imapd package)"

# Spoken prompts (IVR, queue announcements) and the voice tests use Debian's espeak-ng; install it when we can.
ESPEAK ?= /usr/bin/espeak-ng
espeak:
	@test -x $(ESPEAK) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y --no-install-recommends espeak-ng >/dev/null 2>&1 || \
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends espeak-ng >/dev/null; }; }; } || \
	  echo "note: $(ESPEAK) is missing; prompts become beeps and speech tests will skip (install Debian's espeak-ng)"

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The speech-to-text tests speak their audio with Debian's espeak-ng; install it when we can.
ESPEAK ?= /usr/bin/espeak-ng
espeak:
	@test -x $(ESPEAK) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y --no-install-recommends espeak-ng >/dev/null 2>&1 || \
	    { apt-get update >/dev/null && apt-get install -y --no-install-recommends espeak-ng >/dev/null; }; }; } || \
	  echo "note: $(ESPEAK) is missing; speech-to-text tests will skip (install Debian's espeak-ng package)"

## make run: install, migrate, seed the demo workspace and serve the agent desk on http://127.0.0.1:8080,
## one process per core
run: install
	$(BIN)/threadline migrate
	$(BIN)/threadline demo
	$(BIN)/threadline serve --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

## make test: install the dev dependencies and run the whole suite
test: install-dev browser dovecot espeak
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

migrate: install
	$(BIN)/threadline migrate

demo: install
	$(BIN)/threadline demo

## make bench: benchmarks (figures go to docs/performance.md, never into tests)
bench: install-dev
	$(BIN)/python -m bench

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) data .pytest_cache
