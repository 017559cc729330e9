"""Which protection a streaming request gets (`origin.protection.plan_for`), for every policy type
and format: what is refused (and with which status), which key encrypts, and which licence URLs
reach the manifests. Pure: the asset, its policies and keys are plain values."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from openams.origin.protection import Plan, plan_for
from openams.origin.service import OriginError
from openams.origin.urls import parse

ASSET = f"nb:cid:UUID:{uuid.uuid4()}"
CENC_KEY = f"nb:kid:UUID:{uuid.uuid4()}"
CBCS_KEY = f"nb:kid:UUID:{uuid.uuid4()}"
AES_KEY = f"nb:kid:UUID:{uuid.uuid4()}"
API = "https://media.example.org"


def target(policy_type: int, protocols: int = 0xFFFF, config: dict[int, str] | None = None,
           keys: tuple[tuple[str, int], ...] = ((AES_KEY, 4), (CENC_KEY, 0), (CBCS_KEY, 6)),
           options: int = 0) -> Any:
    policy = {"Id": "nb:adpid:UUID:1", "AssetDeliveryPolicyType": policy_type, "AssetDeliveryProtocol": protocols,
              "AssetDeliveryConfiguration": json.dumps([{"Key": k, "Value": v} for k, v in (config or {}).items()])}
    return SimpleNamespace(asset=SimpleNamespace(id=ASSET, options=options), delivery_policies=(policy,),
                           content_keys=keys, account_id="acct")


def plan(t: Any, fmt: str | None) -> Plan:
    url = "clip.ism/Manifest" + (f"(format={fmt})" if fmt else "")
    return plan_for(t, parse(url), API, lambda account, key_id: key_id.encode()[-16:])


@pytest.mark.parametrize(("policy_type", "fmt", "status", "words"), [
    (3, "mpd-time-csf", 501, "HLS only"),          # envelope DASH
    (3, None, 501, "HLS only"),                    # envelope Smooth
    (4, "m3u8-aapl", 501, "MPEG-TS"),              # cenc in TS
    (5, None, 501, "cbcs"),                        # cbcs in Smooth
    (1, "m3u8-cmaf", 403, "blocks"),               # Blocked
])
def test_refused_combinations_say_why(policy_type: int, fmt: str | None, status: int, words: str) -> None:
    with pytest.raises(OriginError) as info:
        plan(target(policy_type), fmt)
    assert info.value.status == status and words in info.value.message, info.value.message


def test_the_key_of_the_type_the_policy_needs_encrypts() -> None:
    assert plan(target(3), "m3u8-aapl").key_id == uuid.UUID(AES_KEY[-36:])
    assert plan(target(4), "mpd-time-csf").key_id == uuid.UUID(CENC_KEY[-36:])
    assert plan(target(5), "m3u8-cmaf").key_id == uuid.UUID(CBCS_KEY[-36:])
    with pytest.raises(OriginError) as info:
        plan(target(4, keys=((AES_KEY, 4),)), "mpd-time-csf")
    assert info.value.status == 403 and info.value.code == "NoContentKey"


def test_drm_urls_come_from_the_policy() -> None:
    p = plan(target(4, config={4: "https://pr.example/la", 8: "https://wv.example/lic"}), "mpd-time-csf")
    assert p.playready_url == "https://pr.example/la"
    assert p.widevine_url == f"https://wv.example/lic?KID={CENC_KEY[-36:]}"
    assert len(p.pssh_boxes) == 3
    clear_only = plan(target(4), "mpd-time-csf")
    assert (clear_only.playready_url, clear_only.widevine_url, len(clear_only.pssh_boxes)) == ("", "", 1)
    # Smooth clients know only PlayReady: with no licence server configured, openams' own URL
    assert plan(target(4), None).playready_url == f"{API}/keydelivery/PlayReady/?KID={CENC_KEY[-36:]}"
    assert plan(target(4), None).smooth_protection()


def test_envelope_key_url_and_token_carry() -> None:
    p = plan(target(3), "m3u8-aapl")
    (key,) = p.hls_keys("a b")
    assert key.uri == f"{API}/keydelivery/?KID={AES_KEY[-36:]}&token=a%20b" and key.iv == p.segment_iv
    custom = plan(target(3, config={2: "https://keys.example/k"}), "m3u8-aapl")
    assert custom.hls_keys()[0].uri == f"https://keys.example/k?KID={AES_KEY[-36:]}"


def test_storage_encrypted_asset_without_policy_is_blocked() -> None:
    t = target(2, options=1)
    t.delivery_policies = ()
    with pytest.raises(OriginError) as info:
        plan(t, "mpd-time-csf")
    assert info.value.status == 403
    assert plan(target(2, options=1), "mpd-time-csf").kind == "clear"  # NoDynamicEncryption decrypts


def test_fairplay_key_line_for_cbcs_hls_cmaf() -> None:
    p = plan(target(5, config={10: "https://fp.example/FairPlay/"}), "m3u8-cmaf")
    lines = [k.line() for k in p.hls_keys()]
    assert any(f'URI="skd://fp.example/FairPlay/?KID={CBCS_KEY[-36:]}"' in line
               and 'KEYFORMAT="com.apple.streamingkeydelivery"' in line and "METHOD=SAMPLE-AES," in line
               for line in lines), lines
    assert not any("skd://" in k.line() for k in plan(target(5), "m3u8-cmaf").hls_keys())
