"""Job notifications: webhooks (MessageVersion 1.1, signed) to a real HTTP receiver, with retries; queue
messages (MessageVersion 1.0) in a real Redis list; nothing for a transaction that rolls back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from openams.jobs import notify
from openams.jobs.notify import QUEUE_KEY_PREFIX, Delivery, deliverer
from tests.conftest import service_missing
from tests.jobs.support import Hit, Receiver, cancel, make_clip, submit, upload, wait_final
from tests.support.client import ApiClient

KEY = base64.b64encode(b"a-webhook-signing-key-of-32bytes").decode()
WEBHOOK_PROPS = {"JobId", "NewState", "OldState", "AccountName", "AccountId", "NotificationEndPointId"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", 2)


@pytest.fixture
def scheduler(runtime):  # type: ignore[no-untyped-def]
    runtime.start_jobs()
    yield runtime.scheduler
    runtime.stop_jobs()


@pytest.fixture(scope="module")
def redis_client(runtime) -> Any:  # type: ignore[no-untyped-def]
    import redis

    url = notify.queue_redis_url(runtime.settings)
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except Exception as exc:
        service_missing(f"Redis at {url} is not reachable: {exc}")
    return client


def _endpoint(api: ApiClient, address: str, kind: int = 3, **extra: Any) -> dict[str, Any]:
    return api.create("NotificationEndPoints", "NotificationEndPoint",
                      {"Name": f"ep-{uuid.uuid4().hex[:6]}", "EndPointType": kind, "EndPointAddress": address,
                       **extra})


def _input(runtime, api: ApiClient, clip: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return upload(runtime.storage, api, clip)


def _check_webhook(hit: Hit, account: Any, endpoint_id: str, job_id: str, key: bytes | None
                   ) -> dict[str, Any]:
    msg = hit.message
    assert list(msg) == ["MessageVersion", "ETag", "EventType", "TimeStamp", "Properties"]
    assert msg["MessageVersion"] == "1.1" and msg["EventType"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", msg["ETag"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", msg["TimeStamp"])
    props = msg["Properties"]
    assert set(props) == WEBHOOK_PROPS
    assert props["JobId"] == job_id and props["AccountName"] == account.name
    assert props["AccountId"] == account.id and props["NotificationEndPointId"] == endpoint_id
    assert hit.headers["ms-mediaservices-accountid"] == account.id
    if key is None:
        assert "ms-signature" not in hit.headers
    else:
        expected = hmac.new(key, hit.body, hashlib.sha256).hexdigest().upper()
        assert hit.headers["ms-signature"] == f"sha256={expected}"
    return dict(props)


def test_webhooks_final_only_and_all_states_signed(runtime, api: ApiClient, account, clip: Path, scheduler,  # type: ignore[no-untyped-def]
                                                   receiver: Receiver) -> None:
    final_ep = _endpoint(api, f"{receiver.base}/final", CredentialType=1, EncryptedEndPointCredential=KEY)
    all_ep = _endpoint(api, f"{receiver.base}/all", CredentialType=1, EncryptedEndPointCredential=KEY)
    job = submit(api, _input(runtime, api, clip), "H264 Single Bitrate 720p", subscriptions=[
        {"NotificationEndPointId": final_ep["Id"], "TargetJobState": 1},
        {"NotificationEndPointId": all_ep["Id"], "TargetJobState": 2}])
    assert wait_final(api, job["Id"])["State"] == 3
    assert deliverer().wait_idle(30, receiver.base)
    key = base64.b64decode(KEY)
    final = [_check_webhook(h, account, final_ep["Id"], job["Id"], key) for h in receiver.at("/final")]
    assert [(p["OldState"], p["NewState"]) for p in final] == [("Processing", "Finished")]
    every = [_check_webhook(h, account, all_ep["Id"], job["Id"], key) for h in receiver.at("/all")]
    # delivery is unordered (as in AMS): compare as a set
    assert {(p["OldState"], p["NewState"]) for p in every} == {
        ("Queued", "Scheduled"), ("Scheduled", "Processing"), ("Processing", "Finished")}
    assert len(every) == 3
    assert len({h.message["ETag"] for h in receiver.at("/all")}) == 3


def test_webhook_retried_after_500_with_the_same_body(runtime, api: ApiClient, account, clip: Path,  # type: ignore[no-untyped-def]
                                                       receiver: Receiver) -> None:
    receiver.answers["/flaky"] = [500]
    ep = _endpoint(api, f"{receiver.base}/flaky", CredentialType=1, EncryptedEndPointCredential=KEY)
    job = submit(api, _input(runtime, api, clip), "H264 Single Bitrate 720p",
                 subscriptions=[{"NotificationEndPointId": ep["Id"], "TargetJobState": 1}])
    cancel(api, job["Id"])  # queued, no runner: Queued → Canceled at once
    assert deliverer().wait_idle(30, receiver.base)
    hits = receiver.at("/flaky")
    assert len(hits) == 2, hits
    assert hits[0].body == hits[1].body and hits[0].headers["ms-signature"] == hits[1].headers["ms-signature"]
    assert hits[1].at - hits[0].at >= 0.9  # the first back-off step is 1 s
    props = _check_webhook(hits[1], account, ep["Id"], job["Id"], base64.b64decode(KEY))
    assert (props["OldState"], props["NewState"]) == ("Queued", "Canceled")


def test_webhook_unsigned_without_usable_key(runtime, api: ApiClient, account, clip: Path,  # type: ignore[no-untyped-def]
                                             receiver: Receiver) -> None:
    plain = _endpoint(api, f"{receiver.base}/plain")
    wrapped = _endpoint(api, f"{receiver.base}/wrapped", CredentialType=1, EncryptedEndPointCredential=KEY,
                        ProtectionKeyId="0123456789ABCDEF0123456789ABCDEF01234567")
    job = submit(api, _input(runtime, api, clip), "H264 Single Bitrate 720p", subscriptions=[
        {"NotificationEndPointId": plain["Id"], "TargetJobState": 2},
        {"NotificationEndPointId": wrapped["Id"], "TargetJobState": 2}])
    cancel(api, job["Id"])
    assert deliverer().wait_idle(30, receiver.base)
    for path, ep in (("/plain", plain), ("/wrapped", wrapped)):
        hits = receiver.at(path)
        assert len(hits) == 1
        _check_webhook(hits[0], account, ep["Id"], job["Id"], None)


def test_queue_messages_land_in_redis(runtime, api: ApiClient, account, clip: Path, redis_client,  # type: ignore[no-untyped-def]
                                      receiver: Receiver) -> None:
    address = f"jobs-{uuid.uuid4().hex[:12]}"
    ep = _endpoint(api, address, kind=1)
    job = submit(api, _input(runtime, api, clip), "H264 Single Bitrate 720p", name="queue-job",
                 subscriptions=[{"NotificationEndPointId": ep["Id"], "TargetJobState": 2}])
    cancel(api, job["Id"])
    key = QUEUE_KEY_PREFIX + address
    try:
        item = redis_client.blpop([key], timeout=10)
        assert item is not None, "no message in Redis"
        assert item[0].decode() == key
        msg = json.loads(item[1])
        assert list(msg) == ["MessageVersion", "EventType", "ETag", "TimeStamp", "Properties"]
        assert msg["MessageVersion"] == "1.0" and msg["EventType"] == "JobStateChange"
        assert re.fullmatch(r"[0-9a-f]{64}", msg["ETag"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", msg["TimeStamp"])
        assert msg["Properties"] == {"JobId": job["Id"], "JobName": "queue-job", "NewState": "Canceled",
                                     "OldState": "Queued", "AccountName": account.name}
        assert deliverer().wait_idle(10, key)
        assert redis_client.llen(key) == 0
    finally:
        redis_client.delete(key)


def test_nothing_is_sent_for_a_rolled_back_transaction(runtime, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    def item(path: str) -> Delivery:
        return Delivery(0.0, 0, "webhook", f"{receiver.base}{path}", b"{}", {}, label=path)

    with runtime.engine.connect() as conn:
        with conn.begin() as tx:
            notify._pending(conn).append(item("/rolled-back"))
            tx.rollback()
        with conn.begin():
            notify._pending(conn).append(item("/committed"))
    # a later connection that reuses the pooled DBAPI connection still delivers on commit
    with runtime.engine.connect() as conn, conn.begin():
        notify._pending(conn).append(item("/committed-again"))
    assert deliverer().wait_idle(10, receiver.base)
    assert receiver.at("/rolled-back") == []
    assert len(receiver.at("/committed")) == 1 and len(receiver.at("/committed-again")) == 1


def test_a_failed_delivery_logs_no_endpoint_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint address may carry a credential (a signed URL, a Redis password) and client libraries
    put the address in their exception messages: the message kept for the retry log must not carry it."""
    webhook = "https://hooks.example/notify?sig=not-for-logs-1"
    redis_url = "redis://:not-for-logs-2@127.0.0.1:1/0"

    class Failing:
        def post(self, url: str, **_: Any) -> None:
            raise RuntimeError(f"cannot reach {url}")

        def rpush(self, key: str, _body: bytes) -> None:
            raise RuntimeError(f"cannot push {key} to {redis_url}")

    d = notify.Deliverer.__new__(notify.Deliverer)
    monkeypatch.setattr(d, "_http_client", lambda: Failing(), raising=False)
    monkeypatch.setattr(d, "_redis_client", lambda _url: Failing(), raising=False)
    hook_error = d._send(Delivery(0.0, 0, "webhook", webhook, b"{}", {}, label="webhook x"))
    queue_error = d._send(Delivery(0.0, 0, "queue", "openams:queue:q", b"{}", {}, redis_url=redis_url,
                                   label="queue q"))
    assert hook_error == "RuntimeError: cannot reach <endpoint>"
    assert queue_error == "RuntimeError: cannot push <endpoint> to <endpoint>"
