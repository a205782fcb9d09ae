"""Storage triggers on both backends: MinIO's webhook notifications (`POST /v1/storage-events`), de-duplication of
redelivered notifications, prefix/suffix filters, writes through taskservice's own storage boundary (the embedded
`file://` default, `taskservice objects put`, a handler's context.storage on the S3 API server), and bad or
unauthenticated notifications that write nothing."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.ledger.queries import InvocationFilter
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend, WorkerProcess


def minio_notification(bucket: str, key: str, etag: str = "d41d8cd98f00b204e9800998ecf8427e",
                       name: str = "s3:ObjectCreated:Put", size: int = 1024) -> dict[str, Any]:
    """What MinIO's webhook target posts (its format: EventName, Key, Records with URL-encoded keys)."""
    return {"EventName": name, "Key": f"{bucket}/{key}", "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2026-12-01T10:00:00.000Z",
        "eventName": name, "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {"x-amz-request-id": "17E"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": size, "eTag": etag, "contentType": "video/quicktime",
                          "userMetadata": {}, "sequencer": "17E0C8A3C8D2C3B1"}},
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO"}}]}


def _invocations(services: Services, fn: str) -> list[Any]:
    return services.ledger.list_invocations(InvocationFilter(function=fn), limit=100).items


def _storage_trigger(app_client: FlaskClient, name: str, fn: str, bucket: str, **extra: Any) -> None:
    answer = app_client.put(f"/v1/triggers/{name}", json={"kind": "storage", "function": fn, "bucket": bucket,
                                                          "events": ["s3:ObjectCreated:*"], **extra})
    assert answer.status_code == 201, answer.get_json()


def test_a_minio_notification_gives_one_invocation_with_the_fc_oss_event_even_delivered_three_times(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    bucket = f"b{fn_name[3:]}".replace("_", "-")
    _storage_trigger(app_client, f"{fn_name}_s", fn_name, bucket, prefix="in/", suffix=".mov")
    note = minio_notification(bucket, "in/my talk.mov")
    answers = [app_client.post("/v1/storage-events", json=note) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert len(answers[0].get_json()["submitted"]) == 1 and answers[1].get_json()["duplicates"] == 1
    [inv] = _invocations(services, fn_name)
    [event] = json.loads(inv.payload)["events"]
    assert event["eventName"] == "ObjectCreated:PutObject" and event["eventSource"] == "acs:oss"
    assert event["oss"]["bucket"]["name"] == bucket
    assert event["oss"]["object"]["key"] == "in/my talk.mov"  # decoded
    assert event["oss"]["object"]["size"] == 1024 and event["oss"]["object"]["eTag"] == note["Records"][0]["s3"][
        "object"]["eTag"]
    assert event["eventTime"].endswith("Z")
    # a new version of the same key (another eTag) is a new invocation
    app_client.post("/v1/storage-events", json=minio_notification(bucket, "in/my talk.mov", etag="abc"))
    assert len(_invocations(services, fn_name)) == 2
    shown = app_client.get(f"/v1/triggers/{fn_name}_s").get_json()
    assert shown["status"]["events"] == 2 and "in/my talk.mov" in shown["status"]["lastEvent"]


def test_prefix_suffix_event_and_bucket_filters(app_client: FlaskClient, services: Services, fn_name: str,
                                                deploy_fn: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    bucket = f"b{fn_name[3:]}".replace("_", "-")
    _storage_trigger(app_client, f"{fn_name}_s", fn_name, bucket, prefix="in/", suffix=".mov")
    for key, name, target in [("out/a.mov", "s3:ObjectCreated:Put", bucket),
                              ("in/a.mp4", "s3:ObjectCreated:Put", bucket),
                              ("in/a.mov", "s3:ObjectRemoved:Delete", bucket),
                              ("in/a.mov", "s3:ObjectCreated:Put", "elsewhere"),
                              ("in/a.mov", "s3:ObjectAccessed:Get", bucket)]:
        answer = app_client.post("/v1/storage-events", json=minio_notification(target, key, name=name))
        assert answer.status_code == 202 and answer.get_json()["ignored"] == 1, (key, name, target)
    assert _invocations(services, fn_name) == []
    multipart = minio_notification(bucket, "in/a.mov", name="s3:ObjectCreated:CompleteMultipartUpload")
    answer = app_client.post("/v1/storage-events", json=multipart)
    assert len(answer.get_json()["submitted"]) == 1


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda n: n["Records"][0]["s3"]["object"].update(key="in%2F..%2Fetc%2Fpasswd"), "s3.object.key"),
    (lambda n: n["Records"][0]["s3"]["object"].update(key="in/a%0A.mov"), "s3.object.key"),
    (lambda n: n["Records"][0]["s3"]["bucket"].update(name="Not_A_Bucket"), "s3.bucket.name"),
    (lambda n: n["Records"][0].pop("s3"), "s3.object.key"),
    (lambda n: n["Records"][0].update(eventName="ObjectCreated"), "eventName"),
    (lambda n: n.update(Records=[]), "Records"),
])
def test_a_bad_notification_is_refused_naming_the_field_and_writes_nothing(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        mutate: Callable[[dict[str, Any]], Any], field: str) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    bucket = f"b{fn_name[3:]}".replace("_", "-")
    _storage_trigger(app_client, f"{fn_name}_s", fn_name, bucket)
    note = minio_notification(bucket, "in/ok.mov")
    note["Records"].append(minio_notification(bucket, "in/fine.mov")["Records"][0])
    mutate(note)
    answer = app_client.post("/v1/storage-events", json=note)
    assert answer.status_code == 422, answer.get_json()
    assert field in answer.get_json()["error"]["message"]
    assert _invocations(services, fn_name) == []  # not even the good second record


def test_storage_trigger_config_is_checked(app_client: FlaskClient, fn_name: str,
                                           deploy_fn: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    for body, field in [({"bucket": "media", "events": ["s3:ObjectCreated:Get"]}, "events"),
                        ({"bucket": "x", "events": ["s3:ObjectCreated:*"]}, "bucket"),
                        ({"bucket": "media", "events": ["s3:ObjectCreated:*"], "prefix": "a\x01"}, "prefix"),
                        ({"bucket": "media", "events": ["s3:ObjectCreated:*"], "topics": ["t"]}, "topics")]:
        answer = app_client.put(f"/v1/triggers/{fn_name}_s", json={"kind": "storage", "function": fn_name, **body})
        assert answer.status_code == 422 and field in answer.get_json()["error"]["message"], body
    assert app_client.get(f"/v1/triggers/{fn_name}_s").status_code == 404


def test_unauthenticated_or_forged_notifications_are_refused(backend: Backend, services: Services, fn_name: str,
                                                             deploy_fn: Callable[..., Any],
                                                             app_client: FlaskClient) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    bucket = f"b{fn_name[3:]}".replace("_", "-")
    _storage_trigger(app_client, f"{fn_name}_s", fn_name, bucket)
    secured = create_app(backend.settings.merged(auth=True)).test_client()
    note = minio_notification(bucket, "in/a.mov")
    assert secured.post("/v1/storage-events", json=note).status_code == 401
    assert secured.post("/v1/storage-events", json=note,
                        headers={"Authorization": "Bearer tsk_forged"}).status_code == 401
    _, reader = services.tokens.create(f"{fn_name}_ro", "read-only")
    assert secured.post("/v1/storage-events", json=note,
                        headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert _invocations(services, fn_name) == []
    _, minio = services.tokens.create(f"{fn_name}_minio", "admin")
    ok = secured.post("/v1/storage-events", json=note, headers={"Authorization": f"Bearer {minio}"})
    assert ok.status_code == 202 and len(_invocations(services, fn_name)) == 1


def test_objects_put_through_the_storage_boundary_triggers_on_the_configured_storage(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        run_cli: Callable[..., Any], tmp_path: Path, worker: WorkerProcess,
        await_status: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    bucket = f"b{fn_name[3:]}".replace("_", "-")
    _storage_trigger(app_client, f"{fn_name}_s", fn_name, bucket, suffix=".mov")
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"not really a movie" * 100)
    out = run_cli("objects", "put", bucket, "in/clip.mov", str(clip))
    assert out.exit_code == 0, out.output
    assert "triggered" in out.output
    listed = run_cli("objects", "ls", bucket)
    assert "in/clip.mov" in listed.output
    [inv] = _invocations(services, fn_name)
    done = await_status(fn_name, inv.invocation_id, {"Succeeded"})
    [event] = json.loads(done.result)["events"]
    assert event["oss"]["object"]["key"] == "in/clip.mov" and event["oss"]["object"]["size"] == 1800
    assert event["oss"]["object"]["eTag"]  # the local store's MD5, as S3 gives for one part


def test_a_handler_writing_to_the_s3_api_server_triggers_once_even_when_minio_reports_it_too(
        backend: Backend, app_client: FlaskClient, services: Services, fn_name: str, s3_url: str,
        deploy_fn: Callable[..., Any], start_worker: Callable[..., WorkerProcess],
        await_status: Callable[..., Any], eventually_true: Callable[..., Any]) -> None:
    queue = {"queue": f"{backend.settings.queue}_s3", "storage_url": s3_url}
    start_worker(**queue)
    from taskservice.services import Services as Built

    s3_services = Built.build(backend.settings.merged(**queue))
    try:
        deploy_fn(fn_name, "tests.event_handlers:upload_text")
        deploy_fn(f"{fn_name}_on", "workers.handlers.echo:handler")
        bucket = f"b{fn_name[3:]}".replace("_", "-")
        _storage_trigger(app_client, f"{fn_name}_s", f"{fn_name}_on", bucket, prefix="out/")
        s3_services.submitter.submit(fn_name, {"bucket": bucket, "key": "out/x.txt", "text": "hello"},
                                     invocation_id="writer")
        written = await_status(fn_name, "writer", {"Succeeded"})
        etag = json.loads(written.result)["etag"]
        [fired] = eventually_true(lambda: _invocations(services, f"{fn_name}_on"), 15, "the triggered invocation")
        assert json.loads(fired.payload)["events"][0]["oss"]["object"]["eTag"] == etag
        # MinIO's own notification of that same upload (same eTag) is the same invocation
        again = app_client.post("/v1/storage-events", json=minio_notification(bucket, "out/x.txt", etag=etag))
        assert again.get_json()["duplicates"] == 1
        assert len(_invocations(services, f"{fn_name}_on")) == 1
    finally:
        s3_services.close()
