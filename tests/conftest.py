"""Fixtures giving each test module real, isolated services.

The stack (``scripts/stack up``) is started once; each test module gets its own
database cloned from a migrated template, its own Redis key prefix and its own
MQTT topic prefix, and the ``KILOWATCH_*`` environment pointing at them; and,
when it asks for ``smtp``, its own SMTP server.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from collector import metrics
from kilowatch import db, migrations
from kilowatch.broker import rules, sync
from kilowatch.broker.dynsec import Dynsec
from kilowatch.mqtt import broker_address
from kilowatch.settings import DEV_MQTT_PASSWORD, Settings, load_settings, reset_settings
from tests.kilowatch.smtp_server import SmtpServer

pytest_plugins = ["tests.tiers"]
ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgresql://kilowatch@127.0.0.1:55432/postgres"
# The stack's broker: services on MQTT_PORT, devices on MQTT_TLS_PORT (TLS only).
MQTT_PORT = int(os.environ.get("KILOWATCH_STACK_MQTT_PORT", "51883"))
MQTT_TLS_PORT = int(os.environ.get("KILOWATCH_STACK_MQTT_TLS_PORT", "58883"))
MQTT_ADMIN_URL = f"mqtt://kilowatch-admin:{DEV_MQTT_PASSWORD}@127.0.0.1:{MQTT_PORT}"
# The CA of the stack's certificates (set the variable when the stack runs from another
# checkout, whose .stack/ holds them).
CA_FILE = os.environ.get("KILOWATCH_MQTT_CA_FILE") or str(ROOT / ".stack" / "tls" / "ca.pem")
_TEMPLATE_LOCK = 7_120_002


def _admin() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True)


def wait_for(condition: Callable[[], object], *, what: str, timeout_s: float = 60,
             interval_s: float = 0.2):
    """Poll until ``condition()`` is truthy and return it; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def collector_ready(metrics_port: int | str, process: subprocess.Popen | None = None) -> bool:
    """Say whether a collector is connected and subscribed (its /metrics says so).

    Raises when ``process`` (the collector) has exited, so a wait on it fails at once.
    """
    if process is not None and process.poll() is not None:
        raise AssertionError(f"the collector exited with status {process.returncode}")
    return metrics.is_subscribed(metrics_port)


@pytest.fixture(scope="session")
def stack() -> None:
    """Start the project-local servers (fast when they already run)."""
    subprocess.run([str(ROOT / "scripts" / "stack"), "up"], check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def template_db(stack) -> str:
    """Return the name of a database with every migration applied, built once."""
    digest = hashlib.sha256(
        b"".join(m.checksum.encode() for m in migrations.discover())
    ).hexdigest()[:12]
    name = f"kw_template_{digest}"
    with _admin() as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                   (name,)).fetchone()
            if not exists:
                building = f"{name}_build"
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(
                    sql.Identifier(building)))
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                with db.connect(_url(building), autocommit=True) as conn:
                    migrations.upgrade(conn)
                _seal_template(admin, building)
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(name)))
            _seal_template(admin, name)  # also seals templates built before this rule
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))
    return name


def _seal_template(admin: psycopg.Connection, name: str) -> None:
    # TimescaleDB's background scheduler connects to every database that allows
    # connections; a template nobody may connect to can always be cloned.
    admin.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                  .format(sql.Identifier(name)))
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                  (name,))


def _url(database: str) -> str:
    return f"postgresql://kilowatch@127.0.0.1:55432/{database}"


def create_database(template: str) -> str:
    """Clone the template into a new database and return its URL."""
    name = f"kw_test_{secrets.token_hex(6)}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template))
    with _admin() as admin:
        for attempt in range(50):
            try:
                admin.execute(create)
                break
            except psycopg.errors.ObjectInUse:
                # Another test run is cloning the same template right now.
                if attempt == 49:
                    raise
                time.sleep(0.2)
    return _url(name)


def drop_database(url: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    name = url.rsplit("/", 1)[1]
    with _admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


SERVICES = ("web", "collector", "worker")


def service_logins(url: str, token: str) -> dict[str, str]:
    """Create a login role per service in its group role (sql/015); return their variables.

    ``KILOWATCH_WEB_DATABASE_URL`` and the others then point at ``url``'s database
    as these least-privilege logins instead of the owner.
    """
    env = {}
    with _admin() as admin:
        for service in SERVICES:
            login = f"kwtest_{token}_{service}"
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(f"kilowatch_{service}")))
            env[f"KILOWATCH_{service.upper()}_DATABASE_URL"] = url.replace(
                "//kilowatch@", f"//{login}@", 1)
    return env


def drop_service_logins(token: str) -> None:
    """Drop the login roles :func:`service_logins` made (after their database is gone)."""
    with _admin() as admin:
        for service in SERVICES:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                sql.Identifier(f"kwtest_{token}_{service}")))


def broker_accounts(token: str, prefix: str, *, port: int = MQTT_PORT,
                    admin_url: str = MQTT_ADMIN_URL) -> dict[str, str]:
    """Create a collector, a schedule publisher and a test bench account for one prefix.

    Returns the ``KILOWATCH_*`` broker variables. The bench account (the simulator's
    and test publishers' login) may publish and subscribe anywhere under the prefix;
    the services get the platform's own roles.
    """
    password = secrets.token_urlsafe(18)
    url = {kind: f"mqtt://kwtest-{token}-{kind}:{password}@127.0.0.1:{port}"
           for kind in ("collector", "publisher", "bench")}
    env = {"KILOWATCH_MQTT_URL": url["collector"], "KILOWATCH_MQTT_PUBLISHER_URL":
           url["publisher"], "KILOWATCH_MQTT_ADMIN_URL": admin_url,
           "KILOWATCH_SIMULATOR_MQTT_URL": url["bench"], "KILOWATCH_MQTT_PREFIX": prefix,
           "KILOWATCH_MQTT_DEVICE_URL": f"mqtts://127.0.0.1:{MQTT_TLS_PORT}",
           "KILOWATCH_MQTT_CA_FILE": CA_FILE if Path(CA_FILE).is_file() else ""}
    sync.reconcile(load_settings(env))
    bench = f"bench:{prefix}"
    acls = [{"acltype": kind, "topic": f"{prefix}/#", "allow": True}
            for kind in ("publishClientSend", "subscribePattern", "unsubscribePattern")]
    with Dynsec(admin_url) as broker:
        broker.run([{"command": "createRole", "rolename": bench, "acls": acls},
                    {"command": "createClient", "username": f"kwtest-{token}-bench",
                     "password": password, "textname": "kilowatch test bench",
                     "roles": [{"rolename": bench}]}])
    return env


def delete_broker_accounts(token: str, prefix: str, *, admin_url: str = MQTT_ADMIN_URL) -> None:
    """Delete every account and role a test module made on the broker (devices included)."""
    with Dynsec(admin_url) as broker:
        clients = broker.list_clients()
        roles = broker.list_roles()
        broker.run([{"command": "deleteClient", "username": c["username"]} for c in clients
                    if c["username"].startswith(f"kwtest-{token}-")
                    or c.get("textname") == rules.tag(prefix)]
                   + [{"command": "deleteRole", "rolename": r["rolename"]} for r in roles
                      if r["rolename"].endswith(f":{prefix}") or f":{prefix}:" in r["rolename"]],
                   ok_errors=("Client not found", "Role not found"))


def bench_login(client, url: str | None = None) -> tuple[str, int]:
    """Log a raw paho client in with this module's test bench account; return (host, port)."""
    host, port, _tls, username, password = broker_address(
        url or os.environ["KILOWATCH_SIMULATOR_MQTT_URL"])
    client.username_pw_set(username, password)
    return host, port


@pytest.fixture(scope="module")
def kw_env(template_db) -> Iterator[dict[str, str]]:
    """Point ``KILOWATCH_*`` at this module's own database, Redis prefix, MQTT prefix and logins."""
    token = secrets.token_hex(4)
    url = create_database(template_db)
    prefix = f"kwtest-{token}/ess"
    env = {
        "KILOWATCH_DATABASE_URL": url,
        "KILOWATCH_REDIS_URL": "redis://127.0.0.1:56379/0",
        "KILOWATCH_REDIS_PREFIX": f"kwtest-{token}",
        **broker_accounts(token, prefix),
        "KILOWATCH_SECRET_KEY": f"test-secret-{token}",
        "KILOWATCH_DEVICE_KEY": f"test-device-key-{token}",
        "KILOWATCH_METRICS_PORT": str(20000 + secrets.randbelow(20000)),
    }
    # KILOWATCH_TEST_SERVICE_ROLES=1 runs the services' processes as their own roles.
    as_roles = os.environ.get("KILOWATCH_TEST_SERVICE_ROLES") == "1"
    if as_roles:
        env.update(service_logins(url, token))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_settings()
    db.close_pools()
    yield env
    db.close_pools()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    delete_broker_accounts(token, prefix)
    drop_database(url)
    if as_roles:
        drop_service_logins(token)


@pytest.fixture(scope="module")
def settings(kw_env) -> Settings:
    """The settings of this test module's isolated services."""
    return load_settings(kw_env)


@pytest.fixture
def conn(settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this module's database."""
    with db.connect(settings.database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) in the test process that keeps what it receives."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# Private servers for the tests that stop, hang or kill one (never the shared stack's).
# tests.collector.servers imports this module, hence the imports inside the fixtures.
@pytest.fixture
def own_broker():
    """A Mosquitto of the test's own, on free ports, removed afterwards."""
    from tests.collector.servers import Mosquitto

    broker = Mosquitto().start()
    yield broker
    broker.remove()


@pytest.fixture
def own_database():
    """A PostgreSQL cluster of the test's own, migrated, removed afterwards."""
    from tests.collector.servers import Postgres

    server = Postgres().create()
    yield server
    server.remove()


@pytest.fixture
def own_redis():
    """A Redis of the test's own, removed afterwards."""
    from tests.collector.servers import Redis

    server = Redis().start()
    yield server
    server.remove()
