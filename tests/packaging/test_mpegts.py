"""MPEG-TS segment writer, checked against real media and FFmpeg as the player.

Fixtures are generated at test time with FFmpeg (tiny frames, a few seconds) and read back with
PyAV, which hands out MP4 samples exactly as the index will (length-prefixed NAL units, avcC /
AudioSpecificConfig as extradata, pts/dts in the track timescale)."""

from __future__ import annotations

import itertools
import random
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import pytest

from openams.media.ffmpeg import find_ffmpeg
from openams.packaging import mpegts
from openams.packaging.model import Sample, SampleRef, TrackInfo
from openams.packaging.mpegts import (
    AUDIO_PID,
    PAT_PID,
    PMT_PID,
    TS_TIME_OFFSET,
    VIDEO_PID,
    TsMuxError,
    advance_continuity,
    packet_counts,
    to_90khz,
    ts_segment,
)

AVCC = bytes.fromhex("0164000cffe1001a6764000cacd941419f9f011000000300100000030320f142996001000468ef8fcbfdf8f800")
ASC_LC_48K_STEREO = bytes.fromhex("1190")


# ----------------------------------------------------------------------------------------------
# fixtures and helpers


@dataclass
class Track:
    info: TrackInfo
    samples: list[Sample]

    def presentation(self, sample: Sample) -> Fraction:
        return Fraction(sample.pts - self.info.media_time, self.info.timescale)


@dataclass
class Media:
    dir: Path
    video: Track
    audio: Track
    mp4_audio_samples: int  # decoded from the MP4 (priming trimmed by the edit list)


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return find_ffmpeg()


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, check=False)


def _read_track(path: Path, kind: str, track_id: int, fourcc: str, language: str = "und") -> Track:
    """Samples as the MP4 stores them: dts from 0, media_time = the edit-list shift."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        assert stream.time_base.numerator == 1
        packets = [(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe) for p in container.demux(stream)
                   if p.dts is not None and p.size]
        private = bytes(stream.codec_context.extradata or b"")
        timescale = stream.time_base.denominator
    media_time = max(0, -packets[0][2])
    info = TrackInfo(track_id=track_id, kind=kind, timescale=timescale, fourcc=fourcc, codec="", duration=0,  # type: ignore[arg-type]
                     bitrate=0, codec_private=private, media_time=media_time, language=language)
    samples = [Sample(data, dts + media_time, dur, pts - dts, key) for data, pts, dts, dur, key in packets]
    return Track(info, samples)


@pytest.fixture(scope="module")
def media(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("mpegts")
    src = d / "src.mp4"
    r = _run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=6",
              "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
              "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "50", "-keyint_min", "50",
              "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-b:a", "96k", str(src)])
    assert r.returncode == 0, r.stderr
    video = _read_track(src, "video", 1, "avc1")
    audio = _read_track(src, "audio", 2, "mp4a", language="eng")
    with av.open(str(src)) as container:
        decoded = sum(f.samples for f in container.decode(audio=0))
    return Media(d, video, audio, decoded)


def _cut(media: Media) -> list[tuple[list[Sample], list[Sample]]]:
    """Segments start at every video sync sample; audio goes with the segment its presentation
    time falls in (everything before the second boundary goes to the first segment)."""
    v, a = media.video, media.audio
    starts = [i for i, s in enumerate(v.samples) if s.is_sync]
    bounds = [v.presentation(v.samples[i]) for i in starts[1:]]
    segments = []
    for k, first in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(v.samples)
        lo = bounds[k - 1] if k else None
        hi = bounds[k] if k < len(bounds) else None
        audio = [s for s in a.samples
                 if (lo is None or a.presentation(s) >= lo) and (hi is None or a.presentation(s) < hi)]
        segments.append((v.samples[first:stop], audio))
    return segments


def _build(tracks_per_segment: list[list[tuple[TrackInfo, list[Sample]]]]) -> list[bytes]:
    """Build consecutive segments, carrying continuity counters the way the origin will."""
    out = []
    continuity: dict[int, int] = {}
    for tracks in tracks_per_segment:
        out.append(ts_segment(tracks, continuity=continuity))
        continuity = advance_continuity(continuity, packet_counts(tracks))
    return out


def _muxed(media: Media) -> list[bytes]:
    return _build([[(media.video.info, v), (media.audio.info, a)] for v, a in _cut(media)])


def _video_only(media: Media) -> list[bytes]:
    return _build([[(media.video.info, v)] for v, _ in _cut(media)])


def _audio_only(media: Media) -> list[bytes]:
    return _build([[(media.audio.info, a)] for _, a in _cut(media)])


@dataclass
class Decoded:
    stderr: str
    video_frames: int
    audio_samples: int


def _decode(ffmpeg: str, path: Path) -> Decoded:
    """Decode everything with FFmpeg (`-v error`): no message may appear. framecrc lists every
    decoded frame; for audio its duration column is the sample count."""
    r = _run([ffmpeg, "-v", "error", "-i", str(path), "-f", "framecrc", "-"])
    assert r.returncode == 0, r.stderr
    video = audio = 0
    streams: dict[int, str] = {}
    for line in r.stdout.splitlines():
        if line.startswith("#media_type"):
            index, kind = line.removeprefix("#media_type").split(":")
            streams[int(index)] = kind.strip()
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if streams.get(int(fields[0])) == "video":
            video += 1
        else:
            audio += int(fields[3])
    return Decoded(r.stderr, video, audio)


def _check_packets(data: bytes, start: dict[int, int] | None = None) -> dict[int, int]:
    """Walk the TS packets: sync bytes, and every PID's continuity counter incrementing by one
    per packet with payload (from `start`, or from whatever the first packet says)."""
    assert len(data) % 188 == 0
    expected = dict(start or {})
    counts: dict[int, int] = {}
    for pos in range(0, len(data), 188):
        assert data[pos] == 0x47, f"lost sync at {pos}"
        pid = ((data[pos + 1] & 0x1F) << 8) | data[pos + 2]
        cc = data[pos + 3] & 0x0F
        assert data[pos + 3] & 0x10, "every packet carries payload"
        if pid in expected:
            assert cc == expected[pid], f"continuity error on PID {pid:#x} at packet {pos // 188}"
        expected[pid] = (cc + 1) & 15
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def _pid_counts(data: bytes, tracks: Sequence[tuple[TrackInfo, object]] = ()) -> dict[int, int]:
    """TS packets per PID in `data`; the PIDs of `tracks` are listed even when they got none."""
    counts: dict[int, int] = {mpegts.pid_for(info): 0 for info, _ in tracks}
    for pos in range(0, len(data), 188):
        pid = ((data[pos + 1] & 0x1F) << 8) | data[pos + 2]
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _first_pts(path: Path, kind: str) -> int:
    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        assert stream.time_base == Fraction(1, 90000)
        return min(p.pts for p in c.demux(stream) if p.pts is not None)


# ----------------------------------------------------------------------------------------------
# real media through FFmpeg


def test_each_segment_decodes_alone(media: Media, ffmpeg: str) -> None:
    segments = _cut(media)
    assert len(segments) == 3
    for kind, built in (("muxed", _muxed(media)), ("video", _video_only(media)), ("audio", _audio_only(media))):
        for k, data in enumerate(built):
            result = _decode(ffmpeg, _write(media.dir / f"alone-{kind}-{k}.ts", data))
            assert result.stderr == "", (kind, k, result.stderr)
            video, audio = segments[k]
            assert result.video_frames == (len(video) if kind != "audio" else 0)
            assert result.audio_samples == (len(audio) * 1024 if kind != "video" else 0)


@pytest.mark.parametrize("kind", ["muxed", "video", "audio"])
def test_concatenated_segments_play_as_one_stream(media: Media, ffmpeg: str, kind: str) -> None:
    built = {"muxed": _muxed, "video": _video_only, "audio": _audio_only}[kind](media)
    whole = b"".join(built)
    counts = _check_packets(whole, {pid: 0 for pid in _pid_counts(built[0])})
    assert counts[PAT_PID] == counts[PMT_PID] == len(built)
    result = _decode(ffmpeg, _write(media.dir / f"concat-{kind}.ts", whole))
    assert result.stderr == ""
    if kind != "audio":
        assert result.video_frames == len(media.video.samples) == 150
    if kind != "video":
        source = len(media.audio.samples) * 1024
        assert abs(result.audio_samples - source) < 1024
        # the MP4's edit list trims the encoder priming, which a TS cannot signal
        assert 0 <= result.audio_samples - media.mp4_audio_samples <= 2 * 1024


def test_continuity_checker_catches_restarted_counters(media: Media) -> None:
    """Guard for the test above: segments all starting at counter 0 do not chain."""
    naive = [ts_segment([(media.video.info, v)]) for v, _ in _cut(media)]
    with pytest.raises(AssertionError, match="continuity error"):
        _check_packets(b"".join(naive), {})


def test_decode_check_catches_a_damaged_segment(media: Media, ffmpeg: str) -> None:
    """Guard for the decode checks: FFmpeg at `-v error` does speak up when something is wrong."""
    data = _video_only(media)[1]
    damaged = data[:2 * 188] + data[40 * 188:]  # the sync sample's AUD, SPS, PPS and first slices are gone
    r = _run([ffmpeg, "-v", "error", "-i", str(_write(media.dir / "damaged.ts", damaged)), "-f", "null", "-"])
    assert "non-existing PPS" in r.stderr


def test_first_video_pts_is_source_time_plus_offset(media: Media) -> None:
    v, a = media.video, media.audio
    for k, (data, (vseg, aseg)) in enumerate(zip(_muxed(media), _cut(media), strict=True)):
        path = _write(media.dir / f"pts-{k}.ts", data)
        first = min(vseg, key=lambda s: s.pts)
        assert first is vseg[0]  # closed GOP: the sync sample shows first
        assert _first_pts(path, "video") == to_90khz(first.pts - v.info.media_time, v.info.timescale) + TS_TIME_OFFSET
        assert _first_pts(path, "audio") == to_90khz(aseg[0].pts - a.info.media_time, a.info.timescale) + TS_TIME_OFFSET
    # segment 0 starts exactly at the offset: the edit list maps the first frame to time 0
    assert _first_pts(media.dir / "pts-0.ts", "video") == TS_TIME_OFFSET


def test_muxed_segment_carries_both_streams(media: Media) -> None:
    path = _write(media.dir / "both.ts", _muxed(media)[1])
    with av.open(str(path)) as c:
        kinds = {s.type: s for s in c.streams}
        assert set(kinds) == {"video", "audio"}
        assert kinds["video"].codec_context.name == "h264"
        assert (kinds["video"].codec_context.width, kinds["video"].codec_context.height) == (320, 180)
        assert kinds["audio"].codec_context.name == "aac"
        assert kinds["audio"].codec_context.sample_rate == 48000
        assert kinds["audio"].codec_context.channels == 2
        assert kinds["audio"].language == "eng"
        assert {kinds["video"].id, kinds["audio"].id} == {VIDEO_PID, AUDIO_PID}


def test_segment_layout(media: Media) -> None:
    """PAT, PMT, then the video sync sample's first packet with PCR and random access flag."""
    data = _muxed(media)[1]
    pids = [((data[p + 1] & 0x1F) << 8) | data[p + 2] for p in range(0, 3 * 188, 188)]
    assert pids == [PAT_PID, PMT_PID, VIDEO_PID]
    third = data[376:564]
    assert third[1] & 0x40  # payload_unit_start_indicator
    assert (third[3] >> 4) == 3 and third[4] == 7 and third[5] == 0x50  # AF: RAI + PCR
    pcr = int.from_bytes(third[6:12], "big") >> 15
    pes = third[12:]
    assert pes[:4] == b"\x00\x00\x01\xe0" and pes[7] == 0xC0
    dts = _decode_timestamp(pes[14:19])
    assert pcr == dts - mpegts.PCR_LEAD
    assert pes[19:25] == b"\x00\x00\x00\x01\x09\xf0"  # access unit delimiter first
    assert pes[25:29] == b"\x00\x00\x00\x01" and pes[29] & 0x1F == 7  # then the SPS
    # PMT: PCR on the video PID, H.264 + AAC
    pmt = data[188 + 5:]
    assert ((pmt[8] & 0x1F) << 8 | pmt[9]) == VIDEO_PID
    assert pmt[12] == 0x1B and pmt[17] == 0x0F


def _decode_timestamp(b: bytes) -> int:
    return ((b[0] >> 1) & 7) << 30 | (int.from_bytes(b[1:3], "big") >> 1) << 15 | int.from_bytes(b[3:5], "big") >> 1


def _playlist(path: Path, names: list[str], durations: list[float]) -> Path:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(max(durations)) + 1}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for name, duration in zip(names, durations, strict=True):
        lines += [f"#EXTINF:{duration:.3f},", name]
    path.write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return path


def _durations(media: Media) -> list[float]:
    v = media.video
    starts = [v.presentation(v.samples[0])] + [v.presentation(seg[0]) for seg, _ in _cut(media)[1:]]
    end = Fraction(sum(s.duration for s in v.samples), v.info.timescale)
    return [float(b - a) for a, b in zip(starts, [*starts[1:], end], strict=True)]


def test_hls_playlists_play_through(media: Media, ffmpeg: str) -> None:
    d = media.dir / "hls"
    d.mkdir()
    durations = _durations(media)
    # m3u8-aapl-v3: one muxed rendition
    names = [_write(d / f"mux{k}.ts", data).name for k, data in enumerate(_muxed(media))]
    result = _decode(ffmpeg, _playlist(d / "muxed.m3u8", names, durations))
    assert result.stderr == ""
    assert result.video_frames == 150
    assert abs(result.audio_samples - len(media.audio.samples) * 1024) < 1024
    # m3u8-aapl: video-only segments plus an alternate audio rendition
    vnames = [_write(d / f"v{k}.ts", data).name for k, data in enumerate(_video_only(media))]
    anames = [_write(d / f"a{k}.ts", data).name for k, data in enumerate(_audio_only(media))]
    _playlist(d / "video.m3u8", vnames, durations)
    _playlist(d / "audio.m3u8", anames, durations)
    (d / "master.m3u8").write_text(
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="eng",LANGUAGE="eng",DEFAULT=YES,AUTOSELECT=YES,URI="audio.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=400000,CODECS="avc1.64000c,mp4a.40.2",RESOLUTION=320x180,AUDIO="aac"\n'
        "video.m3u8\n"
    )
    result = _decode(ffmpeg, d / "master.m3u8")
    assert result.stderr == ""
    assert result.video_frames == 150
    assert abs(result.audio_samples - len(media.audio.samples) * 1024) < 1024


def test_audio_only_segment_carries_pcr_on_audio(media: Media, ffmpeg: str) -> None:
    data = _audio_only(media)[0]
    pmt = data[188 + 5:]
    assert ((pmt[8] & 0x1F) << 8 | pmt[9]) == AUDIO_PID
    first = data[376:564]
    assert first[5] == 0x50  # RAI + PCR on the first audio PES
    assert _pid_counts(data).keys() == {PAT_PID, PMT_PID, AUDIO_PID}
    # groups of at most 4 frames (≤ 100 ms) per PES: count PES starts
    starts = sum(1 for p in range(376, len(data), 188) if data[p + 1] & 0x40)
    assert starts == -(-len(_cut(media)[0][1]) // 4)


# ----------------------------------------------------------------------------------------------
# packet-count prediction


def test_packet_counts_match_real_media(media: Media) -> None:
    for v, a in _cut(media):
        for tracks in ([(media.video.info, v), (media.audio.info, a)], [(media.video.info, v)],
                       [(media.audio.info, a)]):
            assert packet_counts(tracks) == _pid_counts(ts_segment(tracks), tracks)


def _synthetic_video(rnd: random.Random, n: int, length_size: int = 4, aud: bool = False) -> list[Sample]:
    samples = []
    for i in range(n):
        nals = [b"\x09\xf0"] if aud and rnd.random() < 0.7 else []
        nals += [bytes([0x65 if i == 0 else 0x41]) + rnd.randbytes(rnd.choice([0, 1, 100, 170, 183, 184, 185, 1000,
                                                                              rnd.randrange(1, 60000)]))
                 for _ in range(rnd.randrange(1, 4))]
        if length_size == 1:
            nals = [nal[:255] for nal in nals]
        data = b"".join(len(nal).to_bytes(length_size, "big") + nal for nal in nals)
        samples.append(Sample(data, i * 3000, 3000, rnd.choice([0, 3000, 6000]), i == 0 or rnd.random() < 0.1))
    return samples


def _synthetic_audio(rnd: random.Random, n: int, frame: int) -> list[Sample]:
    return [Sample(rnd.randbytes(rnd.randrange(1, 1500)), i * frame, frame, 0, True) for i in range(n)]


def _video_info(length_size: int = 4) -> TrackInfo:
    avcc = AVCC[:4] + bytes([0xFC | (length_size - 1)]) + AVCC[5:]
    return TrackInfo(1, "video", 90000, "avc1", "avc1.64000c", 0, 0, codec_private=avcc)


@pytest.mark.parametrize(("rate", "asc"), [(48000, "1190"), (44100, "1210"), (8000, "1588"), (24000, "1310")])
def test_packet_counts_match_many_synthetic_segments(rate: int, asc: str) -> None:
    rnd = random.Random(rate)
    video_info = _video_info()
    audio_info = TrackInfo(2, "audio", rate, "mp4a", "mp4a.40.2", 0, 0, codec_private=bytes.fromhex(asc))
    continuity: dict[int, int] = {}
    chunks = []
    for _ in range(40):
        tracks = [(video_info, _synthetic_video(rnd, rnd.randrange(0, 12), aud=rnd.random() < 0.3)),
                  (audio_info, _synthetic_audio(rnd, rnd.randrange(0, 30), 1024))]
        tracks = rnd.choice([tracks, tracks[:1], tracks[1:]])
        data = ts_segment(tracks, continuity=continuity)
        predicted = packet_counts(tracks)
        assert predicted == _pid_counts(data, tracks)
        # the index only has sizes: SampleRefs must give the same answer
        refs = [(info, [SampleRef(0, len(s.data), s.dts, s.duration, s.cts_offset, s.is_sync) for s in samples])
                for info, samples in tracks]
        assert packet_counts(refs) == predicted
        chunks.append(data)
        continuity = advance_continuity(continuity, predicted)
    # every PID's counter chains across all 40 segments
    _check_packets(b"".join(chunks), {PAT_PID: 0, PMT_PID: 0, VIDEO_PID: 0, AUDIO_PID: 0})


@pytest.mark.parametrize("length_size", [1, 2])
def test_short_nal_lengths_need_data_to_count(length_size: int) -> None:
    rnd = random.Random(length_size)
    info = _video_info(length_size)
    for _ in range(10):
        samples = _synthetic_video(rnd, 8, length_size, aud=True)
        assert packet_counts([(info, samples)]) == _pid_counts(ts_segment([(info, samples)]))
    refs = [SampleRef(0, len(s.data), s.dts, s.duration, s.cts_offset, s.is_sync) for s in samples]
    with pytest.raises(TsMuxError, match="need the sample data"):
        packet_counts([(info, refs)])


# ----------------------------------------------------------------------------------------------
# variants: samples with their own AUD, negative composition offsets, H.265, E-AC-3, transform


def test_samples_with_their_own_aud(media: Media, ffmpeg: str) -> None:
    aud = b"\x00\x00\x00\x02\x09\xf0"
    info = media.video.info
    segments = [[(info, [replace(s, data=aud + s.data) for s in v])] for v, _ in _cut(media)]
    built = _build(segments)
    for tracks, data in zip(segments, built, strict=True):
        assert packet_counts(tracks) == _pid_counts(data, tracks)
        assert data.count(b"\x00\x00\x00\x01\x09\xf0") == len(tracks[0][1])  # exactly one AUD per AU
    result = _decode(ffmpeg, _write(media.dir / "own-aud.ts", b"".join(built)))
    assert result.stderr == "" and result.video_frames == 150


def test_negative_composition_offsets_need_dts_shift(media: Media, ffmpeg: str) -> None:
    """An MP4 without edit list but with negative ctts: PTS would precede DTS unless shifted."""
    v = media.video
    info = replace(v.info, media_time=0)
    shift = v.info.media_time
    samples = [replace(s, cts_offset=s.cts_offset - shift) for s in v.samples[:50]]
    assert min(s.cts_offset for s in samples) < 0
    with pytest.raises(TsMuxError, match="dts_shift"):
        ts_segment([(info, samples)])
    data = ts_segment([(info, samples)], dts_shift={info.track_id: shift})
    assert data == ts_segment([(v.info, v.samples[:50])])  # same timeline as with the edit list
    assert _decode(ffmpeg, _write(media.dir / "neg.ts", data)).stderr == ""


def test_hevc_segments(ffmpeg: str, tmp_path: Path) -> None:
    src = tmp_path / "hevc.mp4"
    r = _run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
              "-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
              "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=2", "-tag:v", "hvc1", "-an", str(src)])
    if r.returncode != 0 and "libx265" in r.stderr:
        pytest.skip("this FFmpeg has no libx265")
    assert r.returncode == 0, r.stderr
    track = _read_track(src, "video", 1, "hvc1")
    starts = [i for i, s in enumerate(track.samples) if s.is_sync] + [len(track.samples)]
    assert len(starts) == 3
    segments = [[(track.info, track.samples[a:b])] for a, b in itertools.pairwise(starts)]
    built = _build(segments)
    for k, (tracks, data) in enumerate(zip(segments, built, strict=True)):
        assert packet_counts(tracks) == _pid_counts(data, tracks)
        result = _decode(ffmpeg, _write(tmp_path / f"h{k}.ts", data))
        assert result.stderr == "" and result.video_frames == len(tracks[0][1])
    path = _write(tmp_path / "hevc.ts", b"".join(built))
    result = _decode(ffmpeg, path)
    assert result.stderr == "" and result.video_frames == 50
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "hevc"


@pytest.mark.parametrize(("encoder", "fourcc"), [("eac3", "ec-3"), ("ac3", "ac-3")])
def test_dolby_audio_only(ffmpeg: str, tmp_path: Path, encoder: str, fourcc: str) -> None:
    src = tmp_path / f"{encoder}.mp4"
    r = _run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
              "-ac", "2", "-c:a", encoder, "-b:a", "96k", str(src)])
    assert r.returncode == 0, r.stderr
    track = _read_track(src, "audio", 2, fourcc)
    half = len(track.samples) // 2
    segments = [[(track.info, track.samples[:half])], [(track.info, track.samples[half:])]]
    built = _build(segments)
    for tracks, data in zip(segments, built, strict=True):
        assert packet_counts(tracks) == _pid_counts(data, tracks)
    path = _write(tmp_path / f"{encoder}.ts", b"".join(built))
    result = _decode(ffmpeg, path)
    assert result.stderr == ""
    assert result.audio_samples == len(track.samples) * 1536
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == encoder


def test_transform_seam_sees_every_nal_and_frame(media: Media) -> None:
    v, a = _cut(media)[0]
    tracks = [(media.video.info, v), (media.audio.info, a)]
    seen: list[tuple[str, int]] = []

    def identity(info: TrackInfo, sample: Sample, unit: bytes) -> bytes:
        seen.append((info.kind, len(unit)))
        return unit

    assert ts_segment(tracks, transform=identity) == ts_segment(tracks)
    nal_count = sum(_count_nals(s.data) for s in v)
    assert sum(1 for kind, _ in seen if kind == "video") == nal_count
    assert [n for kind, n in seen if kind == "audio"] == [len(s.data) for s in a]
    # a size-changing transform is measured, not predicted
    grow = lambda info, sample, unit: unit + b"\x00" * 300  # noqa: E731
    assert packet_counts(tracks, transform=grow) == _pid_counts(ts_segment(tracks, transform=grow))


def _count_nals(data: bytes) -> int:
    pos = count = 0
    while pos < len(data):
        pos += 4 + int.from_bytes(data[pos:pos + 4], "big")
        count += 1
    return count


# ----------------------------------------------------------------------------------------------
# bad input and unit checks


def test_nal_length_overrun_raises(media: Media) -> None:
    good = media.video.samples[0]
    bad = replace(good, data=(len(good.data)).to_bytes(4, "big") + good.data[4:])
    with pytest.raises(TsMuxError, match="overruns") as caught:
        ts_segment([(media.video.info, [good, bad])])
    assert isinstance(caught.value, ValueError)
    with pytest.raises(TsMuxError, match="trailing bytes"):
        ts_segment([(media.video.info, [replace(good, data=good.data + b"\x00\x00")])])


def test_unsupported_inputs_raise() -> None:
    video = _video_info()
    with pytest.raises(TsMuxError, match="avcC"):
        ts_segment([(replace(video, codec_private=b""), [])])
    with pytest.raises(TsMuxError, match="at most one video"):
        ts_segment([(video, []), (replace(video, track_id=9), [])])
    with pytest.raises(TsMuxError, match="vp09"):
        ts_segment([(replace(video, fourcc="vp09"), [])])
    with pytest.raises(TsMuxError, match="text"):
        ts_segment([(TrackInfo(3, "text", 1000, "wvtt", "wvtt", 0, 0), [])])
    audio = TrackInfo(2, "audio", 48000, "mp4a", "mp4a.40.2", 0, 0, codec_private=bytes.fromhex("1180"))
    with pytest.raises(TsMuxError, match="program config"):  # channel configuration 0
        ts_segment([(audio, [])])
    with pytest.raises(TsMuxError, match="ADTS"):
        ts_segment([(audio, [Sample(b"\x00" * 9000, 0, 1024, 0, True)])])
    with pytest.raises(TsMuxError):
        ts_segment([])


def test_pat_is_the_standard_one() -> None:
    data = ts_segment([(_video_info(), [])])
    assert len(data) == 2 * 188
    assert data[:4] == b"\x47\x40\x00\x10"
    assert data[5:5 + 16] == bytes.fromhex("00b00d0001c100000001f0002ab104b2")
    assert data[188:192] == b"\x47\x50\x00\x10"
    assert mpegts.crc32_mpeg2(data[188 + 5:188 + 5 + 3 + ((data[188 + 6] & 0x0F) << 8 | data[188 + 7])]) == 0


def test_adts_header_from_audio_specific_config() -> None:
    info = TrackInfo(2, "audio", 48000, "mp4a", "mp4a.40.2", 0, 0, codec_private=ASC_LC_48K_STEREO)
    data = ts_segment([(info, [Sample(b"\xaa" * 100, 0, 1024, 0, True)])])
    start = data.index(b"\x00\x00\x01\xc0", 376)
    pes = data[start:]
    adts = pes[14:21]
    assert adts == bytes((0xFF, 0xF1, 0x4C, 0x80, (107 >> 3) & 0xFF, ((107 & 7) << 5) | 0x1F, 0xFC))
    # HE-AAC v1 (explicit hierarchical signalling) is carried as its AAC-LC core
    he = replace(info, codec_private=bytes.fromhex("2b118800"))  # AOT 5, 24 kHz core, stereo, ext 48 kHz, AOT 2
    codec = mpegts._codec_for(he)
    assert (codec.adts_fixed, codec.adts_channels) == (bytes((0xFF, 0xF1, 0x58)), 2)


def test_timestamps_wrap_and_round_without_drift() -> None:
    assert to_90khz(1001, 30000) == 3003
    assert to_90khz(1, 48000) == 2 and to_90khz(-1, 48000) == -2
    # 44.1 kHz AAC: each frame rounded from its absolute time, so the error never exceeds half a tick
    for i in range(0, 10_000_000, 9973):
        assert abs(to_90khz(i * 1024, 44100) - Fraction(i * 1024 * 90000, 44100)) <= Fraction(1, 2)
    info = replace(_video_info(), media_time=0)
    late = (1 << 33) - TS_TIME_OFFSET + 90000  # one second past the 33-bit wrap
    data = ts_segment([(info, [Sample(b"\x00\x00\x00\x02\x65\x88", late, 3000, 0, True)])])
    pes = data[data.index(b"\x00\x00\x01\xe0"):]
    assert _decode_timestamp(pes[9:14]) == 90000 == _decode_timestamp(pes[14:19])
