""" "The one place", checked: each mechanism conductor has once is found by a scan of its
source in its owner module only. A scan that finds something elsewhere names the file,
the line and what it does there; each kind of finding has its own test that the scan
sees it, so no rule passes by seeing nothing."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import conductor
from support import PY, fake

SOURCE = Path(conductor.__file__).parent

Finder = Callable[[ast.AST], "str | None"]


def found(tree: ast.AST, finder: Finder) -> list[tuple[int, str]]:
    return [
        (getattr(node, "lineno", 0), what)
        for node in ast.walk(tree)
        if (what := finder(node)) is not None
    ]


def offenders(finder: Finder, owners: set[str]) -> list[str]:
    """Where a module other than `owners` (paths relative to the package) does it."""
    return [
        f"{path.relative_to(SOURCE)}:{line}: {what}"
        for path in sorted(SOURCE.rglob("*.py"))
        if str(path.relative_to(SOURCE)) not in owners
        for line, what in found(ast.parse(path.read_text(), str(path)), finder)
    ]


def _dotted(node: ast.AST) -> str:
    return ast.unparse(node) if isinstance(node, ast.Name | ast.Attribute) else ""


# Writing a file: files/safe_io.py makes every file conductor writes where others may write
# too (the logs folder): a link planted there is never written through. The others
# open a file of their own, each in a folder only conductor writes to.
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND")
OPENS_TO_WRITE = {
    "files/safe_io.py",
    "rundir/lockfile.py",  # the lock itself, with its own O_NOFOLLOW | O_NONBLOCK care
    "postgres/template_cache.py",  # the cluster cache's copies, in the cache's own folder
    "postgres/clusters.py",  # the password file, in the cluster's new 0700 folder
}


def _opens_to_write(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.Call)
        and _dotted(node.func) == "os.open"
        and len(node.args) > 1
        and _dotted(node.args[0]) != "os.devnull"
        and any(flag in ast.unparse(node.args[1]) for flag in _WRITE_FLAGS)
    ):
        return "opens a file to write with os.open"
    return None


def test_only_files_opens_a_file_to_write():
    assert offenders(_opens_to_write, OPENS_TO_WRITE) == []


# A template that cannot be filled becomes a ConfigError in templates.config_error only.
def _template_to_config_error(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.ExceptHandler)
        and node.type is not None
        and "TemplateError" in ast.unparse(node.type)
        and any(
            isinstance(inner, ast.Raise) and "ConfigError" in ast.unparse(inner)
            for inner in ast.walk(node)
        )
    ):
        return "turns a TemplateError into a ConfigError by hand (use templates.config_error)"
    return None


def test_only_templates_turns_a_template_error_into_a_config_error():
    assert offenders(_template_to_config_error, {"config/templates.py"}) == []


# A folder's marker is read by ownership.folder_mark only (the others that name it write it).
_READS = {"read_plain", "read_text", "read_bytes", "open", "loads", "lstat", "stat"}


def _reads_folder_mark(node: ast.AST) -> str | None:
    if not isinstance(node, ast.FunctionDef) or node.name == "folder_mark":
        return None
    names = {_dotted(n).rsplit(".", 1)[-1] for n in ast.walk(node)}
    texts = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
    calls = {_dotted(n.func).rsplit(".", 1)[-1] for n in ast.walk(node) if isinstance(n, ast.Call)}
    if ("FOLDER_MARK" in names or ".conductor-made" in texts) and calls & _READS:
        return f"{node.name}() reads a folder's marker (use ownership.folder_mark)"
    return None


def test_only_ownership_folder_mark_reads_a_folder_marker():
    assert offenders(_reads_folder_mark, set()) == []


# The run record is read by run_record.read_record only: clean, the watchdog and --attach
# all get its typed Record.
def _reads_run_record(node: ast.AST) -> str | None:
    if not isinstance(node, ast.FunctionDef) or node.name == "read_record":
        return None
    names = {_dotted(n).rsplit(".", 1)[-1] for n in ast.walk(node)}
    texts = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
    calls = {_dotted(n.func).rsplit(".", 1)[-1] for n in ast.walk(node) if isinstance(n, ast.Call)}
    named = names & {"RECORD_NAME", "record_path"} or ".conductor-run.json" in texts
    if named and calls & (_READS - {"lstat", "stat"}):
        return f"{node.name}() reads the run record (use run_record.read_record)"
    return None


def test_only_state_read_record_reads_the_run_record():
    assert offenders(_reads_run_record, set()) == []


# /proc is read and parsed in process/procfs.py only; a process group is looked up there, or
# in process/portable.py (which chooses between procfs and psutil).
def _reads_proc(node: ast.AST) -> str | None:
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and str(first.value).startswith("/proc"):
            return f"reads {ast.unparse(node)} (use procfs)"
    if isinstance(node, ast.Constant) and str(node.value).startswith("/proc"):
        return f"reads {node.value!r} (use procfs)"
    return None


def _looks_up_a_group(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and _dotted(node.func) == "os.getpgid":
        return "looks up a process group (use procfs.group or portable.leads_group)"
    return None


def _signals_a_group(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and _dotted(node.func) == "os.killpg":
        return "signals a process group (use portable.signal_group)"
    return None


def test_only_portable_signals_a_process_group():
    """One way to signal a group (Windows has none: portable.signal_group knows); a
    second os.killpg came in with the engine commands' own groups."""
    assert offenders(_signals_a_group, {"process/portable.py"}) == []


def test_only_procfs_reads_proc():
    assert offenders(_reads_proc, {"process/procfs.py"}) == []


def test_only_procfs_and_compat_look_up_a_process_group():
    assert offenders(_looks_up_a_group, {"process/procfs.py", "process/portable.py"}) == []


@pytest.mark.parametrize(
    ("finder", "code"),
    [
        (_reads_proc, "text = Path(f'/proc/{pid}/stat').read_text()"),
        (_reads_proc, "names = os.listdir('/proc')"),
        (_looks_up_a_group, "leads = os.getpgid(pid) == pid"),
        (_signals_a_group, "os.killpg(pid, signal.SIGKILL)"),
        (
            _reads_run_record,
            "def find(rundir):\n    return json.loads(rundir.record_path.read_text())",
        ),
        (
            _reads_folder_mark,
            "def check(folder):\n    return json.loads((folder / FOLDER_MARK).read_text())",
        ),
        (
            _template_to_config_error,
            "try:\n    f()\nexcept templates.TemplateError as exc:\n"
            "    raise ConfigError(str(exc), key=k) from None",
        ),
        (_opens_to_write, "fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)"),
    ],
)
def test_the_scan_finds_each_kind(finder, code):
    assert found(ast.parse(code), finder)


# One plan per start: a Stack plans once (before it touches the logs folder) and checks
# that plan's ports once an earlier run's leftovers are gone; it planned twice before.
COUNT_PLANS = """
import asyncio, sys
import conductor.plan, conductor.stack
from conductor import Stack, load_config

made = []
original = conductor.plan.make_plan
def counted(*args, **kwargs):
    made.append(1)
    return original(*args, **kwargs)
for module in list(sys.modules.values()):
    if (module.__name__ or "").startswith("conductor") and getattr(module, "make_plan", None) is original:
        module.make_plan = counted

async def main():
    async with Stack(load_config(sys.argv[1])) as stack:
        print(len(made), sorted(stack.plan.services))

asyncio.run(main())
"""


@pytest.mark.conductor
def test_a_start_makes_one_plan(conductor, config, tmp_path):
    config(
        {
            "a": {"command": fake("tcp", "--port", "{port}"), "port": "auto"},
            "b": {"command": fake("tcp", "--port", "{port}"), "port": "auto", "depends_on": ["a"]},
        }
    )
    proc = subprocess.run(
        [PY, "-c", COUNT_PLANS, str(tmp_path / "conductor.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=conductor.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "['a',", "'b']"]


# The Stack keeps the set of services, their order and the logs folder; each service's
# own life (spawn, readiness race, watch, echo, stop) is service.ServiceLife's. The
# limit keeps the one from growing back into the other.
STACK_LINES = 450


def test_the_stack_stays_within_its_line_limit():
    lines = len((SOURCE / "stack.py").read_text().splitlines())
    assert lines <= STACK_LINES, (
        f"stack.py has {lines} lines, more than {STACK_LINES}: a service's own life "
        "belongs in service.py (ServiceLife), the Stack keeps the set, the order and the "
        "logs folder"
    )
