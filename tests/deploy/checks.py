"""Checks for deploy/: each returns a list of problems, every one naming its file and the setting, command or field
at fault. The tests run them on deploy/ itself (expecting none) and on deliberately broken copies."""
from __future__ import annotations

import base64
import difflib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click
import yaml
from click.testing import CliRunner

from taskservice.cli import cli
from taskservice.config import ENV_PREFIX, Settings
from taskservice.errors import ConfigError
from taskservice.ledger.models import Base
from taskservice.ledger.states import Status

SERVER = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
CLIENT = {"TASKSERVICE_API_URL", "TASKSERVICE_TOKEN"}
KNOWN = SERVER | CLIENT
DB, BROKER = "TASKSERVICE_DATABASE_URL", "TASKSERVICE_BROKER_URL"
REQUIRED = {  # what each process cannot run in production without
    "migrate": {DB},
    "api": {DB, BROKER, "TASKSERVICE_SECRET_KEY", "TASKSERVICE_API_HOST"},
    "worker": {DB, BROKER, "TASKSERVICE_STORAGE_URL", "TASKSERVICE_DRAIN_S"},
    "relay": {DB, BROKER},
    "ingest": {DB, BROKER, "TASKSERVICE_KAFKA_BOOTSTRAP"},
    "scheduler": {DB, BROKER},
    "engine": {DB, BROKER},  # flow steps are submitted through the one submission path: ledger row + doorbell
    "consume": {DB, BROKER},
    "consumer": {DB, BROKER},
}
DRAIN_MARGIN_S = 10  # after the drain, killed attempts are handed back; the supervisor must wait for that too


# --- settings and commands, wherever they are written --------------------------------------------------------------
def _interpolated(value: str) -> str:
    """A Compose value with ${NAME:-default} replaced by its default and ${NAME:?…} / ${NAME} by a placeholder."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?[^}]*\}", lambda m: m.group(1) or "placeholder", value)


def settings_problems(where: str, process: str, env: Mapping[str, str]) -> list[str]:
    problems = []
    for key in sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in KNOWN):
        close = difflib.get_close_matches(key, sorted(KNOWN), n=1)
        problems.append(f"{where}: unknown setting {key}" + (f" (did you mean {close[0]}?)" if close else ""))
    for key in sorted(REQUIRED.get(process, set()) - set(env)):
        problems.append(f"{where}: the {process} needs {key}, which is not set")
    server = {k: _interpolated(str(v)) for k, v in env.items() if k in SERVER}
    try:
        Settings.from_env(server)
    except ConfigError as exc:
        problems.append(f"{where}: {exc.message}")
    return problems


def command_problems(where: str, args: list[str]) -> list[str]:
    """args (after the `taskservice` entry point) parsed by the CLI's own click parser, without running anything."""
    group: click.Group = cli
    ctx = click.Context(cli, info_name="taskservice")
    path: list[str] = []
    rest = list(args)
    command: click.Command = cli
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            return [f"{where}: `taskservice {' '.join(args)}` names no subcommand"]
        group, name = command, rest.pop(0)
        found = group.get_command(ctx, name)
        if found is None:
            known = ", ".join(group.list_commands(ctx))
            return [f"{where}: `{name}` is not a taskservice subcommand (known: {known})"]
        command, path = found, [*path, name]
        ctx = click.Context(command, info_name=name, parent=ctx)
    try:
        command.make_context(" ".join(path), rest, parent=ctx.parent)
    except click.UsageError as exc:
        return [f"{where}: `taskservice {' '.join(args)}`: {exc.format_message()}"]
    shown = CliRunner().invoke(cli, [*path, "--help"])
    if shown.exit_code != 0:
        return [f"{where}: `taskservice {' '.join(path)} --help` failed: {shown.output}"]
    return []


def _seconds(value: Any) -> float:
    """'45s', '1m30s', 45 → seconds."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|min|)", str(value).strip())
    scale = {"h": 3600, "m": 60, "min": 60, "s": 1, "ms": 0.001, "": 1}
    return sum(float(n) * scale[u] for n, u in parts)


def _drain_problems(where: str, env: Mapping[str, str], grace_s: float, what: str) -> list[str]:
    drain = env.get("TASKSERVICE_DRAIN_S")
    if drain is None:
        return []  # reported as missing already
    try:
        needed = float(_interpolated(str(drain))) + DRAIN_MARGIN_S
    except ValueError:
        return []  # reported as malformed already
    if grace_s < needed:
        return [f"{where}: {what} is {grace_s:g}s but TASKSERVICE_DRAIN_S={drain} needs at least {needed:g}s "
                "(the drain plus handing killed attempts back)"]
    return []


# --- Compose ---------------------------------------------------------------------------------------------------------
def check_compose(path: Path) -> list[str]:
    schema = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which(
        "check-jsonschema")
    if schema is None:
        return ["check-jsonschema is not installed (pip install -e '.[test]')"]
    validated = subprocess.run([schema, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True,
                               text=True)
    problems = [] if validated.returncode == 0 else [f"{path.name}: not a valid Compose file:\n{validated.stdout}"
                                                     f"{validated.stderr}"]
    document = yaml.safe_load(path.read_text())
    ours = {name: svc for name, svc in document.get("services", {}).items()
            if "taskservice" in str(svc.get("image", "")) or "build" in svc}
    if not ours:
        problems.append(f"{path.name}: no service runs the taskservice image")
    for name, svc in ours.items():
        where = f"{path.name}: service {name}"
        command = svc.get("command")
        if not isinstance(command, list) or not command:
            problems.append(f"{where}: command must be a list of `taskservice` arguments")
            continue
        problems += command_problems(where, [str(a) for a in command])
        raw = svc.get("environment") or {}
        env = dict(item.split("=", 1) for item in raw) if isinstance(raw, list) else {k: str(v) for k, v in
                                                                                     raw.items()}
        problems += settings_problems(where, str(command[0]), env)
        if command[0] != "migrate":
            if svc.get("depends_on", {}).get("migrate", {}).get("condition") != "service_completed_successfully":
                problems.append(f"{where}: must wait for migrate (depends_on condition "
                                "service_completed_successfully)")
        if command[0] == "worker":
            problems += _drain_problems(where, env, _seconds(svc.get("stop_grace_period", "10s")),
                                        "stop_grace_period")
            problems += _probe_port_problems(where, command, " ".join(svc.get("healthcheck", {}).get("test", [])))
    return problems


def _probe_port_problems(where: str, command: list[str], probe: str) -> list[str]:
    port = _option(command, "--health-port")
    if port is None:
        return [f"{where}: the worker needs --health-port for its probes"]
    if f":{port}/readyz" not in probe:
        return [f"{where}: the health check does not ask /readyz on the --health-port {port}"]
    return []


def _option(args: Iterable[str], name: str) -> str | None:
    args = list(args)
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --- Kubernetes ------------------------------------------------------------------------------------------------------
def render_kustomize(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not installed: run scripts/ensure-system-packages.sh (Debian's "
                           "kubernetes-client)")
    rendered = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if rendered.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed:\n{rendered.stderr}")
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def expected_image(overlay: Path) -> str:
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    (image,) = [i for i in kustomization["images"] if i["name"] == "taskservice"]
    return f"{image['newName']}:{image['newTag']}"


def check_kubernetes(docs: list[dict[str, Any]], image: str) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    data: dict[tuple[str, str], dict[str, str]] = {}
    for name, cm in by_kind.get("ConfigMap", {}).items():
        data["configMapRef", name] = {k: str(v) for k, v in (cm.get("data") or {}).items()}
    for name, secret in by_kind.get("Secret", {}).items():
        decoded = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data["secretRef", name] = {**decoded, **(secret.get("stringData") or {})}
    workers: dict[str, dict[str, str]] = {}
    pods = [(kind, name, doc["spec"]["template"]) for kind in ("Deployment", "Job")
            for name, doc in by_kind.get(kind, {}).items()]
    if not pods:
        problems.append("kustomize output: no Deployment or Job")
    for kind, name, template in pods:
        spec = template["spec"]
        for container in spec["containers"]:
            where = f"{kind} {name}, container {container['name']}"
            if container.get("image") != image:
                problems.append(f"{where}: image {container.get('image')} is not the overlay's {image}")
            if "command" in container:
                problems.append(f"{where}: sets command; leave the image's entry point (tini -- taskservice) and "
                                "give args")
            args = [str(a) for a in container.get("args", [])]
            problems += command_problems(where, args)
            env: dict[str, str] = {}
            for ref in container.get("envFrom", []):
                for ref_kind in ("configMapRef", "secretRef"):
                    if ref_kind in ref:
                        source = data.get((ref_kind, ref[ref_kind]["name"]))
                        if source is None:
                            problems.append(f"{where}: {ref_kind} {ref[ref_kind]['name']} is not in the output")
                        else:
                            env.update(source)
            env.update({e["name"]: str(e.get("value", "")) for e in container.get("env", [])})
            process = args[0] if args else ""
            problems += settings_problems(where, process, env)
            problems += _k8s_probe_problems(where, process, args, container)
            if process == "worker":
                workers[name] = env
                problems += _drain_problems(where, env, float(spec.get("terminationGracePeriodSeconds", 30)),
                                            "terminationGracePeriodSeconds")
    problems += _keda_problems(by_kind, workers, data)
    selected = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items()))
                for p in by_kind.get("PodDisruptionBudget", {}).values()}
    for kind, name, template in pods:
        labels = template["metadata"].get("labels", {})
        component = labels.get("app.kubernetes.io/component")
        if kind == "Deployment" and component in ("api", "worker") and not any(
                set(s) <= set(labels.items()) for s in selected):
            problems.append(f"Deployment {name}: no PodDisruptionBudget selects its pods")
    return problems


def _k8s_probe_problems(where: str, process: str, args: list[str], container: dict[str, Any]) -> list[str]:
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}

    def probe(kind: str) -> tuple[str | None, int | None]:
        found = container.get(kind) or {}
        get = found.get("httpGet")
        if get is None:
            return None, None
        port = get["port"]
        return get["path"], ports.get(port) if isinstance(port, str) else int(port)

    problems = []
    if process == "api":
        path, port = probe("readinessProbe")
        want = int(_option(args, "--port") or 8000)
        if (path, port) != ("/healthz", want):
            problems.append(f"{where}: readinessProbe must GET /healthz on the API port {want}, not {path} on {port}")
    if process == "worker":
        health = _option(args, "--health-port")
        if health is None:
            return [f"{where}: the worker needs --health-port for its probes"]
        for kind, want_path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            path, port = probe(kind)
            if (path, port) != (want_path, int(health)):
                problems.append(f"{where}: {kind} must GET {want_path} on --health-port {health}, not {path} on "
                                f"{port}")
    return problems


LEDGER_TABLES = set(Base.metadata.tables)
STATUSES = {s.value for s in Status}


def keda_query_problems(where: str, query: str) -> list[str]:
    problems = []
    tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)", query, flags=re.IGNORECASE))
    if not tables:
        problems.append(f"{where}: the query reads no table")
    for table in sorted(tables - LEDGER_TABLES):
        problems.append(f"{where}: the query reads {table}, which is not a ledger table "
                        f"({', '.join(sorted(LEDGER_TABLES))})")
    columns = set(Base.metadata.tables.get("invocations").c.keys())  # type: ignore[union-attr]
    for column in sorted(set(re.findall(r"\b([a-z_]+)\s+(?:IN|IS|<=|>=|=|<|>)", query)) - columns):
        problems.append(f"{where}: the query tests {column}, which is not a column of invocations")
    for literal in sorted(set(re.findall(r"'([^']*)'", query)) - STATUSES):
        problems.append(f"{where}: the query names status '{literal}', which is not one of {sorted(STATUSES)}")
    return problems


def _keda_problems(by_kind: dict[str, dict[str, dict[str, Any]]], workers: dict[str, dict[str, str]],
                   data: dict[tuple[str, str], dict[str, str]]) -> list[str]:
    scaled = by_kind.get("ScaledObject", {})
    if not scaled:
        return ["kustomize output: no KEDA ScaledObject"]
    problems = []
    for name, obj in scaled.items():
        where = f"ScaledObject {name}"
        target = obj["spec"]["scaleTargetRef"]["name"]
        if target not in workers:
            problems.append(f"{where}: scales {target}, which is not a worker Deployment ({sorted(workers)})")
            continue
        env = workers[target]
        for trigger in obj["spec"]["triggers"]:
            if trigger["type"] != "postgresql":
                problems.append(f"{where}: trigger {trigger['type']}; the backlog is counted in the ledger "
                                "(postgresql)")
                continue
            meta = trigger["metadata"]
            problems += keda_query_problems(where, meta.get("query", ""))
            concurrency = env.get("TASKSERVICE_WORKER_CONCURRENCY", "0")
            if concurrency in ("", "0"):
                problems.append(f"{where}: set TASKSERVICE_WORKER_CONCURRENCY for {target} explicitly: "
                                "targetQueryValue is per pod")
            elif str(meta.get("targetQueryValue")) != concurrency:
                problems.append(f"{where}: targetQueryValue {meta.get('targetQueryValue')} is not "
                                f"TASKSERVICE_WORKER_CONCURRENCY={concurrency} (handler slots per pod)")
            auth_name = (trigger.get("authenticationRef") or {}).get("name")
            auth = by_kind.get("TriggerAuthentication", {}).get(auth_name or "")
            if auth is None:
                problems.append(f"{where}: TriggerAuthentication {auth_name} is not in the output")
                continue
            for ref in auth["spec"].get("secretTargetRef", []):
                secret = data.get(("secretRef", ref["name"]))
                if secret is None or ref["key"] not in secret:
                    problems.append(f"TriggerAuthentication {auth_name}: Secret {ref['name']} has no key "
                                    f"{ref['key']}")
                elif ref["parameter"] == "connection" and not re.match(r"postgres(ql)?://", secret[ref["key"]]):
                    problems.append(f"TriggerAuthentication {auth_name}: {ref['name']}/{ref['key']} must be a libpq "
                                    "URL (postgresql://…), not SQLAlchemy's postgresql+psycopg://")
    return problems


# --- systemd ---------------------------------------------------------------------------------------------------------
EXEC = "/opt/taskservice/bin/taskservice"


def _unit_entries(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            entries[key.strip()] = value.strip()
    return entries


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def check_systemd(directory: Path, scratch: Path) -> list[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return ["systemd-analyze is not installed: run scripts/ensure-system-packages.sh (Debian's systemd)"]
    units = sorted([*directory.glob("*.service"), *directory.glob("*.target")])
    if not units:
        return [f"{directory}: no units"]
    stub = scratch / "taskservice"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for unit in units:  # the same units, with the executable they start replaced by a stub that exists here
        (scratch / unit.name).write_text(unit.read_text().replace(EXEC, str(stub)))
    verified = subprocess.run([analyze, "verify", "--man=no", *(str(scratch / u.name) for u in units)],
                              capture_output=True, text=True, timeout=120)
    output = (verified.stdout + verified.stderr).strip()
    problems = [f"systemd-analyze verify: {output or f'exit {verified.returncode}'}"] \
        if verified.returncode != 0 or output else []
    for unit in units:
        if unit.suffix != ".service":
            continue
        entries = _unit_entries(unit.read_text())
        where = unit.name
        exec_start = entries.get("ExecStart", "").split()
        if not exec_start or exec_start[0] != EXEC:
            problems.append(f"{where}: ExecStart must start {EXEC}")
            continue
        problems += command_problems(where, exec_start[1:])
        env_path = entries.get("EnvironmentFile", "").lstrip("-")
        if not env_path:
            problems.append(f"{where}: no EnvironmentFile")
            continue
        local = directory / Path(env_path).name
        if not local.is_file():
            problems.append(f"{where}: EnvironmentFile {env_path} has no example {local.name} beside the units")
            continue
        env = _env_file(local)
        problems += settings_problems(f"{where} ({local.name})", exec_start[1], env)
        if exec_start[1] == "worker":
            if entries.get("KillMode") != "mixed":
                problems.append(f"{where}: KillMode=mixed (SIGTERM to the main process only, it stops its pool)")
            problems += _drain_problems(where, env, _seconds(entries.get("TimeoutStopSec", "90")), "TimeoutStopSec")
    return problems
