"""What each test suite is: its folders, its marker and the services it needs.

Written once, read by tests/conftest.py (markers), noxfile.py and tasks.py (what to
start and what to run), so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    paths: tuple[str, ...]
    services: tuple[str, ...] = ()
    # The suite needs the test database (started by conductor, or given as TEST_DATABASE_URL).
    database: bool = False
    # Run scripts/test_db_connection.py against the database before the tests.
    check_database: bool = False


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "unit",
            "Pure logic and conductor's own tests; no database.",
            ("tests/unit", "tests/conductor"),
        ),
        Suite(
            "db",
            "Stage 1: the database, its connectivity check and the session foundation.",
            ("tests/db",),
            ("db",),
            database=True,
            check_database=True,
        ),
        Suite(
            "auth",
            "Stage 2: the authentication suite on the database.",
            ("tests/auth",),
            ("db",),
            database=True,
            check_database=True,
        ),
        Suite(
            "api",
            "Stage 3: the business and coaching suites, with their fakes.",
            ("tests/business", "tests/coaching"),
            ("db", "cache"),
            database=True,
        ),
        Suite(
            "e2e",
            "The whole stack through conductor: API, front end and browser.",
            ("tests/e2e",),
            ("backend", "frontend"),
        ),
    )
}

# The marker every test in a folder gets, so `-m auth` selects exactly that folder.
FOLDER_MARKERS: dict[str, str] = {
    "unit": "unit",
    "conductor": "conductor",
    "db": "db",
    "auth": "auth",
    "business": "business",
    "coaching": "coaching",
    "e2e": "e2e",
}

# Folders whose tests use the test database fixtures.
DATABASE_FOLDERS = frozenset({"db", "auth", "business", "coaching"})
