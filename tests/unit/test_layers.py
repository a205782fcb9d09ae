"""Every stage imports only downward (README, Development): a module may import its own unit and units of a lower
layer, never one above it. Read from the source with `ast`, so a new upward import fails here, not in review."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Lowest first. A unit is a top-level module or subpackage of taskservice (or all of workers).
LAYERS: list[set[str]] = [
    {"version", "errors", "clock", "backoff", "statuses", "lifetime"},
    {"flow_client"},  # the SDK's typed flow records (pure), which the HTTP client returns
    {"client"},  # the HTTP client (SDK): talks to the API, never to the ledger
    {"storage", "kafka", "specs", "flowdef"},  # flowdef: flow definitions, conditions and mappings (pure)
    {"trigger_specs"},  # trigger kinds, schedules and event ids: shared by API, scheduler and storage events
    {"config", "db", "embedded_broker"},
    {"broker", "confirms"},  # confirms: publisher confirms awaited per batch (dispatch, queue: destination)
    {"ledger", "dispatch"},
    {"submission", "destinations"},
    {"control", "replay", "relay", "migrate", "storage_events"},
    {"services"},
    {"trigger_threads"},  # one consumer thread per trigger: the shape shared by ingest and queue triggers
    {"api", "ingest", "workers", "scheduler", "queue_trigger", "flows"},  # flows: the flow engine process
    {"console"},
    {"app"},
    {"cli"},
    {"__init__"},  # the package face: the version and the public names
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "workers":
        return "workers"
    return parts[1] if len(parts) > 1 else "__init__"


def project_imports(path: Path) -> set[str]:
    """Modules of taskservice/workers that `path` imports, `from taskservice import x` counted as taskservice.x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "taskservice":
                found.update(f"taskservice.{alias.name}" for alias in node.names)
            elif node.module.split(".")[0] in ("taskservice", "workers"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("taskservice", "workers"))
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted([*(REPO / "taskservice").rglob("*.py"), *(REPO / "workers").rglob("*.py")])


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in SOURCES}
    assert units - set(RANK) == set(), "add the new unit to LAYERS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_downward(path: Path) -> None:
    here = unit_of(module_name(path))
    upward = sorted(m for m in project_imports(path) if unit_of(m) != here and RANK[unit_of(m)] >= RANK[here])
    assert upward == [], f"{here} (layer {RANK[here]}) imports {upward}, which are not below it"


def loaded_by(modules: str, heavy: tuple[str, ...]) -> list[str]:
    """Which of `heavy` a fresh interpreter has loaded once it imported `modules` (comma-separated)."""
    probe = f"import sys, {modules}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split()


def test_worker_side_processes_do_not_load_flask() -> None:
    """Workers, relays and handlers import the package face and the sandbox; neither may pull in the web stack."""
    assert loaded_by("taskservice, workers.sandbox, workers.runner, taskservice.relay",
                     ("flask", "werkzeug", "jinja2")) == []


def test_the_cli_starts_without_the_server_libraries() -> None:
    """A client command (`invoke`, `tasks`, `flows`, ...) only talks HTTP: importing SQLAlchemy, Celery, kombu or
    Flask at start-up cost every call 0.6 s. Server commands import them when they run."""
    loaded = loaded_by("taskservice.cli", ("sqlalchemy", "celery", "kombu", "flask"))
    assert loaded == [], f"`import taskservice.cli` loads {loaded}: import them inside the commands that need them"
