# The two commands: `make test` and `make demo`. Both work from a fresh clone.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --locked

.PHONY: test demo lint bootstrap stack

bootstrap:
	scripts/bootstrap

stack: bootstrap
	scripts/stack up

test: stack
	$(RUN) ruff check .
	$(RUN) pytest

# `kilowatch web` refuses the public development secret key; a demo gets a fresh one.
demo: stack
	KILOWATCH_SECRET_KEY="$${KILOWATCH_SECRET_KEY:-$$($(RUN) python -c 'import secrets; print(secrets.token_hex(32))')}" \
	  $(RUN) kilowatch demo

lint: bootstrap
	$(RUN) ruff check .
