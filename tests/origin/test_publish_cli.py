"""`openams publish`: one command from an encoded asset to working streaming URLs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.origin.conftest import Published
from tests.support.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("origin")]  # one server + encode per run


def test_publish_prints_working_urls_for_every_format(origin_server: ServeProcess,
                                                     published: dict[str, Published]) -> None:
    asset = published["mbr720"]
    out = origin_server.cli("publish", asset.asset_id, "--json", "--days", "2")
    assert out.returncode == 0, out.stderr
    urls = json.loads(out.stdout)
    assert urls["locator"].startswith("nb:lid:UUID:")
    for fmt in ("hls", "hls-cmaf", "dash", "dash-cmaf", "smooth"):
        r = httpx.get(urls[fmt], timeout=30)
        assert r.status_code == 200, (fmt, urls[fmt], r.text)
    assert urls["progressive"] and all(u.endswith(".mp4") for u in urls["progressive"])
    r = httpx.get(urls["progressive"][0], headers={"Range": "bytes=0-7"}, timeout=30)
    assert r.status_code == 206 and r.content[4:8] == b"ftyp"
    text = origin_server.cli("publish", asset.asset_id)
    assert text.returncode == 0 and "hls" in text.stdout and "/manifest(format=m3u8-aapl)" in text.stdout


def test_publish_refuses_an_asset_without_media(origin_server: ServeProcess, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("no video here")
    with origin_server.client() as client:
        asset_id = client.upload_files([str(notes)], "notes").asset_id
    out = origin_server.cli("publish", asset_id)
    assert out.returncode == 1 and "no MP4 or .ism files" in out.stderr and "Traceback" not in out.stderr
    missing = origin_server.cli("publish", "nb:cid:UUID:00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
