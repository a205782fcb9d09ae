"""deploy/ checked as far as these machines can check it (no container engine, no cluster): Compose against the
compose-spec schema, the kustomize overlay rendered by kubectl, the systemd units by systemd-analyze, and in all of
them every command parsed by the CLI and every TASKSERVICE_* setting checked against taskservice/config.py.
Then the same checks on broken copies, to show that they name what is wrong."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from flask.testing import FlaskClient
from sqlalchemy import text

from taskservice import create_app
from taskservice.services import Services
from tests.deploy.checks import check_compose, check_kubernetes, check_systemd, expected_image, render_kustomize

if TYPE_CHECKING:
    from tests.support import Backend

OVERLAY = Path("k8s/overlays/example")


@pytest.fixture(scope="session")
def deploy_dir(repo_dir: Path) -> Path:
    """The repository's deploy/ folder."""
    return repo_dir / "deploy"


def test_compose_is_valid_and_runs_real_commands_with_known_settings(deploy_dir: Path) -> None:
    assert check_compose(deploy_dir / "compose.yaml") == []


def test_the_kustomize_overlay_renders_and_its_objects_agree_with_the_code(deploy_dir: Path) -> None:
    docs = render_kustomize(deploy_dir / OVERLAY)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Job", "ConfigMap", "Secret", "ScaledObject", "TriggerAuthentication",
            "PodDisruptionBudget", "Service"} <= kinds
    components = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs
                  if d["kind"] in ("Deployment", "Job")}
    assert components == {"api", "worker", "relay", "ingest", "scheduler", "engine", "consumer", "migrate"}
    assert check_kubernetes(docs, expected_image(deploy_dir / OVERLAY)) == []


def test_the_systemd_units_verify_and_run_real_commands_with_known_settings(deploy_dir: Path, tmp_path: Path) -> None:
    assert check_systemd(deploy_dir / "systemd", tmp_path) == []


def test_the_keda_query_counts_what_workers_have_to_do_on_a_real_ledger(
        deploy_dir: Path, new_backend: Callable[..., Backend], deploy: Callable[..., Any],
        submit: Callable[..., str]) -> None:
    """The ScaledObject's query, run as KEDA would on a migrated Postgres ledger: due and running invocations count,
    finished ones and retries still in their backoff do not."""
    (scaled,) = [d for d in render_kustomize(deploy_dir / OVERLAY) if d["kind"] == "ScaledObject"]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    backend = new_backend("postgres")  # a ledger of its own: the query counts every invocation in it
    client: FlaskClient = create_app(backend.settings).test_client()
    deploy(client, "scaled", "workers.handlers.echo:handler")
    for n in range(5):
        submit(client, "scaled", {"n": n}, invocation_id=f"scaled_{n}")
    services = Services.build(backend.settings)
    try:
        with services.engine.begin() as conn:
            assert conn.execute(text(query)).scalar_one() == 5
            conn.execute(text("UPDATE invocations SET status = 'Running' WHERE invocation_id = 'scaled_0'"))
            conn.execute(text("UPDATE invocations SET status = 'Succeeded' WHERE invocation_id = 'scaled_1'"))
            conn.execute(text("UPDATE invocations SET status = 'Retrying', not_before = now() + interval '1 hour'"
                              " WHERE invocation_id = 'scaled_2'"))
            assert conn.execute(text(query)).scalar_one() == 3
    finally:
        services.close()


# --- broken copies: each check names what is wrong ---------------------------------------------------------------
BROKEN = [
    # (file under deploy/, text to replace, replacement, what the message must name)
    ("compose.yaml", "  TASKSERVICE_DATABASE_URL:", "  TASKSERVICE_DATABASE_ULR:",
     ["unknown setting TASKSERVICE_DATABASE_ULR (did you mean TASKSERVICE_DATABASE_URL?)",
      "needs TASKSERVICE_DATABASE_URL, which is not set"]),
    ("compose.yaml", '"--health-port", "8001"', '"--helth-port", "8001"', ["No such option", "--helth-port"]),
    ("compose.yaml", 'command: ["relay"]', 'command: ["relays"]', ["`relays` is not a taskservice subcommand"]),
    ("compose.yaml", 'command: ["engine"]', 'command: ["engine", "--loglevel"]',
     ["`taskservice engine --loglevel`: Option '--loglevel' requires an argument"]),
    ("compose.yaml", "stop_grace_period: 45s", "stop_grace_period: 20s", ["stop_grace_period is 20s"]),
    ("compose.yaml", "condition: service_completed_successfully", "condition: service_complete",
     ["not a valid Compose file"]),
    ("k8s/base/kustomization.yaml", "TASKSERVICE_WORKER_CONCURRENCY=4", "TASKSERVICE_WORKER_CONCURENCY=4",
     ["unknown setting TASKSERVICE_WORKER_CONCURENCY (did you mean TASKSERVICE_WORKER_CONCURRENCY?)"]),
    ("k8s/base/kustomization.yaml", "      - TASKSERVICE_DRAIN_S=30\n", "",
     ["the worker needs TASKSERVICE_DRAIN_S, which is not set"]),
    ("k8s/base/kustomization.yaml", "TASKSERVICE_API_PORT=8000", "TASKSERVICE_API_PORT=eighty",
     ["TASKSERVICE_API_PORT: Input should be a valid integer"]),
    ("k8s/overlays/example/kustomization.yaml", "      - TASKSERVICE_SECRET_KEY=CHANGE-ME-to-a-long-random-string\n",
     "", ["the api needs TASKSERVICE_SECRET_KEY, which is not set"]),
    ("k8s/base/keda.yaml", "'Retrying'", "'Retryng'", ["names status 'Retryng'"]),
    ("k8s/base/keda.yaml", "FROM invocations", "FROM invocation", ["reads invocation, which is not a ledger table"]),
    ("k8s/base/keda.yaml", 'targetQueryValue: "4"', 'targetQueryValue: "10"',
     ["targetQueryValue 10 is not TASKSERVICE_WORKER_CONCURRENCY=4"]),
    ("k8s/base/worker.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30",
     ["terminationGracePeriodSeconds is 30s but TASKSERVICE_DRAIN_S=30 needs at least 40s"]),
    ("k8s/base/worker.yaml", "path: /readyz", "path: /ready", ["readinessProbe must GET /readyz"]),
    ("systemd/taskservice.env", "TASKSERVICE_BROKER_URL=", "TASKSERVICE_BROKR_URL=",
     ["unknown setting TASKSERVICE_BROKR_URL (did you mean TASKSERVICE_BROKER_URL?)",
      "needs TASKSERVICE_BROKER_URL, which is not set"]),
    ("systemd/taskservice-worker.service", "TimeoutStopSec=45", "TimeoutStopSek=45",
     ["Unknown key 'TimeoutStopSek'"]),
    ("systemd/taskservice-api.service", "taskservice api", "taskservice api --workers many",
     ["'many' is not a valid integer"]),
    ("systemd/taskservice-engine.service", "bin/taskservice engine", "bin/taskservice engines",
     ["`engines` is not a taskservice subcommand"]),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), BROKEN,
                         ids=[f"{b[0]}:{b[2].strip()[:30]}" for b in BROKEN])
def test_a_broken_copy_is_caught_with_a_message_naming_the_fault(deploy_dir: Path, tmp_path: Path, name: str, old: str,
                                                                 new: str, expected: list[str]) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(deploy_dir, copy)
    target = copy / name
    original = target.read_text()
    assert old in original, f"{name} no longer contains {old!r}: update this case"
    target.write_text(original.replace(old, new, 1))
    if name == "compose.yaml":
        problems = check_compose(target)
    elif name.startswith("k8s/"):
        problems = check_kubernetes(render_kustomize(copy / OVERLAY), expected_image(copy / OVERLAY))
    else:
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        problems = check_systemd(copy / "systemd", scratch)
    report = "\n".join(problems)
    for fragment in expected:
        assert fragment in report, report or "no problem found"


def test_the_image_is_one_non_root_debian_slim_image_with_ffmpeg_and_the_taskservice_entry_point(
        deploy_dir: Path) -> None:
    dockerfile = (deploy_dir / "Dockerfile").read_text()
    stages = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all("-slim" in s for s in stages)  # multi-stage, Debian slim
    assert "ffmpeg" in dockerfile and "USER 10001" in dockerfile
    assert 'ENTRYPOINT ["tini", "--", "taskservice"]' in dockerfile
    compose = yaml.safe_load((deploy_dir / "compose.yaml").read_text())
    built = {svc.get("image") for svc in compose["services"].values() if "build" in svc}
    assert len(built) == 1  # every process from one image
