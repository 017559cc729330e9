"""The player harness (tests/support/players.py) proven against streams made WITHOUT openams.

Why: the origin's playback acceptance tests will trust this harness's verdict, so it must first be
shown to pass good streams and to fail bad ones. The good streams are a 12 s, 3-rung ABR ladder
(640x360 / 384x216 / 256x144, all exactly 16:9, 2 s GOPs, stereo AAC) encoded by FFmpeg and packaged by FFmpeg's own
muxers — HLS with TS segments (muxed A/V, like ``m3u8-aapl``), HLS with fMP4 segments and a separate
audio rendition (like ``m3u8-cmaf``), DASH with a SegmentTimeline (like ``mpd-time-csf``) and Smooth
Streaming — served by a local static server with CORS on another origin than the test page. Every
player/format pair must play >= 8 s without error, list the 3 rungs and render both forced
switches. The bad cases (a 404 and a server without CORS) must come back as failures with a reason.

Shaka Packager (npm ``shaka-packager``, binary inside the package) is exercised here too on the
same source, as it will be the reference in differential tests of the origin's packaging.

Skips when Chromium / playwright / the npm players are missing (``scripts/players.sh`` installs
them), and fails instead under OPENAMS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from openams.media.ffmpeg import find_ffmpeg
from tests.conftest import service_missing
from tests.support.players import (
    Player,
    PlayerHarness,
    PlayJob,
    PlayResult,
    StaticServer,
    live_group_members,
    missing_requirements,
    player_harness,
)
from tests.support.shaka_packager import packager_path

pytestmark = pytest.mark.slow

DURATION = 12
GOP_SECONDS = 2
FPS = 25
LADDER = ((640, 360, 800), (384, 216, 400), (256, 144, 200))
"""(width, height, kbit/s) per rung, highest first (the order of the video streams in the source). Exact
16:9 sizes with square pixels: FFmpeg's DASH muxer refuses an AdaptationSet with mixed aspect ratios."""

CASES: dict[str, tuple[Player, str]] = {
    "hls.js-hls-ts": ("hls.js", "ts/master.m3u8"),
    "hls.js-hls-fmp4": ("hls.js", "cmaf/master.m3u8"),
    "dash.js-dash": ("dash.js", "dash/manifest.mpd"),
    "dash.js-mss": ("dash.js-mss", "mss/Manifest"),
    "shaka-dash": ("shaka", "dash/manifest.mpd"),
    "shaka-hls-ts": ("shaka", "ts/master.m3u8"),
    "shaka-hls-fmp4": ("shaka", "cmaf/master.m3u8"),
}
"""Test id -> (player, path of the manifest under the stream server)."""


# ---- streams made with FFmpeg -----------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120
    )


def make_ladder_source(path: Path) -> Path:
    """One MP4 holding the three video rungs (streams 0-2, highest first) and one AAC stereo track
    (stream 3), keyframes forced every 2 s in every rung so segments align across rungs."""
    split = ";".join(
        [f"[0:v]split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER)))]
        + [f"[s{i}]scale={w}:{h},setsar=1[v{i}]" for i, (w, h, _k) in enumerate(LADDER)]
    )
    args = [
        "-f", "lavfi", "-i", f"testsrc2=s={LADDER[0][0]}x{LADDER[0][1]}:r={FPS}:d={DURATION}",
        "-f", "lavfi", "-i", f"sine=f=440:r=48000:d={DURATION}",
        "-filter_complex", split,
    ]  # fmt: skip
    for i in range(len(LADDER)):
        args += ["-map", f"[v{i}]"]
    args += ["-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    args += ["-g", str(GOP_SECONDS * FPS), "-keyint_min", str(GOP_SECONDS * FPS), "-sc_threshold", "0"]
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{GOP_SECONDS})"]
    for i, (_w, _h, kbps) in enumerate(LADDER):
        args += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k", f"-bufsize:v:{i}", f"{2 * kbps}k"]
    args += ["-c:a", "aac", "-b:a", "96k", "-ac", "2", "-movflags", "+faststart", str(path)]
    _ffmpeg(*args)
    return path


def _video_maps() -> list[str]:
    return [arg for i in range(len(LADDER)) for arg in ("-map", f"0:v:{i}")]


def package_hls_ts(src: Path, out: Path) -> None:
    """HLS v3, MPEG-TS segments with audio muxed into every variant (the m3u8-aapl shape)."""
    maps = [arg for i in range(len(LADDER)) for arg in ("-map", f"0:v:{i}", "-map", "0:a:0")]
    stream_map = " ".join(f"v:{i},a:{i}" for i in range(len(LADDER)))
    _ffmpeg(
        "-i", str(src), *maps, "-c", "copy", "-f", "hls", "-hls_time", str(GOP_SECONDS),
        "-hls_playlist_type", "vod", "-hls_segment_type", "mpegts", "-master_pl_name", "master.m3u8",
        "-var_stream_map", stream_map, "-hls_segment_filename", str(out / "v%v" / "seg%03d.ts"),
        str(out / "v%v" / "index.m3u8"),
    )  # fmt: skip


def package_hls_fmp4(src: Path, out: Path) -> None:
    """HLS v7, fMP4 segments, video variants sharing one audio rendition group (the m3u8-cmaf shape)."""
    names = [f"v{h}" for _w, h, _k in LADDER]
    stream_map = " ".join(["a:0,agroup:aud,name:audio", *(f"v:{i},agroup:aud,name:{n}" for i, n in enumerate(names))])
    _ffmpeg(
        "-i", str(src), "-map", "0:a:0", *_video_maps(), "-c", "copy", "-f", "hls",
        "-hls_time", str(GOP_SECONDS), "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
        "-hls_fmp4_init_filename", "init.mp4", "-master_pl_name", "master.m3u8", "-var_stream_map", stream_map,
        "-hls_segment_filename", str(out / "%v" / "seg%03d.m4s"), str(out / "%v" / "index.m3u8"),
    )  # fmt: skip
    _drop_audio_only_variant(out / "master.m3u8")


def _drop_audio_only_variant(master: Path) -> None:
    """FFmpeg also lists the audio rendition as an audio-only variant; a ladder with an alternate
    audio group does not have one (and it would be a 4th "rung" to the players)."""
    lines = master.read_text().splitlines()
    kept: list[str] = []
    skip_uri = False
    for line in lines:
        if skip_uri:
            skip_uri = False
            continue
        if line.startswith("#EXT-X-STREAM-INF") and "RESOLUTION=" not in line:
            skip_uri = True
            continue
        kept.append(line)
    master.write_text("\n".join(kept) + "\n")


def package_dash(src: Path, out: Path) -> None:
    """DASH (isoff-live), SegmentTemplate + SegmentTimeline, one video and one audio AdaptationSet."""
    out.mkdir(parents=True, exist_ok=True)  # the dash muxer does not create it
    _ffmpeg(
        "-i", str(src), *_video_maps(), "-map", "0:a:0", "-c", "copy", "-f", "dash",
        "-seg_duration", str(GOP_SECONDS), "-use_template", "1", "-use_timeline", "1",
        "-adaptation_sets", "id=0,streams=v id=1,streams=a",
        "-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
        str(out / "manifest.mpd"),
    )  # fmt: skip


def package_smooth(src: Path, out: Path) -> None:
    """Smooth Streaming: a client manifest plus ``QualityLevels(b)/Fragments(kind=t)`` files."""
    out.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        "-i", str(src), *_video_maps(), "-map", "0:a:0", "-c", "copy", "-f", "smoothstreaming",
        "-min_frag_duration", str(GOP_SECONDS * 1_000_000), "-lookahead_count", "0", str(out),
    )  # fmt: skip
    _anchor_smooth_timeline(out)


def _anchor_smooth_timeline(out: Path) -> None:
    """FFmpeg names the first fragment by its real start time (B-frame / AAC priming delay) but
    writes no ``t`` on the first ``<c>``, so a client would ask for ``Fragments(video=0)``. Add it."""
    manifest = out / "Manifest"
    names = [p.name for p in out.glob("QualityLevels(*)/Fragments(*)")]

    def anchor(match: re.Match[str]) -> str:
        block = match.group(0)
        kind = re.search(r'Type="(\w+)"', block)
        starts = [int(m.group(1)) for n in names if kind and (m := re.fullmatch(rf"Fragments\({kind[1]}=(\d+)\)", n))]
        if not starts or min(starts) == 0:
            return block
        return block.replace('<c n="0" ', f'<c n="0" t="{min(starts)}" ', 1)

    manifest.write_text(re.sub(r"<StreamIndex.*?</StreamIndex>", anchor, manifest.read_text(), flags=re.S))


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def players_installed() -> None:
    """Skip (or fail under OPENAMS_REQUIRE_SERVICES=1) before any work when the harness cannot run."""
    reason = missing_requirements()
    if reason:
        service_missing(reason)


@pytest.fixture(scope="module")
def harness(players_installed: None) -> Iterator[PlayerHarness]:
    """One Chromium for the module."""
    with player_harness() as h:
        yield h


@pytest.fixture(scope="module")
def ladder_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ladder_source(tmp_path_factory.mktemp("ladder") / "ladder.mp4")


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory, ladder_source: Path) -> Iterator[str]:
    """Base URL of a CORS-enabled static server holding the four packagings."""
    root = tmp_path_factory.mktemp("streams")
    package_hls_ts(ladder_source, root / "ts")
    package_hls_fmp4(ladder_source, root / "cmaf")
    package_dash(ladder_source, root / "dash")
    package_smooth(ladder_source, root / "mss")
    with StaticServer(root) as server:
        yield server.url


def _check(result: PlayResult) -> str | None:
    """Why ``result`` fails the acceptance bar for a 3-rung ladder, or None."""
    if not result.ok:
        return "not ok"
    if sorted((r.width, r.height) for r in result.rungs) != sorted((w, h) for w, h, _k in LADDER):
        return "the player did not list exactly the ladder's three rungs"
    if len({r.bandwidth for r in result.rungs}) != len(LADDER):
        return "rungs without distinct bandwidths"
    if not {r.height for r in result.played_rungs} >= {144, 360}:
        return "the lowest and the highest rung were not both rendered"
    if [(s.target, s.size[1]) for s in result.switches] != [("lowest", 144), ("highest", 360)]:
        return "the forced switches did not end on 144p then 360p"
    return None


def test_players_play_the_ladder_and_switch_rungs(harness: PlayerHarness, streams: str) -> None:
    """Every player/format pair, run side by side (each is bound to real time: 8 s + two switches).

    One test rather than one per pair on purpose: under ``pytest -n 2`` parametrized cases would be
    spread over both workers, each starting its own browser and competing for the same two cores.
    """
    jobs = [PlayJob(f"{streams}/{path}", player, timeout=90) for player, path in CASES.values()]
    started = time.monotonic()
    results = harness.play_many(jobs, concurrency=4)
    print(f"\n{len(jobs)} playback scenarios in {time.monotonic() - started:.1f}s (Chromium {harness.browser_version})")
    failures = []
    for case, result in zip(CASES, results, strict=True):
        print(f"[{case}] {result}")
        problem = _check(result)
        if problem:
            failures.append(f"[{case}] {problem}\n{result}")
    assert not failures, "\n\n".join(failures)


# ---- the bad ones do not ----------------------------------------------------------------------


def test_missing_manifest_is_a_failure(harness: PlayerHarness, streams: str) -> None:
    result = harness.play(f"{streams}/ts/nothing-here.m3u8", "hls.js", timeout=20)
    assert not result.ok
    assert any("404" in e for e in result.errors), str(result)
    assert any("fatal" in e for e in result.errors), str(result)


class _NoCorsHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_origin_without_cors_is_a_failure(harness: PlayerHarness, tmp_path: Path) -> None:
    (tmp_path / "master.m3u8").write_text("#EXTM3U\n")
    handler = functools.partial(_NoCorsHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/master.m3u8"
        result = harness.play(url, "shaka", timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert not result.ok
    assert any("CORS" in e or "Access-Control-Allow-Origin" in e for e in result.errors), str(result)


# ---- harness mechanics ------------------------------------------------------------------------


def test_timeout_returns_a_partial_result_and_leaves_no_browser(players_installed: None, streams: str) -> None:
    """A scenario that cannot finish in time comes back marked, and closing the harness kills the
    whole Chromium process group (no renderer or zygote survives the session)."""
    with player_harness() as h:
        pgid = h.chromium.pgid
        assert pgid is not None and live_group_members(pgid)
        result = h.play(f"{streams}/ts/master.m3u8", "hls.js", timeout=4)
    assert result.timed_out and not result.ok, str(result)
    assert any("timed out" in e for e in result.errors), str(result)
    assert result.max_time < 8, str(result)  # (how far it got in 4 s depends on the machine's load)
    assert live_group_members(pgid) == []


# ---- Shaka Packager ---------------------------------------------------------------------------


def test_shaka_packager_makes_fmp4_dash(ladder_source: Path, tmp_path: Path) -> None:
    packager = packager_path()
    if packager is None:
        service_missing("Shaka Packager not found (npm package shaka-packager) — run scripts/players.sh")
    assert packager is not None
    version = subprocess.run([str(packager), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and "packager" in version.stdout, version
    out = tmp_path / "packaged"
    streams = [
        f"in={ladder_source},stream=0,init_segment={out}/v360/init.mp4,segment_template={out}/v360/$Number$.m4s",
        f"in={ladder_source},stream=3,init_segment={out}/audio/init.mp4,segment_template={out}/audio/$Number$.m4s",
    ]
    proc = subprocess.run(
        [str(packager), *streams, "--segment_duration", str(GOP_SECONDS), "--generate_static_live_mpd",
         "--mpd_output", f"{out}/manifest.mpd"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GLOG_minloglevel": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rendition in ("v360", "audio"):
        init = (out / rendition / "init.mp4").read_bytes()
        assert init[4:8] == b"ftyp" and b"moov" in init
        segments = sorted((out / rendition).glob("*.m4s"), key=lambda p: int(p.stem))
        assert len(segments) == DURATION // GOP_SECONDS, segments
        assert all(b"moof" in s.read_bytes()[:4096] for s in segments)
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    mpd = ET.parse(out / "manifest.mpd").getroot()
    assert mpd.get("type") == "static"
    kinds = sorted(a.get("contentType") or "" for a in mpd.iterfind(".//d:AdaptationSet", ns))
    assert kinds == ["audio", "video"]
    video = mpd.find(".//d:AdaptationSet[@contentType='video']/d:Representation", ns)
    assert video is not None and video.get("codecs", "").startswith("avc1.")
    assert mpd.find(".//d:SegmentTemplate/d:SegmentTimeline", ns) is not None
