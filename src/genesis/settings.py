"""Configuration from the environment, read once per application instance.

Everything a deployment changes is here, so tests build an app from an explicit
`Settings(...)` instead of patching globals.
"""

from __future__ import annotations

import logging
import secrets

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genesis.security import DEFAULT_PROFILE, PasswordHashProfile

log = logging.getLogger("genesis")

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./genesis.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: SecretStr | None = None
    orchestrator_url: str = "http://127.0.0.1:5005"
    orchestrator_timeout: float = Field(default=10.0, gt=0)
    redis_url: str | None = None
    access_token_minutes: float = Field(default=30.0, gt=0)
    cache_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Argon2's cost: production's default; only test stacks set CHEAPEST (security.py).
    password_hash_profile: PasswordHashProfile = DEFAULT_PROFILE

    @model_validator(mode="after")
    def _random_secret_when_unset(self) -> Settings:
        # A random key keeps a dev server safe by default; the warning says why every
        # token dies with the process.
        if self.secret_key is None or not self.secret_key.get_secret_value():
            object.__setattr__(self, "secret_key", SecretStr(secrets.token_urlsafe(32)))
            log.warning(
                "SECRET_KEY is not set: using a random key for this process, so tokens "
                "stop working when it restarts; set SECRET_KEY to keep them"
            )
        if not self.redis_url:
            object.__setattr__(self, "redis_url", None)
        return self

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    @property
    def async_database_url(self) -> str:
        return async_url(self.database_url)


def async_url(url: str) -> str:
    """The URL with its asyncio driver: people write `postgresql://` and `sqlite://`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url
