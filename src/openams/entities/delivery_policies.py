"""AssetDeliveryPolicies: how each streaming protocol of an asset is delivered — in the clear,
blocked, or encrypted on the fly (AES-128 envelope, CENC, CBCS) — and the rules for linking them
to assets (`POST Assets('id')/$links/DeliveryPolicies`).

Rules (spec §3.8):
* AssetDeliveryPolicyType 1 to 5 (None 0 is invalid); AssetDeliveryProtocol a non-empty combination of
  SmoothStreaming 1, Dash 2, HLS 4, Hds 8, ProgressiveDownload 16, or All 0xFFFF.
* AssetDeliveryConfiguration is the text of a serialised .NET dictionary,
  `[{"Key": <AssetDeliveryPolicyConfigurationKey>, "Value": "<string>"}, ...]`. Keys are checked
  against the enum and values by kind (absolute URLs, 16-byte IVs, FourCC lists, booleans). Keys may
  also be sent by name, or as a JSON object; such input is stored in the array-of-ints form, the
  only one the .NET SDK can read back. The array form is stored as sent.
* An asset takes one policy per protocol: linking a policy whose protocols overlap a linked one
  answers 409.
* While the asset has an OnDemandOrigin locator, its policies cannot be linked, unlinked, updated
  (other than Name) or deleted — 400; delete the locator first (its id may be reused afterwards).
  The origin caches what it streams; this is what keeps that cache honest.
* Dynamic encryption needs a key of the matching type linked to the asset — envelope:
  EnvelopeEncryption (4), CENC: CommonEncryption (0), CBCS: CommonEncryptionCbcs (6). The spec
  states the requirement without saying when it was enforced; openams checks it when the policy is
  linked (and when a linked policy's type changes), so a misconfiguration is a 400 at setup time
  rather than a player error. The origin still checks that the key exists when it streams.

`delivery_decision(policies, protocol)` is the origin's question — what to do with a request for
one protocol — answered from the asset's linked policies: no policy → clear; some policy but none
covering the protocol → blocked; otherwise what the covering policy says.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadRequest, Conflict
from ..model.enums import (
    ASSET_DELIVERY_POLICY_CONFIGURATION_KEY,
    ASSET_DELIVERY_POLICY_TYPE,
    ASSET_DELIVERY_PROTOCOL,
    CONTENT_KEY_TYPE,
)
from ..odata.payload import EntityPayload
from .base import Ctx, Rules

CLEAR, BLOCKED, ENVELOPE, CENC, CBCS = "clear", "blocked", "envelope", "cenc", "cbcs"
"""The kinds of `DeliveryDecision`."""

SMOOTH, DASH, HLS, HDS, PROGRESSIVE = 0x1, 0x2, 0x4, 0x8, 0x10
KNOWN_PROTOCOLS = SMOOTH | DASH | HLS | HDS | PROGRESSIVE
ALL_PROTOCOLS = ASSET_DELIVERY_PROTOCOL["All"]
PROTOCOL_BITS = {"smooth": SMOOTH, "smoothstreaming": SMOOTH, "dash": DASH, "hls": HLS, "hds": HDS,
                 "progressive": PROGRESSIVE, "progressivedownload": PROGRESSIVE, "download": PROGRESSIVE}
"""Protocol names the origin may ask about (case-insensitive)."""
PROTOCOL_NAMES = {SMOOTH: "SmoothStreaming", DASH: "Dash", HLS: "HLS", HDS: "Hds", PROGRESSIVE: "ProgressiveDownload"}

BLOCKED_POLICY, NO_DYNAMIC_ENCRYPTION, DYNAMIC_ENVELOPE, DYNAMIC_COMMON, DYNAMIC_CBCS = 1, 2, 3, 4, 5
POLICY_TYPE_NAMES = {v: k for k, v in ASSET_DELIVERY_POLICY_TYPE.items()}
REQUIRED_KEY_TYPE = {
    DYNAMIC_ENVELOPE: CONTENT_KEY_TYPE["EnvelopeEncryption"],
    DYNAMIC_COMMON: CONTENT_KEY_TYPE["CommonEncryption"],
    DYNAMIC_CBCS: CONTENT_KEY_TYPE["CommonEncryptionCbcs"],
}
"""The ContentKeyType each dynamic-encryption policy type encrypts with."""
KEY_TYPE_NAMES = {v: k for k, v in CONTENT_KEY_TYPE.items()}
_DECISION_KIND = {DYNAMIC_ENVELOPE: ENVELOPE, DYNAMIC_COMMON: CENC, DYNAMIC_CBCS: CBCS}

CONFIG_KEYS = ASSET_DELIVERY_POLICY_CONFIGURATION_KEY
CONFIG_NAMES = {v: k for k, v in CONFIG_KEYS.items()}
_URL_KEYS = frozenset(CONFIG_KEYS[n] for n in (
    "EnvelopeKeyAcquisitionUrl", "EnvelopeBaseKeyAcquisitionUrl", "PlayReadyLicenseAcquisitionUrl",
    "WidevineLicenseAcquisitionUrl", "WidevineBaseLicenseAcquisitionUrl", "FairPlayLicenseAcquisitionUrl",
    "FairPlayBaseLicenseAcquisitionUrl"))
_IV_KEYS = frozenset(CONFIG_KEYS[n] for n in ("EnvelopeEncryptionIVAsBase64", "EnvelopeEncryptionIV",
                                               "CommonEncryptionIVForCbcs"))
_FOURCC = re.compile(r"^[\x21-\x7e]{1,4}$")
ASSET_LINK = "asset_deliverypolicies"
CONTENT_KEY_LINK = "asset_contentkeys"
ON_DEMAND_ORIGIN = 2


# ---- configuration -----------------------------------------------------------------------------


def _config_key(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if raw in CONFIG_NAMES else None
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return _config_key(int(text))
    return next((v for k, v in CONFIG_KEYS.items() if k.lower() == text.lower()), None)


def parse_configuration(text: str | None) -> dict[int, str]:
    """AssetDeliveryConfiguration text → {AssetDeliveryPolicyConfigurationKey: value}. Accepts the
    SDK's `[{"Key": n, "Value": "…"}]` (keys by number or name) and a plain JSON object; raises
    ValueError saying what is wrong. Values are not checked here (see `check_configuration`)."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError('is not JSON; send [{"Key": <AssetDeliveryPolicyConfigurationKey>, "Value": "<text>"}, '
                         '...]') from None
    pairs: list[tuple[Any, Any]] = []
    if isinstance(data, list):
        for i, item in enumerate(data):
            fields = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
            if "key" not in fields or "value" not in fields:
                raise ValueError(f'[{i}] must be an object {{"Key": <key>, "Value": "<text>"}}')
            pairs.append((fields["key"], fields["value"]))
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise ValueError('must be a JSON array [{"Key": <key>, "Value": "<text>"}, ...]')
    out: dict[int, str] = {}
    for raw_key, value in pairs:
        key = _config_key(raw_key)
        if key is None or key == CONFIG_KEYS["None"]:
            names = ", ".join(f"{v} {k}" for k, v in CONFIG_KEYS.items() if v)
            raise ValueError(f"has the unknown key {str(raw_key)[:60]!r}; keys are {names}")
        if key in out:
            raise ValueError(f"has {CONFIG_NAMES[key]} twice")
        if not isinstance(value, str):
            raise ValueError(f"{CONFIG_NAMES[key]} must have a string value")
        out[key] = value
    return out


def parse_iv(text: str) -> bytes:
    """A 16-byte IV written as 32 hex digits (optionally `0x…`) or as base64."""
    compact = text.strip()
    hex_text = compact[2:] if compact[:2].lower() == "0x" else compact
    if re.fullmatch(r"[0-9A-Fa-f]{32}", hex_text):
        return bytes.fromhex(hex_text)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be 16 bytes, as base64 or 32 hexadecimal digits") from None
    if len(raw) != 16:
        raise ValueError(f"must be 16 bytes, not {len(raw)}")
    return raw


def check_configuration(config: Mapping[int, str]) -> None:
    """Values by kind; raises ValueError naming the key."""
    for key, value in config.items():
        name = CONFIG_NAMES[key]
        if key in _URL_KEYS:
            parts = urlsplit(value.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{name} must be an absolute http(s) URL")
        elif key in _IV_KEYS:
            try:
                parse_iv(value)
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None
        elif key == CONFIG_KEYS["UnencryptedTracksByFourCC"]:
            codes = [c.strip() for c in value.split(",")]
            if not all(_FOURCC.match(c) for c in codes):
                raise ValueError(f"{name} must be a comma-separated list of FourCCs (e.g. 'avc1,mp4a')")
        elif key == CONFIG_KEYS["AllowPersistentLicense"] and value.strip().lower() not in ("true", "false"):
            raise ValueError(f"{name} must be true or false")


def _normalize_configuration(text: str | None) -> str | None:
    try:
        config = parse_configuration(text)
        check_configuration(config)
    except ValueError as exc:
        raise BadRequest(f"AssetDeliveryPolicy.AssetDeliveryConfiguration {exc}.") from None
    if not config:
        return None
    data = json.loads(text or "null")
    if isinstance(data, list) and all(isinstance(i.get("Key"), int) and not isinstance(i.get("Key"), bool)
                                      and "Value" in i for i in data):
        return text
    return json.dumps([{"Key": k, "Value": v} for k, v in config.items()], separators=(",", ":"))


def _protocol_names(bits: int) -> str:
    if bits == ALL_PROTOCOLS:
        return "All"
    return ", ".join(name for bit, name in PROTOCOL_NAMES.items() if bits & bit) or str(bits)


def _validate_protocol(value: Any) -> None:
    if value is None:
        raise BadRequest("AssetDeliveryPolicy.AssetDeliveryProtocol is required.", code="MissingProperty")
    if value != ALL_PROTOCOLS and (value <= 0 or value & ~KNOWN_PROTOCOLS):
        raise BadRequest("AssetDeliveryPolicy.AssetDeliveryProtocol must combine SmoothStreaming 1, Dash 2, HLS 4, "
                         f"Hds 8 and ProgressiveDownload 16 (or be All, 65535), not {value}.")


def _validate_type(value: Any) -> None:
    if value is None:
        raise BadRequest("AssetDeliveryPolicy.AssetDeliveryPolicyType is required.", code="MissingProperty")
    if value not in POLICY_TYPE_NAMES or value == ASSET_DELIVERY_POLICY_TYPE["None"]:
        names = ", ".join(f"{v} {k}" for k, v in ASSET_DELIVERY_POLICY_TYPE.items() if v)
        raise BadRequest(f"AssetDeliveryPolicy.AssetDeliveryPolicyType must be one of {names}, not {value}.")


# ---- the origin's question -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryDecision:
    """What the origin does with a request for one protocol of an asset."""

    kind: str
    """clear, blocked, envelope (AES-128), cenc or cbcs."""
    reason: str
    """Why, in words (for logs and for the body of a refusal)."""
    policy_id: str | None = None
    key_type: int | None = None
    """The ContentKeyType to encrypt with (envelope 4, cenc 0, cbcs 6); None when not encrypting."""
    configuration: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The policy's AssetDeliveryConfiguration by key name."""

    @property
    def blocked(self) -> bool:
        return self.kind == BLOCKED

    @property
    def encrypted(self) -> bool:
        return self.kind in (ENVELOPE, CENC, CBCS)

    @property
    def iv(self) -> bytes | None:
        """The IV the policy fixes (envelope: EnvelopeEncryptionIVAsBase64 or EnvelopeEncryptionIV;
        cbcs: CommonEncryptionIVForCbcs); None leaves the choice to the origin."""
        names = {ENVELOPE: ("EnvelopeEncryptionIVAsBase64", "EnvelopeEncryptionIV"),
                 CBCS: ("CommonEncryptionIVForCbcs",)}.get(self.kind, ())
        value = next((self.configuration[n] for n in names if n in self.configuration), None)
        return parse_iv(value) if value is not None else None

    def _url(self, exact: str, base: str, key_id: uuid.UUID | str | None) -> str | None:
        if exact in self.configuration:
            return self.configuration[exact]
        if base in self.configuration:
            url = self.configuration[base]
            if key_id is None:
                return url
            guid = str(key_id).rsplit(":", 1)[-1]
            return f"{url}{'&' if '?' in url else '?'}KID={guid}"
        return None

    def key_acquisition_url(self, key_id: uuid.UUID | str | None = None) -> str | None:
        """AES key URL for `#EXT-X-KEY` / the Smooth protection header: EnvelopeKeyAcquisitionUrl as
        is, or EnvelopeBaseKeyAcquisitionUrl + `?KID=<guid>`; None means openams' own key service."""
        return self._url("EnvelopeKeyAcquisitionUrl", "EnvelopeBaseKeyAcquisitionUrl", key_id)

    @property
    def playready_license_url(self) -> str | None:
        # the REST sample stored the PlayReady URL under EnvelopeBaseKeyAcquisitionUrl (spec §3.8): tolerate it
        if self.kind != CENC:
            return self.configuration.get("PlayReadyLicenseAcquisitionUrl")
        return self.configuration.get("PlayReadyLicenseAcquisitionUrl") or \
            self.configuration.get("EnvelopeBaseKeyAcquisitionUrl")

    @property
    def playready_custom_attributes(self) -> str | None:
        return self.configuration.get("PlayReadyCustomAttributes")

    def widevine_license_url(self, key_id: uuid.UUID | str | None = None) -> str | None:
        return self._url("WidevineLicenseAcquisitionUrl", "WidevineBaseLicenseAcquisitionUrl", key_id)

    def fairplay_license_url(self, key_id: uuid.UUID | str | None = None) -> str | None:
        return self._url("FairPlayLicenseAcquisitionUrl", "FairPlayBaseLicenseAcquisitionUrl", key_id)

    @property
    def unencrypted_fourccs(self) -> tuple[str, ...]:
        text = self.configuration.get("UnencryptedTracksByFourCC") or ""
        return tuple(c.strip() for c in text.split(",") if c.strip())

    @property
    def allow_persistent_license(self) -> bool:
        return (self.configuration.get("AllowPersistentLicense") or "").strip().lower() == "true"


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def delivery_decision(policies: Sequence[Mapping[str, Any]], protocol: str, *,
                      storage_encrypted: bool = False) -> DeliveryDecision:
    """What to do with a request for `protocol` (smooth, dash, hls, hds or progressive) of an asset
    whose linked delivery policies (entity dicts) are `policies`.

    No policy: clear — unless the asset is storage-encrypted (`storage_encrypted`), which is
    blocked until a policy says how to deliver it. Some policy but none covering the protocol:
    blocked. Otherwise the covering policy decides; dynamic encryption of progressive download is
    not possible (AMS could not either), so that combination is blocked too.
    """
    bit = PROTOCOL_BITS.get(protocol.strip().lower())
    if bit is None:
        raise ValueError(f"Unknown protocol {protocol!r}; use one of {', '.join(sorted(PROTOCOL_BITS))}.")
    name = PROTOCOL_NAMES[bit]
    if not policies:
        if storage_encrypted:
            return DeliveryDecision(BLOCKED, "The asset is storage-encrypted and has no delivery policy; link one "
                                             "(NoDynamicEncryption streams it decrypted).")
        return DeliveryDecision(CLEAR, "The asset has no delivery policy: every protocol streams in the clear.")
    policy = next((p for p in policies if _as_int(p.get("AssetDeliveryProtocol")) & bit), None)
    if policy is None:
        return DeliveryDecision(BLOCKED, f"None of the asset's delivery policies covers {name}, so {name} is blocked.")
    policy_id = policy.get("Id")
    kind = _as_int(policy.get("AssetDeliveryPolicyType"))
    if kind == NO_DYNAMIC_ENCRYPTION:
        return DeliveryDecision(CLEAR, f"Delivery policy '{policy_id}' delivers {name} without encryption.", policy_id)
    if kind not in _DECISION_KIND:
        why = "blocks" if kind == BLOCKED_POLICY else "has an invalid type and so blocks"
        return DeliveryDecision(BLOCKED, f"Delivery policy '{policy_id}' {why} {name}.", policy_id)
    if bit == PROGRESSIVE:
        return DeliveryDecision(BLOCKED, "Progressive download cannot be dynamically encrypted; delivery policy "
                                         f"'{policy_id}' asks for {POLICY_TYPE_NAMES[kind]}.", policy_id)
    try:
        config = parse_configuration(policy.get("AssetDeliveryConfiguration"))
    except ValueError:
        return DeliveryDecision(BLOCKED, f"Delivery policy '{policy_id}' has an unreadable configuration.", policy_id)
    return DeliveryDecision(_DECISION_KIND[kind], f"Delivery policy '{policy_id}' applies {POLICY_TYPE_NAMES[kind]} "
                                                  f"to {name}.", policy_id, REQUIRED_KEY_TYPE[kind],
                            {CONFIG_NAMES[k]: v for k, v in config.items()})


def content_key_for(decision: DeliveryDecision, linked: Sequence[tuple[str, int]]) -> str | None:
    """Which of an asset's linked content keys ((Id, ContentKeyType) in link order) encrypts under
    `decision`: the first of the type the policy requires (spec §3.8: envelope needs an
    EnvelopeEncryption key, cenc a CommonEncryption key, cbcs a CommonEncryptionCbcs key). None
    when the decision does not encrypt or no such key is linked (the origin then refuses)."""
    if decision.key_type is None:
        return None
    return next((key_id for key_id, key_type in linked if key_type == decision.key_type), None)


def asset_delivery_policies(store: Any, asset_id: str) -> list[dict[str, Any]]:
    """The delivery policies linked to an asset (entity dicts, link order), for `delivery_decision`."""
    from ..model import MODEL

    es = MODEL.entity_set("AssetDeliveryPolicies")
    assert es is not None
    return store.query(es, join_links=(ASSET_LINK, asset_id))


# ---- rules -------------------------------------------------------------------------------------


def _refuse_while_streaming(ctx: Ctx, asset_id: str, action: str) -> None:
    locators = ctx.entity_set("Locators")
    table = ctx.store.table(locators)
    found = ctx.store.query(locators, [table.c.AssetId == asset_id, table.c.Type == ON_DEMAND_ORIGIN], top=1)
    if found:
        raise BadRequest(f"Cannot {action}: asset '{asset_id}' has an OnDemandOrigin locator ('{found[0]['Id']}'). "
                         "Delete the asset's streaming locators first, change its delivery policies, then create the "
                         "locator again (the same locator Id may be reused).")


def _check_overlap(ctx: Ctx, asset_id: str, policy_id: str, protocol: int) -> None:
    for other in asset_delivery_policies(ctx.store, asset_id):
        if other["Id"] == policy_id:
            continue
        shared = _as_int(other.get("AssetDeliveryProtocol")) & protocol
        if shared:
            raise Conflict(f"Asset '{asset_id}' already has delivery policy '{other['Id']}' for "
                           f"{_protocol_names(shared)}; an asset takes one delivery policy per protocol.")


def _check_key(ctx: Ctx, asset_id: str, policy_type: int) -> None:
    needed = REQUIRED_KEY_TYPE.get(policy_type)
    if needed is None:
        return
    keys = ctx.entity_set("ContentKeys")
    for key_id in ctx.store.link_targets(CONTENT_KEY_LINK, asset_id):
        key = ctx.store.get(keys, key_id)
        if key is not None and key.get("ContentKeyType") == needed:
            return
    raise BadRequest(f"A {POLICY_TYPE_NAMES[policy_type]} delivery policy needs a ContentKey of type "
                     f"{KEY_TYPE_NAMES[needed]} ({needed}) linked to asset '{asset_id}'; link the key "
                     "(POST Assets('…')/$links/ContentKeys) before the delivery policy.")


def on_asset_link(ctx: Ctx, asset: dict[str, Any], policy: dict[str, Any], add: bool) -> None:
    """`Assets('id')/$links/DeliveryPolicies` (and DeliveryPolicies bindings on a new asset)."""
    asset_id = asset["Id"]
    if not add:
        _refuse_while_streaming(ctx, asset_id, "unlink a delivery policy")
        return
    _refuse_while_streaming(ctx, asset_id, "link a delivery policy")
    _check_overlap(ctx, asset_id, policy["Id"], _as_int(policy.get("AssetDeliveryProtocol")))
    _check_key(ctx, asset_id, _as_int(policy.get("AssetDeliveryPolicyType")))


class AssetDeliveryPolicyRules(Rules):
    set_name = "AssetDeliveryPolicies"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        _validate_type(values.get("AssetDeliveryPolicyType"))
        _validate_protocol(values.get("AssetDeliveryProtocol"))
        values["AssetDeliveryConfiguration"] = _normalize_configuration(values.get("AssetDeliveryConfiguration"))

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if "AssetDeliveryPolicyType" in changes:
            _validate_type(changes["AssetDeliveryPolicyType"])
        if "AssetDeliveryProtocol" in changes:
            _validate_protocol(changes["AssetDeliveryProtocol"])
        if "AssetDeliveryConfiguration" in changes:
            changes["AssetDeliveryConfiguration"] = _normalize_configuration(changes["AssetDeliveryConfiguration"])
        if not set(changes) - {"Name"}:
            return  # the name changes nothing about delivery
        merged = {**old, **changes}
        for asset_id in ctx.store.link_sources(ASSET_LINK, old["Id"]):
            _refuse_while_streaming(ctx, asset_id, "update a delivery policy linked to a streaming asset")
            if "AssetDeliveryProtocol" in changes:
                _check_overlap(ctx, asset_id, old["Id"], merged["AssetDeliveryProtocol"])
            if "AssetDeliveryPolicyType" in changes:
                _check_key(ctx, asset_id, merged["AssetDeliveryPolicyType"])

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        for asset_id in ctx.store.link_sources(ASSET_LINK, entity["Id"]):
            _refuse_while_streaming(ctx, asset_id, "delete a delivery policy linked to a streaming asset")
