"""Sort every test into one tier: ``unit``, ``integration`` or ``browser``.

A test is ``integration`` when it needs a server or a subprocess: it uses (directly
or through other fixtures) a fixture from SERVER_FIXTURES, or its module is in
SUBPROCESS_MODULES. ``browser`` tests keep only their own marker. Every other test
is ``unit`` and runs with no server at all (``make test-fast``); a unit test that
reaches one of those fixtures all the same (say, through ``getfixturevalue``) fails
at once instead of quietly starting the servers.
"""

from __future__ import annotations

import pytest

# Every fixture on the shared servers (template_db, kw_env, settings, conn, app, ...)
# depends on ``stack``; the others start a server of their own.
SERVER_FIXTURES = frozenset({
    "stack",
    "own_broker", "own_database", "broker", "silent_broker", "listener",  # Mosquitto/PostgreSQL
    "own_redis",  # Redis
    "smtp", "plain_auth_server",  # SMTP
})
# Modules whose tests run a program (``kilowatch …``, ``lint-imports``) without a fixture.
SUBPROCESS_MODULES = frozenset({
    "tests/test_layering.py",
})

_CURRENT = pytest.StashKey[pytest.Item]()


def tier(item: pytest.Item) -> str:
    """Return the tier of a collected test."""
    if item.get_closest_marker("browser"):
        return "browser"
    module = item.nodeid.split("::", 1)[0]
    if SERVER_FIXTURES.intersection(item.fixturenames) or module in SUBPROCESS_MODULES:
        return "integration"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier."""
    for item in items:
        name = tier(item)
        if name != "browser":
            item.add_marker(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item):
    """Remember which test is running, for the fixture guard below."""
    item.config.stash[_CURRENT] = item
    try:
        return (yield)
    finally:
        del item.config.stash[_CURRENT]


def pytest_fixture_setup(fixturedef, request) -> None:
    """Fail a unit test that reaches a server fixture (say, through getfixturevalue)."""
    item = request.config.stash.get(_CURRENT, None)
    if (fixturedef.argname in SERVER_FIXTURES and item is not None
            and item.get_closest_marker("unit")):
        pytest.fail(f"{item.nodeid} is marked unit but needs the {fixturedef.argname!r} "
                    f"fixture: request it as an argument so that tests/tiers.py sees it",
                    pytrace=False)
