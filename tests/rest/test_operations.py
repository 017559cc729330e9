"""Operations: read-only records of long-running calls, polled by id, listed, account-scoped; and
202 + operation-id inside a `$batch` changeset."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.client import ApiClient

JSON = {"Content-Type": "application/json"}


def q(key: str) -> str:
    return quote(key, safe="")


@pytest.fixture
def operation(api: ApiClient) -> dict[str, Any]:
    r = api.request("POST", "StreamingEndpoints", b'{"Name":"opsource"}', **JSON)
    assert r.status_code == 202, r.text
    got = api.get(f"Operations('{q(r.headers['operation-id'])}')")
    assert got.status_code == 200
    return api.entity(got)


def test_operation_reads_in_every_dialect(any_api: ApiClient) -> None:
    r = any_api.request("POST", "StreamingEndpoints", b'{"Name":"dialects"}', **JSON)
    assert r.status_code == 202
    op_id = r.headers["operation-id"]
    op = any_api.entity(any_api.get(f"Operations('{q(op_id)}')"))
    assert op == {"Id": op_id, "State": "Succeeded", "TargetEntityId": op["TargetEntityId"], "ErrorCode": None,
                  "ErrorMessage": None}
    assert op["TargetEntityId"].startswith("nb:oid:UUID:")
    assert op_id in [o["Id"] for o in any_api.list("Operations")]


@pytest.mark.parametrize("method,path_kind,body", [
    ("POST", "set", {"State": "Succeeded", "TargetEntityId": "x"}),
    ("MERGE", "entity", {"State": "Failed"}),
    ("PATCH", "entity", {"ErrorCode": "Timeout"}),
    ("PUT", "entity", {"State": "Failed"}),
    ("DELETE", "entity", None),
])
def test_operations_are_read_only(api: ApiClient, operation: dict[str, Any], method: str, path_kind: str,
                                  body: dict[str, Any] | None) -> None:
    path = "Operations" if path_kind == "set" else f"Operations('{q(operation['Id'])}')"
    r = api.request(method, path, json.dumps(body).encode() if body else None, **JSON)
    assert r.status_code == 405, (r.status_code, r.text)
    code, message = api.error(r)
    assert code == "MethodNotAllowed" and "read-only" in message and "Operations('<operation-id>')" in message
    assert api.entity(api.get(f"Operations('{q(operation['Id'])}')")) == operation


def test_unknown_operation_is_404(api: ApiClient) -> None:
    r = api.get(f"Operations('{q(f'nb:opid:UUID:{uuid.uuid4()}')}')")
    assert r.status_code == 404 and api.error(r)[0] == "ResourceNotFound"


def test_another_account_cannot_read_an_operation(api: ApiClient, other_account: Any,
                                                  operation: dict[str, Any]) -> None:
    intruder = ApiClient.for_account(api.http, other_account)
    r = intruder.get(f"Operations('{q(operation['Id'])}')")
    assert r.status_code == 404 and operation["TargetEntityId"] not in r.text
    assert operation["Id"] not in [o["Id"] for o in intruder.list("Operations")]
    assert intruder.get("Operations/$count").text == "0"


def test_long_running_calls_inside_a_batch_changeset(api: ApiClient) -> None:
    boundary, changeset = "batch_1", "changeset_1"
    parts = [
        ("POST", "StreamingEndpoints", '{"Name":"batched"}', "1"),
        ("POST", "$1/Start", "", "2"),
    ]
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for method, url, body, cid in parts:
        lines += [f"--{changeset}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                  f"Content-ID: {cid}", "", f"{method} {url} HTTP/1.1", "Content-Type: application/json",
                  "Accept: application/json", "", body]
    lines += [f"--{changeset}--", f"--{boundary}--", ""]
    r = api.request("POST", "$batch", "\r\n".join(lines).encode(),
                    **{"Content-Type": f"multipart/mixed; boundary={boundary}"})
    assert r.status_code == 202, r.text
    assert r.text.count("HTTP/1.1 202") == 2 and r.text.lower().count("operation-id: nb:opid:uuid:") == 2
    batched = [e for e in api.list("StreamingEndpoints") if e["Name"] == "batched"]
    assert batched and batched[0]["State"] == "Running"
