"""AssetFile encryption fields (spec §3.11): a storage-encrypted file's IsEncrypted,
EncryptionScheme, EncryptionVersion, EncryptionKeyId and InitializationVector are kept as sent
(on POST and MERGE, in every dialect), and a file claiming storage encryption that the encoder
and the origin could not undo — no or a non-decimal IV, a key that is not the asset's
StorageEncryption key, an asset that is not StorageEncrypted — is refused with 400."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.client import ApiClient, key_url
from tests.support.protection import JSON, make_key

IV = "397304628502661816"


def q(key: str) -> str:
    return quote(key, safe="")


def asset(api: ApiClient, options: int = 0) -> dict[str, Any]:
    return api.create("Assets", "Asset", {"Name": f"files-{options}", "Options": options})


def link(api: ApiClient, a: dict[str, Any], key: dict[str, Any]) -> None:
    r = api.request("POST", f"Assets('{q(a['Id'])}')/$links/ContentKeys",
                    json.dumps({"uri": key_url("ContentKeys", key["Id"])}).encode(), **JSON)
    assert r.status_code == 204, r.text


def encrypted_asset(api: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    a = asset(api, 1)
    key, _ = make_key(api, 1)
    link(api, a, key)
    return a, key


def fields(a: dict[str, Any], key_id: str | None, iv: str | None = IV, **extra: Any) -> dict[str, Any]:
    props = {"Name": "movie.mp4", "ParentAssetId": a["Id"], "IsEncrypted": True,
             "EncryptionScheme": "StorageEncryption", "EncryptionVersion": "1.0", "EncryptionKeyId": key_id,
             "InitializationVector": iv, "MimeType": "video/mp4"}
    props.update(extra)
    return props


def post(api: ApiClient, props: dict[str, Any]) -> Any:
    return api.request("POST", "Files", json.dumps(props).encode(), **JSON)


def merge(api: ApiClient, file_id: str, props: dict[str, Any]) -> Any:
    return api.request("MERGE", f"Files('{q(file_id)}')", json.dumps(props).encode(), **JSON)


def assert_refused(api: ApiClient, r: Any, *fragments: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    _code, message = api.error(r)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_storage_encryption_fields_are_kept_in_every_dialect(any_api: ApiClient) -> None:
    a, key = encrypted_asset(any_api)
    f = any_api.create("Files", "AssetFile", fields(a, key["Id"]))
    back = any_api.entity(any_api.get(f"Files('{q(f['Id'])}')"))
    assert back["IsEncrypted"] is True
    assert (back["EncryptionScheme"], back["EncryptionVersion"], back["EncryptionKeyId"],
            back["InitializationVector"]) == ("StorageEncryption", "1.0", key["Id"], IV)


def test_the_key_may_be_named_by_its_bare_guid_and_ivs_span_64_bits(api: ApiClient) -> None:
    a, key = encrypted_asset(api)
    guid = key["Id"].rsplit(":", 1)[1].upper()
    for n, iv in enumerate(("0", "18446744073709551615")):
        r = post(api, fields(a, guid, iv, Name=f"f{n}.mp4"))
        assert r.status_code == 201, r.text
        assert api.entity(r)["EncryptionKeyId"] == guid  # kept as the client wrote it


def test_encryption_fields_are_set_by_merge_after_upload(api: ApiClient) -> None:
    a, key = encrypted_asset(api)
    f = api.create("Files", "AssetFile", {"Name": "movie.mp4", "ParentAssetId": a["Id"]})
    assert f["IsEncrypted"] is False  # a clear file on a StorageEncrypted asset is fine
    assert merge(api, f["Id"], {"IsEncrypted": True, "EncryptionScheme": "StorageEncryption",
                                "EncryptionVersion": "1.0", "EncryptionKeyId": key["Id"],
                                "InitializationVector": IV}).status_code == 204
    back = api.entity(api.get(f"Files('{q(f['Id'])}')"))
    assert back["IsEncrypted"] is True and back["InitializationVector"] == IV
    assert_refused(api, merge(api, f["Id"], {"InitializationVector": "0x1234"}), "decimal")
    assert_refused(api, merge(api, f["Id"], {"InitializationVector": None}), "InitializationVector")
    assert api.entity(api.get(f"Files('{q(f['Id'])}')"))["InitializationVector"] == IV
    # other properties can still change without resending the encryption fields
    assert merge(api, f["Id"], {"ContentFileSize": "1234"}).status_code == 204
    assert merge(api, f["Id"], {"IsEncrypted": False}).status_code == 204


@pytest.mark.parametrize("iv,fragment", [(None, "InitializationVector"), ("", "InitializationVector"),
                                         ("-5", "decimal"), ("12.5", "decimal"), ("abc", "decimal"),
                                         ("18446744073709551616", "64 bits"), ("123456789012345678901", "decimal")])
def test_an_encrypted_file_needs_a_decimal_64_bit_iv(api: ApiClient, iv: str | None, fragment: str) -> None:
    a, key = encrypted_asset(api)
    assert_refused(api, post(api, fields(a, key["Id"], iv)), fragment)
    assert api.list(f"Assets('{q(a['Id'])}')/Files") == []


def test_an_encrypted_file_needs_the_assets_storage_key(api: ApiClient) -> None:
    a, key = encrypted_asset(api)
    assert_refused(api, post(api, fields(a, None)), "EncryptionKeyId")
    other, _ = make_key(api, 1)
    assert_refused(api, post(api, fields(a, other["Id"])), other["Id"], key["Id"])
    envelope, _ = make_key(api, 4)
    link(api, a, envelope)
    assert_refused(api, post(api, fields(a, envelope["Id"])), "not the StorageEncryption key")
    bare = asset(api, 1)
    assert_refused(api, post(api, fields(bare, key["Id"])), "no StorageEncryption key linked")


def test_storage_encryption_only_on_storage_encrypted_assets(api: ApiClient) -> None:
    _, key = encrypted_asset(api)
    plain = asset(api, 0)
    assert_refused(api, post(api, fields(plain, key["Id"])), "not StorageEncrypted (Options 1)")
    # what CreateFileInfos and the REST sample send stays fine anywhere
    assert post(api, {"Name": "a.mp4", "ParentAssetId": plain["Id"], "IsEncrypted": "false"}).status_code == 201
    # a statically protected asset's files carry their own scheme and no storage IV
    static = asset(api, 2)
    r = post(api, {"Name": "a.ismv", "ParentAssetId": static["Id"], "IsEncrypted": True,
                   "EncryptionScheme": "CommonEncryption", "EncryptionVersion": "1.0"})
    assert r.status_code == 201, r.text


def test_unknown_encryption_versions_are_refused(api: ApiClient) -> None:
    a, key = encrypted_asset(api)
    assert_refused(api, post(api, fields(a, key["Id"], EncryptionVersion="2.0")), "\"1.0\"")
    # a file that names no scheme on a StorageEncrypted asset is storage-encrypted too
    assert_refused(api, post(api, fields(a, key["Id"], None, EncryptionScheme=None)), "InitializationVector")
    assert post(api, fields(a, key["Id"], EncryptionVersion=None, EncryptionScheme=None)).status_code == 201
