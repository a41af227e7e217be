"""Who may do what on the broker: the roles of devices and services, as data.

A device (username = client id = serial) may publish only on its own
``telemetry``, ``alarms``, ``status``, ``schedule/ack`` and ``plan/ack`` and
subscribe only to its own ``schedule`` and ``plan``. The collector subscribes to
what devices send (also through its shared subscription); the schedule publisher
publishes schedules and plans. Nothing else is allowed: the broker denies by default.
"""

from __future__ import annotations

from typing import NamedTuple

DEVICE_SENDS = ("telemetry", "alarms", "status", "schedule/ack", "plan/ack")
DEVICE_RECEIVES = ("schedule", "plan")
# Accounts and client ids of the platform's services start with this; no serial may.
RESERVED_PREFIX = "kilowatch-"
TAG = "kilowatch"  # textname of every broker account the platform manages, with the prefix


class Acl(NamedTuple):
    """One rule of a role, in the dynamic-security plugin's terms."""

    acltype: str
    topic: str
    allow: bool = True


def tag(prefix: str) -> str:
    """Return the textname marking the broker accounts managed for this topic prefix."""
    return f"{TAG} {prefix}"


def device_role_name(prefix: str, serial: str) -> str:
    """Return the name of one device's role."""
    return f"device:{prefix}:{serial}"


def device_acls(prefix: str, serial: str) -> list[Acl]:
    """Return what one device may do: send on its own topics, receive its own commands."""
    base = f"{prefix}/{serial}"
    acls = [Acl("publishClientSend", f"{base}/{kind}") for kind in DEVICE_SENDS]
    acls += [Acl("subscribeLiteral", f"{base}/{kind}") for kind in DEVICE_RECEIVES]
    acls += [Acl("unsubscribeLiteral", f"{base}/{kind}") for kind in DEVICE_RECEIVES]
    return acls


def collector_role_name(prefix: str) -> str:
    """Return the name of the collector's role."""
    return f"collector:{prefix}"


def collector_acls(prefix: str) -> list[Acl]:
    """Return what the collector may do: subscribe to every device's messages, nothing else.

    Also through a shared subscription of any group (``$share/GROUP/…``), so that
    several collectors split the messages between them.
    """
    filters = [f"{prefix}/+/{kind}" for kind in DEVICE_SENDS]
    filters += [f"$share/+/{topic}" for topic in filters]
    acls = [Acl("subscribePattern", topic) for topic in filters]
    return acls + [Acl("unsubscribePattern", topic) for topic in filters]


def publisher_role_name(prefix: str) -> str:
    """Return the name of the schedule publisher's role."""
    return f"publisher:{prefix}"


def publisher_acls(prefix: str) -> list[Acl]:
    """Return what the schedule publisher may do: publish schedules and plans."""
    return [Acl("publishClientSend", f"{prefix}/+/{kind}") for kind in DEVICE_RECEIVES]


def is_reserved(name: str) -> bool:
    """Say whether a serial or client id would collide with a service account's."""
    return name.lower().startswith(RESERVED_PREFIX)
