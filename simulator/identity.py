"""Each simulated device's identity, as equipment keeps it: a code, then its credentials.

A device activates once over HTTPS (``POST /api/device/activate``) with the
one-time code its installer typed in, and keeps what it receives (MQTT login,
broker URL, topic prefix, the CA to trust) in a state file, mode 0600. Later
runs connect with the stored credentials; no code is needed again.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

ACTIVATE_PATH = "/api/device/activate"


class IdentityError(RuntimeError):
    """A device could not activate, or its state file cannot be used."""


class StateFile:
    """Codes and credentials of the simulated devices, by serial."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.devices: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as error:
            raise IdentityError(f"cannot read the state file {path}: {error}") from None
        if not isinstance(self.devices, dict):
            raise IdentityError(f"the state file {path} is not a JSON object")

    def credentials(self, serial: str) -> dict | None:
        """Return what activation gave this device, if it activated."""
        return self.devices.get(serial, {}).get("activation")

    def code(self, serial: str) -> str | None:
        """Return the activation code waiting to be used by this device."""
        return self.devices.get(serial, {}).get("activation_code")

    def set_code(self, serial: str, code: str) -> None:
        """Keep a new activation code; credentials of an earlier registration are dropped."""
        self.devices[serial] = {"activation_code": code}
        self.save()

    def set_credentials(self, serial: str, activation: dict) -> None:
        """Keep the activation's answer and forget the used code."""
        self.devices[serial] = {"activation": activation}
        self.save()

    def save(self) -> None:
        """Write the file atomically, readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(self.devices, file, indent=1)
        temporary.replace(self.path)


def activate(api_url: str, serial: str, code: str, firmware: str, *,
             ca_file: str | None = None, timeout_s: float = 15.0) -> dict:
    """Trade the code for credentials at ``api_url``; return the platform's answer."""
    if not api_url.startswith(("https://", "http://")):
        raise IdentityError(f"the platform's URL must be https:// (or http:// in development), "
                            f"not {api_url!r}")
    body = json.dumps({"serial": serial, "activation_code": code, "firmware": firmware}).encode()
    request = urllib.request.Request(api_url.rstrip("/") + ACTIVATE_PATH, data=body,  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=ca_file) if api_url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:  # noqa: S310
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        reason = _reason(error)
        raise IdentityError(f"{serial}: activation refused ({error.code}: {reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise IdentityError(f"{serial}: cannot reach {api_url} to activate ({error})") from None


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read()).get("error", "")
    except (ValueError, AttributeError):
        return ""


def tls_context(ca_certificate: str) -> ssl.SSLContext:
    """Return a TLS context trusting the CA the platform gave at activation."""
    context = ssl.create_default_context()
    if ca_certificate:
        context.load_verify_locations(cadata=ca_certificate)
    return context
