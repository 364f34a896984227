"""report.html and summary.json as records of a run: passing, failing, interrupted, `up`,
skipped services. The file is parsed as HTML here; tests/e2e opens it in Chromium."""

from __future__ import annotations

import json
import re
import signal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from support import PY, fake, lane_spans, wait_for

pytestmark = pytest.mark.conductor


class Page(HTMLParser):
    """The parts of report.html the tests look at: lanes, failure marks, links, text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lanes: dict[str, list[str]] = {}
        self.failure_marks = 0
        self.links: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "g" and "lane" in classes:
            self.lanes[a.get("data-service") or classes[1]] = classes
        if tag == "g" and "failure-mark" in classes:
            self.failure_marks += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag in ("script", "link", "img") or (a.get("src") or "").startswith("http"):
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report(tmp_path: Path) -> tuple[Page, dict]:
    logs = tmp_path / "logs"
    page = Page((logs / "report.html").read_text(encoding="utf-8"))
    return page, json.loads((logs / "summary.json").read_text())


def test_passing_run_draws_a_lane_per_service_command_and_teardown(conductor, config, tmp_path):
    config(
        {
            "db": {"command": fake("logline", "--text", "<script>alert(1)</script> READY")},
            "api": {
                "command": fake("http", "--port", "{port}"),
                "port": "auto",
                "ready": {"http": "/"},
                "depends_on": ["db"],
            },
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    page, summary = report(tmp_path)
    assert set(page.lanes) == {"db", "api", "command", "teardown"}
    assert page.failure_marks == 0
    assert page.scripts == 0  # self-contained: nothing to fetch, nothing to run
    assert "db.log" in page.links
    assert "api.log" in page.links
    # a log line is shown as text, never as markup
    assert any("<script>alert(1)</script> READY" in t for t in page.text)
    # the timeline is the same data as summary.json
    api = summary["services"]["api"]
    assert [e["status"] for e in api["timeline"]][:2] == ["waiting", "starting"]
    assert api["timeline"][-1]["status"] == "ready"
    assert api["stop_began_s"] >= api["timeline"][-1]["t"]
    command, teardown = summary["phases"]["command"], summary["phases"]["teardown"]
    assert command[0] <= command[1] <= teardown[0] <= teardown[1] <= summary["durations"]["total_s"]
    assert "report.html" in result.err  # the closing table names the file


def test_failing_service_gets_a_failure_mark_and_its_tail(conductor, config, tmp_path):
    config(
        {
            "ok": {"command": fake("tcp", "--port", "{port}"), "port": "auto"},
            "stubborn": {
                "command": fake("stubborn", "--port", "{port}"),
                "port": "auto",
                "stop_timeout": 0.5,
            },
            "bad": {
                "command": fake("crash", "--code", "3"),
                "port": "auto",
                "depends_on": ["ok"],
            },
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 125, result.text
    page, summary = report(tmp_path)
    assert page.failure_marks == 1
    assert "failed" in page.lanes["bad"]
    assert "clean" in page.lanes["ok"]
    assert "killed" in page.lanes["stubborn"]  # it ignored SIGTERM
    bad = summary["services"]["bad"]
    assert bad["status"] == "failed"
    assert bad["failed_at_s"] is not None
    assert "exited with status 3" in bad["reason"]
    assert "command" not in summary["phases"]  # COMMAND never ran
    # teardown began when the failure stopped the others, not after
    assert summary["phases"]["teardown"][0] <= summary["services"]["ok"]["stop_began_s"]


def test_interrupted_run_still_writes_its_report(conductor, config, tmp_path):
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    running = tmp_path / "running"
    script = f"import pathlib, time; pathlib.Path({str(running)!r}).write_text('y'); time.sleep(60)"
    proc = conductor.start("run", "--config", "conductor.toml", "--", PY, "-c", script)
    wait_for(running.exists, what="command to run")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    page, summary = report(tmp_path)
    assert summary["exit_code"] == 130
    assert {"svc", "command", "teardown"} <= set(page.lanes)


def test_up_writes_summary_and_report_when_it_ends(conductor, config, tmp_path):
    config({"svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"}})
    proc = conductor.start("up", "--config", "conductor.toml")
    assert proc.stdout is not None
    wait_for(lambda: "svc: http" in proc.stdout.readline() or None, what="up to print URLs")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    page, summary = report(tmp_path)
    assert summary["action"] == "up"
    assert summary["command"] is None
    assert summary["services"]["svc"]["status"] == "ready"
    assert summary["services"]["svc"]["stopped"]
    assert "svc" in page.lanes


def test_skipped_optional_service_is_listed_with_its_reason(conductor, config, tmp_path):
    config(
        {
            "cache": {"command": ["no-such-cache-server"], "optional": True},
            "svc": {"command": fake("tcp", "--port", "{port}"), "port": "auto"},
        }
    )
    result = conductor.run("run", "--config", "conductor.toml", "--", PY, "-c", "pass")
    assert result.code == 0, result.text
    page, summary = report(tmp_path)
    cache = summary["services"]["cache"]
    assert cache["status"] == "skipped"
    assert "no-such-cache-server" in cache["reason"]
    assert "skipped" in page.lanes["cache"]


def event_time(summary: dict, name: str, status: str) -> float:
    return next(e["t"] for e in summary["services"][name]["timeline"] if e["status"] == status)


def test_completed_task_has_a_colour_of_its_own_and_its_lane_ends_when_it_did(
    conductor, config, tmp_path
):
    """A `kind = "task"` that exited 0 ends as `completed`: its lane was drawn in the
    fallback "started" colour after it finished, and the legend did not list it. Then
    it went on in the completed colour to the end of the run, as if still running."""
    config(
        {
            "prestart": {"kind": "task", "command": [PY, "-c", "pass"]},
            "svc": {
                "command": fake("tcp", "--port", "{port}"),
                "port": "auto",
                "depends_on": ["prestart"],
            },
        }
    )
    # COMMAND takes a while, so that a lane drawn on to the end would show.
    result = conductor.run(
        "run", "--config", "conductor.toml", "--", PY, "-c", "import time; time.sleep(1)"
    )
    assert result.code == 0, result.text
    text = (tmp_path / "logs" / "report.html").read_text(encoding="utf-8")
    page, summary = report(tmp_path)
    assert summary["services"]["prestart"]["status"] == "completed"
    assert "clean" in page.lanes["prestart"]
    completed = event_time(summary, "prestart", "completed")
    assert lane_spans(text, "prestart"), text
    assert max(end for _, _, end in lane_spans(text, "prestart")) <= completed + 0.01
    end_mark = re.search(r'class="end completed"[^>]*fill="(#\w+)"', text)
    assert end_mark is not None
    fills = {m[0]: m[1] for m in re.findall(r'class="phase (\w+)"[^>]*fill="(#\w+)"', text)}
    assert end_mark.group(1) not in (fills["ready"], fills.get("started"), "#c62828")
    legend = re.search(r'<p class="legend">(.*?)</p>', text)
    assert legend is not None
    assert f'background:{end_mark.group(1)}"></span>completed' in legend.group(1)


def test_a_service_that_died_while_command_ran_has_no_lane_after_its_death(
    conductor, config, tmp_path
):
    config(
        {
            "svc": {"command": [PY, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"]},
        }
    )
    result = conductor.run(
        "run",
        "--config",
        "conductor.toml",
        "--keep-going",
        "--",
        PY,
        "-c",
        "import time; time.sleep(2)",
    )
    assert result.code == 125, result.text
    text = (tmp_path / "logs" / "report.html").read_text(encoding="utf-8")
    page, summary = report(tmp_path)
    died = summary["services"]["svc"]["failed_at_s"]
    assert died is not None
    assert page.failure_marks == 1
    assert lane_spans(text, "svc"), text
    assert max(end for _, _, end in lane_spans(text, "svc")) <= died + 0.01


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
def test_a_service_killed_by_a_signal_it_was_not_sent_is_signalled_and_its_lane_ends(
    conductor, config, tmp_path, sig
):
    """A ready service that dies by a signal conductor did not send: summary.json said
    `stopped: "had killed by SIGSEGV"` and nothing else, and report.html (which looked
    for "had exited") drew its lane on through teardown like a service it stopped."""
    dies = (
        "import os, resource, signal, time\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"  # no core file left behind
        "time.sleep(0.5)\n"
        f"os.kill(os.getpid(), signal.{sig.name})\n"
    )
    config({"svc": {"command": [PY, "-c", dies]}})
    result = conductor.run(
        "run", "--config", "conductor.toml", "--keep-going", "--",
        PY, "-c", "import time; time.sleep(2)",
    )  # fmt: skip
    assert result.code == 125, result.text
    text = (tmp_path / "logs" / "report.html").read_text(encoding="utf-8")
    page, summary = report(tmp_path)
    svc = summary["services"]["svc"]
    assert svc["outcome"] == "signalled", svc
    assert svc["signal"] == sig.name
    assert svc["exit_code"] == 128 + sig
    assert svc["status"] == "failed"
    died = svc["failed_at_s"]
    assert died is not None
    assert "failed" in page.lanes["svc"]
    assert page.failure_marks == 1
    assert lane_spans(text, "svc"), text
    assert max(end for _, _, end in lane_spans(text, "svc")) <= died + 0.01
    assert not any(phase == "stopping" for phase, _, _ in lane_spans(text, "svc"))
    # COMMAND ran on after the death (--keep-going): a lane drawn to teardown would show.
    assert summary["phases"]["teardown"][0] > died + 1


def test_summary_json_and_report_html_have_one_writer():
    """`run`, `up` and the pytest plugin each wrote summary.json their own way (the
    plugin's had no timeline times): only report/summary.py may draw the page, and the
    file's name is written once, with the logs folder's other names (files/logs.py), so
    that a run can name the files it writes before it imports the summary's code."""
    import ast

    import conductor

    source = Path(conductor.__file__).parent
    writers = set()
    for module in source.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import | ast.ImportFrom)
                else []
            )
            if (isinstance(node, ast.Constant) and node.value == "summary.json") or any(
                "html_page" in name for name in names
            ):
                writers.add(str(module.relative_to(source)))
    assert writers == {"report/summary.py", "files/logs.py"}
