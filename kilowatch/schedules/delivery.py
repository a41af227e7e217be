"""Publish a site's latest schedule revision to its storage devices over MQTT.

The payload is the schedule JSON plus ``revision``, sent retained with QoS 1 on
``{prefix}/{serial}/schedule`` so a device that connects later still gets it.
On a site with several storage devices each gets its share of the schedule's
power and grid limit, in proportion to its rated power
(:func:`kilowatch.schedules.program.device_part`).
A broker that cannot be reached leaves the revision saved but unpublished; the
worker job in :mod:`kilowatch.jobs.schedules` publishes it again later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import psycopg

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope
from kilowatch.errors import UserFacingError
from kilowatch.mqtt import BrokerUnavailable, connect
from kilowatch.schedules import model as schedules
from kilowatch.schedules import program as schedule_program
from kilowatch.schedules import store as schedule_store
from kilowatch.settings import Settings, get_settings

_LOCK_KEY = 7_120_005  # advisory lock (key, site id): one publisher per site at a time
# A person waiting on a page gives the broker this long (to connect, then to confirm);
# the worker's job sends an unconfirmed revision again anyway.
INTERACTIVE_TIMEOUT_S = 3.0


class PublishError(RuntimeError):
    """The broker could not be reached or did not confirm the messages."""


class PublishBusy(UserFacingError):
    """Another save of the same site's schedule is being sent right now."""


@dataclasses.dataclass(frozen=True)
class PublishResult:
    """What happened when a revision was sent: which devices got it, and any error."""

    site_id: int
    revision: int
    published: tuple[str, ...]
    failed: tuple[str, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every targeted device's message was confirmed by the broker."""
        return self.error is None


def schedule_topic(serial: str, settings: Settings | None = None) -> str:
    """Return the topic a device reads its schedule from."""
    return f"{(settings or get_settings()).mqtt_prefix}/{serial}/schedule"


def publish_latest(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
                   only_unpublished: bool = False, settings: Settings | None = None,
                   timeout_s: float = 10.0) -> PublishResult | None:
    """Send a site's latest revision to its storage devices; None when it has no schedule."""
    with _site_lock(conn, site_id, wait=True):
        return _publish_locked(conn, scope, site_id, settings or get_settings(), timeout_s,
                               only_unpublished=only_unpublished)


def save_and_publish(conn: psycopg.Connection, scope: AccessScope, site_id: int, body: object,
                     *, comment: str = "", settings: Settings | None = None,
                     timeout_s: float = 10.0, wait: bool = True,
                     ) -> tuple[dict, PublishResult | None]:
    """Validate and save a schedule as a new revision, then send it (the editor and CLI path).

    The revision stays saved when the broker cannot be reached: check ``result.ok``.
    With ``wait=False`` (the web editor) a save of the same site being sent right now
    raises :class:`PublishBusy` before anything is saved, instead of queueing behind it.
    """
    with _site_lock(conn, site_id, wait=wait):
        revision = schedule_store.save_revision(conn, scope, site_id, body, comment=comment)
        return revision, _publish_locked(conn, scope, site_id, settings or get_settings(),
                                         timeout_s)


def restore_and_publish(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                        revision: int, *, comment: str | None = None,
                        settings: Settings | None = None, timeout_s: float = 10.0,
                        wait: bool = True) -> tuple[dict, PublishResult | None]:
    """Save an older revision again as the newest one, then send it (``wait`` as for a save)."""
    with _site_lock(conn, site_id, wait=wait):
        row = schedule_store.restore_revision(conn, scope, site_id, revision, comment=comment)
        return row, _publish_locked(conn, scope, site_id, settings or get_settings(), timeout_s)


@contextlib.contextmanager
def _site_lock(conn: psycopg.Connection, site_id: int, *, wait: bool) -> Iterator[None]:
    """Hold the site's publish lock (session level: released before the connection is reused)."""
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_KEY, site_id))
    elif not conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS got",
                          (_LOCK_KEY, site_id)).fetchone()["got"]:
        raise PublishBusy("another save of this site's schedule is being sent right now; "
                          "try again in a few seconds")
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_KEY, site_id))


def _publish_locked(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                    settings: Settings, timeout_s: float, *,
                    only_unpublished: bool = False) -> PublishResult | None:
    revision = schedule_store.latest_revision(conn, scope, site_id)
    if revision is None:
        return None
    if not _may_publish(conn, scope, site_id):
        raise AccessDenied("you may read this site's schedule but not send it")
    # Devices registered after the save get the latest revision too.
    schedule_store.add_missing_deliveries(conn, scope, revision)
    targets = schedule_store.deliveries(conn, scope, revision["id"])
    site_kw = schedule_store.site_limits(conn, scope, site_id).rated_power_kw or 0.0
    missing = [t for t in targets if t["published_at"] is None]
    # On a site with several storage devices a late-registered one changes every
    # device's share, so whenever one still needs the revision all get it again.
    if only_unpublished and (len(targets) == 1 or not missing):
        targets = missing
    return _send(conn, scope, revision, targets, site_kw, settings, timeout_s)


def _may_publish(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> bool:
    site = fleet.get_site(conn, scope, site_id)  # filtered in SQL; AccessDenied when not visible
    return scope.may_edit_site(site["company_id"], site["id"])


def device_payload(revision: dict, device: dict, site_kw: float) -> str:
    """Return the schedule message of one storage device (a delivery row) of a site."""
    body = schedule_program.device_part(schedules.canonical(revision["body"]),
                                        schedule_store.rated_power(device), site_kw)
    return json.dumps({"revision": revision["revision"], **body})


def _send(conn: psycopg.Connection, scope: AccessScope, revision: dict, targets: list[dict],
          site_kw: float, settings: Settings, timeout_s: float) -> PublishResult:
    messages = [(schedule_topic(t["serial"], settings), device_payload(revision, t, site_kw))
                for t in targets]
    confirmed, error = publish_retained(messages, settings=settings, timeout_s=timeout_s)
    now = dt.datetime.now(dt.UTC)
    done = [t for i, t in enumerate(targets) if i in confirmed]
    missed = [t for i, t in enumerate(targets) if i not in confirmed]
    schedule_store.mark_published(conn, scope, revision["id"],
                                  [t["device_id"] for t in done], at=now)
    if missed:
        schedule_store.mark_publish_failed(conn, scope, revision["id"],
                                           [t["device_id"] for t in missed],
                                           error=error or "not confirmed", at=now)
    return PublishResult(revision["site_id"], revision["revision"],
                         tuple(t["serial"] for t in done), tuple(t["serial"] for t in missed),
                         error if missed else None)


def publish_retained(messages: list[tuple[str, str]], *, settings: Settings | None = None,
                     timeout_s: float = 10.0) -> tuple[set[int], str | None]:
    """Publish (topic, payload) pairs retained at QoS 1 with a one-shot client.

    Returns the indexes the broker confirmed (PUBACK) and an error message or None.
    """
    if not messages:
        return set(), None
    settings = settings or get_settings()
    try:
        client = _connect(settings, timeout_s)
    except PublishError as error:
        return set(), str(error)
    confirmed: set[int] = set()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=True)
                 for topic, payload in messages]
        deadline = time.monotonic() + timeout_s
        for index, info in enumerate(infos):
            try:
                info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as error:
                return confirmed, f"the broker connection failed while publishing: {error}"
            if not info.is_published():
                return confirmed, f"the broker did not confirm the message within {timeout_s:g} s"
            confirmed.add(index)
        return confirmed, None
    finally:
        client.disconnect()
        client.loop_stop()


def _connect(settings: Settings, timeout_s: float) -> mqtt.Client:
    try:
        return connect(settings.mqtt_publisher_url,
                       client_id=f"kilowatch-schedule-{secrets.token_hex(6)}",
                       ca_file=settings.mqtt_ca_file, timeout_s=timeout_s)
    except BrokerUnavailable as error:
        raise PublishError(str(error)) from None
