"""Stage 2: registration, login, tokens and /me, on the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from genesis.models import User as UserRow
from genesis.security import create_token
from tests.conftest import SECRET, User, register_and_login

PASSWORD = "correct horse battery"


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/auth/register", json={"email": email, "password": password})


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/login", data={"username": email, "password": password})


async def test_register_returns_the_user_without_any_password(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    response = await register(client, "new@example.com")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == "new@example.com"
    stored = await db_session.scalar(select(UserRow).where(UserRow.email == "new@example.com"))
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


async def test_duplicate_email_is_409_and_the_first_account_still_works(
    client: httpx.AsyncClient,
) -> None:
    assert (await register(client, "dup@example.com")).status_code == 201
    again = await register(client, "DUP@example.com", "another password")
    assert again.status_code == 409
    assert "already registered" in again.json()["detail"]
    # The app rolled back its failed insert; the test's transaction is still usable.
    assert (await login(client, "dup@example.com")).status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@", "password": PASSWORD}, "email"),
        ({"email": "short@example.com", "password": "1234567"}, "password"),
        ({"email": "nopass@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, str], field: str
) -> None:
    response = await client.post("/api/auth/register", json=payload)
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
    assert PASSWORD not in response.text


async def test_password_of_exactly_eight_characters_is_accepted(client: httpx.AsyncClient) -> None:
    assert (await register(client, "eight@example.com", "12345678")).status_code == 201


async def test_login_gives_a_bearer_token_that_expires(client: httpx.AsyncClient) -> None:
    await register(client, "login@example.com")
    response = await login(client, "login@example.com")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert claims["sub"].isdigit()


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "known@example.com")
    wrong = await login(client, "known@example.com", "not the password")
    unknown = await login(client, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password"}
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


async def test_me_with_a_valid_token(client: httpx.AsyncClient, alice: User) -> None:
    response = await client.get("/api/auth/me", headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["email"] == alice.email
    assert response.json()["id"] == alice.id


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_me_with_an_expired_token_is_401(client: httpx.AsyncClient, alice: User) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    expired = create_token(str(alice.id), SECRET, timedelta(minutes=30), now=an_hour_ago)
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
async def test_me_with_a_tampered_token_is_401(
    client: httpx.AsyncClient, alice: User, bob: User, part: str
) -> None:
    header, payload, signature = alice.token.split(".")
    if part == "payload":  # claim to be bob, keep alice's signature
        payload = bob.token.split(".")[1]
    elif part == "signature":
        signature = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    else:  # alg "none"
        header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"
    forged = f"{header}.{payload}.{signature}"
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


async def test_token_signed_with_another_key_is_401(client: httpx.AsyncClient, alice: User) -> None:
    other = create_token(
        str(alice.id), "another-secret-key-that-is-also-long-enough", timedelta(minutes=5)
    )
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 401


async def test_token_of_a_deleted_user_is_401(
    client: httpx.AsyncClient, alice: User, db_session: AsyncSession
) -> None:
    row = await db_session.get(UserRow, alice.id)
    await db_session.delete(row)
    await db_session.commit()
    response = await client.get("/api/auth/me", headers=alice.headers)
    assert response.status_code == 401


async def test_password_is_never_in_any_response(client: httpx.AsyncClient) -> None:
    secret = "a-very-distinctive-password"
    responses = [
        await register(client, "careful@example.com", secret),
        await register(client, "careful@example.com", secret),
        await login(client, "careful@example.com", secret),
        await login(client, "careful@example.com", secret + "x"),
    ]
    token = responses[2].json()["access_token"]
    responses.append(await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}))
    for response in responses:
        assert secret not in response.text
        assert "argon2" not in response.text
        assert "password_hash" not in response.text


async def test_password_is_never_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "another-distinctive-password"
    with caplog.at_level("DEBUG"):
        await register(client, "quiet@example.com", secret)
        await login(client, "quiet@example.com", secret)
    assert secret not in caplog.text


async def test_concurrent_requests_in_one_test_do_not_collide_on_the_connection(
    client: httpx.AsyncClient,
) -> None:
    # Without the per-test session taking turns, asyncpg raises InterfaceError:
    # "cannot perform operation: another operation is in progress".
    users = await asyncio.gather(
        *(register_and_login(client, f"racer{i}@example.com") for i in range(4))
    )
    mes = await asyncio.gather(*(client.get("/api/auth/me", headers=u.headers) for u in users))
    assert sorted(m.json()["email"] for m in mes) == sorted(u.email for u in users)
