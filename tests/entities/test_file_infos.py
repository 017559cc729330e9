"""CreateFileInfos through the Operations API: blobs written with the storage backend become
AssetFile entities with the right size, MIME type, checksum and primary flag."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any
from urllib.parse import quote

import pytest

from openams.entities.file_infos import md5_hex, mime_type, primary_choice
from openams.runtime import Runtime
from openams.storage.base import ContentSettings
from tests.support.client import ApiClient


def q(key: str) -> str:
    return quote(key, safe="")


def _container(asset: dict[str, Any]) -> str:
    return "asset-" + asset["Id"].rsplit(":", 1)[1]


def put(runtime: Runtime, asset: dict[str, Any], name: str, data: bytes) -> None:
    backend = runtime.storage
    with backend.spool() as sp:
        sp.write(data)
        backend.put_blob(asset["StorageAccountName"], _container(asset), name, sp, ContentSettings(), {})


def create_file_infos(api: ApiClient, asset_id: str, method: str = "GET", expect: int = 204) -> Any:
    r = api.request(method, f"CreateFileInfos?assetid='{q(asset_id)}'")
    assert r.status_code == expect, (r.status_code, r.text)
    return r


def files_of(api: ApiClient, asset_id: str) -> dict[str, dict[str, Any]]:
    return {f["Name"]: f for f in api.list(f"Assets('{q(asset_id)}')/Files")}


def new_asset(api: ApiClient, name: str = "fi") -> dict[str, Any]:
    return api.create("Assets", "Asset", {"Name": name, "Options": 0})


def test_creates_files_with_size_mime_checksum_and_primary(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
    put(runtime, asset, "movie.mp4", video)
    r = create_file_infos(api, asset["Id"])
    assert r.content == b""
    files = files_of(api, asset["Id"])
    assert list(files) == ["movie.mp4"]
    f = files["movie.mp4"]
    assert f["ContentFileSize"] == str(len(video))
    assert f["MimeType"] == "video/mp4"
    assert f["ContentChecksum"] == hashlib.md5(video).hexdigest()
    assert f["IsPrimary"] is True
    assert f["ParentAssetId"] == asset["Id"] and f["IsEncrypted"] is False


def test_post_works_too_and_parameter_name_is_case_insensitive(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    put(runtime, asset, "a.mp4", b"abc")
    create_file_infos(api, asset["Id"], method="POST")
    assert files_of(api, asset["Id"])["a.mp4"]["ContentFileSize"] == "3"
    r = api.get(f"CreateFileInfos?AssetId='{q(asset['Id'])}'")
    assert r.status_code == 204, r.text


def test_ism_becomes_primary_in_a_multi_file_asset(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    for name in ("video_400.mp4", "video_1000.mp4", "video.ism", "video_manifest.xml", "thumb.jpg"):
        put(runtime, asset, name, name.encode())
    create_file_infos(api, asset["Id"])
    files = files_of(api, asset["Id"])
    assert [n for n, f in files.items() if f["IsPrimary"]] == ["video.ism"]
    assert files["video.ism"]["MimeType"] == "application/octet-stream"
    assert files["video_manifest.xml"]["MimeType"] in ("application/xml", "text/xml")
    assert files["thumb.jpg"]["MimeType"] == "image/jpeg"
    assert files["video_400.mp4"]["ContentFileSize"] == str(len(b"video_400.mp4"))


def test_first_mp4_becomes_primary_without_an_ism(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    for name in ("b_720.mp4", "a_1080.mp4", "captions.vtt"):
        put(runtime, asset, name, b"x")
    create_file_infos(api, asset["Id"])
    files = files_of(api, asset["Id"])
    assert [n for n, f in files.items() if f["IsPrimary"]] == ["a_1080.mp4"]
    assert files["captions.vtt"]["MimeType"] == "text/vtt"


def test_no_primary_when_it_cannot_be_told(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    for name in ("one.jpg", "two.jpg"):
        put(runtime, asset, name, b"x")
    create_file_infos(api, asset["Id"])
    assert not any(f["IsPrimary"] for f in files_of(api, asset["Id"]).values())


def test_existing_primary_flag_is_kept(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    api.create("Files", "AssetFile", {"Name": "chosen.mp4", "ParentAssetId": asset["Id"], "IsPrimary": True,
                                      "MimeType": "video/x-custom"})
    for name in ("chosen.mp4", "other.ism"):
        put(runtime, asset, name, b"12345")
    create_file_infos(api, asset["Id"])
    files = files_of(api, asset["Id"])
    assert len(files) == 2
    assert files["chosen.mp4"]["IsPrimary"] is True and files["other.ism"]["IsPrimary"] is False
    # the refresh filled in the size but kept the client's MIME type
    assert files["chosen.mp4"]["ContentFileSize"] == "5"
    assert files["chosen.mp4"]["MimeType"] == "video/x-custom"


def test_refresh_after_reupload_keeps_the_entity(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    put(runtime, asset, "movie.mp4", b"first")
    create_file_infos(api, asset["Id"])
    before = files_of(api, asset["Id"])["movie.mp4"]
    put(runtime, asset, "movie.mp4", b"second upload, longer")
    put(runtime, asset, "extra.mp4", b"new")
    create_file_infos(api, asset["Id"])
    files = files_of(api, asset["Id"])
    after = files["movie.mp4"]
    assert after["Id"] == before["Id"]
    assert after["ContentFileSize"] == str(len(b"second upload, longer"))
    assert after["ContentChecksum"] == hashlib.md5(b"second upload, longer").hexdigest()
    assert after["IsPrimary"] is True and files["extra.mp4"]["IsPrimary"] is False
    # calling it again changes nothing
    create_file_infos(api, asset["Id"])
    assert files_of(api, asset["Id"]) == files


def test_files_whose_blob_is_gone_are_left_alone(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    put(runtime, asset, "kept.mp4", b"1")
    put(runtime, asset, "gone.mp4", b"22")
    create_file_infos(api, asset["Id"])
    runtime.storage.delete_blob(asset["StorageAccountName"], _container(asset), "gone.mp4")
    create_file_infos(api, asset["Id"])
    files = files_of(api, asset["Id"])
    assert set(files) == {"kept.mp4", "gone.mp4"} and files["gone.mp4"]["ContentFileSize"] == "2"


def test_invalid_blob_names_are_skipped_with_a_warning(api: ApiClient, runtime: Runtime,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    asset = new_asset(api)
    for name in ("ok.mp4", "two.dots.mp4", "dir/inside.mp4", "bad(1).mp4"):
        put(runtime, asset, name, b"x")
    with caplog.at_level(logging.WARNING, logger="openams.entities.file_infos"):
        create_file_infos(api, asset["Id"])
    assert list(files_of(api, asset["Id"])) == ["ok.mp4"]
    text = caplog.text
    assert "two.dots.mp4" in text and "dir/inside.mp4" in text and "bad(1).mp4" in text


def test_empty_container_and_declared_md5(api: ApiClient, runtime: Runtime) -> None:
    asset = new_asset(api)
    create_file_infos(api, asset["Id"])
    assert files_of(api, asset["Id"]) == {}
    declared = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    backend = runtime.storage
    with backend.spool() as sp:
        sp.write(b"payload")
        backend.put_blob(asset["StorageAccountName"], _container(asset), "clip.mp4", sp,
                         ContentSettings(content_md5=declared), {})
    create_file_infos(api, asset["Id"])
    assert files_of(api, asset["Id"])["clip.mp4"]["ContentChecksum"] == hashlib.md5(b"payload").hexdigest()


def test_missing_asset_is_404_and_missing_parameter_is_400(api: ApiClient) -> None:
    r = api.get("CreateFileInfos?assetid='nb%3Acid%3AUUID%3A00000000-0000-0000-0000-000000000000'")
    assert r.status_code == 404, r.text
    r = api.get("CreateFileInfos")
    assert r.status_code == 400, r.text
    r = api.get("CreateFileInfos?assetid=''")
    assert r.status_code == 400, r.text


def test_another_accounts_asset_is_not_touched(api: ApiClient, runtime: Runtime, http: Any,
                                              other_account: Any) -> None:
    other = ApiClient.for_account(http, other_account, "light")
    theirs = new_asset(other, "theirs")
    put(runtime, theirs, "secret.mp4", b"not yours")
    create_file_infos(api, theirs["Id"], expect=404)
    assert files_of(other, theirs["Id"]) == {}
    # their own call works, and ours never sees their files
    create_file_infos(other, theirs["Id"])
    assert list(files_of(other, theirs["Id"])) == ["secret.mp4"]
    assert api.list("Files") == []


def test_helpers() -> None:
    assert mime_type("a.MP4") == "video/mp4"
    assert mime_type("a.ism") == "application/octet-stream"
    assert mime_type("a.m4a") == "audio/mp4"
    assert mime_type("noext") == "application/octet-stream"
    assert mime_type("a.unknownext") == "application/octet-stream"
    assert md5_hex(None) is None and md5_hex("not base64!") is None
    assert md5_hex(base64.b64encode(b"\x01" * 16).decode()) == "01" * 16
    assert primary_choice(["only.jpg"]) == "only.jpg"
    assert primary_choice(["b.mp4", "a.mp4", "z.ism"]) == "z.ism"
    assert primary_choice(["b.mp4", "a.mp4"]) == "a.mp4"
    assert primary_choice(["a.jpg", "b.jpg"]) is None
