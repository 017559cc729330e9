"""Fixtures for the Connector API tests.

In-process (fast, no encoding): the API listener and the blob service as ASGI apps on the
session's runtime, which runs no jobs — a video marked complete stays Processing. End to end
(encoding, players): a real `openams serve` per module, driven with plain httpx as a Connector
client would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from openams.app import ApiListener
from openams.blob.app import BlobApp
from openams.runtime import Runtime
from tests.conftest import _new_account

BASE = "/connector/api"


@dataclass
class Connector:
    """A Connector client: bearer token of one account, JSON in and out."""

    http: Any
    """TestClient (in-process) or httpx.Client (real server), with the API listener as base."""
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def get(self, path: str, **params: str) -> Any:
        return self.http.get(f"{BASE}/{path}", params=params or None, headers=self.auth)

    def post(self, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        headers = {**self.auth, "Content-Type": "application/json"}
        if raw is not None:
            return self.http.post(f"{BASE}/{path}", content=raw, headers=headers)
        return self.http.post(f"{BASE}/{path}", json=body, headers=headers)

    def delete(self, path: str) -> Any:
        return self.http.delete(f"{BASE}/{path}", headers=self.auth)

    def create(self, name: str = "clip.mp4", **modes: str) -> dict[str, Any]:
        r = self.post("Videos", {"OriginalFileName": name, **modes})
        assert r.status_code == 200, r.text
        return dict(r.json())


def token_for(http: Any, name: str, key: str) -> str:
    r = http.post("/v2/OAuth2-13", data={"grant_type": "client_credentials", "client_id": name,
                                         "client_secret": key, "scope": "urn:WindowsAzureMediaServices"})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="session")
def listener(runtime: Runtime) -> TestClient:
    return TestClient(ApiListener(runtime), base_url="http://openams.test", raise_server_exceptions=True)


@pytest.fixture(scope="session")
def blob_http(runtime: Runtime) -> TestClient:
    return TestClient(BlobApp(runtime), base_url="http://blob.test", raise_server_exceptions=True)


def _connector(runtime: Runtime, listener: TestClient, prefix: str) -> Connector:
    account = _new_account(runtime, prefix)
    return Connector(listener, token_for(listener, account.name, account.primary_key))


@pytest.fixture
def connector(runtime: Runtime, listener: TestClient) -> Connector:
    return _connector(runtime, listener, "conn")


@pytest.fixture
def other_connector(runtime: Runtime, listener: TestClient) -> Connector:
    return _connector(runtime, listener, "other")


def put_upload(http: Any, upload_uri: str, data: bytes) -> Any:
    """PUT `data` to an UploadUri as a Connector client does (one Put Blob). `http` is the blob
    service's TestClient (in-process: only path and query of the URI matter) or None for a real
    server (httpx to the URI as it is)."""
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
    if http is None:
        return httpx.put(upload_uri, content=data, headers=headers, timeout=60)
    parts = urlsplit(upload_uri)
    return http.put(f"{parts.path}?{parts.query}", content=data, headers=headers)


@pytest.fixture
def anonymous(listener: TestClient) -> Iterator[TestClient]:
    yield listener
