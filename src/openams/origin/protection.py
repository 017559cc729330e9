"""How one streaming request is protected: the asset's delivery policies decide per protocol
(clear, blocked, AES-128 envelope, CENC `cenc`, CENC `cbcs`), the asset's content key of the
required type is the key, and the key service's URLs go into the manifests.

Supported combinations (what real players can use): HLS TS and CMAF with AES-128 whole-segment
encryption; DASH, HLS CMAF and Smooth with `cenc`/`cbcs` sample encryption and a ClearKey
`pssh` (plus the PlayReady/Widevine licence URLs a policy names). Others (envelope DASH/Smooth,
CENC in MPEG-TS, FairPlay) answer 501 naming the combination.

StorageEncrypted assets (Options 1) follow the same policies once decrypted, except that having
no policy blocks them instead of streaming them in the clear.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..entities.delivery_policies import delivery_decision
from ..packaging import dash, encryption, hls
from ..packaging.model import Protection
from .service import OriginError
from .urls import DASH_FORMATS, HLS_FORMATS, SMOOTH_FORMATS, OriginRequest

STORAGE_ENCRYPTED = 1


@dataclass(frozen=True)
class Plan:
    kind: str = "clear"
    """clear, envelope, cenc or cbcs."""
    key_id: uuid.UUID | None = None
    key: bytes = b""
    iv: bytes | None = None
    key_uri: str = ""
    """Where players fetch the AES-128 key (HLS `#EXT-X-KEY`)."""
    license_url: str = ""
    """ClearKey licence URL (DASH `dashif:Laurl`)."""
    asset_seed: bytes = b""

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """What distinguishes the bytes built under this plan (never the key itself)."""
        return (self.kind, self.key_id, self.iv, self.key_uri, self.license_url)

    def protection(self) -> Protection | None:
        """The packager's descriptor for sample encryption (fMP4), None otherwise."""
        if self.kind not in ("cenc", "cbcs") or self.key_id is None:
            return None
        kid = self.key_id.bytes
        # cenc: per-sample IVs seeded with the asset (assets sharing a key never share IVs);
        # cbcs: the policy's constant IV when it gives a 16-byte one, else one derived from the key
        iv = self.asset_seed if self.kind == "cenc" else (self.iv if self.iv and len(self.iv) == 16 else b"")
        return Protection(self.kind, kid, self.key, iv=iv, pssh=(encryption.clearkey_pssh([kid]),))

    @property
    def segment_iv(self) -> bytes:
        """The AES-128 IV of every segment: the policy's, else one derived from the asset and the
        key. Explicit in the playlist, so filtered playlists (whose media sequence restarts at 0)
        and the segments always agree."""
        if self.iv:
            return self.iv
        return hashlib.sha256(b"openams-hls-iv" + self.asset_seed + (self.key_id.bytes if self.key_id else b"")
                              ).digest()[:16]

    def hls_keys(self, token: str = "") -> tuple[hls.HlsKey, ...]:
        """`#EXT-X-KEY` lines; a viewer token of the playlist request rides along on the key URI."""
        if self.kind == "envelope":
            uri = self.key_uri
            if token:
                uri += ("&" if "?" in uri else "?") + "token=" + quote(token, safe="")
            return (hls.HlsKey("AES-128", uri, iv=self.segment_iv),)
        if self.kind in ("cenc", "cbcs"):
            return (hls.HlsKey("SAMPLE-AES-CTR" if self.kind == "cenc" else "SAMPLE-AES", self.license_url,
                               keyformat="org.w3.clearkey", keyformatversions="1"),)
        return ()

    def dash_protection(self) -> tuple[dash.DashContentProtection, ...]:
        if self.kind not in ("cenc", "cbcs") or self.key_id is None:
            return ()
        kid = self.key_id.bytes
        clearkey = dash.clearkey_protection(self.license_url, pssh=encryption.clearkey_pssh([kid]))
        return (dash.mp4_protection(self.kind, kid),  # type: ignore[arg-type]
                dataclasses.replace(clearkey, default_kid=dash.kid_uuid(kid)))


def protocol_of(req: OriginRequest) -> str:
    if req.kind == "file":
        return "progressive"
    fmt = req.params.format
    if fmt in HLS_FORMATS:
        return "hls"
    if fmt in DASH_FORMATS:
        return "dash"
    assert fmt in SMOOTH_FORMATS
    return "smooth"


def plan_for(target: Any, req: OriginRequest, api_base: str,
             clear_key: Callable[[str, str], bytes]) -> Plan:
    """The plan for `req` on `target`'s asset; raises OriginError for blocked or unsupported cases.
    `clear_key(account_id, key_id)` returns a content key's bytes (cached by the caller)."""
    protocol = protocol_of(req)
    # A StorageEncrypted asset streams only under a delivery policy (spec §3.8: "the origin strips
    # storage encryption and applies the policy"); without one every protocol is blocked. The
    # decryption itself happens below the plan, in the service's reader, whatever the plan is.
    storage_encrypted = bool(target.asset.options & STORAGE_ENCRYPTED)
    if not target.delivery_policies and not storage_encrypted:
        return Plan()
    decision = delivery_decision(target.delivery_policies, protocol, storage_encrypted=storage_encrypted)
    if decision.blocked:
        raise OriginError(403, "BlockedByDeliveryPolicy", decision.reason)
    if not decision.encrypted:
        return Plan()
    fmt = req.params.format
    if decision.kind == "envelope" and fmt not in ("m3u8-aapl", "m3u8-aapl-v3", "m3u8-cmaf"):
        raise OriginError(501, "NotImplemented", f"AES-128 envelope encryption is built for HLS only, not {fmt}.")
    if decision.kind in ("cenc", "cbcs") and fmt in SMOOTH_FORMATS:
        raise OriginError(501, "NotImplemented", "Smooth Streaming players decrypt PlayReady only, and PlayReady "
                                                 "licences need a licence provider: use DASH or HLS CMAF.")
    if decision.kind in ("cenc", "cbcs") and fmt in ("m3u8-aapl", "m3u8-aapl-v3"):
        raise OriginError(501, "NotImplemented", f"Common encryption is built for fMP4 formats (DASH, m3u8-cmaf, "
                                                 f"Smooth), not MPEG-TS ({fmt}).")
    key_entry = next((k for k in target.content_keys if k[1] == decision.key_type), None)
    if key_entry is None:
        raise OriginError(403, "NoContentKey", f"The delivery policy needs a content key of type {decision.key_type} "
                                               "linked to the asset, and there is none.")
    key_id = uuid.UUID(key_entry[0].rsplit(":", 1)[-1])
    base = api_base.rstrip("/")
    key_uri = decision.key_acquisition_url(key_id) or f"{base}/keydelivery/?KID={key_id}"
    return Plan(decision.kind, key_id, clear_key(target.account_id, key_entry[0]), decision.iv, key_uri,
                f"{base}/keydelivery/ClearKey/", uuid.UUID(target.asset.id.rsplit(":", 1)[-1]).bytes)
