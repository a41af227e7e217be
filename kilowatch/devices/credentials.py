"""Activation codes and MQTT passwords of devices: generated, hashed, derived (pure, no I/O).

An activation code is shown once and stored only as its SHA-256 hash (it is random
and long, so a fast hash is enough). A device's MQTT password is never stored: it is
``HMAC-SHA256(KILOWATCH_DEVICE_KEY, serial ":" nonce)`` where the 32-byte nonce is
drawn at each activation and kept in the database. So the platform can re-create a
device's broker account after the broker lost its state (the database and the key
together hold the credential) while a copy of the database alone reveals nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen
CODE_GROUPS = 4
CODE_GROUP_LENGTH = 5
NONCE_BYTES = 32


def new_code() -> str:
    """Return a fresh activation code such as ``K7Q2M-9XW3D-…`` (100 bits)."""
    groups = ("".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LENGTH))
              for _ in range(CODE_GROUPS))
    return "-".join(groups)


def normalize_code(code: str) -> str:
    """Return the code as stored: upper case, without spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def hash_code(code: str) -> bytes:
    """Return the SHA-256 of the normalized code (what the database keeps)."""
    return hashlib.sha256(normalize_code(code).encode()).digest()


def new_nonce() -> bytes:
    """Return the random part of a new credential."""
    return secrets.token_bytes(NONCE_BYTES)


def derive_password(key: str, serial: str, nonce: bytes) -> str:
    """Return the device's MQTT password: 32 bytes of HMAC, base64url without padding."""
    mac = hmac.new(key.encode(), serial.encode() + b":" + nonce, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def fingerprint(nonce: bytes) -> str:
    """Return a short public tag of a credential, kept beside the broker account."""
    return hashlib.sha256(b"kilowatch-credential:" + nonce).hexdigest()[:16]


def password_matches(key: str, serial: str, nonce: bytes | None, password: str) -> bool:
    """Say, in constant time, whether ``password`` is the device's current one."""
    if nonce is None:
        return False
    return hmac.compare_digest(derive_password(key, serial, nonce).encode(),
                               password.encode())
