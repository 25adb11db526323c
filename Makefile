# Loconomy Hub. `make run` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: install run token test lint bench lock services-start services-stop clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh
	@rm -f $(VENV)/.installed-*; touch $@

# Re-pin requirements.lock from pyproject.toml (run after changing dependencies).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

run: install
	scripts/run.sh

# A JWT for a demo user, signed as `make run`'s hub expects (its settings, its database, demo data loaded):
# `make -s token USER=alice@demo.loconomy.test [TTL=3600]`.
token: install
	$(if $(filter command line,$(origin USER)),,$(error usage: make token USER=<email or id> [TTL=seconds]))
	@scripts/run.sh token '$(USER)' $(TTL)

test: install
	scripts/test.sh $(ARGS)

lint: install
	$(BIN)/ruff check .
	@# mypy loads the settings (django-stubs): the development values need DEBUG on.
	DJANGO_DEBUG=1 $(BIN)/mypy .

bench: install
	scripts/bench.sh $(ARGS)

services-start:
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

clean:
	scripts/services.sh stop || true
	rm -rf .run
