"""The origin's HTTP behaviour seen by a player or a CDN: types, validators, caching, CORS,
filters, locator and endpoint lifecycle, and clean errors for bad URLs and bad media."""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from lxml import etree

from tests.origin.conftest import Published, publish
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin")]  # one server + encode per run


def get(url: str, **kw: object) -> httpx.Response:
    return httpx.get(url, timeout=30, **kw)  # type: ignore[arg-type]


def mpd_segments(text: str) -> dict[str, list[int]]:
    """Segment start times per Representation bandwidth (expanded SegmentTimeline)."""
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    root = etree.fromstring(text.encode())
    out: dict[str, list[int]] = {}
    for aset in root.iterfind(".//d:AdaptationSet", ns):
        for rep in aset.iterfind("d:Representation", ns):
            template = rep.find("d:SegmentTemplate", ns)
            if template is None:
                template = aset.find("d:SegmentTemplate", ns)
            starts: list[int] = []
            t = 0
            for s in template.iterfind("d:SegmentTimeline/d:S", ns):
                t = int(s.get("t", t))
                for _ in range(int(s.get("r", "0")) + 1):
                    starts.append(t)
                    t += int(s.get("d"))
            out[f"{aset.get('contentType') or aset.get('mimeType')}:{rep.get('bandwidth')}"] = starts
    return out


def hls_variants(text: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    return [(int(re.search(r"BANDWIDTH=(\d+)", line).group(1)), lines[i + 1])  # type: ignore[union-attr]
            for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF")]


def test_manifest_headers_conditional_get_and_gzip(published: dict[str, Published]) -> None:
    asset = published["adaptive"]
    for fmt, ctype in (("m3u8-aapl", "application/vnd.apple.mpegurl"), ("mpd-time-csf", "application/dash+xml"),
                       (None, "application/vnd.ms-sstr+xml")):
        r = get(asset.url(fmt))
        assert r.status_code == 200 and r.headers["content-type"] == ctype
        assert r.headers["access-control-allow-origin"] == "*"
        assert re.fullmatch(r"public, max-age=\d+", r.headers["cache-control"])
        assert r.headers["etag"] and r.headers["last-modified"]
        again = get(asset.url(fmt), headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = httpx.head(asset.url(fmt), timeout=30)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == r.headers["content-length"]  # same (gzipped) body length
    raw = httpx.get(asset.url("mpd-time-csf"), headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert raw.headers.get("content-encoding") == "gzip"
    plain = httpx.get(asset.url("mpd-time-csf"), headers={"Accept-Encoding": "identity"}, timeout=30)
    assert "content-encoding" not in plain.headers
    assert raw.text == plain.text  # httpx undoes the gzip
    with httpx.stream("GET", asset.url("mpd-time-csf"), headers={"Accept-Encoding": "gzip"}, timeout=30) as s:
        assert gzip.decompress(b"".join(s.iter_raw())).decode() == plain.text


def test_segments_are_immutable_and_typed(published: dict[str, Published]) -> None:
    asset = published["adaptive"]
    mpd = get(asset.url("mpd-time-csf")).text
    first = re.search(r'media="([^"]+)"', mpd).group(1)  # type: ignore[union-attr]
    bw = re.search(r'<Representation [^>]*bandwidth="(\d+)"', mpd).group(1)  # type: ignore[union-attr]
    init = get(asset.path + asset.manifest + "/" + re.search(r'initialization="([^"]+)"', mpd)  # type: ignore
               .group(1).replace("$Bandwidth$", bw))
    assert init.status_code == 200 and init.content[4:8] == b"ftyp" and init.headers["content-type"] == "video/mp4"
    seg = get(asset.path + asset.manifest + "/" + first.replace("$Bandwidth$", bw).replace("$Time$", "0"))
    assert seg.status_code == 200, seg.text
    assert "immutable" in seg.headers["cache-control"] and seg.headers["etag"]
    assert seg.content[:4] != b"" and b"moof" in seg.content[:64]
    assert get(seg.url, headers={"If-None-Match": seg.headers["etag"]}).status_code == 304


def test_cors_preflight_and_methods(published: dict[str, Published]) -> None:
    asset = published["adaptive"]
    r = httpx.options(asset.url("m3u8-aapl"), headers={"Origin": "http://player.example",
                                                       "Access-Control-Request-Method": "GET",
                                                       "Access-Control-Request-Headers": "range"}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"] and r.headers["access-control-allow-headers"] == "range"
    post = httpx.post(asset.url("m3u8-aapl"), timeout=30)
    assert post.status_code == 405 and post.json()["error"]["code"] == "MethodNotAllowed"


def test_filters_shorten_and_thin_every_protocol(origin_server: ServeProcess, published: dict[str, Published]
                                                 ) -> None:
    asset = published["adaptive"]
    trim = f"first4s{uuid.uuid4().hex[:6]}"
    with origin_server.client() as client:
        client.create("Filters", {"Name": trim, "PresentationTimeRange": {
            "StartTimestamp": "0", "EndTimestamp": "40000000", "Timescale": "10000000"}}, "creating a filter")
        client.create("AssetFilters", {"ParentAssetId": asset.asset_id, "Name": "low", "Tracks": [
            {"PropertyConditions": [{"Property": "Type", "Value": "video", "Operator": "Equal"},
                                    {"Property": "Bitrate", "Value": "0-1000000", "Operator": "Equal"}]},
            {"PropertyConditions": [{"Property": "Type", "Value": "audio", "Operator": "Equal"}]}]},
            "creating an asset filter")
    full_mpd = mpd_segments(get(asset.url("mpd-time-csf")).text)
    short_mpd = mpd_segments(get(asset.url("mpd-time-csf", f"filter={trim}")).text)
    assert set(full_mpd) == set(short_mpd)
    for key, starts in short_mpd.items():
        assert 0 < len(starts) < len(full_mpd[key]), key
    thin_mpd = mpd_segments(get(asset.url("mpd-time-csf", "filter=low")).text)
    video_bws = [int(k.split(":")[1]) for k in full_mpd if k.startswith("video")]
    assert len(video_bws) > 1
    assert all(int(k.split(":")[1]) <= 1_000_000 for k in thin_mpd if k.startswith("video"))
    assert any(k.startswith("audio") for k in thin_mpd)
    full_hls, thin_hls = get(asset.url("m3u8-aapl")).text, get(asset.url("m3u8-aapl", "filter=low")).text
    assert 0 < len(hls_variants(thin_hls)) < len(hls_variants(full_hls))
    # the variant playlists of a filtered master keep the filter (trimmed segment lists)
    both = get(asset.url("m3u8-aapl", f"filter={trim};low")).text
    uri = hls_variants(both)[0][1]
    assert "filter=" in uri
    media = get(asset.path + asset.manifest + "/" + uri).text
    assert 0 < media.count("#EXTINF") <= 3
    smooth_full, smooth_short = get(asset.url()).text, get(asset.url(None, f"filter={trim}")).text
    assert smooth_short.count("<c ") < smooth_full.count("<c ") or 'r="' in smooth_full
    assert etree.fromstring(smooth_short.encode()).get("Duration") != etree.fromstring(
        smooth_full.encode()).get("Duration")
    unknown = get(asset.url("m3u8-aapl", "filter=nosuchfilter"))
    assert unknown.status_code == 404 and "nosuchfilter" in unknown.json()["error"]["message"]


@pytest.mark.parametrize(("suffix", "status"), [
    ("{ism}/manifest(format=nonsense)", 400),
    ("{ism}/manifest(format=f4m-f4f)", 501),
    ("{ism}/manifest(format=m3u8-aapl", 404),
    ("{ism}/QualityLevels(1)/Fragments(video=0,format=mpd-time-csf)", 404),
    ("{ism}/QualityLevels({bw})/Fragments(video=-1,format=mpd-time-csf)", 400),
    ("{ism}/QualityLevels({bw})/Fragments(video=99999999999999999999999999,format=mpd-time-csf)", 400),
    ("{ism}/QualityLevels({bw})/Fragments(video=12345,format=mpd-time-csf)", 404),
    ("{ism}/QualityLevels({bw})/Fragments(video=i)", 400),
    ("{ism}/QualityLevels({bw})/Fragments(video=i,format=m3u8-aapl)", 400),
    ("{ism}/QualityLevels({bw})/Manifest(video,format=mpd-time-csf)", 400),
    ("other.ism/manifest", 404),
    ("nosuchfile.mp4", 404),
    ("{ism}", 404),
    ("{ism}/manifest(format=m3u8-aapl,encryption=cenc)", 501),
])
def test_bad_urls_get_clean_errors(published: dict[str, Published], suffix: str, status: int) -> None:
    asset = published["adaptive"]
    mpd = get(asset.url("mpd-time-csf")).text
    bw = re.search(r'<Representation [^>]*bandwidth="(\d+)"', mpd).group(1)  # type: ignore[union-attr]
    r = get(asset.path + suffix.format(ism=asset.manifest, bw=bw))
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] and body["message"] and "Traceback" not in r.text


@pytest.mark.parametrize("guid", ["not-a-guid", "12345678-1234-1234-1234-1234567890ab", "0" * 36])
def test_unknown_or_malformed_locators_are_404(origin_server: ServeProcess, guid: str) -> None:
    r = get(f"{origin_server.api}/{guid}/clip.ism/manifest")
    assert r.status_code == 404 and "Traceback" not in r.text


def test_deleted_locator_and_stopped_endpoint_stop_streaming_at_once(origin_server: ServeProcess,
                                                                     published: dict[str, Published]) -> None:
    asset = published["userset"]
    extra = publish(origin_server, "extra", asset.asset_id)
    assert get(extra.url("m3u8-aapl")).status_code == 200
    guid = extra.path.rstrip("/").rsplit("/", 1)[1]
    with origin_server.client() as client:
        client.delete("Locators", f"nb:lid:UUID:{guid}", "deleting the locator")
        assert get(extra.url("m3u8-aapl")).status_code == 404
        endpoints = client.api("GET", "StreamingEndpoints", "listing endpoints").json()["value"]
        default = next(e for e in endpoints if e["Name"] == "default")
        key = quote(default["Id"], safe="")
        try:
            client.api("POST", f"StreamingEndpoints('{key}')/Stop", "stopping the endpoint")
            stopped = get(asset.url("m3u8-aapl"))
            assert stopped.status_code == 403 and "Stopped" in stopped.json()["error"]["message"]
        finally:
            client.api("POST", f"StreamingEndpoints('{key}')/Start", "starting the endpoint")
        assert get(asset.url("m3u8-aapl")).status_code == 200


def test_corrupted_mp4_is_a_clean_error_and_does_not_poison_the_cache(origin_server: ServeProcess,
                                                                      tmp_path: Path) -> None:
    from tests.origin.conftest import make_clip

    good = make_clip(tmp_path / "good.mp4", 4, "320x180", gop=50)
    data = bytearray(good.read_bytes())
    moov = data.find(b"moov")
    data[moov + 40: moov + 400] = b"\xff" * 360  # wreck the movie header and the track boxes
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(bytes(data))
    with origin_server.client() as client:
        broken_id = client.upload_files([str(bad)], "broken").asset_id
        good_id = client.upload_files([str(good)], "good").asset_id
    broken, fine = publish(origin_server, "broken", broken_id), publish(origin_server, "good", good_id)
    for _ in range(2):  # the second time must fail the same way (no half-built index cached)
        r = get(broken.url("m3u8-aapl"))
        assert r.status_code == 500 and r.json()["error"]["code"] == "UnstreamableFile", r.text
        assert "broken.mp4" in r.json()["error"]["message"] and "Traceback" not in r.text
    assert get(fine.url("m3u8-aapl")).status_code == 200
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with origin_server.client() as client:
        text_id = client.upload_files([str(text)], "text").asset_id
    r = get(publish(origin_server, "text", text_id).url("mpd-time-csf"))
    assert r.status_code >= 400 and "notes.mp4" in r.json()["error"]["message"]


def test_crossdomain_policy_files(origin_server: ServeProcess) -> None:
    policy = ("<?xml version=\"1.0\"?><cross-domain-policy><allow-access-from domain=\"*\"/>"
              "</cross-domain-policy>")
    # the policy files name no locator: the endpoint is found by Host (a server with several accounts
    # cannot guess whose default endpoint a bare IP address means)
    host = f"media-{uuid.uuid4().hex[:8]}.example.test"
    with origin_server.client() as client:
        endpoints = client.api("GET", "StreamingEndpoints", "listing endpoints").json()["value"]
        default = next(e for e in endpoints if e["Name"] == "default")
        key = quote(default["Id"], safe="")
        client.api("MERGE", f"StreamingEndpoints('{key}')", "adding a host name",
                   {"CustomHostNames": [*default.get("CustomHostNames", []), host]})
        before = get(f"{origin_server.api}/crossdomain.xml", headers={"Host": host})
        assert before.status_code == 404
        client.api("MERGE", f"StreamingEndpoints('{key}')", "setting policies",
                   {"CrossSiteAccessPolicies": {"CrossDomainPolicy": policy, "ClientAccessPolicy": None}})
    r = get(f"{origin_server.api}/crossdomain.xml", headers={"Host": host})
    assert r.status_code == 200 and r.text == policy and r.headers["content-type"].startswith("text/xml")


def _default_endpoint(client: object) -> str:
    endpoints = client.api("GET", "StreamingEndpoints", "listing endpoints").json()["value"]  # type: ignore[attr-defined]
    return quote(next(e for e in endpoints if e["Name"] == "default")["Id"], safe="")


def test_ip_allow_list_and_custom_host_names(origin_server: ServeProcess, published: dict[str, Published]) -> None:
    asset = published["userset"]
    url = asset.url("mpd-time-csf")
    with origin_server.client() as client:
        key = _default_endpoint(client)
        try:
            client.api("MERGE", f"StreamingEndpoints('{key}')", "restricting by IP", {"AccessControl": {
                "IP": {"Allow": [{"Name": "lan", "Address": "10.0.0.0", "SubnetPrefixLength": 8}]}}})
            refused = get(url)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "IpNotAllowed"
            client.api("MERGE", f"StreamingEndpoints('{key}')", "allowing loopback", {"AccessControl": {
                "IP": {"Allow": [{"Name": "me", "Address": "127.0.0.1", "SubnetPrefixLength": 32}]}}})
            assert get(url).status_code == 200
        finally:
            client.api("MERGE", f"StreamingEndpoints('{key}')", "lifting the restriction", {"AccessControl": None})
        assert get(url).status_code == 200
        client.api("MERGE", f"StreamingEndpoints('{key}')", "adding a custom host name",
                   {"CustomHostNames": ["media.example.test"]})
    assert get(url, headers={"Host": "media.example.test"}).status_code == 200
