"""The Connector API in-process: create, upload, MarkComplete, the states before encoding ends,
tokens, bad input, isolation between accounts and delete. No job runner here (the session
runtime runs no jobs): a video marked complete stays Processing; encoding is in test_workflows.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.testclient import TestClient

from openams.packaging.storage_crypto import crypt_range, parse_iv
from tests.connector.conftest import Connector, put_upload

API = {"x-ms-version": "2.19", "Accept": "application/json"}
PROCESSOR = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"


def _api(c: Connector, path: str) -> Any:
    r = c.http.get(f"/api/{path}", headers={**API, "Authorization": f"Bearer {c.token}"})
    assert r.status_code == 200, r.text
    return r.json()["value"]


def _assets_of(c: Connector, video_id: str) -> list[dict[str, Any]]:
    return list(_api(c, f"Assets?$filter=AlternateId eq 'connector-video:{video_id}'"))


def assert_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = dict(r.json())
    assert body["status"] == 0 and body["source"].startswith("http://openams.test/connector/api/")
    assert body["message"] and "Traceback" not in body["message"]
    return body


# ---- create and read ----------------------------------------------------------------------------


def test_create_answers_a_video_with_an_upload_uri(connector: Connector) -> None:
    video = connector.create("My Movie.MP4")
    guid = str(uuid.UUID(video["Id"]))
    assert video == {
        "Id": guid, "OriginalFileName": f"{guid}.MP4", "UploadUri": video["UploadUri"],
        "ContentProtectionMode": "None", "ContentProtectionKeyId": None, "Duration": 0,
        "InputStorageEncryptionMode": None, "InputStorageEncryptionSymmetricKey": None,
        "InputStorageEncryptionIv": None}
    uri = video["UploadUri"]
    assert f"/{guid}.MP4?" in uri and "sig=" in uri and "sv=" in uri
    again = connector.get(f"Videos/{guid}")
    assert again.status_code == 200 and again.json() == video
    assert connector.get(f"Videos/{guid.upper()}").json()["Id"] == guid  # GUIDs in any case
    [asset] = _assets_of(connector, guid)
    assert asset["Name"] == "My Movie.MP4" and asset["Options"] == 0
    status = connector.get(f"Videos/{guid}/Status").json()
    assert status["StatusCode"] == 0 and status["Status"] == "Created" and "MarkComplete" in status["Message"]


def test_formats_lists_the_connector_sample(connector: Connector) -> None:
    r = connector.get("Formats")
    assert r.status_code == 200
    formats = {f["Extension"]: f["MimeType"] for f in r.json()}
    assert formats["mp4"] == "audio/mp4" and formats["mov"] == "video/quicktime" and formats["wmv"] == "audio/x-ms-wmv"
    assert len(formats) == len(r.json()) == 37  # every extension of the spec's sample list


def test_every_request_needs_the_accounts_bearer_token(listener: TestClient, connector: Connector) -> None:
    video = connector.create()
    for method, path in (("GET", "Formats"), ("POST", "Videos"), ("GET", f"Videos/{video['Id']}"),
                         ("GET", f"Videos/{video['Id']}/Status")):
        r = listener.request(method, f"/connector/api/{path}", json={"OriginalFileName": "a.mp4"})
        assert assert_error(r, 401)["code"] == "Unauthorized"
        r = listener.request(method, f"/connector/api/{path}", headers={"Authorization": "Bearer nonsense"})
        assert r.status_code == 401


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"OriginalFileName": ""}, {"OriginalFileName": None}, {"OriginalFileName": 5},
                                  {"OriginalFileName": "no-extension"}, {"OriginalFileName": "bad.ext!"}, [], "x"])
def test_create_without_a_usable_file_name_is_400(connector: Connector, body: Any) -> None:
    r = connector.post("Videos", body)
    assert assert_error(r, 400)["message"].startswith("Unable to deserialize JSON into Video object")


def test_create_with_a_body_that_is_not_json_is_400(connector: Connector) -> None:
    for raw in (b"", b"{not json", b"\xff\xfe"):
        assert assert_error(connector.post("Videos", raw=raw), 400)["message"].startswith("Unable to deserialize JSON")


@pytest.mark.parametrize("modes", [{"ContentProtectionMode": "AES256"}, {"ContentProtectionMode": "PlayReady"},
                                   {"ContentProtectionMode": 1}, {"InputStorageEncryptionMode": "AES128"},
                                   {"InputStorageEncryptionMode": "yes"}])
def test_bad_modes_are_the_documented_400(connector: Connector, modes: dict[str, Any]) -> None:
    r = connector.post("Videos", {"OriginalFileName": "a.mp4", **modes})
    body = assert_error(r, 400)
    assert body["message"].startswith("The request is invalid.")
    assert next(iter(modes)) in body["message"]
    assert body["source"] == "http://openams.test/connector/api/Videos"


def test_modes_are_case_insensitive_and_none_is_accepted(connector: Connector) -> None:
    video = connector.create("a.mov", ContentProtectionMode="none", InputStorageEncryptionMode="")
    assert video["ContentProtectionMode"] == "None" and video["InputStorageEncryptionMode"] is None
    video = connector.create("a.mov", contentprotectionmode="aes128")
    assert video["ContentProtectionMode"] == "AES128"


@pytest.mark.parametrize("path", ["Videos/{id}", "Videos/{id}/Status", "Videos/{id}/Thumbnails",
                                  "Videos/{id}/PlaybackEndpoint?endpointType=HLS",
                                  "Videos/{id}/AuthorizationToken?KeyId={id}"])
def test_unknown_videos_are_404(connector: Connector, path: str) -> None:
    for vid in (str(uuid.uuid4()), "not-a-guid", "nb:cid:UUID:" + str(uuid.uuid4())):
        assert_error(connector.get(path.format(id=vid)), 404)
    vid = str(uuid.uuid4())
    assert_error(connector.post(f"Videos/{vid}/MarkComplete"), 404)
    assert_error(connector.delete(f"Videos/{vid}"), 404)


def test_wrong_method_path_and_accept(connector: Connector, listener: TestClient) -> None:
    assert assert_error(connector.get("Videos"), 405)["code"] == "MethodNotAllowed"
    assert connector.http.put(f"/connector/api/Videos/{uuid.uuid4()}", headers=connector.auth).status_code == 405
    assert_error(connector.get("Nothing/here"), 404)
    r = listener.get("/connector/api/Formats", headers={**connector.auth, "Accept": "application/xml"})
    assert assert_error(r, 406)["code"] == "NotAcceptable"


# ---- upload, MarkComplete and the states before the encode ends -----------------------------------


def test_upload_then_mark_complete_starts_encoding_and_revokes_the_upload(connector: Connector,
                                                                            blob_http: TestClient) -> None:
    video = connector.create("clip.mp4")
    vid = video["Id"]
    r = connector.post(f"Videos/{vid}/MarkComplete")
    assert assert_error(r, 400)["code"] == "NotUploaded"  # nothing uploaded yet
    assert put_upload(blob_http, video["UploadUri"], b"\x00" * 1000).status_code == 201
    r = connector.post(f"Videos/{vid}/MarkComplete")
    assert r.status_code == 200, r.text
    assert r.json()["UploadUri"] is None and r.json()["Id"] == vid
    # the upload is immutable now: the SAS is revoked
    assert put_upload(blob_http, video["UploadUri"], b"other").status_code == 403
    assert assert_error(connector.post(f"Videos/{vid}/MarkComplete"), 409)["code"] == "AlreadyComplete"
    status = connector.get(f"Videos/{vid}/Status").json()
    assert status["StatusCode"] == 1 and status["Status"] == "Processing"
    assert "still being processed" in status["Message"]
    for kind in ("Streaming", "HLS", "DASH", "Progressive"):
        assert assert_error(connector.get(f"Videos/{vid}/PlaybackEndpoint", endpointType=kind), 403)["code"] == \
            "VideoNotReady"
    assert connector.get(f"Videos/{vid}/Thumbnails").json() == []
    # the job an AMS client would see
    [job] = _api(connector, f"Jobs?$filter=Name eq 'connector-video:{vid}'")
    tasks = _api(connector, f"Jobs('{job['Id']}')/Tasks")
    assert sorted((t["Name"], t["Configuration"], t["MediaProcessorId"]) for t in tasks) == [
        ("Encode", "Adaptive Streaming", PROCESSOR), ("Thumbnails", "Thumbnails", PROCESSOR)]
    [asset] = _assets_of(connector, vid)
    [file] = _api(connector, f"Assets('{asset['Id']}')/Files")
    assert file["Name"] == f"{vid}.mp4" and file["IsPrimary"] and int(file["ContentFileSize"]) == 1000


def test_playback_endpoint_type_is_checked_before_readiness(connector: Connector) -> None:
    vid = connector.create()["Id"]
    for bad in ({}, {"endpointType": "Flash"}, {"endpointType": ""}):
        body = assert_error(connector.get(f"Videos/{vid}/PlaybackEndpoint", **bad), 400)
        assert body["message"].startswith("The request is invalid.") and "endpointType" in body["message"]
    not_ready = assert_error(connector.get(f"Videos/{vid}/PlaybackEndpoint", endpointType="hls"), 403)
    assert not_ready["code"] == "VideoNotReady"


def test_delete_removes_the_video_and_everything_made_for_it(connector: Connector, blob_http: TestClient) -> None:
    before = {s: len(_api(connector, s)) for s in ("Assets", "AccessPolicies", "Locators", "ContentKeys", "Jobs",
                                                    "ContentKeyAuthorizationPolicies",
                                                    "ContentKeyAuthorizationPolicyOptions")}
    video = connector.create("a.mp4", ContentProtectionMode="AES128", InputStorageEncryptionMode="AES256")
    assert put_upload(blob_http, video["UploadUri"], b"\x01" * 64).status_code == 201
    assert connector.post(f"Videos/{video['Id']}/MarkComplete").status_code == 200
    assert len(_api(connector, "Assets")) == before["Assets"] + 3  # input, encoded, thumbnails
    r = connector.delete(f"Videos/{video['Id']}")  # the queued job is canceled at once
    assert r.status_code == 204 and r.content == b""
    assert connector.get(f"Videos/{video['Id']}").status_code == 404
    after = {s: len(_api(connector, s)) for s in before}
    assert after == before
    # a video never uploaded is deleted too
    video = connector.create()
    assert connector.delete(f"Videos/{video['Id']}").status_code == 204
    assert assert_error(connector.delete(f"Videos/{video['Id']}"), 404)


# ---- AES256 input storage encryption ---------------------------------------------------------------


def test_storage_encryption_key_and_iv_come_only_with_the_create_response(connector: Connector) -> None:
    video = connector.create("secret.mp4", InputStorageEncryptionMode="AES256")
    assert video["InputStorageEncryptionMode"] == "AES256"
    key = base64.b64decode(video["InputStorageEncryptionSymmetricKey"], validate=True)
    iv = base64.b64decode(video["InputStorageEncryptionIv"], validate=True)
    assert len(key) == 32 and len(iv) == 16 and iv[8:] == bytes(8)  # the first counter block of spec §3.11
    again = connector.get(f"Videos/{video['Id']}").json()
    assert again["InputStorageEncryptionMode"] == "AES256"
    assert again["InputStorageEncryptionSymmetricKey"] is None and again["InputStorageEncryptionIv"] is None
    [asset] = _assets_of(connector, video["Id"])
    assert asset["Options"] == 1
    [file] = _api(connector, f"Assets('{asset['Id']}')/Files")
    [storage_key] = _api(connector, f"Assets('{asset['Id']}')/ContentKeys")
    assert storage_key["ContentKeyType"] == 1
    assert file["IsEncrypted"] and file["EncryptionScheme"] == "StorageEncryption"
    assert file["EncryptionVersion"] == "1.0" and file["EncryptionKeyId"] == storage_key["Id"]
    assert file["InitializationVector"] == str(int.from_bytes(iv[:8], "big"))
    # the IV is the first counter block of §3.11: a client's standard AES-CTR over it is exactly what
    # openams' storage decryption undoes with the AssetFile's decimal IV, at any offset
    data = os.urandom(100_000)
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    encrypted = cipher.update(data) + cipher.finalize()
    stored_iv = parse_iv(file["InitializationVector"])
    assert crypt_range(key, stored_iv, 0, encrypted) == data
    for offset in (1, 15, 16, 4097, 99_999):
        assert crypt_range(key, stored_iv, offset, encrypted[offset:offset + 777]) == data[offset:offset + 777]
    # two videos never share a key or an IV
    other = connector.create("secret.mp4", InputStorageEncryptionMode="AES256")
    assert other["InputStorageEncryptionSymmetricKey"] != video["InputStorageEncryptionSymmetricKey"]
    assert other["InputStorageEncryptionIv"] != video["InputStorageEncryptionIv"]


# ---- AES128 protection: the token opens the key --------------------------------------------------


def test_authorization_token_opens_the_videos_key_at_the_key_service(connector: Connector,
                                                                        listener: TestClient) -> None:
    video = connector.create("p.mp4", ContentProtectionMode="AES128")
    kid = str(uuid.UUID(video["ContentProtectionKeyId"]))
    assert video["ContentProtectionMode"] == "AES128"
    assert assert_error(connector.get(f"Videos/{video['Id']}/AuthorizationToken"), 400)["message"].startswith(
        "The request is invalid.")
    assert_error(connector.get(f"Videos/{video['Id']}/AuthorizationToken", KeyId=str(uuid.uuid4())), 404)
    r = connector.get(f"Videos/{video['Id']}/AuthorizationToken", KeyId=kid)
    assert r.status_code == 200, r.text
    value = r.json()["value"]
    assert value.startswith("Bearer=") and set(r.json()) == {"value"}
    swt = value[len("Bearer="):]
    claims = {k: v[0] for k, v in parse_qs(swt).items()}
    assert claims["urn:microsoft:azure:mediaservices:contentkeyidentifier"] == kid
    assert claims["Audience"] == "urn:Nimbus" and "ExpiresOn" in claims and "HMACSHA256" in claims
    assert claims["urn:ServiceAccessible"] == "service"
    # the key delivery service hands the 16-byte key to the token (in either form), and only to it
    for auth in (f"Bearer {swt}", value):
        r = listener.post(f"/keydelivery/?KID={kid}", headers={"Authorization": auth})
        assert r.status_code == 200 and len(r.content) == 16, r.text
    assert listener.post(f"/keydelivery/?KID={kid}").status_code in (401, 403)
    other = connector.create("q.mp4", ContentProtectionMode="AES128")
    other_kid = other["ContentProtectionKeyId"]
    r = listener.post(f"/keydelivery/?KID={other_kid}", headers={"Authorization": f"Bearer {swt}"})
    assert r.status_code in (401, 403)  # a token opens only its own video's key
    # a clear video has no token
    clear = connector.create()
    assert assert_error(connector.get(f"Videos/{clear['Id']}/AuthorizationToken", KeyId=kid), 400)["code"] == \
        "VideoNotProtected"


# ---- isolation ----------------------------------------------------------------------------------


def test_another_accounts_video_does_not_exist(connector: Connector, other_connector: Connector,
                                               blob_http: TestClient) -> None:
    video = connector.create("mine.mp4", ContentProtectionMode="AES128")
    vid = video["Id"]
    for path in (f"Videos/{vid}", f"Videos/{vid}/Status", f"Videos/{vid}/Thumbnails",
                 f"Videos/{vid}/PlaybackEndpoint?endpointType=HLS",
                 f"Videos/{vid}/AuthorizationToken?KeyId={video['ContentProtectionKeyId']}"):
        assert_error(other_connector.get(path), 404)
    assert_error(other_connector.post(f"Videos/{vid}/MarkComplete"), 404)
    assert_error(other_connector.delete(f"Videos/{vid}"), 404)
    assert connector.get(f"Videos/{vid}").json() == video
    assert not _assets_of(other_connector, vid)
