"""No secret reaches a log, across the whole content-protection flow on a real `openams serve`.

The server runs at log level debug. Through its public surfaces the test does everything a
protected-streaming app does — account keys and a service principal, SWT and JWT access tokens
(and refused ones), an upload with the CLI, content keys wrapped to the protection certificate
(GetProtectionKeyId / GetProtectionKey), RebindContentKey (clear and to a client certificate),
authorization policies restricted by JWT and SWT viewer tokens with symmetric keys, AES-envelope
(HLS) and CENC (DASH) delivery policies, a streaming locator made with `openams publish`, the AES
key from the key service (token in the header and in `?token=`, and refused with a wrong, an
expired and no token), a ClearKey licence (granted and refused), playlists, MPDs and segments with
`?token=`, and a StorageEncrypted upload through a SAS locator read back through another, then
streamed decrypted.

Then the server's log and the CLI output that is not meant to carry secrets are searched for every
secret made on the way, in every encoding it travels in: account keys, the client secret, access
tokens, viewer tokens (granted and refused) and their signatures, token verification keys (base64
and hex), content keys (hex, base64, base64url), the storage-encryption key, SAS signatures and
the server key. The log must also hold the key service's decision lines, so the test cannot pass
by logging nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urljoin

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openams.client import READ, WRITE
from openams.keydelivery.restrictions import mint_token
from tests.origin.conftest import make_clip
from tests.support.client import ApiClient
from tests.support.database import private_database
from tests.support.protection import (
    authorize_key,
    der_b64,
    link_delivery_policy,
    link_to_asset,
    make_key,
    oaep,
    self_signed,
)
from tests.support.serve import CLI, ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("secrets-log")]

JSON = {"Content-Type": "application/json"}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TRT_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
KID_CLAIM = "urn:microsoft:azure:mediaservices:contentkeyidentifier"
ISSUER, AUDIENCE = "http://issuer.example/", "urn:viewers"
SECONDS, FPS = 4, 25
ENVELOPE_KEY, COMMON_KEY, STORAGE_KEY = 4, 0, 1
BASELINE_HTTP, WIDEVINE = 2, 3
DYNAMIC_ENVELOPE, DYNAMIC_COMMON, NO_DYNAMIC_ENCRYPTION = 3, 4, 2
DASH, HLS, ALL_STREAMING = 0x2, 0x4, 0x1 | 0x2 | 0x4 | 0x10


def q(value: str) -> str:
    return quote(value, safe="")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def template(token_type: str, secret: bytes) -> str:
    """A TokenRestrictionTemplate with one symmetric key that requires the content key id claim."""
    return (f'<TokenRestrictionTemplate xmlns:i="{XSI}" xmlns="{TRT_NS}"><AlternateVerificationKeys />'
            f"<Audience>{AUDIENCE}</Audience><Issuer>{ISSUER}</Issuer>"
            f'<PrimaryVerificationKey i:type="SymmetricVerificationKey"><KeyValue>{b64(secret)}</KeyValue>'
            f"</PrimaryVerificationKey><RequiredClaims><TokenClaim><ClaimType>{KID_CLAIM}</ClaimType>"
            f'<ClaimValue i:nil="true" /></TokenClaim></RequiredClaims><TokenType>{token_type}</TokenType>'
            "</TokenRestrictionTemplate>")


class Secrets:
    """Every secret the flow creates, with the encodings it may travel in."""

    def __init__(self) -> None:
        self.needles: dict[str, str] = {}

    def text(self, label: str, value: str) -> None:
        assert len(value) >= 16, (label, value)
        for form in {value, q(value), quote_plus(value)}:
            self.needles[form] = label

    def raw(self, label: str, value: bytes) -> None:
        for form in (value.hex(), value.hex().upper(), b64(value), b64url(value)):
            self.text(label, form)

    def token(self, label: str, value: str) -> None:
        """A JWT or SWT, and its signature alone (a truncated token in a log would still leak it)."""
        self.text(label, value)
        if value.count(".") == 2:
            self.text(f"{label} (signature)", value.rsplit(".", 1)[1])
        elif "HMACSHA256=" in value:
            signature = value.rsplit("HMACSHA256=", 1)[1]
            self.text(f"{label} (signature)", signature)
            self.text(f"{label} (signature)", parse_qs(f"s={signature}")["s"][0])

    def sas(self, label: str, component: str) -> None:
        signature = parse_qs(component.lstrip("?"))["sig"][0]
        self.text(label, signature)

    def found_in(self, text: str) -> list[str]:
        return sorted({f"{label}: {needle[:12]}…" for needle, label in self.needles.items() if needle in text})


def _restricted(label: str, template: str) -> list[dict[str, Any]]:
    """One TokenRestricted restriction carrying `template` (the TokenRestrictionTemplate XML)."""
    return [{"Name": label, "KeyRestrictionType": 1, "Requirements": template}]


def _fn(api: ApiClient, path: str) -> str:
    r = api.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return str(r.json()["value"])


def _get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=60)


def _with_token(url: str, token: str) -> str:
    return url if "token=" in url else url + ("&" if "?" in url else "?") + f"token={q(token)}"


def _uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    """`openams serve` at log level debug, on a database of its own (PostgreSQL runs) or SQLite."""
    with private_database("openams_secrets") as url:
        srv = ServeProcess(tmp_path / "data", env={"OPENAMS_LOG_LEVEL": "debug"}, database_url=url)
        try:
            yield srv
        finally:
            srv.stop()


def test_no_secret_reaches_the_logs(server: ServeProcess, tmp_path: Path) -> None:
    secrets = Secrets()
    quiet: list[str] = []
    """CLI output that is not meant to carry a secret (progress, errors, URLs)."""
    meant: list[str] = []
    """Output that is meant to carry secrets: the search must find them there (a positive control)."""

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = server.cli(*args)
        quiet.append(f"$ openams {' '.join(args)}\n{out.stdout}\n{out.stderr}")
        assert (out.returncode == 0) is ok, (args, out.stdout, out.stderr)
        return out

    # ---- accounts, a service principal, access tokens -----------------------------------------------------
    server.create_account("sec")
    keys = subprocess.run([*CLI, "account", "keys", server.account, "--json", *server.common],
                          capture_output=True, text=True, env=server.env, timeout=60)
    assert keys.returncode == 0, keys.stderr
    secondary = json.loads(keys.stdout)["secondaryKey"]
    meant.append(keys.stdout)
    added = subprocess.run([*CLI, "account", "add-client", server.account, *server.common],
                           capture_output=True, text=True, env=server.env, timeout=60)
    assert added.returncode == 0, added.stderr
    principal = json.loads(added.stdout.strip().splitlines()[-1])
    meant.append(added.stdout)
    client_id, client_secret = principal["clientId"], principal["clientSecret"]
    secrets.text("account primary key", server.key)
    secrets.text("account secondary key", secondary)
    secrets.text("service principal secret", client_secret)
    secrets.text("server key", os.environ["OPENAMS_SERVER_KEY"])
    server.start()

    def acs(secret: str, name: str = server.account) -> httpx.Response:
        return httpx.post(f"{server.api}/v2/OAuth2-13", timeout=30, data={
            "grant_type": "client_credentials", "client_id": name, "client_secret": secret,
            "scope": "urn:WindowsAzureMediaServices"})

    def aad(name: str, secret: str) -> httpx.Response:
        return httpx.post(f"{server.api}/contoso.onmicrosoft.com/oauth2/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": name, "client_secret": secret,
            "resource": "https://rest.media.azure.net"})

    access = {"SWT (primary)": acs(server.key), "SWT (secondary)": acs(secondary),
              "JWT (account key)": aad(server.account, server.key), "JWT (service principal)": aad(client_id,
                                                                                                   client_secret)}
    http = httpx.Client(base_url=server.api, timeout=60)
    for label, r in access.items():
        assert r.status_code == 200, (label, r.text)
        token = r.json()["access_token"]
        meant.append(r.text)
        secrets.token(f"access token {label}", token)
        assert ApiClient(http, token).get("Assets").status_code == 200, label  # type: ignore[arg-type]
    wrong_secret = b64(os.urandom(32))
    secrets.text("wrong client secret", wrong_secret)
    assert acs(wrong_secret).status_code == 401
    swt = access["SWT (primary)"].json()["access_token"]
    tampered = swt[:-8] + ("A" * 8 if not swt.endswith("A" * 8) else "B" * 8)
    secrets.token("tampered access token", tampered)
    assert ApiClient(http, tampered).get("Assets").status_code == 401  # type: ignore[arg-type]
    api = ApiClient(http, swt)  # type: ignore[arg-type]

    # ---- a clip uploaded with the CLI, protected as clients do it -------------------------------------------
    clip = make_clip(tmp_path / "clip.mp4", SECONDS, "320x180", gop=2 * FPS)
    asset_id = cli("upload", str(clip), "--asset", "protected").stdout.strip().splitlines()[-1]
    aes_key, aes_clear = make_key(api, ENVELOPE_KEY)  # GetProtectionKeyId, GetProtectionKey, RSA-OAEP wrap
    cenc_key, cenc_clear = make_key(api, COMMON_KEY)
    secrets.raw("AES content key", aes_clear)
    secrets.raw("CENC content key", cenc_clear)
    aes_kid, cenc_kid = (k["Id"].rsplit(":", 1)[1] for k in (aes_key, cenc_key))
    for key in (aes_key, cenc_key):
        link_to_asset(api, server.api, asset_id, "ContentKeys", "ContentKeys", key["Id"])
    # RebindContentKey: the clear key, and the key wrapped to a certificate of the client's own
    rebound = _fn(api, f"RebindContentKey?id='{q(aes_key['Id'])}'&x509Certificate=''")
    assert base64.b64decode(rebound) == aes_clear
    meant.append(rebound)
    cert, private = self_signed("secrets test")
    wrapped = _fn(api, f"RebindContentKey?id='{q(cenc_key['Id'])}'&x509Certificate='{q(der_b64(cert))}'")
    assert private.decrypt(base64.b64decode(wrapped), oaep()) == cenc_clear
    r = api.request("POST", f"ContentKeys('{q(aes_key['Id'])}')/GetKeyDeliveryUrl",
                    json.dumps({"keyDeliveryType": BASELINE_HTTP}).encode(), **JSON)
    assert r.status_code == 200 and aes_kid in r.json()["value"], r.text
    # viewer tokens: JWT for the AES key, SWT for the CENC key, each under its own symmetric key
    jwt_secret, swt_secret, wrong_key = os.urandom(64), os.urandom(64), os.urandom(64)
    for label, value in (("JWT verification key", jwt_secret), ("SWT verification key", swt_secret),
                         ("wrong signing key", wrong_key)):
        secrets.raw(label, value)
    jwt_template, swt_template = template("JWT", jwt_secret), template("SWT", swt_secret)
    authorize_key(api, server.api, aes_key["Id"], "jwt", delivery=BASELINE_HTTP,
                  restrictions=_restricted("jwt", jwt_template))
    authorize_key(api, server.api, cenc_key["Id"], "swt", delivery=WIDEVINE,
                  restrictions=_restricted("swt", swt_template))
    link_delivery_policy(api, server.api, asset_id, "envelope", policy_type=DYNAMIC_ENVELOPE, protocols=HLS)
    link_delivery_policy(api, server.api, asset_id, "cenc", policy_type=DYNAMIC_COMMON, protocols=DASH)
    viewer_jwt = mint_token(jwt_template, key_id=aes_kid)
    viewer_swt = mint_token(swt_template, key_id=cenc_kid)
    refused_jwt = mint_token(template("JWT", wrong_key), key_id=aes_kid)
    refused_swt = mint_token(template("SWT", wrong_key), key_id=cenc_kid)
    expired_jwt = mint_token(jwt_template, key_id=aes_kid, now=datetime.now(UTC) - timedelta(hours=2))
    for label, value in (("viewer JWT", viewer_jwt), ("viewer SWT", viewer_swt), ("refused JWT", refused_jwt),
                         ("refused SWT", refused_swt), ("expired JWT", expired_jwt)):
        secrets.token(label, value)
    urls = json.loads(cli("publish", asset_id, "--json", "--days", "1").stdout)

    # ---- AES-128 HLS: playlists and segments with ?token=, the key from the key service ---------------------
    master_url = _with_token(urls["hls"], viewer_jwt)
    master = _get(master_url)
    assert master.status_code == 200, master.text
    media_url = urljoin(master_url, next(u for u in _uris(master.text) if "video" in u))
    media = _get(_with_token(media_url, viewer_jwt))
    assert media.status_code == 200, media.text
    key_uri = re.search(r'#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"', media.text).group(1)  # type: ignore[union-attr]
    assert f"KID={aes_kid}" in key_uri and "token=" in key_uri  # the viewer token rides along
    meant.append(key_uri)
    assert _get(key_uri).content == aes_clear
    segment = _get(_with_token(urljoin(media_url, _uris(media.text)[0]), viewer_jwt))
    # ciphertext, not TS (one ciphertext byte in 256 is 0x47, so look at ten packet starts)
    assert segment.status_code == 200 and sum(segment.content[i:i + 1] == b"G" for i in range(0, 1880, 188)) < 5
    key_url = f"{server.api}/keydelivery/?KID={aes_kid}"
    assert _get(key_url, Authorization=f"Bearer {viewer_jwt}").content == aes_clear
    assert httpx.post(f"{key_url}&token={q(viewer_jwt)}", timeout=30).content == aes_clear
    for bad, reason in ((refused_jwt, "InvalidSignature"), (expired_jwt, "TokenExpired"), (None, "TokenMissing")):
        r = _get(key_url, **({"Authorization": f"Bearer {bad}"} if bad else {}))
        assert r.status_code == 401 and r.json()["error"]["code"] == reason, r.text
        assert aes_clear not in r.content
    r = _get(f"{key_url}&token={q(refused_jwt)}")
    assert r.status_code == 401, r.text

    # ---- CENC DASH: MPD and segments with ?token=, a ClearKey licence ---------------------------------------
    mpd_url = _with_token(urls["dash"], viewer_swt)
    mpd = _get(mpd_url)
    assert mpd.status_code == 200 and 'value="cenc"' in mpd.text, mpd.text
    video = re.search(r'<AdaptationSet[^>]*contentType="video".*?</AdaptationSet>', mpd.text, re.S).group(0)  # type: ignore
    bandwidth = re.search(r'bandwidth="(\d+)"', video).group(1)  # type: ignore[union-attr]
    init = re.search(r'initialization="([^"]+)"', video).group(1).replace("$Bandwidth$", bandwidth)  # type: ignore
    first = re.search(r'media="([^"]+)"', video).group(1).replace("$Bandwidth$", bandwidth)  # type: ignore
    for part in (init, first.replace("$Time$", "0")):
        r = _get(_with_token(urljoin(mpd_url, part.replace("&amp;", "&")), viewer_swt))
        assert r.status_code == 200 and r.content, (part, r.status_code, r.text[:200])
    licence_url = f"{server.api}/keydelivery/ClearKey/"
    request = json.dumps({"kids": [b64url(uuid.UUID(cenc_kid).bytes)], "type": "temporary"})
    r = httpx.post(licence_url, content=request, headers={"Authorization": f"Bearer {viewer_swt}", **JSON}, timeout=30)
    assert r.status_code == 200, r.text
    assert base64.urlsafe_b64decode(r.json()["keys"][0]["k"] + "==") == cenc_clear
    meant.append(r.text)
    r = httpx.post(licence_url, content=request, headers={"Authorization": f"Bearer={refused_swt}", **JSON}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidSignature", r.text

    # ---- a StorageEncrypted upload through a SAS locator, read back through another, streamed decrypted -----
    with server.client() as client:
        enc_asset = client.create("Assets", {"Name": "storage-encrypted", "Options": 1}, "creating the asset")
        storage_key, storage_clear = make_key(api, STORAGE_KEY)
        secrets.raw("storage-encryption key", storage_clear)
        link_to_asset(api, server.api, enc_asset["Id"], "ContentKeys", "ContentKeys", storage_key["Id"])
        iv = int.from_bytes(os.urandom(8), "big")
        clear = clip.read_bytes()
        enc = Cipher(algorithms.AES(storage_clear), modes.CTR(iv.to_bytes(8, "big") + bytes(8))).encryptor()
        cipher = enc.update(clear) + enc.finalize()
        (tmp_path / "enc").mkdir()
        (tmp_path / "enc" / "clip.mp4").write_bytes(cipher)
        write = client.create_sas_locator(enc_asset["Id"], client.create_policy("upload", WRITE, 60)["Id"])
        secrets.sas("write SAS signature", write["ContentAccessComponent"])
        blob = f"{write['BaseUri']}/clip.mp4{write['ContentAccessComponent']}"
        client.upload_blob(str(tmp_path / "enc" / "clip.mp4"), lambda query: f"{blob}&{query}" if query else blob,
                           len(cipher), "video/mp4")
        client.delete("Locators", write["Id"], "deleting the upload locator")
        client.create("Files", {
            "Name": "clip.mp4", "ParentAssetId": enc_asset["Id"], "IsPrimary": True, "MimeType": "video/mp4",
            "ContentFileSize": str(len(cipher)), "IsEncrypted": True, "EncryptionScheme": "StorageEncryption",
            "EncryptionVersion": "1.0", "EncryptionKeyId": storage_key["Id"], "InitializationVector": str(iv)},
            "describing the file")
        read = client.create_sas_locator(enc_asset["Id"], client.create_policy("download", READ, 60)["Id"])
        secrets.sas("read SAS signature", read["ContentAccessComponent"])
        meant.append(read["ContentAccessComponent"])
    stored = _get(f"{read['BaseUri']}/clip.mp4{read['ContentAccessComponent']}")
    assert stored.status_code == 200 and stored.content == cipher
    forged = re.sub(r"sig=[^&]+", "sig=" + q(b64(os.urandom(32))), read["ContentAccessComponent"])
    assert _get(f"{read['BaseUri']}/clip.mp4{forged}").status_code == 403
    refused = cli("publish", enc_asset["Id"], "--json", ok=False)  # no delivery policy yet
    assert "delivery policy" in refused.stderr.replace("\n", " "), refused.stderr
    link_delivery_policy(api, server.api, enc_asset["Id"], "clear", policy_type=NO_DYNAMIC_ENCRYPTION,
                         protocols=ALL_STREAMING)
    enc_urls = json.loads(cli("publish", enc_asset["Id"], "--json", "--days", "1").stdout)
    assert _get(enc_urls["progressive"][0]).content == clear
    enc_master = _get(enc_urls["hls"])
    enc_media_url = urljoin(enc_urls["hls"], next(u for u in _uris(enc_master.text) if "video" in u))
    enc_media = _get(enc_media_url)
    assert enc_media.status_code == 200 and "#EXT-X-KEY" not in enc_media.text, enc_media.text
    assert _get(urljoin(enc_media_url, _uris(enc_media.text)[0])).content[0] == 0x47  # clear TS
    http.close()

    # ---- the search ---------------------------------------------------------------------------------------
    server.stop()
    log = server.log.read_text(errors="replace")
    assert f"kid={aes_kid}" in log and "status=200 reason=Allowed" in log, log[-3000:]
    for reason in ("InvalidSignature", "TokenExpired", "TokenMissing"):
        assert f"status=401 reason={reason}" in log, reason
    assert f"kid={cenc_kid}" in log
    leaks = {"server log": secrets.found_in(log), "CLI output": secrets.found_in("\n".join(quiet))}
    assert leaks == {"server log": [], "CLI output": []}, leaks
    # the search finds each kind of secret where it is meant to be
    seen = {found.split(":", 1)[0] for found in secrets.found_in("\n".join(meant))}
    for label in ("account primary key", "account secondary key", "service principal secret",
                  "access token SWT (primary)", "access token JWT (service principal)", "AES content key",
                  "CENC content key", "viewer JWT", "read SAS signature"):
        assert label in seen, (label, sorted(seen))
