"""How one streaming request is protected: the asset's delivery policies decide per protocol
(clear, blocked, AES-128 envelope, CENC `cenc`, CENC `cbcs`), the asset's content key of the
required type is the key (`delivery_policies.content_key_for`), and the licence and key URLs go
into the manifests.

Supported combinations (what real players can use): HLS TS and CMAF with AES-128 whole-segment
encryption; DASH and HLS CMAF with `cenc`/`cbcs` sample encryption, always with a ClearKey `pssh`
(browsers play it with no DRM server) plus the PlayReady header and Widevine `pssh` when the policy
names their licence servers (PlayReadyLicenseAcquisitionUrl, Widevine[Base]LicenseAcquisitionUrl),
so an operator's own licence server works (and, for `cbcs` HLS CMAF, the FairPlay `skd://` key
line when the policy names a FairPlay URL); Smooth with `cenc` and the PlayReady `<Protection>`
header. Others (envelope DASH/Smooth, CENC in MPEG-TS, cbcs in Smooth) answer 501 naming the
combination.

StorageEncrypted assets (Options 1) follow the same policies once decrypted, except that having
no policy blocks them instead of streaming them in the clear.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..entities.delivery_policies import content_key_for, delivery_decision
from ..packaging import dash, encryption, hls, smooth
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
    """ClearKey licence URL (DASH `dashif:Laurl`, HLS CMAF `org.w3.clearkey` key)."""
    asset_seed: bytes = b""
    playready_url: str = ""
    """PlayReady LA_URL; when set, the PlayReady header goes into the pssh boxes, the MPD
    (`mspr:pro`), the HLS CMAF key lines and the Smooth `<Protection>` header."""
    playready_attributes: str = ""
    """The policy's PlayReadyCustomAttributes, copied into the header's CUSTOMATTRIBUTES."""
    widevine_url: str = ""
    """Widevine licence URL; when set, the Widevine pssh is added (init segments, MPD, HLS CMAF)."""
    fairplay_url: str = ""
    """FairPlay key server URL (cbcs only); when set, HLS CMAF gets its `skd://` key line."""

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """What distinguishes the bytes built under this plan (never the key itself)."""
        return (self.kind, self.key_id, self.iv, self.key_uri, self.license_url, self.playready_url,
                self.playready_attributes, self.widevine_url, self.fairplay_url)

    @functools.cached_property
    def playready_object(self) -> bytes | None:
        """The PlayReady Object (header with key id, checksum and LA_URL), None without PlayReady."""
        if not self.playready_url or self.key_id is None or self.kind not in ("cenc", "cbcs"):
            return None
        cbc = self.kind == "cbcs"
        header = encryption.playready_header([self.key_id.bytes], la_url=self.playready_url,
                                             custom_attributes=self.playready_attributes or None,
                                             algorithm="AESCBC" if cbc else "AESCTR",
                                             keys=None if cbc else [self.key])
        return encryption.playready_object(header)

    @functools.cached_property
    def pssh_boxes(self) -> tuple[bytes, ...]:
        """Every DRM system's `pssh`: ClearKey always (browsers without a DRM licence server),
        PlayReady and Widevine when the policy names their licence servers."""
        if self.key_id is None or self.kind not in ("cenc", "cbcs"):
            return ()
        kid = self.key_id.bytes
        boxes = [encryption.clearkey_pssh([kid])]
        if self.playready_object is not None:
            boxes.append(encryption.playready_pssh(self.playready_object))
        if self.widevine_url:
            boxes.append(self._widevine_pssh())
        return tuple(boxes)

    def _widevine_pssh(self) -> bytes:
        assert self.key_id is not None
        scheme: Any = self.kind
        return encryption.widevine_pssh([self.key_id.bytes], protection_scheme=scheme)

    def protection(self) -> Protection | None:
        """The packager's descriptor for sample encryption (fMP4), None otherwise."""
        if self.kind not in ("cenc", "cbcs") or self.key_id is None:
            return None
        kid = self.key_id.bytes
        # cenc: per-sample IVs seeded with the asset (assets sharing a key never share IVs);
        # cbcs: the policy's constant IV when it gives a 16-byte one, else one derived from the key
        iv = self.asset_seed if self.kind == "cenc" else (self.iv if self.iv and len(self.iv) == 16 else b"")
        return Protection(self.kind, kid, self.key, iv=iv, pssh=self.pssh_boxes)

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
        """`#EXT-X-KEY` lines; a viewer token of the playlist request rides along on the key URI.
        CMAF sample encryption gets one line per DRM system, which players pick by KEYFORMAT."""
        if self.kind == "envelope":
            uri = self.key_uri
            if token:
                uri += ("&" if "?" in uri else "?") + "token=" + quote(token, safe="")
            return (hls.HlsKey("AES-128", uri, iv=self.segment_iv),)
        if self.kind not in ("cenc", "cbcs"):
            return ()
        method: Any = "SAMPLE-AES-CTR" if self.kind == "cenc" else "SAMPLE-AES"
        keys = [hls.HlsKey(method, self.license_url, keyformat="org.w3.clearkey", keyformatversions="1")]
        if self.playready_object is not None:
            pro = base64.b64encode(self.playready_object).decode("ascii")
            keys.append(hls.HlsKey(method, f"data:text/plain;charset=UTF-16;base64,{pro}",
                                   keyformat=PLAYREADY_KEYFORMAT, keyformatversions="1"))
        if self.widevine_url:
            box = base64.b64encode(self._widevine_pssh()).decode("ascii")
            keys.append(hls.HlsKey(method, f"data:text/plain;base64,{box}", keyformat=WIDEVINE_KEYFORMAT,
                                   keyformatversions="1"))
        if self.fairplay_url and self.kind == "cbcs":
            # Apple players ask the app for the key through the `skd://` URI (AMS wrote its FairPlay
            # URL with the scheme swapped); the content key IV is the policy's cbcs IV
            skd = "skd://" + self.fairplay_url.split("://", 1)[-1]
            keys.append(hls.HlsKey("SAMPLE-AES", skd, keyformat=FAIRPLAY_KEYFORMAT, keyformatversions="1"))
        return tuple(keys)

    def dash_protection(self) -> tuple[dash.DashContentProtection, ...]:
        """The MPD's `ContentProtection` descriptors: the scheme and default key, then one per
        DRM system (PlayReady and Widevine carry their licence URLs, so players need no setup)."""
        if self.kind not in ("cenc", "cbcs") or self.key_id is None:
            return ()
        kid = self.key_id.bytes
        clearkey = dash.clearkey_protection(self.license_url)
        items = [dash.mp4_protection(self.kind, kid),  # type: ignore[arg-type]
                 dataclasses.replace(clearkey, default_kid=dash.kid_uuid(kid))]
        if self.playready_object is not None:
            items.append(dash.playready_protection(self.playready_object,
                                                   pssh=encryption.playready_pssh(self.playready_object),
                                                   laurl=self.playready_url))
        if self.widevine_url:
            items.append(dash.widevine_protection(self._widevine_pssh(), laurl=self.widevine_url))
        return tuple(items)

    def smooth_protection(self) -> tuple[smooth.SmoothProtection, ...]:
        """The Smooth manifest's `<Protection>`: the PlayReady header (Smooth clients know no other)."""
        if self.playready_object is None:
            return ()
        return (smooth.SmoothProtection.playready(self.playready_object),)


PLAYREADY_KEYFORMAT = "com.microsoft.playready"
WIDEVINE_KEYFORMAT = f"urn:uuid:{encryption.WIDEVINE_SYSTEM_ID}"
FAIRPLAY_KEYFORMAT = "com.apple.streamingkeydelivery"


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
    if decision.kind == "cbcs" and fmt in SMOOTH_FORMATS:
        raise OriginError(501, "NotImplemented", "Smooth Streaming carries only cenc (AES-CTR) sample encryption; "
                                                 "use DASH or HLS CMAF for a cbcs policy.")
    if decision.kind in ("cenc", "cbcs") and fmt in ("m3u8-aapl", "m3u8-aapl-v3"):
        raise OriginError(501, "NotImplemented", f"Common encryption is built for fMP4 formats (DASH, m3u8-cmaf, "
                                                 f"Smooth), not MPEG-TS ({fmt}).")
    key_entry = content_key_for(decision, target.content_keys)
    if key_entry is None:
        raise OriginError(403, "NoContentKey", f"The delivery policy needs a content key of type {decision.key_type} "
                                               "linked to the asset, and there is none.")
    key_id = uuid.UUID(key_entry.rsplit(":", 1)[-1])
    base = api_base.rstrip("/")
    key_uri = decision.key_acquisition_url(key_id) or f"{base}/keydelivery/?KID={key_id}"
    playready_url = decision.playready_license_url or ""
    if decision.kind == "cenc" and fmt in SMOOTH_FORMATS and not playready_url:
        # Smooth clients decrypt PlayReady only: without a configured licence server the header
        # names openams' own PlayReady URL (which answers 501 unless a licence provider is set up;
        # the KID in the URL tells the key service which key's policy to apply before the provider)
        playready_url = f"{base}/keydelivery/PlayReady/?KID={key_id}"
    return Plan(decision.kind, key_id, clear_key(target.account_id, key_entry), decision.iv, key_uri,
                f"{base}/keydelivery/ClearKey/", uuid.UUID(target.asset.id.rsplit(":", 1)[-1]).bytes,
                playready_url=playready_url, playready_attributes=decision.playready_custom_attributes or "",
                widevine_url=decision.widevine_license_url(key_id) or "",
                fairplay_url=decision.fairplay_license_url(key_id) or "")
