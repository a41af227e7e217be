"""``kilowatch demo``: every service on the local stack, a simulated fleet and one login per role.

In order: migrate; start ``kilowatch collector``, ``kilowatch web`` (HTTPS with the
local stack's certificate) and a worker that only keeps the broker's accounts in
line, while the company, one user of each role, a group and the demo tariff are
created through ``kilowatch company``, ``user``, ``group`` and ``tariff``; once the
collector reports (on its metrics port) that it is subscribed, start ``kilowatch
simulate --register`` (it creates the sites and devices through the CLI, activates
each device over HTTPS, connects over TLS, replays two months of history at one
sample every 15 minutes, then publishes live, with one alarm kept raised); while
the history arrives, grant the group its sites, assign the tariff and set each
site's storage strategy (``kilowatch tariff assign``, ``kilowatch schedule set``;
see :mod:`kilowatch.commands.demo_fleet`); compute last month's bills; start the
full ``kilowatch worker`` (so the rollups are computed in bulk); print the URL and
logins.
Everything runs as subprocesses of the real CLI; Ctrl-C stops them all.
``--check`` waits until the demo shows what it should, then stops.

``kilowatch web`` refuses the public development secret key, so unless
KILOWATCH_SECRET_KEY is set the demo gives its services a random key for this
run (the logins are new on every run anyway). URLs are printed without their
passwords.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import click

from kilowatch import db, fleet, migrations, probes
from kilowatch.access import system_scope
from kilowatch.accounts import passwords
from kilowatch.billing import savings
from kilowatch.cli import UserError, main
from kilowatch.commands import demo_fleet
from kilowatch.settings import DEFAULT_SECRET_KEY, Settings, get_settings, redact_url

COMPANY = "Demo Energy"
GROUP = "Demo operations"
EMAIL_DOMAIN = "demo.kilowatch.example"
ROLES = ("viewer", "operator", "admin", "support", "superadmin")
PARALLEL = 6  # kilowatch commands run at once while setting the demo up


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


def service_env(settings: Settings, backfill_days: float = 0) -> dict[str, str]:
    """Return the services' environment: a random secret key unless one is configured,
    and a raw retention long enough to take the history."""
    env = dict(os.environ)
    if settings.secret_key == DEFAULT_SECRET_KEY:
        env["KILOWATCH_SECRET_KEY"] = secrets.token_hex(32)
    env["KILOWATCH_RAW_RETENTION_DAYS"] = str(demo_fleet.raw_retention_for(
        backfill_days, settings.raw_retention_days))
    return env


def free_port() -> int:
    """Return a TCP port of this machine that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _web_is_up(url: str, ca_file: str | None) -> bool:
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2,  # noqa: S310
                                    context=context) as response:
            return response.status == 200
    except OSError:
        return False


def _signed_in(url: str, ca_file: str | None, login: tuple[str, str]):
    """Return a URL opener signed in to the web app through its login form."""
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
        http.cookiejar.CookieJar()), urllib.request.HTTPSHandler(context=context))
    with opener.open(f"{url}/login", timeout=10) as response:
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                          response.read().decode())
    form = {"email": login[0], "password": login[1], "csrf_token": token[1] if token else ""}
    with opener.open(f"{url}/login", data=urllib.parse.urlencode(form).encode(),
                     timeout=10) as response:
        if response.url.endswith("/login"):
            raise UserError(f"the demo {login[0]} cannot sign in to the web app")
    return opener


def _page_problem(opener, url: str, path: str, expected: str) -> str | None:
    """Fetch a page; say what is wrong unless it answers 200 with ``expected`` in it."""
    try:
        with opener.open(f"{url}{path}", timeout=30) as response:
            body = response.read()
    except OSError as error:
        return f"{path} does not answer ({error})"
    return None if expected.encode() in body else f"{path} does not show {expected!r}"


def pages_problems(url: str, ca_file: str | None, login: tuple[str, str],
                   site_id: int) -> list[str]:
    """Say which of the site's commissioning pages and report do not answer the demo admin."""
    report = demo_fleet.report_id(site_id)
    if report is None:
        return [f"site {site_id}: no commissioning report"]
    opener = _signed_in(url, ca_file, login)
    checks = ((f"/site/{site_id}/commissioning", "_dash-config"),
              (f"/reports/commissioning/{report}.html", "Commissioning report v1"),
              (f"/reports/commissioning/{report}.pdf", "%PDF"))
    return [problem for path, expected in checks
            if (problem := _page_problem(opener, url, path, expected))]


def web_tls(settings: Settings) -> list[str]:
    """Return ``kilowatch web``'s TLS options: the local stack's certificate, if there is one."""
    if not settings.mqtt_ca_file:
        return []
    tls = Path(settings.mqtt_ca_file).parent
    if not (tls / "server.pem").is_file() or not (tls / "server.key").is_file():
        return []
    return ["--certfile", str(tls / "server.pem"), "--keyfile", str(tls / "server.key")]


def _demo_devices() -> list[dict]:
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT d.id, d.serial, d.rated_power_kw, d.capacity_kwh, s.id AS site_id, "
            "s.name AS site_name, s.timezone, "
            "(SELECT max(time) FROM telemetry t WHERE t.device_id = d.id "
            " AND t.time > now() - interval '1 day') AS newest "
            "FROM devices d JOIN sites s ON s.id = d.site_id JOIN companies c "
            "ON c.id = s.company_id WHERE c.name = %s ORDER BY d.serial", (COMPANY,)).fetchall()


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


def in_parallel(*calls: Callable[[], object]) -> list:
    """Run the calls at once; return their results in order, or raise the first failure.

    Each ``kilowatch`` subprocess spends most of its time starting up, so on a
    busy machine running them side by side saves most of the wait.
    """
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def create_users() -> dict[str, tuple[str, str]]:
    """Create (or reset) one user per role of the demo company, and the demo group."""
    logins = {role: (f"{role}@{EMAIL_DOMAIN}", passwords.generate_password()) for role in ROLES}
    in_parallel(*(partial(_ensure_user, email, role, password)
                  for role, (email, password) in logins.items()), _ensure_group)
    return logins


def _ensure_group() -> None:
    status, output = cli("group", "create", "--company", COMPANY, "--name", GROUP)
    if status != 0 and "already has a group" not in output:  # an earlier demo made it
        raise UserError(f"could not create the demo group: {_last_line(output)}")


def grant_sites(site_ids: list[int], logins: dict[str, tuple[str, str]]) -> list[Callable]:
    """Return the calls granting the group all sites but the last and adding its members."""
    granted = site_ids[:-1] if len(site_ids) > 1 else site_ids
    grants = [partial(_cli_or_fail, f"grant site {site_id} to the demo group", "group",
                      "grant", "--group", GROUP, "--company", COMPANY, "--site", str(site_id))
              for site_id in granted]
    members = [partial(_cli_or_fail, f"add the demo {role} to the demo group", "group",
                       "add-member", "--group", GROUP, "--company", COMPANY, "--user",
                       logins[role][0]) for role in ("viewer", "operator")]
    return grants + members


def create_logins(site_ids: list[int]) -> dict[str, tuple[str, str]]:
    """Create (or reset) one user per role and a group granting all but the last site."""
    logins = create_users()
    in_parallel(*grant_sites(site_ids, logins))
    return logins


def _cli_or_fail(what: str, *args: str, ok: str | None = None, stdin: str | None = None) -> None:
    """Run ``kilowatch ARGS``; fail unless it succeeds or says ``ok`` (it was done before)."""
    status, output = cli(*args, stdin=stdin)
    if status != 0 and not (ok and ok in output):
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
@click.option("--backfill", "backfill_days", type=click.FloatRange(0, 100), default=None,
              help="Days of history the simulator replays first (default: since the first "
                   "day of the month before last, so the last complete month has bills).")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
@click.option("--check", is_flag=True,
              help="Start everything, wait until the demo shows what it should (schedules "
                   "applied, batteries working, last month's bills, alarms), report, and stop.")
@click.option("--state", "state_path", default=".stack/demo-simulator.json", show_default=True,
              help="Where the simulated devices keep their credentials between runs.")
def demo(sites: int, backfill_days: float | None, port: int, check: bool,
         state_path: str) -> None:
    """Run every service on the local stack with a simulated fleet and one login per role."""
    started = time.monotonic()
    settings = get_settings()
    if backfill_days is None:
        backfill_days = demo_fleet.history_days(datetime.now(UTC))
    with db.connect(autocommit=True) as conn:
        applied = migrations.upgrade(conn)
    click.echo(f"database   {redact_url(settings.database_url)} "
               f"({len(applied)} migration(s) applied)")
    click.echo(f"broker     {redact_url(settings.mqtt_url)} "
               f"(topics {settings.mqtt_prefix}/<serial>/…)")
    tls = web_tls(settings)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    services = Services({**service_env(settings, backfill_days), "KILOWATCH_BASE_URL": url})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run(services, url, sites=sites, backfill_days=backfill_days, port=port, check=check,
             tls=tls, state_path=state_path, started=started)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping…")
        services.stop()


def _run(services: Services, url: str, *, sites: int, backfill_days: float, port: int,
         check: bool, tls: list[str], state_path: str, started: float) -> None:
    # A check must not take over the session or metrics port of a collector already running.
    settings = get_settings()
    metrics_port = free_port() if check else settings.metrics_port
    extra = ["--client-id", f"kilowatch-demo-check-{os.getpid()}"] if check else []
    services.start("collector", "collector", "--metrics-port", str(metrics_port), *extra)
    services.start("web", "web", "--host", "127.0.0.1", "--port", str(port), *tls)
    services.start("broker", "worker", "--job", "broker-devices", "--job", "broker-reconcile",
                   quiet=True)
    # The devices speak only once the collector is subscribed, so no message is lost;
    # they activate over HTTPS, so the web app must answer first.
    # The company, logins and tariff need no device: make them while the services start.
    with ThreadPoolExecutor(1) as setup:
        accounts = setup.submit(_set_up_company)
        _start_fleet(services, url, settings, metrics_port, sites=sites,
                     backfill_days=backfill_days, check=check, state_path=state_path)
        logins = accounts.result()
    devices = _demo_devices()
    since = demo_fleet.tariff_start(datetime.now(UTC), backfill_days)
    in_parallel(*grant_sites(sorted({d["site_id"] for d in devices}), logins),
                *(partial(_set_up_site, device, since) for device in devices))
    click.echo(f"replaying {backfill_days:g} days of history…")
    _wait(lambda: _history_arrived(sites, backfill_days), "the backfilled history", services,
          3600)
    _compute_bills(devices)
    click.echo(demo_fleet.commission([d["site_id"] for d in devices], settings))
    services.start("worker", "worker")
    _print_logins(url, logins, max(sites - 1, 1), sites)
    if check:
        _check(services, since, started)
        _check_pages(url, settings.mqtt_ca_file, logins["admin"], devices[0]["site_id"])
        return
    while True:
        services.check_alive()
        time.sleep(1)


def _start_fleet(services: Services, url: str, settings: Settings, metrics_port: int, *,
                 sites: int, backfill_days: float, check: bool, state_path: str) -> None:
    """Start the simulator once the collector and the web app are up; wait for its sites."""
    _wait(lambda: probes.collector_is_subscribed(metrics_port), "the collector's subscription",
          services, 60)
    _wait(lambda: _web_is_up(url, settings.mqtt_ca_file), "the web app", services, 60)
    services.start("simulator", "simulate", "--register", "--company", COMPANY,
                   "--sites", str(sites), "--backfill", f"{backfill_days:g}",
                   "--backfill-interval", str(demo_fleet.BACKFILL_INTERVAL_S),
                   "--stuck-alarm", f"SIM-{sites:04d}:{demo_fleet.STUCK_ALARM}",
                   "--interval", "5" if check else "10", "--state", state_path)
    _wait(lambda: len(_demo_devices()) >= sites, "the fleet's registration", services, 300)


def _set_up_company() -> dict[str, tuple[str, str]]:
    """Create the company, its logins and group, and import the tariff; return the logins."""
    _cli_or_fail("create the demo company", "company", "create", COMPANY, ok="already exists")
    logins, _ = in_parallel(create_users, partial(_cli_or_fail, "import the demo tariff",
                                                  *demo_fleet.tariff_import_args(COMPANY),
                                                  ok="already has a tariff named"))
    return logins


def _set_up_site(device: dict, since) -> None:
    """Assign the tariff from ``since`` and apply the site's strategy, through the CLI."""
    site_id = str(device["site_id"])
    _cli_or_fail(f"assign the demo tariff to site {site_id}", "tariff", "assign", "--site",
                 site_id, "--tariff", demo_fleet.TARIFF_NAME, "--from", since.isoformat())
    name, schedule = demo_fleet.schedule_of(device)
    if schedule["default_mode"] == "optimized":
        _cli_or_fail(f"offer site {site_id} the optimizer", "site", "update", "--site", site_id,
                     "--optimizer")
    _cli_or_fail(f"set the schedule of site {site_id}", "schedule", "set", "--site", site_id,
                 "--file", "-", "--comment", f"Demo: {name}", stdin=json.dumps(schedule))
    click.echo(f"site {site_id:<4} {device['site_name']}: {demo_fleet.describe(name, schedule)}"
               f"; tariff {demo_fleet.TARIFF_NAME!r} from {since}")


def _compute_bills(devices: list[dict]) -> None:
    """Compute last month's bills of every site now, as the worker's savings job would.

    The worker computes the other months; this month's, the one that matters, is
    there when the logins are printed.
    """
    began = time.monotonic()
    label = f"{demo_fleet.first_of_month(datetime.now(UTC).date(), 1):%Y-%m}"
    with db.connect(autocommit=True) as conn:
        for site_id in sorted({d["site_id"] for d in devices}):
            try:
                savings.compute_month(conn, system_scope("demo"), site_id, label)
            except savings.SavingsError:
                return  # no tariff that month: the history is shorter than a month
    click.echo(f"bills      {label} computed in {time.monotonic() - began:.1f} s")


def _check(services: Services, since, started: float) -> None:
    """Wait until the demo shows everything it should, then say what runs."""
    now = datetime.now(UTC)
    last_month = demo_fleet.first_of_month(now.date(), 1)
    expected = last_month if since <= last_month else None
    found: list[str] = []

    def shows_everything() -> bool:
        found[:] = demo_fleet.problems(COMPANY, expected)
        return not found

    try:
        _wait(shows_everything, "the demo to show everything", services, 90)
    except UserError:
        raise UserError(f"the demo does not show: {'; '.join(found)}") from None
    services.check_alive()
    with db.connect(autocommit=True) as conn:
        sites = fleet.list_sites(conn, system_scope("demo"))
    stored = sum(1 for d in _demo_devices() if d["newest"])
    plans = demo_fleet.applied_plans(COMPANY)
    bills = f", {last_month:%Y-%m} bills with savings" if expected else ""
    click.echo(f"check ok: web up, {len(sites)} site(s), {stored} device(s) storing telemetry, "
               f"schedules applied, {plans} dispatch plan(s) applied, batteries working{bills}, "
               f"device alarms "
               f"(ready {time.monotonic() - started:.0f} s after start)")


def _check_pages(url: str, ca_file: str | None, login: tuple[str, str], site_id: int) -> None:
    """Fail unless the admin gets the commissioning page, the report's HTML and its PDF."""
    problems = pages_problems(url, ca_file, login, site_id)
    if problems:
        raise UserError(f"the demo does not show: {'; '.join(problems)}")
    click.echo(f"check ok: commissioning page and report of site {site_id} answer over "
               f"{url.split(':', 1)[0].upper()}")
