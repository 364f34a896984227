"""Businesses: CRUD, validation, and every business visible only to its owner."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import User


async def create(client: httpx.AsyncClient, user: User, **fields: object) -> httpx.Response:
    body = {"name": "Alice's Bakery", "industry": "food", **fields}
    return await client.post("/api/businesses", json=body, headers=user.headers)


async def test_create_read_list_update_delete(client: httpx.AsyncClient, alice: User) -> None:
    created = await create(client, alice, description="  sourdough  ")
    assert created.status_code == 201
    business = created.json()
    assert business["name"] == "Alice's Bakery"
    assert business["description"] == "sourdough"
    url = f"/api/businesses/{business['id']}"

    assert (await client.get(url, headers=alice.headers)).json() == business
    assert [
        b["id"] for b in (await client.get("/api/businesses", headers=alice.headers)).json()
    ] == [business["id"]]

    updated = await client.patch(url, json={"industry": "bakery"}, headers=alice.headers)
    assert updated.status_code == 200
    assert updated.json()["industry"] == "bakery"
    assert updated.json()["name"] == "Alice's Bakery"

    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    assert (await client.get("/api/businesses", headers=alice.headers)).json() == []


async def test_list_shows_only_your_own(client: httpx.AsyncClient, alice: User, bob: User) -> None:
    await create(client, alice)
    await create(client, bob, name="Bob's Garage")
    names = [b["name"] for b in (await client.get("/api/businesses", headers=bob.headers)).json()]
    assert names == ["Bob's Garage"]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
async def test_someone_elses_business_is_404(
    client: httpx.AsyncClient, alice: User, bob: User, method: str
) -> None:
    business = (await create(client, alice)).json()
    url = f"/api/businesses/{business['id']}"
    kwargs: dict[str, object] = {"json": {"name": "stolen"}} if method == "patch" else {}
    response = await getattr(client, method)(url, headers=bob.headers, **kwargs)
    assert response.status_code == 404
    assert response.json()["detail"] == "Business not found"
    assert (await client.get(url, headers=alice.headers)).json()["name"] == "Alice's Bakery"


async def test_missing_business_is_404(client: httpx.AsyncClient, alice: User) -> None:
    assert (await client.get("/api/businesses/999999", headers=alice.headers)).status_code == 404


@pytest.mark.parametrize(
    "fields",
    [{"name": ""}, {"name": "   "}, {"name": "x" * 121}, {"industry": "y" * 81}, {"name": None}],
)
async def test_invalid_fields_are_422(
    client: httpx.AsyncClient, alice: User, fields: dict[str, object]
) -> None:
    assert (await create(client, alice, **fields)).status_code == 422


async def test_invalid_update_is_422_and_changes_nothing(
    client: httpx.AsyncClient, alice: User
) -> None:
    business = (await create(client, alice)).json()
    url = f"/api/businesses/{business['id']}"
    assert (await client.patch(url, json={"name": ""}, headers=alice.headers)).status_code == 422
    assert (await client.get(url, headers=alice.headers)).json()["name"] == "Alice's Bakery"


async def test_duplicate_name_is_409_for_the_same_owner_only(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert (await create(client, alice)).status_code == 201
    assert (await create(client, alice)).status_code == 409
    assert (await create(client, bob)).status_code == 201  # another owner may use the name
    other = (await create(client, alice, name="Second")).json()
    renamed = await client.patch(
        f"/api/businesses/{other['id']}", json={"name": "Alice's Bakery"}, headers=alice.headers
    )
    assert renamed.status_code == 409
    assert len((await client.get("/api/businesses", headers=alice.headers)).json()) == 2


async def test_businesses_need_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/businesses")).status_code == 401
    assert (await client.post("/api/businesses", json={"name": "x"})).status_code == 401
