"""Hashing and tokens, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genesis.security import (
    InvalidToken,
    create_token,
    decode_token,
    hash_password,
    passwords,
    verify_password,
)
from genesis.settings import Settings

KEY = "unit-test-secret-key-long-enough-for-hs256!"


def test_argon2_hash_verifies_only_the_right_password() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horsE")


def test_production_hashes_at_rfc_9106_low_memory_unless_a_test_stack_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cheap profile is for test stacks only: nothing set means production's cost
    (argon2-cffi's default, m=64 MiB, t=3, p=4), in the app's settings and the helpers."""
    monkeypatch.delenv("PASSWORD_HASH_PROFILE", raising=False)
    profile = Settings(secret_key="x" * 32).password_hash_profile
    assert profile == "RFC_9106_LOW_MEMORY"
    production = "$argon2id$v=19$m=65536,t=3,p=4$"
    assert passwords(profile).hash("pw").startswith(production)
    assert hash_password("pw").startswith(production)
    cheap = passwords("CHEAPEST").hash("pw")
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    # a hash carries its parameters: either profile verifies the other's
    assert passwords(profile).verify(cheap, "pw")
    assert passwords("CHEAPEST").verify(hash_password("pw"), "pw")


def test_the_profile_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSWORD_HASH_PROFILE", "CHEAPEST")
    assert Settings(secret_key="x" * 32).password_hash_profile == "CHEAPEST"
    monkeypatch.setenv("PASSWORD_HASH_PROFILE", "cheap")
    with pytest.raises(ValueError, match="password_hash_profile"):
        Settings(secret_key="x" * 32)


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


def test_unknown_user_and_garbage_hash_never_verify() -> None:
    assert not verify_password(None, "not-a-real-password")
    assert not verify_password("not a hash", "anything")


def test_token_round_trip() -> None:
    token = create_token("42", KEY, timedelta(minutes=5))
    assert decode_token(token, KEY) == "42"


@pytest.mark.parametrize(
    ("token", "key"),
    [
        (create_token("42", KEY, timedelta(minutes=5)), KEY + "x"),
        (
            create_token(
                "42", KEY, timedelta(minutes=5), now=datetime.now(UTC) - timedelta(hours=1)
            ),
            KEY,
        ),
        ("not.a.token", KEY),
        ("", KEY),
    ],
    ids=["wrong-key", "expired", "garbage", "empty"],
)
def test_bad_tokens_are_rejected(token: str, key: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(token, key)
