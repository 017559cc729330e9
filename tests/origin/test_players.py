"""Real players in headless Chromium play what the origin serves, and switch rungs.

hls.js (HLS TS and CMAF), dash.js (DASH, and Smooth through its MSS plugin) and shaka-player (DASH
and HLS) each play an encoder output published through an OnDemandOrigin locator for at least 8 s
with no player error, then are forced to the lowest and the highest rung, which must render.
The harness (tests/support/players.py) is itself proven against FFmpeg-packaged streams in
tests/e2e/test_player_harness.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import service_missing
from tests.origin.conftest import Published
from tests.support.players import PlayerHarness, PlayJob, PlayResult, missing_requirements, player_harness

pytestmark = [pytest.mark.slow, pytest.mark.players, pytest.mark.xdist_group("origin")]

CASES = {
    "hls.js-m3u8-aapl": ("hls.js", "m3u8-aapl"),
    "hls.js-m3u8-cmaf": ("hls.js", "m3u8-cmaf"),
    "dash.js-mpd-time-csf": ("dash.js", "mpd-time-csf"),
    "dash.js-mss-smooth": ("dash.js-mss", None),
    "shaka-mpd-time-cmaf": ("shaka", "mpd-time-cmaf"),
    "shaka-m3u8-aapl": ("shaka", "m3u8-aapl"),
    "shaka-m3u8-cmaf": ("shaka", "m3u8-cmaf"),
}


@pytest.fixture(scope="module")
def harness() -> Iterator[PlayerHarness]:
    reason = missing_requirements()
    if reason:
        service_missing(reason)
    with player_harness() as h:
        yield h


def _problem(result: PlayResult) -> str | None:
    if not result.ok:
        return "not ok"
    heights = sorted({r.height for r in result.rungs})
    if len(heights) < 2:
        return f"the player saw fewer than two rungs: {heights}"
    if not {heights[0], heights[-1]} <= {r.height for r in result.played_rungs}:
        return "the lowest and the highest rung were not both rendered"
    if [(s.target, s.size[1]) for s in result.switches] != [("lowest", heights[0]), ("highest", heights[-1])]:
        return "the forced switches did not end on the lowest then the highest rung"
    return None


@pytest.mark.parametrize("kind", ["adaptive", "userset"])
def test_players_play_every_protocol_and_switch(harness: PlayerHarness, published: dict[str, Published],
                                                kind: str) -> None:
    asset = published[kind]
    jobs = [PlayJob(asset.url(fmt), player, timeout=120) for player, fmt in CASES.values()]
    started = time.monotonic()
    results = harness.play_many(jobs, concurrency=4)
    print(f"\n{len(jobs)} scenarios in {time.monotonic() - started:.1f}s")
    failures = []
    for case, result in zip(CASES, results, strict=True):
        print(f"[{case}] {result}")
        problem = _problem(result)
        if problem:
            failures.append(f"[{case}] {problem}\n{result}")
    assert not failures, "\n\n".join(failures)
