"""Settings from the environment only.

The app never reads `.env` itself: conductor's `env_file` loads it (as docker compose's
`env_file:` would), so the tests, the prestart task and the API all see one set of
values and a forgotten variable fails here, by name, instead of falling back to some
default database.
"""

from __future__ import annotations

import sys

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """What connecting needs, and no more: Alembic runs with only DATABASE_URL set."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str

    @property
    def async_database_url(self) -> str:
        """The URL with the asyncpg driver (conductor and psql speak `postgresql://`)."""
        scheme, sep, rest = self.database_url.partition("://")
        if scheme in ("postgresql", "postgres") and sep:
            return f"postgresql+asyncpg://{rest}"
        return self.database_url


class Settings(DatabaseSettings):
    project_name: str = "Full-stack example"
    secret_key: SecretStr
    first_superuser: str
    first_superuser_password: SecretStr
    # Comma-separated origins that may call the API from a browser (the web front end).
    backend_cors_origins: str = ""
    access_token_minutes: int = 60

    @field_validator("first_superuser")
    @classmethod
    def _normalise_email(cls, value: str) -> str:
        # " Admin@Example.com " and "admin@example.com" are one account: the seed must
        # not create a second superuser because .env was written differently.
        email = value.strip().lower()
        if "@" not in email:
            raise ValueError(f"FIRST_SUPERUSER must be an email address, got {value!r}")
        return email

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.backend_cors_origins.split(",") if o.strip()]


def from_environment(program: str) -> Settings:
    """The settings, or one line per missing or bad variable and exit 2: a task's log
    tail in conductor's report then names the variable, not a pydantic traceback."""
    try:
        return Settings()  # type: ignore[call-arg]  # every field comes from the environment
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            print(f"{program}: {name}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
