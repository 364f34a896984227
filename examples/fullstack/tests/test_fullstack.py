"""Each step of the stack happened, checked where it left its mark: init SQL in the
catalog, the migration's tables, the seeded superuser, the API and the front end."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from conftest import query

EXAMPLE = Path(__file__).resolve().parent.parent
SUPERUSER = os.environ.get("FIRST_SUPERUSER", "").strip().lower()


def test_init_sql_made_the_schema_as_the_configured_user() -> None:
    rows = query(
        "select pg_get_userbyid(nspowner) as owner, obj_description(oid, 'pg_namespace') as note"
        " from pg_namespace where nspname = 'app'"
    )
    assert [(r["owner"], r["note"]) for r in rows] == [("app", "created by db/init.sql")]
    assert query("select current_user, current_database()")[0][:] == ("app", "app")


def test_migration_created_its_tables_in_the_schema() -> None:
    assert query("select version_num from app.alembic_version")[0][0] == "0001"
    tables = {r[0] for r in query("select tablename from pg_tables where schemaname = 'app'")}
    assert tables == {"alembic_version", "users", "items"}


def test_health_checks_the_database(api: httpx.Client) -> None:
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "revision": "0001"}


def test_seed_created_one_superuser_with_a_hashed_password() -> None:
    rows = query("select email, is_superuser, hashed_password from app.users")
    assert [(r["email"], r["is_superuser"]) for r in rows] == [(SUPERUSER, True)]
    assert rows[0]["hashed_password"].startswith("$argon2")
    assert os.environ["FIRST_SUPERUSER_PASSWORD"] not in rows[0]["hashed_password"]


def test_seed_again_with_the_address_written_differently_creates_nothing() -> None:
    env = {
        **os.environ,
        "FIRST_SUPERUSER": f"  {SUPERUSER.upper()} ",
        "FIRST_SUPERUSER_PASSWORD": "another-password",
    }
    before = query("select id, hashed_password from app.users")
    done = subprocess.run(
        [sys.executable, "-m", "app.seed"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"first superuser {SUPERUSER} already exists" in done.stdout
    assert query("select id, hashed_password from app.users") == before


def test_the_superuser_logs_in_and_is_who_the_token_says(api: httpx.Client, token: str) -> None:
    me = api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == SUPERUSER
    assert me.json()["is_superuser"] is True
    wrong = api.post(
        "/login/access-token", data={"username": SUPERUSER, "password": "not-the-password"}
    )
    assert wrong.status_code == 400


def test_create_and_list_an_item(api: httpx.Client, token: str) -> None:
    title = f"item-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {token}"}
    created = api.post(
        "/items", json={"title": title, "description": "from the tests"}, headers=auth
    )
    assert created.status_code == 201, created.text
    listed = api.get("/items", headers=auth)
    assert listed.status_code == 200
    assert created.json() in listed.json()
    assert query("select title from app.items where id = $1", created.json()["id"])[0][0] == title
    assert api.post("/items", json={"title": "anonymous"}).status_code == 401


def test_web_serves_the_page_and_the_api_lets_it_call() -> None:
    web = os.environ["WEB_URL"]
    page = httpx.get(f"{web}/", timeout=10)
    assert page.status_code == 200
    assert "<title>Full-stack example</title>" in page.text
    assert 'api + "/health"' in page.text
    # The browser's preflight from the page's origin: BACKEND_CORS_ORIGINS reached the api.
    preflight = httpx.options(
        f"{os.environ['API_URL']}/items",
        headers={"Origin": web, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == web


def test_a_bad_setting_is_one_line_naming_it() -> None:
    env = {**os.environ, "FIRST_SUPERUSER": "not-an-email"}
    done = subprocess.run(
        [sys.executable, "-m", "app.seed"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "seed: FIRST_SUPERUSER: Value error, FIRST_SUPERUSER must be an email address,"
        " got 'not-an-email'"
    ]
