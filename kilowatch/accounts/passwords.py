"""Hash and check passwords with Argon2id, and generate one-time passwords.

Lives in ``kilowatch`` (not ``auth``) because the core CLI sets passwords too.
Parameters follow the OWASP password storage cheat sheet for Argon2id
(19 MiB of memory, 2 iterations, 1 degree of parallelism); a stored hash made
with other parameters is re-hashed at the next successful login.
"""

from __future__ import annotations

import contextlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from kilowatch.errors import UserFacingError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing megabytes of "password" would be a cheap denial of service

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32,
                        salt_len=16, type=Type.ID)

# Verified when the account does not exist, so that an unknown e-mail costs as
# much time as a wrong password and the two cannot be told apart.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


class PasswordPolicyError(UserFacingError, ValueError):
    """A new password does not meet the policy."""


def hash_password(password: str) -> str:
    """Return the Argon2id hash of a password that meets the policy."""
    check_policy(password)
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Say whether ``password`` matches the stored hash (constant work when there is none)."""
    if not password_hash or len(password) > MAX_LENGTH:
        _burn(password[:MAX_LENGTH])
        return False
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Say whether a stored hash was made with other parameters than today's."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def check_policy(password: str) -> None:
    """Raise PasswordPolicyError unless the password is 12 to 1024 characters long."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"a password has at most {MAX_LENGTH} characters")
    if not password.strip():
        raise PasswordPolicyError("a password cannot be only spaces")


def generate_password() -> str:
    """Return a random 20-character password to be shown once."""
    return secrets.token_urlsafe(15)


def _burn(password: str) -> None:
    with contextlib.suppress(VerificationError):
        HASHER.verify(_DUMMY_HASH, password)
