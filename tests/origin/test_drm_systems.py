"""DRM systems in the packaged content, for operators who run their own licence servers.

openams answers PlayReady and Widevine licence requests with 501 (no licence provider here), but
the content it packages must be exactly what those systems' clients expect, so an operator can
point a delivery policy at their own licence server (PlayReadyLicenseAcquisitionUrl,
WidevineBaseLicenseAcquisitionUrl) and players work. Checked from the client's side, with an
independent reading of the PlayReady header and the Widevine pssh:

- DASH: `ContentProtection` for the scheme, ClearKey, PlayReady (`mspr:pro` + `cenc:pssh`, LA_URL,
  KID in GUID byte order, the AES-CTR checksum, the custom attributes) and Widevine (pssh + URL);
- HLS CMAF: one `#EXT-X-KEY` per system (KEYFORMAT) and every `pssh` in the init segment;
- Smooth: the PlayReady `<Protection>` header, and PIFF-encrypted fragments FFmpeg decrypts with
  the key to the same pictures as the DASH segments;
- a Smooth-only CENC policy without a PlayReady URL names openams' own PlayReady URL, which
  answers 501 saying a licence provider is needed.
"""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from openams.media.ffmpeg import find_ffmpeg
from tests.origin.conftest import Published, make_clip, publish
from tests.support.client import ApiClient
from tests.support.protection import guid_bytes_dotnet, key_checksum, protect_asset
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin-drm")]

PLAYREADY_URL = "https://licence.example.net/playready/rightsmanager.asmx"
WIDEVINE_URL = "https://licence.example.net/widevine"
CUSTOM = "<IIS_DRM_VERSION>8.0.1906.32</IIS_DRM_VERSION>"
PLAYREADY = "9a04f079-9840-4286-ab92-e65be0885f95"
WIDEVINE = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
COMMON = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
CLEARKEY_SCHEME = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
PIFF_SENC = bytes.fromhex("A2394F525A9B4F14A2446C427C648DF4")
NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011", "cenc": "urn:mpeg:cenc:2013", "mspr": "urn:microsoft:playready"}
OPEN = [{"Name": "open", "KeyRestrictionType": 0, "Requirements": None}]
SECONDS, FPS = 6, 25


@dataclass
class Drm:
    asset: Published
    key_id: str
    key: bytes


@pytest.fixture(scope="module")
def drm(origin_server: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Drm]]:
    clip = make_clip(tmp_path_factory.mktemp("drm") / "clip.mp4", SECONDS, "480x270", gop=2 * FPS)
    out: dict[str, Drm] = {}
    with origin_server.client() as client, httpx.Client(base_url=origin_server.api, timeout=60) as http:
        api = ApiClient(http, client.token())
        for label, config in (("operator", {4: PLAYREADY_URL, 5: CUSTOM, 8: WIDEVINE_URL}), ("own", None)):
            asset_id = client.upload_files([str(clip)], f"drm-{label}").asset_id
            protocols = 7 if config else 1  # Smooth + DASH + HLS, or Smooth only
            kid, key = protect_asset(api, origin_server.api, asset_id, label, key_type=0, delivery=3,
                                     restrictions=OPEN, policy_type=4, protocols=protocols, configuration=config)
            out[label] = Drm(publish(origin_server, f"drm-{label}", asset_id), kid, key)
    yield out


# ---- an independent reading of what a DRM client receives -------------------------------------------


def boxes(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Top-level ISO-BMFF boxes as (type, whole box)."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8, f"box size {size} at {pos}"
        yield kind.decode("latin-1"), data[pos:pos + size]
        pos += size


def pssh_of(box: bytes) -> tuple[str, bytes]:
    """(system id, data) of a pssh box."""
    version = box[8]
    system = str(uuid.UUID(bytes=box[12:28]))
    pos = 28
    if version == 1:
        count = struct.unpack_from(">I", box, pos)[0]
        pos += 4 + 16 * count
    size = struct.unpack_from(">I", box, pos)[0]
    return system, box[pos + 4:pos + 4 + size]


def wrm_header(pro: bytes) -> etree._Element:
    """The PlayReady Object's header record (type 1), parsed."""
    length, count = struct.unpack_from("<IH", pro)
    assert length == len(pro) and count == 1
    kind, size = struct.unpack_from("<HH", pro, 6)
    assert kind == 1 and 10 + size == len(pro)
    return etree.fromstring(pro[10:].decode("utf-16-le").encode())


def check_playready(pro: bytes, d: Drm, la_url: str) -> None:
    header = wrm_header(pro)
    ns = {"p": "http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader"}
    assert header.get("version") == "4.0.0.0"
    assert header.findtext("p:DATA/p:KID", namespaces=ns) == base64.b64encode(guid_bytes_dotnet(d.key_id)).decode()
    assert header.findtext("p:DATA/p:CHECKSUM", namespaces=ns) == key_checksum(d.key, d.key_id)
    assert header.findtext("p:DATA/p:PROTECTINFO/p:ALGID", namespaces=ns) == "AESCTR"
    assert header.findtext("p:DATA/p:LA_URL", namespaces=ns) == la_url


def widevine_kids(data: bytes) -> list[bytes]:
    """Field 2 (key_id) of the WidevinePsshData protobuf, read by hand."""
    kids, pos = [], 0
    while pos < len(data):
        tag = data[pos]
        pos += 1
        field, wire = tag >> 3, tag & 7
        if wire == 2:
            size = data[pos]
            pos += 1
            if field == 2:
                kids.append(data[pos:pos + size])
            pos += size
        else:  # varint
            while data[pos] & 0x80:
                pos += 1
            pos += 1
    return kids


def get(url: str) -> httpx.Response:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r


def cmaf_video(d: Drm) -> tuple[str, str]:
    """(media playlist URL, its text) of the first video rendition of the HLS CMAF presentation."""
    master = get(d.asset.url("m3u8-cmaf")).text
    uri = next(line for line in master.splitlines() if line and not line.startswith("#") and "video" in line)
    url = d.asset.path + d.asset.manifest + "/" + uri
    return url, get(url).text


# ---- tests ---------------------------------------------------------------------------------------------


def test_mpd_describes_every_drm_system(drm: dict[str, Drm]) -> None:
    d = drm["operator"]
    root = etree.fromstring(get(d.asset.url("mpd-time-csf")).content)
    video = root.find(".//mpd:AdaptationSet[@contentType='video']", NS)
    assert video is not None
    items = {cp.get("schemeIdUri"): cp for cp in video.findall("mpd:ContentProtection", NS)}
    assert set(items) == {"urn:mpeg:dash:mp4protection:2011", CLEARKEY_SCHEME, f"urn:uuid:{PLAYREADY}",
                          f"urn:uuid:{WIDEVINE}"}
    assert items["urn:mpeg:dash:mp4protection:2011"].get(f"{{{NS['cenc']}}}default_KID") == d.key_id
    pr = items[f"urn:uuid:{PLAYREADY}"]
    pro = base64.b64decode(pr.findtext("mspr:pro", namespaces=NS) or "")
    check_playready(pro, d, PLAYREADY_URL)
    assert CUSTOM in etree.tostring(wrm_header(pro)).decode()
    assert pssh_of(base64.b64decode(pr.findtext("cenc:pssh", namespaces=NS) or "")) == (PLAYREADY, pro)
    wv = items[f"urn:uuid:{WIDEVINE}"]
    system, data = pssh_of(base64.b64decode(wv.findtext("cenc:pssh", namespaces=NS) or ""))
    assert system == WIDEVINE and widevine_kids(data) == [uuid.UUID(d.key_id).bytes]
    laurl = wv.find("{*}Laurl")
    assert laurl is not None and laurl.text == f"{WIDEVINE_URL}?KID={d.key_id}"


def test_hls_cmaf_names_every_system_and_init_carries_every_pssh(drm: dict[str, Drm]) -> None:
    d = drm["operator"]
    url, media = cmaf_video(d)
    keys = [line for line in media.splitlines() if line.startswith("#EXT-X-KEY")]
    formats = {re.search(r'KEYFORMAT="([^"]+)"', k).group(1): k for k in keys}  # type: ignore[union-attr]
    assert set(formats) == {"org.w3.clearkey", "com.microsoft.playready", f"urn:uuid:{WIDEVINE}"}, keys
    assert all("METHOD=SAMPLE-AES-CTR" in k for k in keys)
    pr_uri = re.search(r'URI="data:text/plain;charset=UTF-16;base64,([^"]+)"', formats["com.microsoft.playready"])
    assert pr_uri is not None
    check_playready(base64.b64decode(pr_uri.group(1)), d, PLAYREADY_URL)
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', media).group(1)  # type: ignore[union-attr]
    init = get(url.rsplit("/", 1)[0] + "/" + init_uri).content
    moov = next(b for kind, b in boxes(init) if kind == "moov")
    systems = {pssh_of(b)[0] for kind, b in boxes(moov[8:]) if kind == "pssh"}
    assert systems == {COMMON, PLAYREADY, WIDEVINE}


def _framecrc(path: Path, key: bytes | None) -> subprocess.CompletedProcess[str]:
    args = [find_ffmpeg(), "-nostdin", "-v", "error"]
    if key is not None:
        args += ["-decryption_key", key.hex()]
    return subprocess.run([*args, "-i", str(path), "-map", "0:v:0", "-f", "framecrc", "-"],
                          capture_output=True, text=True, timeout=120)


def _frames(result: subprocess.CompletedProcess[str]) -> list[str]:
    """framecrc lines without the timestamps (the Smooth and DASH fragments time differently)."""
    return [line.rsplit(",", 2)[-2] + line.rsplit(",", 1)[-1] for line in result.stdout.splitlines()
            if line and not line.startswith("#")]


def test_smooth_carries_the_playready_header_and_decrypts_like_dash(drm: dict[str, Drm], tmp_path: Path) -> None:
    d = drm["operator"]
    manifest = etree.fromstring(get(d.asset.url()).content)
    header = manifest.find("Protection/ProtectionHeader")
    assert header is not None and header.get("SystemID") == PLAYREADY.upper()
    check_playready(base64.b64decode(header.text or ""), d, PLAYREADY_URL)
    video = manifest.find("StreamIndex[@Type='video']")
    assert video is not None
    bitrate = video.find("QualityLevel").get("Bitrate")  # type: ignore[union-attr]
    start = int(video.find("c").get("t") or 0)  # type: ignore[union-attr]
    fragment = get(d.asset.path + d.asset.manifest + "/" + (video.get("Url") or "").replace("{bitrate}", bitrate)
                   .replace("{start time}", str(start))).content
    moof = next(b for kind, b in boxes(fragment) if kind == "moof")
    assert PIFF_SENC in moof  # the PIFF sample-encryption box Smooth clients read

    # the same pictures as the CMAF segment of the same time, once both are decrypted: the Smooth
    # fragment after the CMAF init segment of its rendition (which carries tenc) is an fMP4 file
    url, media = cmaf_video(d)
    assert f"({bitrate})" in url, (url, bitrate)
    base = url.rsplit("/", 1)[0] + "/"
    init = get(base + re.search(r'#EXT-X-MAP:URI="([^"]+)"', media).group(1)).content  # type: ignore[union-attr]
    segment = get(base + next(ln for ln in media.splitlines() if ln and not ln.startswith("#"))).content
    smooth_file, cmaf_file = tmp_path / "smooth.mp4", tmp_path / "cmaf.mp4"
    smooth_file.write_bytes(init + fragment)
    cmaf_file.write_bytes(init + segment)
    smooth_frames, cmaf_frames = _framecrc(smooth_file, d.key), _framecrc(cmaf_file, d.key)
    assert smooth_frames.returncode == 0 and cmaf_frames.returncode == 0, smooth_frames.stderr + cmaf_frames.stderr
    assert len(_frames(cmaf_frames)) == 2 * FPS  # one 2 s GOP
    assert _frames(smooth_frames) == _frames(cmaf_frames)
    wrong = _framecrc(smooth_file, bytes(16))
    assert wrong.returncode != 0 or _frames(wrong) != _frames(cmaf_frames)


def test_smooth_without_a_playready_server_names_ours_which_needs_a_provider(
        drm: dict[str, Drm], origin_server: ServeProcess) -> None:
    d = drm["own"]
    manifest = etree.fromstring(get(d.asset.url()).content)
    header = manifest.find("Protection/ProtectionHeader")
    assert header is not None
    own = f"{origin_server.api}/keydelivery/PlayReady/?KID={d.key_id}"
    check_playready(base64.b64decode(header.text or ""), d, own)
    r = httpx.post(own, content=b"<soap:Envelope/>", headers={"Content-Type": "text/xml"}, timeout=30)
    assert r.status_code == 501 and "PlayReady" in r.text, r.text
    assert httpx.get(d.asset.url("mpd-time-csf"), timeout=30).status_code == 403  # Smooth-only policy
