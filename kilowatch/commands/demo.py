"""``kilowatch demo``: every service on the local stack, a simulated fleet and one login per role.

In order: migrate; start ``kilowatch collector`` and ``kilowatch web``; once the
collector reports (on its metrics port) that it is subscribed, start
``kilowatch simulate --register`` (it creates the company, sites and devices
through the CLI, replays ``--backfill`` days of history, then publishes live);
start ``kilowatch worker`` once the history has arrived (so the rollups are
computed in bulk); create one user of each role and a group with site grants
through ``kilowatch user`` and ``kilowatch group``; print the URL and logins.
Everything runs as subprocesses of the real CLI; Ctrl-C stops them all.
``--check`` waits until the web app answers and telemetry is stored, then stops.

``kilowatch web`` refuses the public development secret key, so unless
KILOWATCH_SECRET_KEY is set the demo gives its services a random key for this
run (the logins are new on every run anyway). URLs are printed without their
passwords.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import click

from kilowatch import db, fleet, migrations, probes
from kilowatch.access import system_scope
from kilowatch.accounts import passwords
from kilowatch.cli import UserError, main
from kilowatch.settings import DEFAULT_SECRET_KEY, Settings, get_settings, redact_url

COMPANY = "Demo Energy"
GROUP = "Demo operations"
EMAIL_DOMAIN = "demo.kilowatch.example"
ROLES = ("viewer", "operator", "admin", "support", "superadmin")


class Services:
    """The demo's child processes, started in order and stopped together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str, quiet: bool = False) -> None:
        """Start ``kilowatch ARGS`` as a child process."""
        output = subprocess.DEVNULL if quiet else None
        process = subprocess.Popen([sys.executable, "-m", "kilowatch", *args],
                                   stdout=output, stderr=output, env=self.env)
        self.children.append((name, process))
        click.echo(f"{name:10} started (pid {process.pid})")

    def check_alive(self) -> None:
        """Raise when a child exited."""
        for name, process in self.children:
            if process.poll() is not None:
                raise UserError(f"{name} exited with status {process.returncode}")

    def stop(self) -> None:
        """Ask every child to stop, then wait (killing those that hang)."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cli(*args: str, stdin: str | None = None) -> tuple[int, str]:
    """Run ``kilowatch ARGS``; return its exit status and its output (stdout + stderr)."""
    result = subprocess.run([sys.executable, "-m", "kilowatch", *args], input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def _wait(condition, what: str, services: Services, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        services.check_alive()
        if time.monotonic() > deadline:
            raise UserError(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(1)


def service_env(settings: Settings) -> dict[str, str]:
    """Return the services' environment: a random secret key unless one is configured."""
    env = dict(os.environ)
    if settings.secret_key == DEFAULT_SECRET_KEY:
        env["KILOWATCH_SECRET_KEY"] = secrets.token_hex(32)
    return env


def free_port() -> int:
    """Return a TCP port of this machine that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _web_is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def _demo_devices() -> list[dict]:
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT d.id, d.serial, s.id AS site_id, s.name AS site_name, "
            "(SELECT max(time) FROM telemetry t WHERE t.device_id = d.id "
            " AND t.time > now() - interval '1 day') AS newest "
            "FROM devices d JOIN sites s ON s.id = d.site_id JOIN companies c "
            "ON c.id = s.company_id WHERE c.name = %s ORDER BY s.id", (COMPANY,)).fetchall()


def _history_arrived(sites: int, backfill_days: float) -> bool:
    devices = _demo_devices()
    recent = datetime.now(UTC) - timedelta(minutes=10)
    return len(devices) >= sites and all(d["newest"] and (
        backfill_days == 0 or d["newest"] > recent) for d in devices)


def _ensure_user(email: str, role: str, password: str) -> None:
    company = ["--company", COMPANY] if role in ("viewer", "operator", "admin") else []
    status, output = cli("user", "create", "--email", email, "--role", role, *company,
                         "--name", f"Demo {role}", "--password-stdin", stdin=password + "\n")
    if status != 0 and "already" in output:
        status, output = cli("user", "set-password", "--user", email, "--password-stdin",
                             stdin=password + "\n")
    if status != 0:
        raise UserError(f"could not create the demo {role}: {_last_line(output)}")


def create_logins(site_ids: list[int]) -> dict[str, tuple[str, str]]:
    """Create (or reset) one user per role and a group granting all but the last site."""
    logins = {}
    for role in ROLES:
        email = f"{role}@{EMAIL_DOMAIN}"
        password = passwords.generate_password()
        _ensure_user(email, role, password)
        logins[role] = (email, password)
    status, output = cli("group", "create", "--company", COMPANY, "--name", GROUP)
    if status != 0 and "already has a group" not in output:  # an earlier demo made it
        raise UserError(f"could not create the demo group: {_last_line(output)}")
    granted = site_ids[:-1] if len(site_ids) > 1 else site_ids
    for site_id in granted:
        _cli_or_fail(f"grant site {site_id} to the demo group", "group", "grant", "--group",
                     GROUP, "--company", COMPANY, "--site", str(site_id))
    for role in ("viewer", "operator"):
        _cli_or_fail(f"add the demo {role} to the demo group", "group", "add-member",
                     "--group", GROUP, "--company", COMPANY, "--user", logins[role][0])
    return logins


def _cli_or_fail(what: str, *args: str) -> None:
    status, output = cli(*args)
    if status != 0:
        raise UserError(f"could not {what}: {_last_line(output)}")


def _last_line(output: str) -> str:
    return output.splitlines()[-1] if output else "no output"


def _print_logins(url: str, logins: dict[str, tuple[str, str]], granted: int, total: int) -> None:
    click.echo("")
    click.echo(f"Kilowatch demo: open {url}/ and sign in as")
    for role, (email, password) in logins.items():
        click.echo(f"  {role:11} {email:38} {password}")
    click.echo(f"(viewer and operator see {granted} of the {total} sites through group "
               f"{GROUP!r}; Ctrl-C stops everything)")


@main.command("demo")
@click.option("--sites", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Simulated sites.")
@click.option("--backfill", "backfill_days", type=click.FloatRange(0, 30), default=30,
              show_default=True, help="Days of history the simulator replays first.")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
@click.option("--check", is_flag=True,
              help="Start everything, wait until the web app answers and telemetry is stored, "
                   "report, and stop (a short backfill unless --backfill is given).")
def demo(sites: int, backfill_days: float, port: int, check: bool) -> None:
    """Run every service on the local stack with a simulated fleet and one login per role."""
    settings = get_settings()
    source = click.get_current_context().get_parameter_source("backfill_days")
    if check and source == click.core.ParameterSource.DEFAULT:
        backfill_days = 0.05
    with db.connect(autocommit=True) as conn:
        applied = migrations.upgrade(conn)
    click.echo(f"database   {redact_url(settings.database_url)} "
               f"({len(applied)} migration(s) applied)")
    click.echo(f"broker     {redact_url(settings.mqtt_url)} "
               f"(topics {settings.mqtt_prefix}/<serial>/…)")
    url = f"http://127.0.0.1:{port}"
    services = Services(service_env(settings))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run(services, url, sites=sites, backfill_days=backfill_days, port=port, check=check)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping…")
        services.stop()


def _run(services: Services, url: str, *, sites: int, backfill_days: float, port: int,
         check: bool) -> None:
    # A check must not take over the session or metrics port of a collector already running.
    metrics_port = free_port() if check else get_settings().metrics_port
    extra = ["--client-id", f"kilowatch-demo-check-{os.getpid()}"] if check else []
    services.start("collector", "collector", "--metrics-port", str(metrics_port), *extra)
    services.start("web", "web", "--host", "127.0.0.1", "--port", str(port))
    # The devices speak only once the collector is subscribed, so no message is lost.
    _wait(lambda: probes.collector_is_subscribed(metrics_port), "the collector's subscription",
          services, 60)
    services.start("simulator", "simulate", "--register", "--company", COMPANY,
                   "--sites", str(sites), "--backfill", f"{backfill_days:g}",
                   "--interval", "5" if check else "10")
    _wait(lambda: _web_is_up(url), "the web app", services, 60)
    _wait(lambda: len(_demo_devices()) >= sites, "the fleet's registration", services, 300)
    logins = create_logins(sorted({d["site_id"] for d in _demo_devices()}))
    click.echo(f"replaying {backfill_days:g} days of history…")
    _wait(lambda: _history_arrived(sites, backfill_days), "the backfilled history", services,
          3600)
    services.start("worker", "worker")
    _print_logins(url, logins, max(sites - 1, 1), sites)
    if check:
        _check(services)
        return
    while True:
        services.check_alive()
        time.sleep(1)


def _check(services: Services) -> None:
    """Say what runs, after making sure every service is still alive a few seconds later."""
    time.sleep(3)
    services.check_alive()
    with db.connect(autocommit=True) as conn:
        sites = fleet.list_sites(conn, system_scope("demo"))
    stored = sum(1 for d in _demo_devices() if d["newest"])
    if not stored:
        raise UserError("no telemetry stored")
    click.echo(f"check ok: web up, {len(sites)} site(s), {stored} device(s) storing telemetry")
