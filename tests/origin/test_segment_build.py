"""Segment builds with the origin's segment cache off: a CENC segment built again is the same bytes
(its sub-sample maps are kept apart from the segment cache and reused), and kept maps never outlive
the media they describe (a re-uploaded file is mapped again)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from openams.origin.service import AssetRef, OriginService
from openams.origin.urls import parse
from openams.packaging.model import Protection
from openams.storage.base import ContentSettings
from openams.storage.local import LocalBackend
from tests.origin.conftest import make_clip

ACCOUNT = "buildacct"


def _put(storage: LocalBackend, container: str, name: str, data: bytes) -> None:
    with storage.spool() as spool:
        spool.write(data)
        storage.put_blob(ACCOUNT, container, name, spool, ContentSettings(content_type="video/mp4"), {})


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
def test_cold_encrypted_segments_are_stable_and_follow_the_media(tmp_path: Path, scheme: str) -> None:
    first = make_clip(tmp_path / "a.mp4", 4, "160x90", gop=25).read_bytes()
    second = make_clip(tmp_path / "b.mp4", 4, "320x180", gop=25).read_bytes()
    storage = LocalBackend(tmp_path / "blobs")
    container = f"asset-{uuid.uuid4()}"
    storage.create_container(ACCOUNT, container)
    _put(storage, container, "clip.mp4", first)
    service = OriginService(storage, tmp_path / "index", cache_bytes=0)  # every request builds
    protection = Protection(scheme, os.urandom(16), os.urandom(16))  # type: ignore[arg-type]
    plan = SimpleNamespace(kind=scheme, cache_key=(scheme,), protection=lambda: protection)

    def segment(ref: AssetRef, index: int) -> bytes:
        return _segment(service, ref, index, plan)

    ref = AssetRef("nb:cid:UUID:a", ACCOUNT, container, (("clip.mp4", len(first), "t1"),))
    once = segment(ref, 1)
    assert segment(ref, 1) == once and segment(ref, 0) != once
    assert service._maps.hits >= 1  # the second build used the kept maps

    # the same name, re-uploaded with other media: other maps, the segment of the new media (as a
    # service that never saw the first file builds it)
    _put(storage, container, "clip.mp4", second)
    replaced = AssetRef("nb:cid:UUID:a", ACCOUNT, container, (("clip.mp4", len(second), "t2"),))
    rebuilt = segment(replaced, 1)
    fresh = OriginService(storage, tmp_path / "index-fresh", cache_bytes=0)
    assert rebuilt == _segment(fresh, replaced, 1, plan) and rebuilt != once


def _segment(service: OriginService, ref: AssetRef, index: int, plan: SimpleNamespace) -> bytes:
    pres = service.presentation(ref, "clip")
    video = next(t for t in pres.tracks if t.info.kind == "video")
    req = parse(f"clip.ism/QualityLevels({video.info.bitrate})/"
                f"Fragments({video.info.name}={video.segments[index].start},format=mpd-time-csf)")
    return bytes(service.build(ref, req, (), plan).body)
