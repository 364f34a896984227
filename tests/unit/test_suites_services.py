"""What `pytest PATH` asks conductor's plugin for, folder by folder (tests/suites.py)."""

from __future__ import annotations

import pytest

from tests.suites import SUITES, services_for_folders


@pytest.mark.parametrize(
    ("folders", "given", "services"),
    [
        ({"unit"}, False, []),
        ({"auth"}, False, ["db"]),
        ({"db", "auth", "business", "coaching"}, False, ["db"]),
        ({"auth"}, True, []),  # TEST_DATABASE_URL names the database
        ({"e2e"}, False, list(SUITES["e2e"].services)),
        ({"auth", "e2e", "unit"}, False, ["db", *SUITES["e2e"].services]),
        ({"auth", "e2e"}, True, list(SUITES["e2e"].services)),
    ],
)
def test_services_for_the_selected_folders(
    folders: set[str], given: bool, services: list[str]
) -> None:
    assert services_for_folders(folders, database_given=given) == services
