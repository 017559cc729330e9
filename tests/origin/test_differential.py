"""Differential test: the origin's DASH segments against Shaka Packager's, from the same MP4.

Both packagers must cut the same segments (2 s GOPs) and put the same samples in each: the
decode-order sample bytes and sample durations of every video and audio segment are compared
(Shaka Packager comes from npm with its binary inside the package; see tests/support/shaka_packager.py).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from lxml import etree

from openams.packaging.index import index_file
from tests.conftest import service_missing
from tests.origin.conftest import make_clip, publish
from tests.support.serve import ServeProcess
from tests.support.shaka_packager import packager_path

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin")]  # one server + encode per run
NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def samples(init: bytes, segment: bytes) -> list[tuple[bytes, int]]:
    """(bytes, duration) of every sample of one fMP4 segment, in decode order."""
    data = init + segment
    index = index_file(lambda offset, length: data[offset:offset + length], len(data))
    assert len(index.tracks) == 1
    t = index.tracks[0].table
    return [(data[t.offsets[i]:t.offsets[i] + t.sizes[i]], t.durations[i]) for i in range(len(t))]


def shaka_segments(packager: Path, clip: Path, out: Path) -> dict[str, list[list[tuple[bytes, int]]]]:
    out.mkdir()
    subprocess.run([str(packager),
                    f"in={clip},stream=video,init_segment={out}/v_init.mp4,segment_template={out}/v_$Number$.m4s",
                    f"in={clip},stream=audio,init_segment={out}/a_init.mp4,segment_template={out}/a_$Number$.m4s",
                    "--segment_duration", "2", "--mpd_output", str(out / "x.mpd")],
                   check=True, capture_output=True, timeout=120)
    found: dict[str, list[list[tuple[bytes, int]]]] = {}
    for kind, prefix in (("video", "v"), ("audio", "a")):
        init = (out / f"{prefix}_init.mp4").read_bytes()
        numbers = sorted(int(m.group(1)) for p in out.glob(f"{prefix}_*.m4s")
                         if (m := re.fullmatch(rf"{prefix}_(\d+)\.m4s", p.name)))
        found[kind] = [samples(init, (out / f"{prefix}_{n}.m4s").read_bytes()) for n in numbers]
    return found


def origin_segments(mpd_url: str) -> dict[str, list[list[tuple[bytes, int]]]]:
    base = mpd_url.rsplit("/", 1)[0] + "/"
    root = etree.fromstring(httpx.get(mpd_url, timeout=30).content)
    found: dict[str, list[list[tuple[bytes, int]]]] = {}
    with httpx.Client(timeout=30) as http:
        for aset in root.iterfind(".//d:AdaptationSet", NS):
            kind = aset.get("contentType") or aset.get("mimeType", "").split("/")[0]
            rep = aset.find("d:Representation", NS)
            template = rep.find("d:SegmentTemplate", NS)
            if template is None:
                template = aset.find("d:SegmentTemplate", NS)
            bw = rep.get("bandwidth")
            init = http.get(base + template.get("initialization").replace("$Bandwidth$", bw)).content
            segs = []
            t = 0
            for s in template.iterfind("d:SegmentTimeline/d:S", NS):
                t = int(s.get("t", t))
                for _ in range(int(s.get("r", "0")) + 1):
                    url = base + template.get("media").replace("$Bandwidth$", bw).replace("$Time$", str(t))
                    r = http.get(url)
                    assert r.status_code == 200, url
                    segs.append(samples(init, r.content))
                    t += int(s.get("d"))
            found[kind] = segs
    return found


def test_same_samples_and_timing_per_segment_as_shaka_packager(origin_server: ServeProcess, tmp_path: Path) -> None:
    packager = packager_path()
    if packager is None:
        service_missing("Shaka Packager is not installed (npm shaka-packager); run scripts/players.sh")
    clip = make_clip(tmp_path / "diff.mp4", 12, "640x360", gop=50)
    with origin_server.client() as client:
        asset_id = client.upload_files([str(clip)], "differential").asset_id
    published = publish(origin_server, "differential", asset_id)
    ours = origin_segments(published.url("mpd-time-csf"))
    theirs = shaka_segments(packager, clip, tmp_path / "shaka")
    for kind in ("video", "audio"):
        assert len(ours[kind]) == len(theirs[kind]), (kind, len(ours[kind]), len(theirs[kind]))
        for n, (mine, ref) in enumerate(zip(ours[kind], theirs[kind], strict=True)):
            assert [d for _b, d in mine] == [d for _b, d in ref], f"{kind} segment {n}: durations differ"
            assert [b for b, _d in mine] == [b for b, _d in ref], f"{kind} segment {n}: sample bytes differ"
        assert sum(len(s) for s in ours[kind]) > 0
