"""Make the broker's accounts and roles match the database and the settings.

The database is the source of truth: every activated, unrevoked device has an
account (username = client id = serial, its derived password, its own role), and
the collector and schedule publisher have theirs. :func:`reconcile` compares the
whole picture with the broker (a broker that lost its state, an account changed
behind the platform's back) and repairs it; :func:`apply_pending` handles only
the devices changed since their last sync, so activations and revocations reach
the broker within a second or two.

Passwords cannot be read back from the broker, so each account carries a public
fingerprint of its credential in its ``textdescription``: a different one means
the password is set again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import psycopg

from kilowatch.broker import rules
from kilowatch.broker.dynsec import Dynsec
from kilowatch.devices import credentials
from kilowatch.mqtt import broker_address
from kilowatch.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Account:
    """An account as the platform wants it on the broker."""

    username: str
    password: str
    fingerprint: str
    roles: tuple[str, ...]
    clientid: str | None = None


def service_accounts(settings: Settings) -> tuple[dict[str, list[rules.Acl]], list[Account]]:
    """Return the service roles and the collector's and publisher's accounts."""
    prefix = settings.mqtt_prefix
    roles = {rules.collector_role_name(prefix): rules.collector_acls(prefix),
             rules.publisher_role_name(prefix): rules.publisher_acls(prefix)}
    wanted: dict[str, Account] = {}
    for url, role in ((settings.mqtt_url, rules.collector_role_name(prefix)),
                      (settings.mqtt_publisher_url, rules.publisher_role_name(prefix))):
        _host, _port, _tls, username, password = broker_address(url)
        if not username:
            continue
        known = wanted.get(username)
        role_names = (known.roles if known else ()) + (role,)
        wanted[username] = Account(username, password or "", _password_print(password or ""),
                                   role_names)
    return roles, list(wanted.values())


def device_account(settings: Settings, serial: str, nonce: bytes) -> Account:
    """Return one activated device's account."""
    return Account(serial, credentials.derive_password(settings.device_key, serial, nonce),
                   credentials.fingerprint(nonce),
                   (rules.device_role_name(settings.mqtt_prefix, serial),), clientid=serial)


def _password_print(password: str) -> str:
    return hashlib.sha256(b"kilowatch-service:" + password.encode()).hexdigest()[:16]


def _active_devices(conn: psycopg.Connection, serial: str | None = None) -> list[dict]:
    query = ("SELECT serial, credential_nonce FROM devices WHERE credential_nonce IS NOT NULL"
             + (" AND serial = %s" if serial else ""))
    return conn.execute(query, (serial,) if serial else ()).fetchall()


class Plan:
    """The commands that take the broker from what it has to what the platform wants."""

    def __init__(self, settings: Settings) -> None:
        self.tag = rules.tag(settings.mqtt_prefix)
        self.commands: list[dict] = []
        self.changes: list[str] = []

    def add(self, change: str, *commands: dict) -> None:
        """Queue commands and the one-line description of the change they make."""
        self.commands.extend(commands)
        self.changes.append(change)

    def role(self, name: str, acls: list[rules.Acl], have: dict | None) -> None:
        """Create a missing role, or rewrite one whose ACLs differ."""
        want = {(a.acltype, a.topic, a.allow) for a in acls}
        if have is None:
            self.add(f"created role {name}", {"command": "createRole", "rolename": name,
                                             "acls": [a._asdict() for a in acls]})
            return
        got = {(a["acltype"], a["topic"], a.get("allow", False)) for a in have.get("acls", [])}
        for acltype, topic, _allow in sorted(got - want):
            self.add(f"removed {acltype} {topic} from role {name}",
                     {"command": "removeRoleACL", "rolename": name, "acltype": acltype,
                      "topic": topic})
        for acltype, topic, allow in sorted(want - got):
            self.add(f"added {acltype} {topic} to role {name}",
                     {"command": "addRoleACL", "rolename": name, "acltype": acltype,
                      "topic": topic, "allow": allow})

    def account(self, want: Account, have: dict | None) -> None:
        """Create a missing account, or repair its client id, roles, state and password."""
        name = want.username
        if have is None:
            command = {"command": "createClient", "username": name, "password": want.password,
                       "textname": self.tag, "textdescription": want.fingerprint,
                       "roles": [{"rolename": r} for r in want.roles]}
            if want.clientid:
                command["clientid"] = want.clientid
            self.add(f"created account {name}", command)
            return
        if have.get("clientid") != want.clientid:
            self.add(f"set the client id of {name}", {"command": "setClientId", "username": name,
                                                     "clientid": want.clientid or ""})
        got_roles = {r["rolename"] for r in have.get("roles", [])}
        for role in sorted(got_roles - set(want.roles)):
            self.add(f"removed role {role} from {name}",
                     {"command": "removeClientRole", "username": name, "rolename": role})
        for role in sorted(set(want.roles) - got_roles):
            self.add(f"added role {role} to {name}",
                     {"command": "addClientRole", "username": name, "rolename": role})
        for group in have.get("groups", []):
            self.add(f"removed {name} from group {group['groupname']}",
                     {"command": "removeGroupClient", "username": name,
                      "groupname": group["groupname"]})
        if have.get("disabled"):
            self.add(f"enabled {name}", {"command": "enableClient", "username": name})
        if have.get("textdescription") != want.fingerprint or have.get("textname") != self.tag:
            self.add(f"set the password of {name}",
                     {"command": "setClientPassword", "username": name, "password": want.password},
                     {"command": "modifyClient", "username": name, "textname": self.tag,
                      "textdescription": want.fingerprint})

    def remove_account(self, username: str) -> None:
        """Delete an account (its connected client is cut off at once)."""
        self.add(f"deleted account {username}", {"command": "deleteClient",
                                                 "username": username})

    def remove_role(self, name: str) -> None:
        """Delete a role."""
        self.add(f"deleted role {name}", {"command": "deleteRole", "rolename": name})


def reconcile(settings: Settings, conn: psycopg.Connection | None = None) -> list[str]:
    """Make every managed account and role on the broker match; return what changed.

    Without a database connection only the service roles and accounts are made
    (``scripts/stack`` does so on a new broker); devices are left as they are.
    """
    prefix = settings.mqtt_prefix
    devices = conn is not None
    roles, accounts = service_accounts(settings)
    if conn is not None:
        for row in _active_devices(conn):
            account = device_account(settings, row["serial"], bytes(row["credential_nonce"]))
            roles[account.roles[0]] = rules.device_acls(prefix, row["serial"])
            accounts.append(account)
    with _dynsec(settings) as broker:
        have_roles = {r["rolename"]: r for r in broker.list_roles()}
        have_clients = {c["username"]: c for c in broker.list_clients()}
        plan = Plan(settings)
        for name, acls in roles.items():
            plan.role(name, acls, have_roles.get(name))
        for account in accounts:
            plan.account(account, have_clients.get(account.username))
        if devices:
            wanted = {a.username for a in accounts}
            for username, client in have_clients.items():
                if client.get("textname") == plan.tag and username not in wanted:
                    plan.remove_account(username)
            device_roles = f"device:{prefix}:"
            for name in have_roles:
                if name.startswith(device_roles) and name not in roles:
                    plan.remove_role(name)
        broker.run(plan.commands)
    _log(plan.changes)
    if conn is not None:
        conn.execute("UPDATE devices SET broker_synced_at = now() "
                     "WHERE broker_synced_at IS DISTINCT FROM identity_changed_at")
    return plan.changes


def apply_pending(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Push the devices whose identity changed since their last sync; return what changed."""
    pending = conn.execute(
        """SELECT id, serial, credential_nonce, identity_changed_at FROM devices
           WHERE identity_changed_at IS NOT NULL
             AND broker_synced_at IS DISTINCT FROM identity_changed_at
           ORDER BY identity_changed_at LIMIT 500""").fetchall()
    if not pending:
        return []
    plan = Plan(settings)
    with _dynsec(settings) as broker:
        have = _current(broker, settings, [row["serial"] for row in pending])
        for row in pending:
            _plan_device(plan, settings, row, *have[row["serial"]])
        broker.run(plan.commands, ok_errors=("Client not found", "Role not found"))
    for row in pending:
        conn.execute("UPDATE devices SET broker_synced_at = %s WHERE id = %s",
                     (row["identity_changed_at"], row["id"]))
    _log(plan.changes)
    return plan.changes


def _current(broker: Dynsec, settings: Settings,
             serials: list[str]) -> dict[str, tuple[dict | None, dict | None]]:
    """Return each device's account and role as the broker has them, in one round trip."""
    commands = []
    for serial in serials:
        commands += [{"command": "getClient", "username": serial},
                     {"command": "getRole",
                      "rolename": rules.device_role_name(settings.mqtt_prefix, serial)}]
    answers = broker.run(commands, ok_errors=("Client not found", "Role not found"))
    return {serial: (answers[2 * n].get("data", {}).get("client"),
                     answers[2 * n + 1].get("data", {}).get("role"))
            for n, serial in enumerate(serials)}


def _plan_device(plan: Plan, settings: Settings, row: dict, have_client: dict | None,
                 have_role: dict | None) -> None:
    serial = row["serial"]
    role = rules.device_role_name(settings.mqtt_prefix, serial)
    if row["credential_nonce"] is None:
        if have_client is not None and have_client.get("textname") == plan.tag:
            plan.remove_account(serial)
        if have_role is not None:
            plan.remove_role(role)
        return
    account = device_account(settings, serial, bytes(row["credential_nonce"]))
    plan.role(role, rules.device_acls(settings.mqtt_prefix, serial), have_role)
    plan.account(account, have_client)


def _dynsec(settings: Settings) -> Dynsec:
    return Dynsec(settings.mqtt_admin_url, ca_file=settings.mqtt_ca_file)


def _log(changes: list[str]) -> None:
    for change in changes:
        log.info("broker: %s", change)
