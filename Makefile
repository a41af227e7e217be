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

demo: stack
	$(RUN) kilowatch demo

lint: bootstrap
	$(RUN) ruff check .
