"""Hashing and tokens, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genesis.security import (
    InvalidToken,
    create_token,
    decode_token,
    hash_password,
    verify_password,
)

KEY = "unit-test-secret-key-long-enough-for-hs256!"


def test_argon2_hash_verifies_only_the_right_password() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horsE")


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
