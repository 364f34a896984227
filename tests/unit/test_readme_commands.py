"""The commands the READMEs show work as written.

Reads the shell code blocks of README.md and packages/conductor/README.md, and the
usage lines of tasks.py's and noxfile.py's docstrings. The cheap commands run (`nox -l`,
`invoke --list`, `conductor check`, `conductor --help`, the database check on SQLite);
the others are checked against what the tools themselves accept: every nox session and
tag, every invoke command (through invoke's own parser), every conductor action and
option, pytest option and script named must exist.

In this project's README and docstrings (a newcomer's path), a tool of the project's
environment must be reached through `uv run`: a bare `invoke` is "command not found"
until the venv is activated. conductor's README speaks to people who installed
conductor-stack into their own environment, with their own pytest.

`uv run X` runs X from this test's own environment: uv would first sync the project's
.venv, which is an install, not a cheap command.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from invoke import Collection, Program
from invoke.exceptions import ParseError
from invoke.parser import Parser, ParserContext

ROOT = Path(__file__).resolve().parents[2]
READMES = ("README.md", "packages/conductor/README.md")
DOCSTRINGS = ("tasks.py", "noxfile.py")
SHELL_BLOCKS = {"sh", "shell", "bash", "console"}
# The project's own tools: not on a newcomer's PATH until `uv run` or an activation.
PROJECT_TOOLS = {"invoke", "conductor", "python", "pytest"}
NEWCOMER_DOCS = {"README.md", "tasks.py", "noxfile.py"}
CHEAP = {
    "nox -l",
    "invoke --list",
    "conductor check",
    "conductor --help",
    "python scripts/test_db_connection.py sqlite://",
}
BIN = Path(sys.executable).parent
# Plugins' options too (entry points); this project's conftests would import the app.
PYTEST_HELP = "python -m pytest --help --noconftest"


@dataclass(frozen=True)
class Command:
    where: str
    text: str  # as written
    argv: tuple[str, ...]  # without `uv run` / `python3 -m`
    reachable: bool  # through uv run, or installed earlier in its block

    @property
    def key(self) -> str:
        return shlex.join(self.argv)


def _normalized(argv: list[str]) -> tuple[list[str], bool]:
    via_uv = argv[:2] == ["uv", "run"]
    if via_uv:
        argv = argv[2:]
    if argv[:1] in (["python"], ["python3"]) and argv[1:2] == ["-m"] and len(argv) > 2:
        argv = argv[2:]
    if argv[:1] == ["python3"]:
        argv = ["python", *argv[1:]]
    return argv, via_uv


def _commands(doc: str, where: str, lines: list[str]) -> Iterator[Command]:
    """One block's commands, in order: a line may chain several with &&."""
    for line in lines:
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            part, words = words[:cut], words[cut + 1 :]
            argv, via_uv = _normalized(part)
            newcomer = doc in NEWCOMER_DOCS and argv[0] in PROJECT_TOOLS
            yield Command(where, shlex.join(part), tuple(argv), via_uv or not newcomer)


def documented() -> list[Command]:
    found: list[Command] = []
    for name in READMES:
        text = (ROOT / name).read_text()
        for number, match in enumerate(re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)):
            if match.group(1) in SHELL_BLOCKS:
                lines = match.group(2).splitlines()
                found += _commands(name, f"{name}, shell block {number + 1}", lines)
    for name in DOCSTRINGS:
        source = (ROOT / name).read_text()
        docstring = source.split('"""')[1]
        usage = [re.split(r"\s{2,}", line)[0] for line in docstring.splitlines()[2:] if line]
        found += _commands(name, f"{name}'s docstring", usage)
    return found


COMMANDS = documented()


# Not measured by the unit session's coverage (patch = subprocess), which slows each of
# these several times over; they test the docs, not conductor's branches.
QUIET_ENV = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    program = argv[0]
    if program == "python":
        program = sys.executable
    elif (BIN / program).exists():
        program = str(BIN / program)
    return subprocess.run(
        [program, *argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**QUIET_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every cheap command the docs show, run at once."""
    wanted = {c.key for c in COMMANDS if c.key in CHEAP} | {"nox -l", "conductor --help"}
    wanted |= {f"conductor {c.argv[1]} --help" for c in COMMANDS if c.argv[0] == "conductor"}
    wanted |= {PYTEST_HELP}
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        return dict(zip(wanted, pool.map(lambda key: run(shlex.split(key)), wanted), strict=True))


def test_the_docs_show_the_cheap_commands() -> None:
    """Parsing found them: this test checks something."""
    assert {c.key for c in COMMANDS} >= CHEAP


@pytest.mark.parametrize("key", sorted(CHEAP))
def test_a_cheap_command_runs_as_written(
    key: str, outputs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    assert key in outputs, f"the docs no longer show {key!r}"
    result = outputs[key]
    assert result.returncode == 0, f"{key}:\n{result.stdout}{result.stderr}"


def test_project_tools_are_reached_as_a_newcomer_would() -> None:
    unreachable = [f"{c.where}: {c.text}" for c in COMMANDS if not c.reachable]
    assert unreachable == [], "write `uv run ...` (after `uv sync`), or install it first"


def test_every_nox_session_and_tag_exists(
    outputs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    listed = re.findall(r"^[*-] (\S+)(?: \[([^\]]*)\])? ->", outputs["nox -l"].stdout, re.M)
    sessions = {name for name, _ in listed} | {name.split("-")[0] for name, _ in listed}
    tags = {tag.strip() for _, found in listed for tag in found.split(",") if tag}
    wrong = []
    for command in COMMANDS:
        argv = list(command.argv)
        if argv[0] != "nox":
            continue
        argv = argv[: argv.index("--")] if "--" in argv else argv
        for option, value in zip(argv, [*argv[1:], ""], strict=True):
            if option in ("-s", "--session") and value not in sessions:
                wrong.append(f"{command.where}: {command.text}: no session {value!r}")
            if option in ("-t", "--tags") and value not in tags:
                wrong.append(f"{command.where}: {command.text}: no tag {value!r}")
    assert wrong == []


def test_every_invoke_command_parses_as_invoke_parses_it() -> None:
    """Through invoke's own parser and this project's tasks: `invoke e2e -k login`
    fails here as it does in a shell ("No idea what '-k' is!")."""
    spec = importlib.util.spec_from_file_location("tasks_under_test", ROOT / "tasks.py")
    assert spec is not None
    assert spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    parser = Parser(
        initial=ParserContext(args=Program().core_args()),
        contexts=Collection.from_module(tasks).to_contexts(),
    )
    wrong = []
    for command in COMMANDS:
        if command.argv[0] == "invoke":
            try:
                parser.parse_argv(list(command.argv[1:]))
            except ParseError as exc:
                wrong.append(f"{command.where}: {command.text}: {exc}")
    assert wrong == []


def options(argv: tuple[str, ...]) -> list[str]:
    """The options of a command line, up to `--`, without their values."""
    until = argv.index("--") if "--" in argv else len(argv)
    return [a.split("=")[0] for a in argv[1:until] if a.startswith("-")]


def test_every_conductor_action_option_and_script_exists(
    outputs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    actions = set(re.findall(r"^    (\w+)\s{2,}", outputs["conductor --help"].stdout, re.M))
    assert actions >= {"run", "check"}
    wrong = []
    for command in COMMANDS:
        argv = command.argv
        if argv[0] == "conductor" and argv[1] not in actions | {"--help", "-h"}:
            wrong.append(f"{command.where}: {command.text}: no action {argv[1]!r}")
        elif argv[0] == "conductor":
            usage = outputs[f"conductor {argv[1]} --help"].stdout
            wrong += [
                f"{command.where}: {command.text}: no option {option}"
                for option in options(argv[1:])
                if not re.search(rf"(^|[\s,]){re.escape(option)}\b", usage, re.M)
            ]
        if argv[0] == "python" and not (ROOT / argv[1]).is_file():
            wrong.append(f"{command.where}: {command.text}: no file {argv[1]}")
    assert wrong == []


def test_every_pytest_option_exists(
    outputs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    """Options of plugins too (conductor's --conductor-stack): pytest --help lists them."""
    usage = outputs[PYTEST_HELP].stdout
    wrong = [
        f"{c.where}: {c.text}: no option {option}"
        for c in COMMANDS
        if c.argv[0] == "pytest"
        for option in options(c.argv)
        if not re.search(rf"(^|[\s,]){re.escape(option)}\b", usage, re.M)
    ]
    assert wrong == []


def test_every_command_is_one_this_test_knows() -> None:
    """A new kind of command in a README gets a check here before it can rot."""
    known = {"nox", "invoke", "conductor", "python", "pytest", "pip", "uv"}
    unknown = [f"{c.where}: {c.text}" for c in COMMANDS if c.argv[0] not in known]
    assert unknown == []
