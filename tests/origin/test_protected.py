"""Protected streaming end to end on a real server: assets set up exactly as AMS clients do
(content key wrapped to the protection certificate, authorization policy, delivery policy, then
the locator), played by FFmpeg and by real players, with the key service in the loop.

- AES-128 HLS under a JWT (and an SWT) token restriction: FFmpeg decodes every frame when the playlist URL
  carries the token (it rides along to the key URI); without it the key is refused;
  hls.js plays it in Chromium.
- CENC DASH under an open policy: shaka-player and dash.js play it with ClearKey from the MPD
  alone (licence URL in `dashif:Laurl`); the segments are ciphertext, and
  `ffmpeg -decryption_key` decodes the served init + segments frame-exact.
- Delivery policy rules as a player sees them: protocols no policy covers are refused.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from openams.keydelivery.restrictions import mint_token
from openams.media.ffmpeg import find_ffmpeg
from tests.conftest import service_missing
from tests.keydelivery.test_app import template
from tests.origin.conftest import Published, make_clip, publish
from tests.origin.test_streams import decode
from tests.support.client import ApiClient
from tests.support.players import PlayerHarness, PlayJob, missing_requirements, player_harness
from tests.support.protection import protect_asset
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin-protected")]
SECONDS, FPS = 12, 25
JSON = {"Content-Type": "application/json"}


@dataclass
class Protected:
    asset: Published
    key_id: str
    key: bytes
    template: str


def _protect(server: ServeProcess, api: ApiClient, clip: Path, label: str, key_type: int, delivery: int,
             restrictions: list[dict[str, Any]], policy_type: int, protocols: int) -> tuple[Published, str, bytes]:
    with server.client() as client:
        asset_id = client.upload_files([str(clip)], label).asset_id
    kid, clear = protect_asset(api, server.api, asset_id, label, key_type=key_type, delivery=delivery,
                               restrictions=restrictions, policy_type=policy_type, protocols=protocols)
    return publish(server, label, asset_id), kid, clear


@pytest.fixture(scope="module")
def protected(origin_server: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Protected]]:
    clip = make_clip(tmp_path_factory.mktemp("protected") / "clip.mp4", SECONDS, "640x360", gop=2 * FPS)
    with origin_server.client() as client, httpx.Client(base_url=origin_server.api, timeout=60) as http:
        api = ApiClient(http, client.token())
        tmpl = template()
        aes, aes_kid, aes_key = _protect(origin_server, api, clip, "aes", 4, 2,
                                         [{"Name": "jwt", "KeyRestrictionType": 1, "Requirements": tmpl}], 3, 4)
        swt_tmpl = template("SWT")
        swt, swt_kid, swt_key = _protect(origin_server, api, clip, "aes-swt", 4, 2,
                                         [{"Name": "swt", "KeyRestrictionType": 1, "Requirements": swt_tmpl}], 3, 4)
        cenc, cenc_kid, cenc_key = _protect(origin_server, api, clip, "cenc", 0, 3,
                                            [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}], 4, 2)
        yield {"aes": Protected(aes, aes_kid, aes_key, tmpl), "aes-swt": Protected(swt, swt_kid, swt_key, swt_tmpl),
               "cenc": Protected(cenc, cenc_kid, cenc_key, "")}


@pytest.mark.parametrize("label", ["aes", "aes-swt"])
def test_aes128_hls_decodes_with_a_token_and_not_without(protected: dict[str, Protected], label: str) -> None:
    p = protected[label]
    token = mint_token(p.template, key_id=p.key_id)
    streams, errors = decode(p.asset.url("m3u8-aapl") + f"?token={quote(token, safe='')}")
    assert errors.strip() == "", errors
    videos = [s for s in streams.values() if s["type"] == "video"]
    assert videos and all(v["frames"] == SECONDS * FPS for v in videos), streams
    media_uri = re.search(r"^(QualityLevels\(\d+\)/Manifest\(video[^\n]*)$",
                          httpx.get(p.asset.url("m3u8-aapl"), timeout=30).text, re.M).group(1)  # type: ignore
    media = httpx.get(p.asset.path + p.asset.manifest + "/" + media_uri, timeout=30).text
    key_line = next(line for line in media.splitlines() if line.startswith("#EXT-X-KEY"))
    assert "METHOD=AES-128" in key_line and f"KID={p.key_id}" in key_line and "IV=0x" in key_line
    segment = re.search(r"^(Fragments\(video=0[^\n]*)$", media, re.M).group(1)  # type: ignore[union-attr]
    body = httpx.get(p.asset.path + p.asset.manifest + "/" + media_uri.rsplit("/", 1)[0] + "/" + segment,
                     timeout=30).content
    # ciphertext, not TS: a clear segment has the 0x47 sync byte every 188 bytes (one ciphertext byte
    # is 0x47 by chance once in 256, so look at ten packet starts)
    assert len(body) % 16 == 0 and sum(body[i] == 0x47 for i in range(0, 188 * 10, 188)) < 5
    refused = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", p.asset.url("m3u8-aapl"),
                              "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 or "401" in refused.stderr or "Unauthorized" in refused.stderr, refused.stderr


def test_delivery_policies_refuse_uncovered_protocols(protected: dict[str, Protected]) -> None:
    aes = protected["aes"].asset
    for fmt in ("mpd-time-csf", None):  # the AES asset's only policy is for HLS
        r = httpx.get(aes.url(fmt), timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "BlockedByDeliveryPolicy", r.text
    cenc = protected["cenc"].asset
    assert httpx.get(cenc.url("m3u8-aapl"), timeout=30).status_code == 403
    name = next(f["Name"] for f in cenc.files if f["Name"].endswith(".mp4"))
    assert httpx.get(cenc.path + name, timeout=30).status_code == 403


def test_cenc_dash_is_ciphertext_and_decodes_with_the_key(protected: dict[str, Protected], tmp_path: Path) -> None:
    p = protected["cenc"]
    mpd = httpx.get(p.asset.url("mpd-time-csf"), timeout=30).text
    assert 'value="cenc"' in mpd and "e2719d58-a985-b3c9-781a-b030af78d30e" in mpd and "/keydelivery/ClearKey/" in mpd
    video = re.search(r'<AdaptationSet[^>]*contentType="video".*?</AdaptationSet>', mpd, re.S).group(0)  # type: ignore
    bandwidth = re.search(r'bandwidth="(\d+)"', video).group(1)  # type: ignore[union-attr]
    media = re.search(r'media="([^"]+)"', video).group(1).replace("$Bandwidth$", bandwidth)  # type: ignore
    init = re.search(r'initialization="([^"]+)"', video).group(1).replace("$Bandwidth$", bandwidth)  # type: ignore
    base = p.asset.path + p.asset.manifest + "/"
    times, t = [], 0
    for s in re.finditer(r'<S (?:t="(\d+)" )?d="(\d+)"(?: r="(\d+)")?', video):
        t = int(s.group(1) or t)
        for _ in range(int(s.group(3) or 0) + 1):
            times.append(t)
            t += int(s.group(2))
    data = httpx.get(base + init, timeout=30).content + b"".join(
        httpx.get(base + media.replace("$Time$", str(x)), timeout=30).content for x in times)
    assert b"encv" in data and b"senc" in data
    out = tmp_path / "served.mp4"
    out.write_bytes(data)
    ok = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-decryption_key", p.key.hex(), "-i", str(out),
                         "-f", "framecrc", "-"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stderr.strip() == "", ok.stderr
    frames = [line for line in ok.stdout.splitlines() if line and not line.startswith("#")]
    assert len(frames) == SECONDS * FPS
    clear_source = subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", p.asset.url("mpd-time-csf"),
                                   "-map", "0:v:0", "-f", "framecrc", "-"], capture_output=True, text=True, timeout=120)
    assert clear_source.returncode != 0 or clear_source.stdout != ok.stdout  # no key: not the same pictures


@pytest.fixture(scope="module")
def harness() -> Iterator[PlayerHarness]:
    reason = missing_requirements()
    if reason:
        service_missing(reason)
    with player_harness() as h:
        yield h


@pytest.mark.players
def test_players_play_protected_streams(harness: PlayerHarness, protected: dict[str, Protected]) -> None:
    aes = protected["aes"]
    token = quote(mint_token(aes.template, key_id=aes.key_id), safe="")
    cenc = protected["cenc"].asset
    jobs = {"hls.js AES-128": PlayJob(aes.asset.url("m3u8-aapl") + f"?token={token}", "hls.js", timeout=120),
            "hls.js AES-128, token header": PlayJob(aes.asset.url("m3u8-aapl"), "hls.js", timeout=120,
                                                    key_token=mint_token(aes.template, key_id=aes.key_id)),
            "shaka CENC ClearKey": PlayJob(cenc.url("mpd-time-csf"), "shaka", timeout=120),
            # no player configuration: the MPD's ClearKey descriptor (licence URL, default_KID) is all
            # dash.js gets, so this fails if a cenc:pssh creeps back into it (dash.js error 113)
            "dash.js CENC ClearKey": PlayJob(cenc.url("mpd-time-csf"), "dash.js", timeout=120)}
    results = harness.play_many(list(jobs.values()), concurrency=2)
    failures = [f"[{name}] {result}" for name, result in zip(jobs, results, strict=True) if not result.ok]
    for name, result in zip(jobs, results, strict=True):
        print(f"[{name}] {result}")
    assert not failures, "\n\n".join(failures)
