"""Job notifications: WebHook endpoints (MessageVersion 1.1) and queue endpoints (MessageVersion 1.0).

`job_state_changed` runs inside the transaction that changes a job's State (`refresh_job_state`,
`cancel_job`). For each of the job's JobNotificationSubscriptions that wants the new state
(TargetJobState 1 = FinalStatesOnly: Finished, Error, Canceled; 2 = AllStates) it builds the message
at once — body, headers, signature — and parks it in the connection's `info`. When the transaction
commits (SQLAlchemy's connection `commit` event) the messages go to a background deliverer; when it
rolls back they are dropped, so a notification never announces a state the database does not hold.

Delivery is at least once and unordered, as in AMS (receivers dedupe by ETag): each message is tried
up to `len(BACKOFF_SECONDS) + 1` times, waiting 1 s, 2 s, 4 s, 8 s, 16 s between attempts. On a clean
exit the process gives messages in flight a few seconds; what is still waiting then is lost (and counted
in the log).

* WebHook (EndPointType 3): `POST <EndPointAddress>`, JSON body
  `{"MessageVersion":"1.1","ETag":…,"EventType":1,"TimeStamp":…,"Properties":{"JobId","NewState",
  "OldState","AccountName","AccountId","NotificationEndPointId"}}`, headers
  `ms-mediaservices-accountid: <account id>` and, when the endpoint has a signing key,
  `ms-signature: sha256=<UPPERCASE hex HMAC-SHA256(key, raw body)>`. Any 2xx answer is success.
* Queue (EndPointType 1): the MessageVersion 1.0 JSON (`EventType` as its name, Properties `JobId`,
  `JobName`, `NewState`, `OldState`, `AccountName`) is `RPUSH`ed to the Redis list
  `openams:queue:<EndPointAddress>` (Redis from `notification_redis_url`). Consumers `BLPOP` it.

Signing keys: with CredentialType 1 the SDK sends the key in EncryptedEndPointCredential, RSA-OAEP
encrypted with the account's ConfigurationEncryption protection certificate. That certificate comes
with the content-protection step; until then a key is accepted only in the clear (base64) and only
when ProtectionKeyId is empty. A certificate-wrapped key is not an error: the webhook is delivered
without `ms-signature` and the server logs that once per endpoint.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, event

from .states import FINAL, JobState

log = logging.getLogger("openams.notify")

EVENT_TYPES = {"None": 0, "JobStateChange": 1, "NotificationEndPointRegistration": 2,
               "NotificationEndPointUnregistration": 3, "TaskStateChange": 4, "TaskProgress": 5}
QUEUE_KEY_PREFIX = "openams:queue:"
BACKOFF_SECONDS: tuple[float, ...] = (1, 2, 4, 8, 16)
"""Waits between attempts; one more attempt than entries (6 in all)."""
HTTP_TIMEOUT = 10.0
DELIVERY_THREADS = 4
EXIT_GRACE_SECONDS = 3.0
WEBHOOK, QUEUE = 3, 1
FINAL_ONLY, ALL_STATES = 1, 2

_INFO_KEY = "openams.notify.pending"
_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(order=True)
class Delivery:
    """One message to one endpoint, ready to send (already serialised and signed)."""

    due: float
    seq: int
    kind: str = field(compare=False)
    """`webhook` or `queue`."""
    target: str = field(compare=False)
    """The webhook URL, or the Redis list key."""
    body: bytes = field(compare=False)
    headers: dict[str, str] = field(compare=False, default_factory=dict)
    redis_url: str = field(compare=False, default="")
    label: str = field(compare=False, default="")
    attempt: int = field(compare=False, default=0)


# ---- building messages (inside the transaction) ------------------------------------------------


def job_state_changed(ctx: Any, job: dict[str, Any], old: int, new: int) -> None:
    """Queue the notifications for a job moving from `old` to `new` (sent when the transaction commits)."""
    subscriptions = job.get("JobNotificationSubscriptions") or []
    if not subscriptions or int(old) == int(new):
        return
    new_state, old_state = JobState(int(new)), JobState(int(old))
    endpoints = ctx.entity_set("NotificationEndPoints")
    seen: set[str] = set()
    deliveries: list[Delivery] = []
    for sub in subscriptions:
        target = sub.get("TargetJobState")
        if target == FINAL_ONLY and new_state not in FINAL:
            continue
        if target not in (FINAL_ONLY, ALL_STATES):
            continue
        endpoint_id = sub.get("NotificationEndPointId") or ""
        if endpoint_id in seen:
            continue  # two subscriptions to one endpoint: one message
        seen.add(endpoint_id)
        endpoint = ctx.store.get(endpoints, endpoint_id)
        if endpoint is None:
            _warn_once(f"gone:{endpoint_id}", "job %s notifies endpoint %s, which was deleted; skipped",
                       job["Id"], endpoint_id)
            continue
        delivery = _build(ctx, job, old_state, new_state, endpoint)
        if delivery is not None:
            deliveries.append(delivery)
    if deliveries:
        _pending(ctx.store.conn).extend(deliveries)


def _build(ctx: Any, job: dict[str, Any], old: JobState, new: JobState, endpoint: dict[str, Any]
           ) -> Delivery | None:
    account = ctx.account
    now = datetime.now(UTC)
    etag = hashlib.sha256(f"{job['Id']}|{endpoint['Id']}|{old.label}|{new.label}|{now.isoformat()}|"
                          f"{uuid.uuid4()}".encode()).hexdigest()
    kind = endpoint.get("EndPointType")
    if kind == WEBHOOK:
        message = {
            "MessageVersion": "1.1",
            "ETag": etag,
            "EventType": EVENT_TYPES["JobStateChange"],
            "TimeStamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
            "Properties": {
                "JobId": job["Id"],
                "NewState": new.label,
                "OldState": old.label,
                "AccountName": account.name,
                "AccountId": account.id,
                "NotificationEndPointId": endpoint["Id"],
            },
        }
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "ms-mediaservices-accountid": account.id}
        key = signing_key(endpoint)
        if key is not None:
            headers["ms-signature"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().upper()
        return Delivery(0.0, 0, "webhook", endpoint["EndPointAddress"], body, headers,
                        label=f"webhook {endpoint['Id']}")
    if kind == QUEUE:
        message = {
            "MessageVersion": "1.0",
            "EventType": "JobStateChange",
            "ETag": etag,
            "TimeStamp": now.strftime("%Y-%m-%dT%H:%M:%S"),
            "Properties": {
                "JobId": job["Id"],
                "JobName": job.get("Name") or "",
                "NewState": new.label,
                "OldState": old.label,
                "AccountName": account.name,
            },
        }
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        return Delivery(0.0, 0, "queue", QUEUE_KEY_PREFIX + endpoint["EndPointAddress"], body,
                        redis_url=queue_redis_url(ctx.settings), label=f"queue {endpoint['EndPointAddress']}")
    _warn_once(f"kind:{endpoint['Id']}", "notification endpoint %s has EndPointType %s, which openams "
               "does not deliver to; skipped", endpoint["Id"], kind)
    return None


def signing_key(endpoint: dict[str, Any]) -> bytes | None:
    """The webhook signing key of an endpoint, or None (deliver unsigned) — see the module notes."""
    if endpoint.get("CredentialType") != 1:
        return None
    credential = (endpoint.get("EncryptedEndPointCredential") or "").strip()
    if not credential:
        _warn_once(f"nokey:{endpoint['Id']}", "endpoint %s has CredentialType 1 but no key; webhooks go "
                   "unsigned", endpoint["Id"])
        return None
    if endpoint.get("ProtectionKeyId"):
        _warn_once(f"wrapped:{endpoint['Id']}", "endpoint %s has a signing key encrypted with protection "
                   "key %s; certificate-wrapped keys are not supported yet (they come with content "
                   "protection), so its webhooks go without ms-signature", endpoint["Id"],
                   endpoint["ProtectionKeyId"])
        return None
    try:
        return base64.b64decode(credential, validate=True)
    except (binascii.Error, ValueError):
        _warn_once(f"badkey:{endpoint['Id']}", "endpoint %s: EncryptedEndPointCredential is not base64; "
                   "webhooks go unsigned", endpoint["Id"])
        return None


def queue_redis_url(settings: Any) -> str:
    url = getattr(settings, "notification_redis_url", "") or ""
    if url:
        return url
    broker = getattr(settings, "broker_url", "") or ""
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return "redis://127.0.0.1:6379/0"


def _warn_once(key: str, message: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


# ---- following the transaction ------------------------------------------------------------------


def _pending(conn: Connection) -> list[Delivery]:
    # conn.info belongs to the pooled DBAPI connection and outlives this Connection object, while
    # event listeners belong to the Connection: check both.
    pending: list[Delivery] | None = conn.info.get(_INFO_KEY)
    if pending is None:
        pending = conn.info[_INFO_KEY] = []
    if not event.contains(conn, "commit", _on_commit):
        event.listen(conn, "commit", _on_commit)
        event.listen(conn, "rollback", _on_rollback)
    return pending


def _on_commit(conn: Connection) -> None:
    pending: list[Delivery] = conn.info.get(_INFO_KEY) or []
    if pending:
        items = list(pending)
        pending.clear()
        deliverer().submit(items)


def _on_rollback(conn: Connection) -> None:
    pending: list[Delivery] | None = conn.info.get(_INFO_KEY)
    if pending:
        pending.clear()


# ---- delivering (background threads) ------------------------------------------------------------


class Deliverer:
    """Sends deliveries from a few daemon threads, retrying with back-off; one per process."""

    def __init__(self, threads: int = DELIVERY_THREADS) -> None:
        self._heap: list[Delivery] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._busy: list[Delivery] = []
        self._threads = [threading.Thread(target=self._loop, name=f"openams-notify-{n}", daemon=True)
                         for n in range(threads)]
        self._http: Any = None
        self._redis: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        for t in self._threads:
            t.start()

    def submit(self, items: list[Delivery]) -> None:
        now = time.monotonic()
        with self._cond:
            for item in items:
                item.due, item.seq, item.attempt = now, next(self._seq), 0
                heapq.heappush(self._heap, item)
            self._cond.notify_all()

    def pending(self, target_prefix: str = "") -> int:
        """Deliveries queued or being sent (retries included), optionally only those to matching targets."""
        with self._cond:
            return sum(1 for d in (*self._heap, *self._busy) if d.target.startswith(target_prefix))

    def wait_idle(self, timeout: float = 30.0, target_prefix: str = "") -> bool:
        """Wait until `pending(target_prefix)` is 0; True if it got there within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending(target_prefix) == 0:
                return True
            time.sleep(0.05)
        return self.pending(target_prefix) == 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0].due > time.monotonic():
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                item = heapq.heappop(self._heap)
                self._busy.append(item)
            try:
                error = self._send(item)
                if error is not None:
                    self._retry(item, error)
            finally:
                with self._cond:
                    self._busy.remove(item)

    def _retry(self, item: Delivery, error: str) -> None:
        if item.attempt >= len(BACKOFF_SECONDS):
            log.warning("notification to %s given up after %d attempts: %s", item.label, item.attempt + 1,
                        error)
            return
        wait = BACKOFF_SECONDS[item.attempt]
        log.info("notification to %s failed (attempt %d: %s); retrying in %gs", item.label, item.attempt + 1,
                 error, wait)
        with self._cond:
            item.attempt += 1
            item.due = time.monotonic() + wait
            item.seq = next(self._seq)
            heapq.heappush(self._heap, item)
            self._cond.notify_all()

    def _send(self, item: Delivery) -> str | None:
        """None on success, else what went wrong."""
        try:
            if item.kind == "webhook":
                response = self._http_client().post(item.target, content=item.body, headers=item.headers)
                if 200 <= response.status_code < 300:
                    return None
                return f"HTTP {response.status_code}"
            self._redis_client(item.redis_url).rpush(item.target, item.body)
            return None
        except Exception as exc:  # network errors, refused connections, Redis down: retry
            # the message is logged: it must not carry the endpoint address or the Redis URL
            # (either may hold a credential — a signed webhook URL, a Redis password)
            text = f"{type(exc).__name__}: {exc}"
            for secret in (item.target, item.redis_url):
                if secret:
                    text = text.replace(secret, "<endpoint>")
            return text

    def _http_client(self) -> Any:
        with self._clients_lock:
            if self._http is None:
                import httpx

                self._http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                          headers={"User-Agent": "openams-notifications/1.0"})
            return self._http

    def _redis_client(self, url: str) -> Any:
        with self._clients_lock:
            client = self._redis.get(url)
            if client is None:
                import redis

                client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
                self._redis[url] = client
            return client


_deliverer: tuple[int, Deliverer] | None = None
_deliverer_lock = threading.Lock()


def deliverer() -> Deliverer:
    """This process's deliverer (a forked child gets its own: threads do not survive fork)."""
    global _deliverer
    with _deliverer_lock:
        if _deliverer is None or _deliverer[0] != os.getpid():
            _deliverer = (os.getpid(), Deliverer())
            atexit.register(_drain_at_exit, _deliverer[1])
        return _deliverer[1]


def _drain_at_exit(d: Deliverer) -> None:
    """On a clean exit give messages in flight a few seconds; say how many are lost."""
    if d.pending() and not d.wait_idle(EXIT_GRACE_SECONDS):
        log.warning("%d notification(s) not delivered before exit", d.pending())
