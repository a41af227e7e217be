"""Talk to Mosquitto's dynamic-security plugin: send commands, read its answers.

The plugin listens on ``$CONTROL/dynamic-security/v1`` for a JSON list of commands
and answers on ``…/response`` in the same order, to every admin client at once
(QoS 0): each request carries its own correlation data, and answers to others are
ignored. Only its admin account may do so;
the platform uses it from the worker and the operator's CLI, never from the web app.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading

from kilowatch.errors import UserFacingError
from kilowatch.mqtt import connect, surviving

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

log = logging.getLogger(__name__)


class DynsecError(UserFacingError):
    """The plugin refused a command, or did not answer."""


class Dynsec:
    """One admin connection to the plugin; use as a context manager."""

    def __init__(self, admin_url: str, *, ca_file: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.admin_url = admin_url
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._answer = threading.Event()
        self._responses: list[dict] = []
        self._waiting_for = ""
        self._lock = threading.Lock()

    def __enter__(self) -> Dynsec:
        self.client = connect(self.admin_url, client_id=f"kilowatch-admin-{secrets.token_hex(6)}",
                              ca_file=self.ca_file, timeout_s=self.timeout_s)
        self.client.on_message = surviving(self._on_message, log)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.subscribe(RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(self.timeout_s):
            self.close()
            raise DynsecError("the broker did not confirm the control subscription")
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _client, _userdata, message) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
            token = responses[0].get("correlationData")
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return
        if token and token == self._waiting_for:
            self._responses = responses
            self._answer.set()

    def run(self, commands: list[dict], *, ok_errors: tuple[str, ...] = ()) -> list[dict]:
        """Send commands and return the plugin's answers; raise DynsecError on a refusal.

        ``ok_errors`` lists error texts that are expected (e.g. "Client not found"
        when deleting): those answers are returned instead of raising.
        """
        if not commands:
            return []
        with self._lock:
            self._answer.clear()
            self._waiting_for = secrets.token_hex(8)
            tagged = [{**command, "correlationData": self._waiting_for} for command in commands]
            self.client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if not self._answer.wait(self.timeout_s):
                raise DynsecError(f"the broker did not answer {commands[0]['command']} "
                                  f"within {self.timeout_s:g} s")
            responses = self._responses
        for response in responses:
            error = response.get("error")
            if error and error not in ok_errors:
                raise DynsecError(f"the broker refused {response.get('command')}: {error}")
        return responses

    def data(self, command: dict) -> dict:
        """Run one command that returns data (getClient, listClients …) and return it."""
        return self.run([command])[0].get("data", {})

    def list_clients(self) -> list[dict]:
        """Return every account with its client id, roles, text fields and disabled flag."""
        return self.data({"command": "listClients", "verbose": True, "count": -1})["clients"]

    def list_roles(self) -> list[dict]:
        """Return every role with its ACLs."""
        return self.data({"command": "listRoles", "verbose": True, "count": -1})["roles"]
