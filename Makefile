# The two commands: `make test` and `make demo`. Both work from a fresh clone.
# `make test-fast` runs only the unit tier (tests that need no server) in well under a minute.
# The uv pinned in scripts/uv-requirements.txt, installed by scripts/bootstrap.
UV := $(CURDIR)/.tools/bin/uv
RUN := $(UV) run --locked

.PHONY: test test-fast demo lint bootstrap stack

bootstrap:
	scripts/bootstrap

stack: bootstrap
	scripts/stack up

# Each test module has its own database and prefixes, so modules run in parallel, one
# worker per CPU; a module's tests stay on one worker (--dist loadfile) to share them.
test: stack
	$(RUN) ruff check .
	$(RUN) lint-imports --no-logo
	$(RUN) pytest -n auto --dist loadfile

# The services point at closed ports, so a unit test that reaches a server fails.
test-fast: bootstrap
	$(RUN) ruff check .
	$(RUN) lint-imports --no-logo
	KILOWATCH_DATABASE_URL=postgresql://kilowatch@127.0.0.1:1/none \
	KILOWATCH_REDIS_URL=redis://127.0.0.1:1/0 KILOWATCH_MQTT_URL=mqtt://127.0.0.1:1 \
	  $(RUN) pytest -m unit -q

# `kilowatch web` refuses the public development secret key; a demo gets a fresh one.
demo: stack
	KILOWATCH_SECRET_KEY="$${KILOWATCH_SECRET_KEY:-$$($(RUN) python -c 'import secrets; print(secrets.token_hex(32))')}" \
	  $(RUN) kilowatch demo

lint: bootstrap
	$(RUN) ruff check .
	$(RUN) lint-imports --no-logo
