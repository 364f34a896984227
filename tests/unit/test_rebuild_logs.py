"""The staged rebuild gives each stage its own logs folder."""

from __future__ import annotations

from tests.suites import LOGS, STAGES, run_stages, stage_table


def test_each_stage_logs_to_its_own_folder() -> None:
    """In one folder, each stage's db.log and summary.json overwrote the last one's."""
    given: list[tuple[str, str]] = []

    def stage(name: str, logs: str) -> bool:
        given.append((name, logs))
        return True

    results, failed = run_stages(stage)
    assert failed is None
    assert given == [(name, f"{LOGS}/rebuild/{name}") for name in STAGES]
    assert [row[:2] for row in results] == [(name, "passed") for name in STAGES]


def test_the_stages_after_a_failure_are_skipped() -> None:
    results, failed = run_stages(lambda name, _logs: name != "auth")
    assert failed == "auth"
    assert [row[1] for row in results] == ["passed", "FAILED", "skipped", "skipped"]
    assert "auth   FAILED" in stage_table(results)
