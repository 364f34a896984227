"""Settings come from the environment; a missing SECRET_KEY is survivable but loud."""

from __future__ import annotations

import logging

import pytest

from genesis.settings import DEFAULT_DATABASE_URL, Settings, async_url


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1/db")
    monkeypatch.setenv("SECRET_KEY", "from-the-environment-and-long-enough")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("ACCESS_TOKEN_MINUTES", "5")
    settings = Settings()
    assert settings.async_database_url == "postgresql+asyncpg://u@127.0.0.1/db"
    assert settings.secret == "from-the-environment-and-long-enough"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.access_token_minutes == 5


def test_missing_secret_key_gives_a_random_one_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="genesis"):
        first, second = Settings(), Settings()
    assert first.secret != second.secret
    assert len(first.secret) >= 32
    assert "SECRET_KEY is not set" in caplog.text


def test_secret_is_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(secret_key="do-not-print-me-anywhere-at-all-please")
    assert "do-not-print-me" not in repr(settings)


def test_defaults_run_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(secret_key="k" * 40)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://a@h/d", "postgresql+asyncpg://a@h/d"),
        ("postgres://a@h/d", "postgresql+asyncpg://a@h/d"),
        ("postgresql+asyncpg://a@h/d", "postgresql+asyncpg://a@h/d"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_async_url(url: str, expected: str) -> None:
    assert async_url(url) == expected


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESS_TOKEN_MINUTES", "-1")
    with pytest.raises(ValueError, match="access_token_minutes"):
        Settings(secret_key="k" * 40)


@pytest.mark.parametrize(
    ("name", "value"), [("PASSWORD_HASH_PROFILE", "cheap"), ("ORCHESTRATOR_TIMEOUT", "-1")]
)
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m genesis serve` with PASSWORD_HASH_PROFILE=cheap printed pydantic's
    traceback; the backend service's log should say which variable and what it takes."""
    from genesis.__main__ import main

    monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"genesis: {name}=")
    assert value in err
