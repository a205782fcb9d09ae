"""The package as an operator installs it: a wheel built from this tree, installed into a clean venv, run from a
directory outside the source tree with nothing pointing back at the repo (no PYTHONPATH, no editable install)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from taskservice import migrate
from taskservice.db import make_engine

if TYPE_CHECKING:
    from tests.support import DevProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass(frozen=True)
class Install:
    wheel: Path
    venv: Path
    outside: Path  # a working directory that is not the source tree

    @property
    def taskservice(self) -> str:
        return str(self.venv / "bin" / "taskservice")

    def env(self, **variables: str) -> dict[str, str]:
        """The caller's environment without anything that could lead back to the repo or its venv."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TASKSERVICE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(variables)
        return env

    def run(self, *args: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.taskservice, *args], cwd=self.outside, env=self.env(**variables), text=True,
                              capture_output=True, timeout=timeout)


def _source_files(repo: Path) -> list[str]:
    """Tracked and new (not ignored) files: what a fresh clone plus this change would build from."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=repo,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (repo / name).is_file()]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, repo_dir: Path) -> Install:
    """Build the wheel from a copy of the tree (an in-tree build/ could smuggle stale files into it), then install
    it with its dependencies into a new venv; once per session."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in _source_files(repo_dir):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_dir / name, source / name)
    dist = root / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("taskservice-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                         capture_output=True, text=True, timeout=800)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    outside = root / "elsewhere"
    outside.mkdir()
    return Install(wheel=wheel, venv=venv, outside=outside)


def test_the_wheel_carries_migrations_templates_and_static_files_and_nothing_top_level_but_the_packages(
        installed: Install, repo_dir: Path) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    revisions = {p.name for p in (repo_dir / "migrations" / "versions").glob("*.py")}
    assert {"taskservice/_migrations/env.py", "taskservice/_migrations/script.py.mako"} <= names
    assert {f"taskservice/_migrations/versions/{name}" for name in revisions} <= names
    for folder in ("templates", "static"):
        shipped = {p.name for p in (repo_dir / "taskservice" / "console" / folder).iterdir() if p.is_file()}
        assert {f"taskservice/console/{folder}/{name}" for name in shipped} <= names, folder
    media_flows = {p.name for p in (repo_dir / "taskservice" / "cli" / "media_flows").glob("*.yaml")}
    assert media_flows and {f"taskservice/cli/media_flows/{name}" for name in media_flows} <= names
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"taskservice", "workers", installed.wheel.name.split("-py3")[0] + ".dist-info"}


def test_the_media_flows_deploy_media_sends_load_and_parse_from_the_wheel(installed: Install) -> None:
    """deploy-media reads its flows' YAML as package data: it must be there, and valid, outside the source tree."""
    code = ("from taskservice.cli.media_commands import MEDIA_FLOWS, media_flow_definition; "
            "from taskservice.flowdef import parse_definition; "
            "print(sorted(n for n in MEDIA_FLOWS if parse_definition(media_flow_definition(n, 'p-')).steps))")
    done = subprocess.run([str(installed.venv / "bin" / "python"), "-c", code], cwd=installed.outside,
                          env=installed.env(), text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['media-fanout', 'media-range-copy', 'media-split-merge']"


def test_the_installed_package_is_the_one_imported(installed: Install, repo_dir: Path) -> None:
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                            "import taskservice, workers, sys; print(taskservice.__file__); print(workers.__file__); "
                            "print(sys.flags.no_site, [p for p in sys.path if 'site-packages' in p])"],
                           cwd=installed.outside, env=installed.env(), capture_output=True, text=True, check=True)
    lines = where.stdout.splitlines()
    assert all(line.startswith(str(installed.venv)) for line in lines[:2]), where.stdout
    assert str(repo_dir) not in where.stdout
    assert "dist-packages" not in where.stdout  # a clean venv: no system site-packages


def test_migrate_from_the_wheel_on_sqlite(installed: Install, tmp_path: Path) -> None:
    result = installed.run("migrate", TASKSERVICE_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert f"is at revision {migrate.head_revision()}" in result.stdout
    assert (tmp_path / "data" / "ledger.db").is_file()
    again = installed.run("migrate", TASKSERVICE_DATA_DIR=str(tmp_path / "data"))
    assert again.returncode == 0 and f"is at revision {migrate.head_revision()}" in again.stdout, again.stderr


def test_migrate_from_the_wheel_on_postgres(installed: Install, tmp_path: Path, empty_postgres_url: str) -> None:
    result = installed.run("migrate", TASKSERVICE_DATABASE_URL=empty_postgres_url,
                           TASKSERVICE_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    engine = make_engine(empty_postgres_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.differences(engine) == []  # the shipped migrations build exactly the models' schema
    finally:
        engine.dispose()


def test_dev_from_the_wheel_runs_an_invocation_end_to_end(installed: Install,
                                                          start_dev: Callable[..., DevProcess]) -> None:
    dev = start_dev(program=(installed.taskservice,), cwd=installed.outside, env=installed.env())
    client = {"TASKSERVICE_API_URL": dev.base}
    deployed = installed.run("functions", "deploy", "echo", "--handler", "workers.handlers.echo:handler", **client)
    assert deployed.returncode == 0, deployed.stderr
    done = installed.run("invoke", "echo", "-e", '{"from": "wheel"}', "--invocation-id", "wheel_1", "--wait",
                         **client)
    assert done.returncode == 0, done.stdout + done.stderr + dev.log_path.read_text()[-3000:]
    assert "Succeeded after 1 attempt(s)" in done.stdout and '"wheel"' in done.stdout
    console = requests.get(f"{dev.base}/", timeout=10)
    assert console.status_code == 200 and "wheel_1" in console.text  # templates came with the wheel
    css = requests.get(f"{dev.base}/static/console/console.css", timeout=10)
    assert css.status_code == 200 and len(css.content) > 100  # so did the static files
