"""Fixtures and helpers for testing the web app, for every engineer's page tests.

Fixtures (module scope unless said otherwise), all on the module's own database
and Redis prefix from ``tests/conftest.py``:

- ``app``: the real Dash app from ``dashboards.app.create_app(settings)``.
- ``client`` (function scope): a fresh Flask test client of ``app`` (no login).
- ``tenants``: two companies with sites and one user of every role, as a
  :class:`Tenants` (``tenants.a.viewer`` is an :class:`Account` with ``email``,
  ``password`` and ``id``; ``tenants.a.sites`` lists site ids, the viewer and
  operator of A are granted ``tenants.a.sites[0]`` only through group
  ``tenants.a.group_id``; ``tenants.support`` and ``tenants.superadmin`` are
  platform staff).
- ``live_server``: the real ``kilowatch web`` command serving this module's
  database on a free port in a subprocess; its value is the base URL (also its
  ``KILOWATCH_BASE_URL``, so e-mailed links point at it).
- ``browser``: headless Chromium (Playwright) for ``@pytest.mark.browser`` tests;
  ``page`` (function scope) is a new page in a fresh context.

Helpers (plain functions; import them from this module):

- ``login(client, email, password)`` posts the login form with its CSRF token
  and returns the response (302 on success).
- ``dash_post(client, output, inputs, state=())`` posts a callback request to
  ``/_dash-update-component`` the way the browser does and returns the
  response; ``output`` is ``"component-id.property"`` (or the multi-output id
  Dash uses), ``inputs``/``state`` are lists of ``{"id", "property", "value"}``.
- ``call_callback(client, app, "component-id.property", {"other-id.value": 3},
  triggered="other-id.value")`` finds the app's callback writing that output
  and posts its declared inputs and states with the given values (None for the
  rest) — the easiest way to forge a callback request in a test.
- ``finish_setup(app)``: run Dash's first-request setup (the ``app`` fixture
  does) so that ``app.callback_map`` is complete.
- ``make_user(conn, email=, role=, company_id=, password=)``,
  ``make_company(conn, name)``, ``make_site(conn, company_id, name)``,
  ``make_group(conn, company_id, name, site_ids=, user_ids=)``.
- ``browser_login(page, base_url, email, password)`` signs in through the form.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.accounts import groups, passwords, users

PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclasses.dataclass(frozen=True)
class Account:
    """A user created for a test, with the password to log in."""

    id: int
    email: str
    password: str
    role: str
    company_id: int | None


@dataclasses.dataclass(frozen=True)
class Company:
    """A company created for a test, with its sites and one user per company role."""

    id: int
    name: str
    sites: list[int]
    group_id: int
    viewer: Account
    operator: Account
    admin: Account


@dataclasses.dataclass(frozen=True)
class Tenants:
    """Two companies and the platform staff."""

    a: Company
    b: Company
    support: Account
    superadmin: Account


# --- data helpers ------------------------------------------------------------------------------


def make_company(conn: psycopg.Connection, name: str) -> int:
    """Create a company and return its id."""
    return fleet.create_company(conn, system_scope("test"), name)


def make_site(conn: psycopg.Connection, company_id: int, name: str,
              timezone: str = "Europe/Paris") -> int:
    """Create a site and return its id."""
    return fleet.create_site(conn, system_scope("test"), company_id=company_id, name=name,
                             timezone=timezone)


def make_user(conn: psycopg.Connection, *, email: str, role: str, company_id: int | None = None,
              password: str = PASSWORD, display_name: str | None = None) -> Account:
    """Create an active user who need not change their password, and return it."""
    user_id = users.create_user(conn, system_scope("test"), email=email, role=role,
                                company_id=company_id, display_name=display_name,
                                password_hash=passwords.hash_password(password),
                                must_change_password=False)
    return Account(id=user_id, email=email, password=password, role=role, company_id=company_id)


def make_group(conn: psycopg.Connection, company_id: int, name: str, *,
               site_ids: list[int] = (), user_ids: list[int] = ()) -> int:
    """Create a group with site grants and members, and return its id."""
    scope = system_scope("test")
    group_id = groups.create_group(conn, scope, company_id=company_id, name=name)
    for site_id in site_ids:
        groups.grant_site(conn, scope, group_id, site_id)
    for user_id in user_ids:
        groups.add_member(conn, scope, group_id, user_id)
    return group_id


def _make_company_with_users(conn: psycopg.Connection, letter: str) -> Company:
    name = f"Company {letter.upper()}"
    company_id = make_company(conn, name)
    sites = [make_site(conn, company_id, f"{name} site {n}") for n in (1, 2)]
    accounts = {role: make_user(conn, email=f"{role}@{letter}.example.com", role=role,
                                company_id=company_id, display_name=f"{role.title()} {letter}")
                for role in ("viewer", "operator", "admin")}
    group_id = make_group(conn, company_id, f"{name} first site", site_ids=[sites[0]],
                          user_ids=[accounts["viewer"].id, accounts["operator"].id])
    return Company(id=company_id, name=name, sites=sites, group_id=group_id, **accounts)


# --- web helpers -------------------------------------------------------------------------------


def csrf_token(client, path: str = "/login") -> str:
    """Fetch a form page and return its CSRF token."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email: str, password: str, *, remember: bool = False):
    """Sign in through the login form (with its CSRF token); return the response."""
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    if remember:
        data["remember"] = "y"
    return client.post("/login", data=data)


def dash_post(client, output: str, inputs: list[dict], state: list[dict] = (),
              changed: list[str] | None = None):
    """Post one callback request to Dash the way the browser does; return the response."""
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1]}
               for part in output.strip(".").split("...")]
    if changed is None:
        changed = [f"{item['id']}.{item['property']}" for item in inputs]
    body = {"output": output, "outputs": outputs[0] if len(outputs) == 1 else outputs,
            "inputs": inputs, "state": list(state), "changedPropIds": changed}
    return client.post("/_dash-update-component", json=body)


def call_callback(client, app, output: str, values: dict | None = None,
                  triggered: str | None = None):
    """Call the app's callback that writes ``output`` ("id.property") as the browser would.

    ``values`` maps "id.property" of its inputs and states to values (others are
    None); ``triggered`` is the "id.property" that changed (default: every input).
    """
    values = values or {}
    key = next((k for k in app.callback_map if output in k.strip(".").split("...")), None)
    assert key, f"no callback writes {output}"
    entry = app.callback_map[key]

    def items(dependencies):
        return [{"id": d["id"], "property": d["property"],
                 "value": values.get(f"{d['id']}.{d['property']}")} for d in dependencies]

    inputs = items(entry["inputs"])
    changed = [triggered] if triggered else None
    return dash_post(client, key, inputs, items(entry["state"]), changed)


def browser_login(page, base_url: str, email: str, password: str) -> None:
    """Sign in through the login form in the browser and wait for the app."""
    page.goto(f"{base_url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")


# --- fixtures ----------------------------------------------------------------------------------


def finish_setup(app) -> None:
    """Run Dash's first-request setup so that ``app.callback_map`` holds every callback."""
    from auth.guard import guard

    with app.server.test_request_context("/"):
        for function in app.server.before_request_funcs[None]:
            if function is not guard and "Limiter" not in repr(function):
                function()


@pytest.fixture(scope="module")
def app(settings):
    """The real Dash app on this module's database and Redis prefix, set up completely."""
    from dashboards.app import create_app

    dash_app = create_app(settings)
    finish_setup(dash_app)
    return dash_app


@pytest.fixture
def client(app):
    """A Flask test client of the app, not logged in."""
    return app.server.test_client()


@pytest.fixture(scope="module")
def tenants(settings) -> Tenants:
    """Two companies with sites and users of every role, plus platform staff."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = _make_company_with_users(conn, "a")
        b = _make_company_with_users(conn, "b")
        support = make_user(conn, email="support@kilowatch.example.com", role="support",
                            display_name="Support")
        superadmin = make_user(conn, email="root@kilowatch.example.com", role="superadmin",
                               display_name="Root")
    return Tenants(a=a, b=b, support=support, superadmin=superadmin)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kilowatch web exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"kilowatch web did not answer on {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def live_server(kw_env) -> Iterator[str]:
    """Run ``kilowatch web`` on a free port against this module's services; yield its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Links in the e-mails it writes (invitations, alarms) point at it.
    env = {**os.environ, **kw_env, "KILOWATCH_LOG_LEVEL": "WARNING", "KILOWATCH_BASE_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "kilowatch", "web", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"], env=env)
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A page in a fresh browser context (no cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def unique_email(prefix: str = "user") -> str:
    """Return an e-mail address no other test uses."""
    return f"{prefix}-{secrets.token_hex(4)}@example.com"
