"""The Vite dev server: it serves the application and proxies the API to the backend."""

from __future__ import annotations

import aiohttp


async def test_root_serves_the_application(http: aiohttp.ClientSession, frontend_url: str) -> None:
    async with http.get(f"{frontend_url}/") as response:
        assert response.status == 200
        page = await response.text()
    assert "<title>Genesis</title>" in page
    assert 'src="/src/main.js"' in page
    async with http.get(f"{frontend_url}/src/main.js") as script:
        assert script.status == 200
        assert "dashboard" in await script.text()


async def test_health_through_the_proxy(http: aiohttp.ClientSession, frontend_url: str) -> None:
    async with http.get(f"{frontend_url}/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok"}


async def test_api_through_the_proxy_reaches_the_backend(
    http: aiohttp.ClientSession, frontend_url: str, email: str
) -> None:
    password = "through the proxy"
    async with http.post(
        f"{frontend_url}/api/auth/register", json={"email": email, "password": password}
    ) as response:
        assert response.status == 201
    async with http.post(
        f"{frontend_url}/api/auth/login", data={"username": email, "password": password}
    ) as response:
        assert response.status == 200
        token = (await response.json())["access_token"]
    async with http.get(
        f"{frontend_url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert (await response.json())["email"] == email
