# The two set-up commands: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-streamrec

.PHONY: install demo test unit e2e chaos lint bench stack-up stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "streamrec needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

demo: $(STAMP)          ## stack + worker + MovieLens replay + lists before/after a context change
	$(BIN)/streamrec demo $(ARGS)

test: lint unit e2e     ## everything CI checks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Open Bandit Dataset sample ships inside obp's wheel (read from it, never redistributed).
OBD := $(VENV)/share/obp-0.4.1-py3-none-any.whl
$(OBD):
	mkdir -p $(VENV)/share
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/share obp==0.4.1

unit: $(STAMP) $(OBD)   ## unit tests and doctests (no servers)
	$(BIN)/python -m pytest -q -m "not e2e"

# The browser test drives Debian's chromium (Playwright's own browser download is not used).
CHROMIUM := $(VENV)/.installed-chromium
$(CHROMIUM):
	command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	touch $(CHROMIUM)

e2e: $(STAMP) $(CHROMIUM) ## the real local stack, a real worker process, a real browser
	$(BIN)/python -m pytest -q -m e2e tests/e2e

chaos: $(STAMP)         ## the fault scenarios alone (make test runs them too)
	$(BIN)/python -m pytest -q -s -m chaos tests/e2e

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

stack-up: $(STAMP)
	$(BIN)/streamrec stack up

stack-down: $(STAMP)
	$(BIN)/streamrec stack down

clean:
	rm -rf $(VENV) .streamrec build *.egg-info
