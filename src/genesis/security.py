"""Password hashing (Argon2) and bearer tokens (JWT, HS256).

Hashing is CPU-bound for tens of milliseconds on purpose, so the async helpers run it
in a worker thread instead of stalling every other request on the event loop.

The cost is a setting (`password_hash_profile`): production keeps argon2-cffi's
default, RFC 9106's low-memory profile. Only test stacks choose `CHEAPEST`, so
fixtures that sign users up do not spend seconds hashing; a hash records its own
parameters, so either profile verifies the other's hashes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

import jwt
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
PasswordHashProfile = Literal["RFC_9106_LOW_MEMORY", "CHEAPEST"]
DEFAULT_PROFILE: PasswordHashProfile = "RFC_9106_LOW_MEMORY"


class InvalidToken(Exception):
    """The token is missing, expired, tampered with or malformed."""


class Passwords:
    """Hashing and verifying at one Argon2 profile."""

    def __init__(self, profile: PasswordHashProfile) -> None:
        self.hasher = PasswordHasher.from_parameters(getattr(profiles, profile))
        # Verified against when the email is unknown, so both failures cost the same time.
        self._dummy_hash = self.hasher.hash("not-a-real-password")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            verified = self.hasher.verify(password_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return verified and password_hash is not None

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)


@cache
def passwords(profile: PasswordHashProfile = DEFAULT_PROFILE) -> Passwords:
    """The hasher of a profile, made once per process (making it hashes once)."""
    return Passwords(profile)


def hash_password(password: str) -> str:
    return passwords().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    return passwords().verify(password_hash, password)


def create_token(
    subject: str, secret: str, lifetime: timedelta, now: datetime | None = None
) -> str:
    issued = now or datetime.now(UTC)
    claims = {"sub": subject, "iat": issued, "exp": issued + lifetime}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> str:
    """The token's subject; raises InvalidToken for anything not issued by us and current."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise InvalidToken("token has no subject")
    return subject
