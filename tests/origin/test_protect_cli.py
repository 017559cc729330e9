"""`openams protect` and `openams token --viewer` on a real server: the printed URLs play (FFmpeg
decodes AES-128 HLS frame-exact with the printed token), the key service refuses players without a
token, CENC manifests carry ClearKey protection whose licence URL answers, bad arguments exit 2, a
refused or failed setup leaves nothing behind, and the clear content key is never printed."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.origin.conftest import make_clip
from tests.origin.test_streams import decode
from tests.support.serve import CLI, ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin-protect-cli")]
SECONDS, FPS = 4, 25
ISSUER, AUDIENCE = "http://issuer.example/", "urn:openams:viewers"
PROTECTION_SETS = ("ContentKeys", "ContentKeyAuthorizationPolicies", "ContentKeyAuthorizationPolicyOptions",
                   "AssetDeliveryPolicies", "Locators", "AccessPolicies")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("protect") / "clip.mp4", SECONDS, "320x180", gop=2 * FPS)


def _upload(server: ServeProcess, clip: Path, label: str) -> str:
    with server.client() as client:
        return str(client.upload_files([str(clip)], label).asset_id)


def _protect(server: ServeProcess, asset_id: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run `openams protect --json`; (parsed result, everything printed)."""
    out = server.cli("protect", asset_id, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stdout + out.stderr


def _counts(server: ServeProcess) -> dict[str, int]:
    with server.client() as client:
        return {s: len(client.api("GET", s, f"listing {s}").json()["value"]) for s in PROTECTION_SETS}


def _viewer_token(server: ServeProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "token", "--viewer", *args], input=stdin, capture_output=True, text=True,
                          env=server.env, timeout=60)


def _assert_never_printed(clear: bytes, printed: str) -> None:
    assert len(clear) == 16
    for form in (clear.hex(), clear.hex().upper(), base64.b64encode(clear).decode(),
                 base64.urlsafe_b64encode(clear).rstrip(b"=").decode()):
        assert form not in printed


def _assert_frame_exact(url: str) -> None:
    streams, errors = decode(url)
    assert errors.strip() == "", errors
    videos = [s for s in streams.values() if str(s["type"]) == "video"]
    assert videos and all(v["frames"] == SECONDS * FPS for v in videos), streams


def test_aes_token_restricted_hls_plays_with_the_printed_token(origin_server: ServeProcess, clip: Path) -> None:
    asset_id = _upload(origin_server, clip, "protect aes")
    result, printed = _protect(origin_server, asset_id, "--aes", "--token-issuer", ISSUER, "--audience", AUDIENCE)
    assert result["keyId"].startswith("nb:kid:UUID:") and result["restriction"] == "token"
    assert set(result["urls"]) == {"hls", "hls-cmaf"}
    assert "the token key is a secret" in printed
    token = result["token"]
    assert token["type"] == "JWT" and len(base64.b64decode(token["key"])) == 64
    kid = result["kid"]
    assert result["keyDeliveryUrl"].endswith(f"/keydelivery/?KID={kid}")

    # FFmpeg plays the printed URL: the origin carries ?token= into the playlists and the key URI
    _assert_frame_exact(token["urls"]["hls"])
    _assert_frame_exact(token["urls"]["hls-cmaf"])

    # the key service refuses a player without the token, and hands the key to one with it
    refused = httpx.get(result["keyDeliveryUrl"], timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "TokenMissing"
    ok = httpx.get(result["keyDeliveryUrl"], headers={"Authorization": f"Bearer {token['viewerToken']}"}, timeout=30)
    assert ok.status_code == 200 and len(ok.content) == 16
    _assert_never_printed(ok.content, printed)

    # viewer tokens minted by `openams token --viewer`, from the printed key or the printed template
    from_key = _viewer_token(origin_server, "--token-key", token["key"], "--issuer", ISSUER, "--audience", AUDIENCE,
                             "--key-id", result["keyId"], "--lifetime", "5")
    assert from_key.returncode == 0, from_key.stderr
    from_template = _viewer_token(origin_server, "--template", "-", "--key-id", kid, stdin=token["template"])
    assert from_template.returncode == 0, from_template.stderr
    for minted in (from_key.stdout.strip(), from_template.stdout.strip()):
        r = httpx.get(result["keyDeliveryUrl"], headers={"Authorization": f"Bearer {minted}"}, timeout=30)
        assert r.status_code == 200 and r.content == ok.content
    _assert_frame_exact(result["urls"]["hls"] + "?token=" + from_key.stdout.strip())
    for_other_key = _viewer_token(origin_server, "--template", "-", "--key-id", str(uuid.uuid4()),
                                  stdin=token["template"]).stdout.strip()
    r = httpx.get(result["keyDeliveryUrl"], headers={"Authorization": f"Bearer {for_other_key}"}, timeout=30)
    assert r.status_code == 403

    # the protocols the delivery policy does not cover are blocked, not served in the clear
    dash = result["urls"]["hls"].replace("format=m3u8-aapl", "format=mpd-time-csf")
    assert httpx.get(dash, timeout=30).status_code == 403


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_common_encryption_dash_carries_clearkey_and_the_licence_answers(origin_server: ServeProcess, clip: Path,
                                                                         scheme: str) -> None:
    asset_id = _upload(origin_server, clip, f"protect {scheme}")
    token_args = ["--token-issuer", ISSUER, "--audience", AUDIENCE, "--swt"] if scheme == "cbcs" else []
    result, printed = _protect(origin_server, asset_id, f"--{scheme}", *token_args)
    assert set(result["urls"]) == {"dash", "dash-cmaf", "hls-cmaf"}
    licence = result["keyDeliveryUrl"]
    assert licence.endswith("/keydelivery/ClearKey/")
    mpd = httpx.get(result["urls"]["dash"], timeout=30)
    assert mpd.status_code == 200, mpd.text
    assert f'value="{scheme}"' in mpd.text and "e2719d58-a985-b3c9-781a-b030af78d30e" in mpd.text
    assert licence in mpd.text and result["kid"] in mpd.text
    for fmt in ("dash-cmaf", "hls-cmaf"):
        assert httpx.get(result["urls"][fmt], timeout=30).status_code == 200, fmt

    b64kid = base64.urlsafe_b64encode(uuid.UUID(result["kid"]).bytes).rstrip(b"=").decode()
    request = {"kids": [b64kid], "type": "temporary"}
    if scheme == "cbcs":  # token-restricted (SWT): refused without the token, granted with the printed URL
        assert result["token"]["type"] == "SWT"
        assert httpx.post(licence, json=request, timeout=30).status_code == 401
        r = httpx.post(result["token"]["keyDeliveryUrl"], json=request, timeout=30)
    else:
        assert result["restriction"] == "open" and "token" not in result
        r = httpx.post(licence, json=request, timeout=30)
    assert r.status_code == 200, r.text
    (entry,) = r.json()["keys"]
    assert entry["kid"] == b64kid
    _assert_never_printed(base64.urlsafe_b64decode(entry["k"] + "=="), printed)


def test_text_output(origin_server: ServeProcess, clip: Path) -> None:
    asset_id = _upload(origin_server, clip, "protect text")
    out = origin_server.cli("protect", asset_id, "--aes", "--token-issuer", ISSUER, "--audience", AUDIENCE,
                            "--days", "1")
    assert out.returncode == 0, out.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.stdout.splitlines() if line.strip()
                and not line.startswith(" "))
    assert rows["key id"].startswith("nb:kid:UUID:") and "token-restricted" in rows["protection"]
    assert rows["hls"].endswith("(format=m3u8-aapl)") and "/keydelivery/?KID=" in rows["key URL"]
    assert "?token=" in rows["hls+token"] and len(base64.b64decode(rows["token key"])) == 64
    assert httpx.get(rows["hls+token"], timeout=30).status_code == 200


@pytest.mark.parametrize("args", [
    ["--aes", "--cenc"],
    ["--cenc", "--cbcs"],
    [],
    ["--aes", "--audience", AUDIENCE],
    ["--aes", "--token-key", base64.b64encode(bytes(64)).decode()],
    ["--aes", "--swt"],
    ["--aes", "--token-issuer", ISSUER],
    ["--aes", "--token-issuer", ISSUER, "--audience", AUDIENCE, "--token-key", "not base64!"],
    ["--aes", "--token-issuer", ISSUER, "--audience", AUDIENCE, "--token-key", "c2hvcnQ="],
    ["--cenc", "--token-issuer", "not a URI", "--audience", AUDIENCE, "--swt"],
])
def test_bad_arguments_exit_2(origin_server: ServeProcess, args: list[str]) -> None:
    before = _counts(origin_server)
    out = origin_server.cli("protect", "nb:cid:UUID:00000000-0000-0000-0000-000000000000", *args)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert _counts(origin_server) == before


@pytest.mark.parametrize("args", [
    ["--viewer"],
    ["--template", "x.xml"],
    ["--viewer", "--token-key", base64.b64encode(bytes(64)).decode(), "--issuer", ISSUER],
    ["--viewer", "--token-key", base64.b64encode(bytes(64)).decode(), "--issuer", ISSUER, "--audience", AUDIENCE,
     "--key-id", "not-a-guid"],
    ["--viewer", "--template", "-", "--issuer", ISSUER],
    ["--kind", "paseto"],
])
def test_viewer_token_bad_arguments_exit_2(origin_server: ServeProcess, args: list[str]) -> None:
    out = subprocess.run([*CLI, "token", *args], input="", capture_output=True, text=True, env=origin_server.env,
                         timeout=60)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr, out.stderr


def test_refuses_an_asset_that_already_streams(origin_server: ServeProcess, clip: Path) -> None:
    asset_id = _upload(origin_server, clip, "protect published")
    published = origin_server.cli("publish", asset_id, "--json")
    assert published.returncode == 0, published.stderr
    locator = json.loads(published.stdout)["locator"]
    before = _counts(origin_server)
    out = origin_server.cli("protect", asset_id, "--aes")
    assert out.returncode == 1 and out.stdout == ""
    assert "already has a streaming locator" in out.stderr and locator in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert _counts(origin_server) == before


def test_a_failure_midway_leaves_nothing_behind(origin_server: ServeProcess, clip: Path) -> None:
    asset_id = _upload(origin_server, clip, "protect rollback")
    before = _counts(origin_server)
    # 40,000 days is past the service's longest access policy (100 years): the last steps fail after the
    # key, the authorization policy and the delivery policy exist
    out = origin_server.cli("protect", asset_id, "--cenc", "--token-issuer", ISSUER, "--audience", AUDIENCE,
                            "--days", "40000")
    assert out.returncode == 1 and out.stdout == "", out.stderr
    assert "creating the access policy failed" in out.stderr and "Traceback" not in out.stderr
    assert "warning" not in out.stderr, out.stderr  # every created entity was deleted
    assert _counts(origin_server) == before
    with origin_server.client() as client:
        for nav in ("ContentKeys", "DeliveryPolicies", "Locators"):
            assert client.api("GET", f"Assets('{quote(asset_id, safe='')}')/{nav}", nav).json()["value"] == []
    # and the asset can be protected afterwards
    result, _ = _protect(origin_server, asset_id, "--cenc")
    assert httpx.get(result["urls"]["dash"], timeout=30).status_code == 200


def test_api_tokens_still_work(origin_server: ServeProcess) -> None:
    """`openams token NAME` (no --viewer) keeps printing API bearer tokens, SWT by default or JWT."""
    for kind in ([], ["--kind", "jwt"]):
        out = subprocess.run([*CLI, "token", origin_server.account, *kind, *origin_server.common],
                             capture_output=True, text=True, env=origin_server.env, timeout=60)
        assert out.returncode == 0, out.stderr
        r = httpx.get(f"{origin_server.api}/api/Assets", timeout=30, headers={
            "Authorization": f"Bearer {out.stdout.strip()}", "x-ms-version": "2.19", "Accept": "application/json"})
        assert r.status_code == 200, (kind, r.text)


def test_client_helpers_agree_with_the_service() -> None:
    """The client-side checksum and template are what the service's own rules compute and parse (the
    HTTP tests above prove it end to end; this pins the pieces)."""
    from openams.client_protection import (
        CONTENT_KEY_ID_CLAIM,
        Claim,
        decode_token_key,
        key_checksum,
        token_restriction_template,
    )
    from openams.entities.content_keys import checksum
    from openams.keydelivery.restrictions import JWT, SWT, KeyKind, parse_template

    clear, kid = bytes(range(16)), f"nb:kid:UUID:{uuid.uuid4()}"
    assert key_checksum(clear, kid) == checksum(clear, kid)
    secret = bytes(range(64))
    parsed = parse_template(token_restriction_template("http://i.example/", "urn:a&b", secret))
    assert (parsed.issuer, parsed.audience, parsed.token_type) == ("http://i.example/", "urn:a&b", JWT)
    assert parsed.primary_key is not None and parsed.primary_key.kind is KeyKind.SYMMETRIC
    assert parsed.primary_key.secret == secret
    assert [(c.claim_type, c.claim_value) for c in parsed.required_claims] == [(CONTENT_KEY_ID_CLAIM, None)]
    swt = parse_template(token_restriction_template("http://i/", "urn:a", secret, token_type=SWT,
                                                    claims=[Claim("role", "viewer")]))
    assert swt.token_type == SWT
    assert [(c.claim_type, c.claim_value) for c in swt.required_claims] == [("role", "viewer")]
    encoded = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    assert decode_token_key(encoded) == decode_token_key(base64.b64encode(secret).decode()) == secret
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            decode_token_key(bad)
