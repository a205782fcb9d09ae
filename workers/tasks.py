"""The one Celery task: a thin doorbell handler that hands the invocation key to the runner."""
from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from taskservice.dispatch import RUN_TASK
from workers.runner import Runner


def register_tasks(app: Celery, runner_of: Callable[[], Runner]) -> None:
    @app.task(name=RUN_TASK, ignore_result=True, acks_late=False)
    def run_invocation(pk: int) -> str:
        return runner_of().run(int(pk))
