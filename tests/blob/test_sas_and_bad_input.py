"""SAS revocation and hostile input. Every bad request gets the Azure error code a real client
would see, and changes nothing: the listing and the block lists are checked afterwards.

Raw requests go through http.client so the path reaches the server exactly as written (no client
normalises `../` or re-encodes `%2e`).
"""

from __future__ import annotations

import base64
import http.client
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse

import pytest
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from tests.blob.conftest import ALL, READ, WRITE, Ams, Locator, Server

MiB = 1024 * 1024
PUT_BLOB = {"x-ms-blob-type": "BlockBlob"}


@dataclass
class Reply:
    status: int
    code: str | None
    headers: dict[str, str]
    body: bytes


def raw(server: Server, method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
        body: bytes | None = None, send_body: bool = True) -> Reply:
    """One request with the path exactly as given. With send_body=False only the headers go out
    (a forged Content-Length), and the answer must come before any body."""
    host = urlparse(server.blob_base)
    conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
    target = path + (f"?{query.lstrip('?')}" if query else "")
    try:
        if send_body:
            conn.request(method, target, body=body if body is not None else b"", headers=headers or {})
        else:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
        r = conn.getresponse()
        data = r.read()
        headers_out = {k.lower(): v for k, v in r.getheaders()}
        return Reply(r.status, r.getheader("x-ms-error-code"), headers_out, data)
    finally:
        conn.close()


def loc_path(loc: Locator, blob: str = "") -> str:
    """The (already encoded) path part of a Locator URL, plus an encoded blob name."""
    return urlparse(loc.base_uri).path + (f"/{blob}" if blob else "")


def with_params(sas: str, **changes: str | None) -> str:
    params = dict(parse_qsl(sas.lstrip("?"), keep_blank_values=True))
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return urlencode(params, safe=":")


def names(loc: Locator) -> list[str]:
    return [b.name for b in ContainerClient.from_container_url(loc.container_url).list_blobs()]


def blocks(loc: Locator, name: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    committed, uncommitted = BlobClient.from_blob_url(loc.blob_url(name)).get_block_list("all")
    return [(b.id, b.size) for b in committed], sorted((b.id, b.size) for b in uncommitted)


def sdk_id(n: int) -> str:
    """A block id as the v12 SDK takes and returns it (it base64-encodes ids on the wire itself)."""
    return f"blk-{n:06d}"


def bid(n: int) -> str:
    """The same block id as it travels on the wire."""
    return base64.b64encode(sdk_id(n).encode()).decode()


@pytest.fixture
def seeded(rw_locator: Locator) -> Locator:
    """A container holding `keep.bin` (committed blocks 0,1) and staged blocks 2,3 of it."""
    blob = BlobClient.from_blob_url(rw_locator.blob_url("keep.bin"))
    blob.stage_block(sdk_id(0), b"a" * 100)
    blob.stage_block(sdk_id(1), b"b" * 50)
    blob.commit_block_list([BlobBlock(sdk_id(0)), BlobBlock(sdk_id(1))])
    blob.stage_block(sdk_id(2), b"c" * 10)
    blob.stage_block(sdk_id(3), b"d" * 20)
    return rw_locator


def assert_unchanged(loc: Locator) -> None:
    assert names(loc) == ["keep.bin"]
    committed, uncommitted = blocks(loc, "keep.bin")
    assert committed == [(sdk_id(0), 100), (sdk_id(1), 50)]
    assert uncommitted == [(sdk_id(2), 10), (sdk_id(3), 20)]
    data = BlobClient.from_blob_url(loc.blob_url("keep.bin")).download_blob().readall()
    assert data == b"a" * 100 + b"b" * 50


# ---- revocation -----------------------------------------------------------------------------------

def test_deleted_locator_is_refused_at_once(ams: Ams, asset: dict[str, Any], openams_server: Server) -> None:
    loc = ams.locator(asset, ALL)
    path, sas = loc_path(loc, "a.bin"), loc.sas.lstrip("?")
    assert raw(openams_server, "PUT", path, sas, PUT_BLOB, b"one").status == 201
    reader = ams.locator(asset, READ)
    ams.delete("Locators", loc.id)
    r = raw(openams_server, "PUT", path, sas, PUT_BLOB, b"two")
    assert (r.status, r.code) == (403, "AuthenticationFailed")
    r = raw(openams_server, "GET", path, sas)
    assert (r.status, r.code) == (403, "AuthenticationFailed")
    assert BlobClient.from_blob_url(reader.blob_url("a.bin")).download_blob().readall() == b"one"


def test_expired_locator_is_refused_at_once(ams: Ams, asset: dict[str, Any], openams_server: Server) -> None:
    loc = ams.locator(asset, ALL, minutes=0.05)  # three seconds
    expiry = datetime.fromisoformat(loc.raw["ExpirationDateTime"].replace("Z", "+00:00"))
    path, sas = loc_path(loc, "a.bin"), loc.sas.lstrip("?")
    assert raw(openams_server, "PUT", path, sas, PUT_BLOB, b"one").status == 201
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.2)
    r = raw(openams_server, "PUT", path, sas, PUT_BLOB, b"two")
    assert (r.status, r.code) == (403, "AuthenticationFailed")
    reader = ams.locator(asset, READ)
    assert BlobClient.from_blob_url(reader.blob_url("a.bin")).download_blob().readall() == b"one"


def test_deleted_asset_takes_its_locators_along(ams: Ams, openams_server: Server) -> None:
    asset = ams.asset("gone")
    loc = ams.locator(asset, ALL)
    path, sas = loc_path(loc, "a.bin"), loc.sas.lstrip("?")
    assert raw(openams_server, "PUT", path, sas, PUT_BLOB, b"one").status == 201
    ams.delete("Assets", asset["Id"])
    for method, body in (("GET", None), ("PUT", b"two")):
        r = raw(openams_server, method, path, sas, PUT_BLOB if body else {}, body)
        assert (r.status, r.code) == (403, "AuthenticationFailed"), method


def test_locator_of_another_asset_is_refused(ams: Ams, openams_server: Server) -> None:
    a, b = ams.asset("a"), ams.asset("b")
    loc_a, loc_b = ams.locator(a, ALL), ams.locator(b, ALL)
    # container of asset b, signature and si of asset a's locator
    r = raw(openams_server, "PUT", loc_path(loc_b, "x.bin"), loc_a.sas.lstrip("?"), PUT_BLOB, b"x")
    assert (r.status, r.code) == (403, "AuthenticationFailed")
    assert names(loc_b) == []


# ---- signatures and permissions -------------------------------------------------------------------

def test_wrong_signature(seeded: Locator, openams_server: Server) -> None:
    sig = dict(parse_qsl(seeded.sas.lstrip("?")))["sig"]
    forged = base64.b64encode(bytes(b ^ 1 for b in base64.b64decode(sig))).decode()
    for bad in (forged, "", "not base64!", sig[:-4]):
        r = raw(openams_server, "PUT", loc_path(seeded, "new.bin"), with_params(seeded.sas, sig=bad),
                PUT_BLOB, b"x")
        assert (r.status, r.code) == (403, "AuthenticationFailed"), bad
        assert b"<Code>AuthenticationFailed</Code>" in r.body
    assert_unchanged(seeded)


@pytest.mark.parametrize("change", [{"sr": "b"}, {"sr": "x"}, {"sr": None}, {"sp": "rwdl"},
                                    {"si": "00000000-0000-0000-0000-000000000000"}, {"sv": "2015-04-05"},
                                    {"se": "2099-01-01T00:00:00Z"}, {"st": "2000-01-01T00:00:00Z"}])
def test_tampered_sas_fields(seeded: Locator, openams_server: Server, change: dict[str, str | None]) -> None:
    r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), with_params(seeded.sas, **change), PUT_BLOB,
            b"overwrite")
    assert r.status == 403 and r.code in ("AuthenticationFailed", "AuthorizationResourceTypeMismatch"), change
    assert_unchanged(seeded)


def test_expired_se_in_a_correctly_signed_sas(seeded: Locator, openams_server: Server) -> None:
    """A service SAS signed with the account key (no Locator), but expired."""
    now = datetime.now(UTC)
    for start, expiry in ((now - timedelta(hours=2), now - timedelta(minutes=1)),
                          (now + timedelta(hours=1), now + timedelta(hours=2))):
        sas = generate_container_sas(openams_server.account, seeded.container, account_key=openams_server.key,
                                     permission=ContainerSasPermissions(read=True, write=True), start=start,
                                     expiry=expiry)
        r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), sas, PUT_BLOB, b"overwrite")
        assert (r.status, r.code) == (403, "AuthenticationFailed")
    # the same SAS, valid now, works: the refusals above were for the times only
    sas = generate_container_sas(openams_server.account, seeded.container, account_key=openams_server.key,
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=now + timedelta(hours=1))
    assert raw(openams_server, "GET", loc_path(seeded, "keep.bin"), sas).status == 200
    assert_unchanged(seeded)


def test_read_only_locator_cannot_write(ams: Ams, seeded: Locator, openams_server: Server) -> None:
    ro = ams.locator({"Id": seeded.asset_id}, READ)
    sas = ro.sas.lstrip("?")
    keep = loc_path(seeded, "keep.bin")
    attempts = [("PUT", keep, "", PUT_BLOB, b"overwrite"),
                ("PUT", loc_path(seeded, "new.bin"), "", PUT_BLOB, b"new"),
                ("PUT", keep, f"comp=block&blockid={quote(bid(9), safe='')}", {}, b"zz"),
                ("PUT", keep, "comp=blocklist", {},
                 f"<BlockList><Latest>{bid(2)}</Latest></BlockList>".encode()),
                ("PUT", keep, "comp=metadata", {"x-ms-meta-a": "b"}, b""),
                ("DELETE", keep, "", {}, b"")]
    for method, path, query, headers, body in attempts:
        q = f"{query}&{sas}" if query else sas
        r = raw(openams_server, method, path, q, headers, body)
        assert (r.status, r.code) == (403, "AuthorizationPermissionMismatch"), (method, query)
    # and reads work with it
    assert raw(openams_server, "GET", keep, sas).status == 200
    r = raw(openams_server, "GET", loc_path(seeded), f"restype=container&comp=list&{sas}")
    assert (r.status, r.code) == (403, "AuthorizationPermissionMismatch"), "listing needs List permission"
    assert_unchanged(seeded)


def test_write_only_locator_cannot_read(ams: Ams, seeded: Locator, openams_server: Server) -> None:
    wo = ams.locator({"Id": seeded.asset_id}, WRITE)
    sas = wo.sas.lstrip("?")
    for query in ("", "comp=blocklist&blocklisttype=all"):
        r = raw(openams_server, "GET", loc_path(seeded, "keep.bin"), f"{query}&{sas}" if query else sas)
        assert (r.status, r.code) == (403, "AuthorizationPermissionMismatch"), query
    r = raw(openams_server, "HEAD", loc_path(seeded, "keep.bin"), sas)
    assert r.status == 403
    assert_unchanged(seeded)


def test_sas_cannot_manage_containers(seeded: Locator, openams_server: Server) -> None:
    for method in ("PUT", "DELETE"):
        r = raw(openams_server, method, loc_path(seeded), f"restype=container&{seeded.sas.lstrip('?')}")
        assert r.status == 403, method
    assert_unchanged(seeded)


def test_no_credentials(seeded: Locator, openams_server: Server) -> None:
    r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), "", PUT_BLOB, b"x")
    assert (r.status, r.code) == (401, "NoAuthenticationInformation")
    r = raw(openams_server, "GET", loc_path(seeded, "keep.bin"))
    assert r.status in (401, 404)
    assert_unchanged(seeded)


# ---- names that try to leave their container ------------------------------------------------------

TRAVERSALS = ["../x.bin", "%2e%2e%2fx.bin", "%2E%2E/x.bin", "..%2Fx.bin", "a/%2e%2e/%2e%2e/x.bin",
              "..%5cx.bin", "a/..", "a/%2E%2E", "./x.bin", "a/./b", ".", "%2e", "..", "a\\..\\..\\x.bin",
              "a%5c..%5c..%5cx.bin", "..%2f..%2f..%2f..%2fetc%2fpasswd", "x%00.bin"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_traversal_in_blob_names(seeded: Locator, openams_server: Server, name: str) -> None:
    sas = seeded.sas.lstrip("?")
    before = sorted(p.relative_to(openams_server.data_dir) for p in openams_server.data_dir.rglob("*")
                    if "blobs" in p.parts and ".staging" not in p.parts)
    for method, query, headers, body in (("PUT", "", PUT_BLOB, b"evil"),
                                         ("PUT", f"comp=block&blockid={quote(bid(5), safe='')}", {}, b"evil"),
                                         ("GET", "", {}, None), ("DELETE", "", {}, None)):
        r = raw(openams_server, method, f"{loc_path(seeded)}/{name}", f"{query}&{sas}" if query else sas,
                headers, body)
        assert (r.status, r.code) == (400, "InvalidResourceName"), (method, query, r)
    after = sorted(p.relative_to(openams_server.data_dir) for p in openams_server.data_dir.rglob("*")
                   if "blobs" in p.parts and ".staging" not in p.parts)
    assert after == before
    assert_unchanged(seeded)


@pytest.mark.parametrize("container_part", ["{c}/..%2F{o}", "{c}%2F..%2F{o}", "{c}/../{o}", "..%2F{o}"])
def test_traversal_to_another_container(ams: Ams, seeded: Locator, openams_server: Server,
                                        container_part: str) -> None:
    other = ams.locator(ams.asset("other"), ALL)
    account = urlparse(seeded.base_uri).path.split("/")[1]
    path = f"/{account}/" + container_part.format(c=seeded.container, o=other.container) + "/x.bin"
    r = raw(openams_server, "PUT", path, seeded.sas.lstrip("?"), PUT_BLOB, b"evil")
    assert r.status in (400, 403) and r.code in ("InvalidResourceName", "AuthenticationFailed",
                                                 "InvalidUri"), (path, r)
    assert names(other) == []
    assert_unchanged(seeded)


def test_double_encoded_dots_are_a_literal_name(seeded: Locator, openams_server: Server) -> None:
    """`%252e%252e%252f` decodes once to the harmless literal name `%2e%2e%2fx.bin` (as in Azure)."""
    r = raw(openams_server, "PUT", loc_path(seeded, "%252e%252e%252fx.bin"), seeded.sas.lstrip("?"),
            PUT_BLOB, b"ok")
    assert r.status == 201
    assert sorted(names(seeded)) == ["%2e%2e%2fx.bin", "keep.bin"]


# ---- block lists and block sizes ------------------------------------------------------------------

def put_block_list(server: Server, loc: Locator, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return raw(server, "PUT", loc_path(loc, "keep.bin"), f"comp=blocklist&{loc.sas.lstrip('?')}",
               {"Content-Type": "application/xml", **(headers or {})}, body)


def test_block_list_longer_than_50000(seeded: Locator, openams_server: Server) -> None:
    body = b"<?xml version='1.0' encoding='utf-8'?><BlockList>" + \
        f"<Latest>{bid(2)}</Latest>".encode() * 60_000 + b"</BlockList>"
    r = put_block_list(openams_server, seeded, body)
    assert (r.status, r.code) == (400, "BlockListTooLong")
    assert_unchanged(seeded)


@pytest.mark.parametrize("body", [
    b"<BlockList><Latest>", b"not xml at all", b"", b"<Foo><Latest>x</Latest></Foo>",
    b"<BlockList><Latest><Nested/></Latest></BlockList>", b"<BlockList><Other>AAAA</Other></BlockList>",
    b'<?xml version="1.0"?><!DOCTYPE BlockList [<!ENTITY x "y">]><BlockList><Latest>&x;</Latest></BlockList>',
    b"\xff\xfe<\x00B\x00",
])
def test_malformed_block_list(seeded: Locator, openams_server: Server, body: bytes) -> None:
    r = put_block_list(openams_server, seeded, body)
    assert r.status == 400 and r.code in ("InvalidXmlDocument", "InvalidXmlNodeValue"), (body, r)
    assert_unchanged(seeded)


@pytest.mark.parametrize("xml", [
    "<BlockList><Latest>{unknown}</Latest></BlockList>",
    "<BlockList><Latest>{b0}</Latest><Latest>{unknown}</Latest></BlockList>",
    "<BlockList><Uncommitted>{b0}</Uncommitted></BlockList>",  # b0 is committed, not staged
    "<BlockList><Committed>{b2}</Committed></BlockList>",  # b2 is staged, not committed
    "<BlockList><Latest>!!notbase64!!</Latest></BlockList>",
])
def test_unknown_block_ids(seeded: Locator, openams_server: Server, xml: str) -> None:
    body = xml.format(unknown=bid(42), b0=bid(0), b2=bid(2)).encode()
    r = put_block_list(openams_server, seeded, body)
    assert (r.status, r.code) == (400, "InvalidBlockList"), r
    assert_unchanged(seeded)


def test_block_list_commits_committed_and_uncommitted(seeded: Locator, openams_server: Server) -> None:
    """The positive twin of the tests above, on the same fixture."""
    body = f"<BlockList><Committed>{bid(1)}</Committed><Uncommitted>{bid(3)}</Uncommitted>" \
           f"<Latest>{bid(0)}</Latest></BlockList>".encode()
    assert put_block_list(openams_server, seeded, body).status == 201
    data = BlobClient.from_blob_url(seeded.blob_url("keep.bin")).download_blob().readall()
    assert data == b"b" * 50 + b"d" * 20 + b"a" * 100
    assert blocks(seeded, "keep.bin") == ([(sdk_id(1), 50), (sdk_id(3), 20), (sdk_id(0), 100)], [])


@pytest.mark.parametrize("query,version,length", [
    ("comp=block&blockid={id}", "2025-01-05", 4000 * MiB + 1),
    ("comp=block&blockid={id}", "2019-02-02", 100 * MiB + 1),
    ("", "2025-01-05", 5000 * MiB + 1),
    ("", "2019-02-02", 256 * MiB + 1),
])
def test_oversized_bodies_are_refused_from_the_header(seeded: Locator, openams_server: Server, query: str,
                                                      version: str, length: int) -> None:
    q = query.format(id=quote(bid(7), safe=""))
    headers = {"x-ms-version": version, "Content-Length": str(length), **({} if query else PUT_BLOB)}
    r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), f"{q}&{seeded.sas.lstrip('?')}" if q else
            seeded.sas.lstrip("?"), headers, send_body=False)
    assert (r.status, r.code) == (413, "RequestBodyTooLarge")
    assert_unchanged(seeded)


@pytest.mark.slow
def test_sas_only_client_gets_current_size_limits(seeded: Locator, openams_server: Server) -> None:
    """No x-ms-version (a SAS-only client): the current limits apply, not those of the SAS's sv."""
    size = 100 * MiB + 1
    host = urlparse(openams_server.blob_base)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=60)
    target = f"{loc_path(seeded, 'keep.bin')}?comp=block&blockid={quote(bid(8), safe='')}" \
             f"&{seeded.sas.lstrip('?')}"
    conn.putrequest("PUT", target)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    chunk = b"\0" * MiB
    for _ in range(size // MiB):
        conn.send(chunk)
    conn.send(b"\0")
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 201
    assert (sdk_id(8), size) in blocks(seeded, "keep.bin")[1]


@pytest.mark.parametrize("query,code", [
    ("comp=block&blockid=%40%40%40", "InvalidQueryParameterValue"),
    ("comp=block&blockid=", "MissingRequiredQueryParameter"),
    ("comp=block", "MissingRequiredQueryParameter"),
    ("comp=block&blockid=" + quote(base64.b64encode(b"x" * 65).decode(), safe=""),
     "InvalidQueryParameterValue"),
    ("comp=block&blockid=" + quote(base64.b64encode(b"short").decode(), safe=""), "InvalidBlobOrBlock"),
])
def test_bad_block_ids(seeded: Locator, openams_server: Server, query: str, code: str) -> None:
    r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), f"{query}&{seeded.sas.lstrip('?')}", {},
            b"zz")
    assert (r.status, r.code) == (400, code)
    assert_unchanged(seeded)


def test_content_md5_mismatch(seeded: Locator, openams_server: Server) -> None:
    wrong = base64.b64encode(b"0" * 16).decode()
    for query, headers in (("", PUT_BLOB), (f"comp=block&blockid={quote(bid(6), safe='')}", {})):
        r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"),
                f"{query}&{seeded.sas.lstrip('?')}" if query else seeded.sas.lstrip("?"),
                {**headers, "Content-MD5": wrong}, b"payload")
        assert (r.status, r.code) == (400, "Md5Mismatch")
    assert_unchanged(seeded)


def test_short_body_is_refused(seeded: Locator, openams_server: Server) -> None:
    """Content-Length promises more than arrives before the client closes: nothing is stored."""
    host = urlparse(openams_server.blob_base)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=30)
    conn.putrequest("PUT", f"{loc_path(seeded, 'keep.bin')}?{seeded.sas.lstrip('?')}")
    conn.putheader("x-ms-blob-type", "BlockBlob")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b"x" * 10)
    conn.sock.shutdown(__import__("socket").SHUT_WR)
    try:
        conn.getresponse().read()
    except (http.client.HTTPException, OSError):
        pass
    conn.close()
    time.sleep(0.2)
    assert_unchanged(seeded)


def test_range_not_satisfiable(seeded: Locator, openams_server: Server) -> None:
    sas = seeded.sas.lstrip("?")
    r = raw(openams_server, "GET", loc_path(seeded, "keep.bin"), sas, {"x-ms-range": "bytes=150-200"})
    assert (r.status, r.code) == (416, "InvalidRange")
    assert r.headers.get("content-range") == "bytes */150"
    r = raw(openams_server, "GET", loc_path(seeded, "keep.bin"), sas, {"Range": "bytes=140-"})
    assert r.status == 206 and r.body == b"b" * 10 and r.headers["content-range"] == "bytes 140-149/150"
    r = raw(openams_server, "GET", loc_path(seeded, "keep.bin"), sas, {"Range": "bytes=-5"})
    assert r.status == 206 and r.body == b"b" * 5
    assert raw(openams_server, "GET", loc_path(seeded, "missing.bin"), sas).code == "BlobNotFound"


def test_random_garbage_headers_change_nothing(seeded: Locator, openams_server: Server) -> None:
    sas = seeded.sas.lstrip("?")
    for headers in ({"x-ms-blob-type": "PageBlob"}, {"x-ms-blob-type": "AppendBlob"},
                    {"x-ms-blob-type": "Nonsense"}, {**PUT_BLOB, "If-Match": '"0xDEAD"'},
                    {**PUT_BLOB, "If-None-Match": "*"}):
        r = raw(openams_server, "PUT", loc_path(seeded, "keep.bin"), sas, headers, os.urandom(10))
        assert r.status in (400, 409, 412), headers
    assert_unchanged(seeded)


# ---- accounts are isolated -------------------------------------------------------------------------

def test_accounts_cannot_reach_each_other(ams: Ams, seeded: Locator, openams_server: Server) -> None:
    other = openams_server.new_account("other")
    mine = urlparse(seeded.base_uri).path.split("/")[1]
    # my Locator's SAS on the other account's path (same container name): not valid there
    r = raw(openams_server, "GET", f"/{other.account}/{seeded.container}/keep.bin", seeded.sas.lstrip("?"))
    assert (r.status, r.code) == (403, "AuthenticationFailed")
    # the other account's key, on my account's path or on its own path for my container
    from azure.storage.blob import BlobServiceClient

    for url, name in ((f"{other.blob_base}/{mine}", mine), (other.account_url, other.account)):
        svc = BlobServiceClient(url, credential={"account_name": name, "account_key": other.key})
        with pytest.raises(Exception) as err:
            list(svc.get_container_client(seeded.container).list_blobs())
        assert getattr(err.value, "status_code", None) in (403, 404), url
    assert_unchanged(seeded)
