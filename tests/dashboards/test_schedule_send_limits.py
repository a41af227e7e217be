"""A save on the schedule page never queues behind another one, nor waits long for the broker."""

from __future__ import annotations

import dataclasses
import json
import secrets
import socket
import threading

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import store as schedule_store
from tests.dashboards.conftest import finish_setup
from tests.dashboards.schedule_helpers import draft_values, post, response_json, signed_in

ROOT = system_scope("test")
BODY = {"timezone": "Europe/Paris", "default_mode": "idle",
        "periods": [{"days": ["mon"], "start": "17:00", "end": "21:00", "mode": "discharge",
                     "power_kw": 40, "soc_min": 20}],
        "exceptions": []}


@pytest.fixture(scope="module")
def site(tenants, settings) -> int:
    """Company A's first site with one storage device."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        fleet.register_device(conn, ROOT, site_id=tenants.a.sites[0],
                              serial=f"LIM-{secrets.token_hex(3)}", model="HES-L",
                              rated_power_kw=50, capacity_kwh=100)
    return tenants.a.sites[0]


def _save(app, account, site_id: int, comment: str) -> str:
    values = {**draft_values(site_id, BODY), "schedule-comment.value": comment,
              "schedule-save.n_clicks": 1}
    response = post(signed_in(app, account), app, "schedule-message.children", values,
                    triggered="schedule-save.n_clicks")
    return json.dumps(response_json(response)["schedule-message"])


def _comments(conn, site_id: int) -> list[str]:
    return [row["comment"] for row in schedule_store.history(conn, ROOT, site_id)]


def test_a_save_while_another_is_being_sent_says_so_and_saves_nothing(app, conn, settings,
                                                                      tenants, site):
    other = psycopg.connect(settings.database_url, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, %s)", (schedule_delivery._LOCK_KEY, site))
    # Released later in any case, so that a save that waits for the lock ends too.
    release = threading.Timer(8, other.close)
    release.start()
    try:
        message = _save(app, tenants.a.operator, site, "while busy")
    finally:
        release.cancel()
        other.close()
    assert "Another save of this site's schedule is being sent right now" in message
    assert "while busy" not in _comments(conn, site)
    assert "Saved revision" in _save(app, tenants.a.operator, site, "after the other one")
    assert "after the other one" in _comments(conn, site)


@pytest.fixture
def silent_broker():
    """A TCP server that accepts connections and never answers: a broker that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"mqtt://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_save_gives_a_hanging_broker_a_few_seconds_only(settings, tenants, site, conn,
                                                         silent_broker):
    from dashboards.app import create_app

    hanging = create_app(dataclasses.replace(settings, mqtt_publisher_url=silent_broker))
    finish_setup(hanging)
    message = _save(hanging, tenants.a.operator, site, "broker hangs")
    assert "could not be sent yet" in message
    assert f"no answer within {schedule_delivery.INTERACTIVE_TIMEOUT_S:g} s" in message
    assert "broker hangs" in _comments(conn, site)
