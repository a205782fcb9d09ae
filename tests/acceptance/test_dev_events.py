"""`taskservice dev` runs the event sources and the flow engine too: a timer fires through its scheduler, a file put
into the embedded object storage fires a storage trigger, a message on the embedded broker fires a queue trigger,
and a flow of two task steps runs to its end through dev's engine and worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Producer

import taskservice


@pytest.fixture
def dev(start_dev: Callable[..., Any]) -> Any:
    return start_dev()


def test_dev_fires_timer_storage_and_queue_triggers_and_runs_flows(dev: Any, tmp_path: Path, repo_dir: Path,
                                                                   eventually: Callable[..., Any]) -> None:
    assert any(line.startswith("  scheduler ") for line in dev.lines())
    assert any(line.startswith("  engine ") for line in dev.lines())
    data_dir = tmp_path / "dev-data-0"  # where the start_dev fixture puts its first dev's data
    client = taskservice.Client(dev.base)
    client.put_function("echo", {"handler": "workers.handlers.echo:handler"})
    client.put_trigger("tick", {"kind": "timer", "function": "echo", "cron": "@every 1s", "payload": "p"})
    client.put_trigger("files", {"kind": "storage", "function": "echo", "bucket": "media",
                                 "events": ["s3:ObjectCreated:*"]})
    client.put_trigger("msgs", {"kind": "queue", "function": "echo", "queue": "inbox", "batching_window_s": 0.2})

    ticked = eventually(lambda: [i for i in client.list(function="echo", prefix="timer_tick_").items
                             if i.status == "Succeeded"], timeout_s=30, what="a timer tick ran")
    assert client.get("echo", ticked[0].invocation_id).result["triggerName"] == "tick"

    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env["TASKSERVICE_DATA_DIR"] = str(data_dir)
    video = tmp_path / "a.mov"
    video.write_bytes(b"x" * 10)
    out = subprocess.run([sys.executable, "-m", "taskservice.cli", "objects", "put", "media", "in/a.mov", str(video)],
                         cwd=repo_dir, env=env, capture_output=True, text=True, check=True)
    assert "triggered files" in out.stdout
    stored = eventually(lambda: [i for i in client.list(function="echo", prefix="oss_files_").items
                             if i.status == "Succeeded"], timeout_s=30, what="the storage trigger ran")
    assert client.get("echo", stored[0].invocation_id).result["events"][0]["oss"]["object"]["key"] == "in/a.mov"

    from taskservice.broker import broker_options
    from taskservice.config import Settings
    from taskservice.destinations.queue import EXCHANGE, record_queue

    url, options = broker_options(Settings(data_dir=data_dir))
    with Connection(url, transport_options=options) as conn:
        producer = Producer(conn.default_channel, exchange=EXCHANGE)
        record_queue("inbox")(producer.channel).declare()
        producer.publish(json.dumps({"hello": 1}).encode(), routing_key="inbox", message_id="m1",
                         content_type="application/json", content_encoding="binary")
    queued = eventually(lambda: [i for i in client.list(function="echo", prefix="queue_msgs_").items
                             if i.status == "Succeeded"], timeout_s=30, what="the queue trigger ran")
    [message] = client.get("echo", queued[0].invocation_id).result
    assert message["messageId"] == "m1" and json.loads(message["body"]) == {"hello": 1}

    client.put_flow("twice", """
version: v1
type: flow
steps:
  - name: first
    type: task
    resourceArn: function:echo
  - name: both
    type: parallel
    branches:
      - steps: [{name: left, type: task, resourceArn: "function:echo"}]
      - steps: [{name: right, type: pass}]
""")
    client.start_execution("twice", {"through": "dev"}, name="dev_flow")
    done = client.wait_execution("twice", "dev_flow", timeout_s=60)
    assert done.status == "Succeeded", done
    assert done.output["through"] == "dev" and [b["through"] for b in done.output["both"]] == ["dev", "dev"]
    assert [s.path for s in done.steps if s.type == "task"] == ["first", "both/0/left"]
