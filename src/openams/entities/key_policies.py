"""ContentKeyAuthorizationPolicies and their Options: who may receive a content key, and how.

A policy is a named list of options (`POST Policies('id')/$links/Options`); any one option grants
the key. An option names the delivery (KeyDeliveryType) with its configuration and the
restrictions that must all hold. Everything a client stores here is checked when it is stored —
TokenRestrictionTemplates parse, address lists parse, PlayReady/Widevine/FairPlay configuration is
well formed — so a mistake shows up as a 400 at setup time, not as a player that silently never
gets a key. The stored text is kept as sent (the SDKs read their own serialisation back).

Deleting a policy that a ContentKey still names in AuthorizationPolicyId answers 409 Conflict
(AMS documented no status; the policy is in use, and deleting it would leave the key
undeliverable): clear the key's AuthorizationPolicyId or delete the key first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from ..errors import BadRequest, Conflict
from ..keydelivery.restrictions import (
    IP_RESTRICTED,
    OPEN,
    TOKEN_RESTRICTED,
    TemplateError,
    parse_ip_ranges,
    parse_template,
)
from ..model.enums import CONTENT_KEY_DELIVERY_TYPE, CONTENT_KEY_TYPE
from ..odata.payload import EntityPayload
from .base import Ctx, Rules

PLAYREADY, BASELINE_HTTP, WIDEVINE, FAIRPLAY = 1, 2, 3, 4
DELIVERY_NAMES = {v: k for k, v in CONTENT_KEY_DELIVERY_TYPE.items()}
RESTRICTION_NAMES = {OPEN: "Open", TOKEN_RESTRICTED: "TokenRestricted", IP_RESTRICTED: "IPRestricted"}
PLAYREADY_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/PlayReadyTemplate/v1"
MAX_CONFIGURATION_CHARS = 1024 * 1024
KEY_PREFIX = "nb:kid:UUID:"


def _refuse(message: str) -> BadRequest:
    return BadRequest(f"ContentKeyAuthorizationPolicyOption.{message}")


# ---- restrictions ------------------------------------------------------------------------------


def validate_restrictions(restrictions: list[dict[str, Any]] | None) -> None:
    if not restrictions:
        raise BadRequest("ContentKeyAuthorizationPolicyOption.Restrictions must hold at least one restriction "
                         "(KeyRestrictionType 0 Open, 1 TokenRestricted or 2 IPRestricted).", code="MissingProperty")
    for i, restriction in enumerate(restrictions):
        where = f"Restrictions[{i}]"
        kind = restriction.get("KeyRestrictionType")
        if kind is None:
            raise _refuse(f"{where}.KeyRestrictionType is required (0 Open, 1 TokenRestricted, 2 IPRestricted).")
        if kind not in RESTRICTION_NAMES:
            raise _refuse(f"{where}.KeyRestrictionType must be 0 (Open), 1 (TokenRestricted) or 2 (IPRestricted), "
                          f"not {kind}.")
        requirements = restriction.get("Requirements")
        if kind == TOKEN_RESTRICTED:
            try:
                parse_template(requirements or "")
            except TemplateError as exc:
                raise _refuse(f"{where}.Requirements: the TokenRestrictionTemplate {exc}") from None
        elif kind == IP_RESTRICTED:
            try:
                parse_ip_ranges(requirements)
            except ValueError as exc:
                raise _refuse(f"{where}.Requirements (the allowed client addresses) {exc}") from None


# ---- delivery configuration ----------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: Element, name: str) -> Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _is_nil(el: Element) -> bool:
    return any(_local(k) == "nil" and v.strip().lower() in ("true", "1") for k, v in el.attrib.items())


def _present(el: Element, name: str) -> Element | None:
    """A child that carries a value (not absent, not `i:nil`)."""
    child = _child(el, name)
    return None if child is None or _is_nil(child) else child


def _child_text(el: Element, name: str) -> str:
    child = _child(el, name)
    return "" if child is None else (child.text or "").strip()


def _xsi_type(el: Element) -> str:
    return next((v.rsplit(":", 1)[-1].strip() for k, v in el.attrib.items() if _local(k) == "type"), "")


_DURATION = re.compile(r"^-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
_OPLS = {
    "UncompressedDigitalVideoOpl": (100, 250, 270, 300),
    "CompressedDigitalVideoOpl": (400, 500),
    "AnalogVideoOpl": (100, 150, 200),
    "CompressedDigitalAudioOpl": (100, 150, 200, 250, 300),
    "UncompressedDigitalAudioOpl": (100, 150, 200, 250, 300),
}
_UNKNOWN_OUTPUT = ("NotAllowed", "Allowed", "AllowedWithVideoConstriction")


def _bool_text(el: Element | None, where: str) -> bool:
    text = (el.text or "").strip().lower() if el is not None else ""
    if text not in ("true", "false", "1", "0"):
        raise _refuse(f"KeyDeliveryConfiguration: {where} must be true or false.")
    return text in ("true", "1")


def _check_playready_template(template: Element, where: str) -> None:
    def has(name: str) -> bool:
        return _present(template, name) is not None

    for name in ("BeginDate", "ExpirationDate"):
        el = _present(template, name)
        if el is not None and not _DATETIME.match((el.text or "").strip()):
            raise _refuse(f"KeyDeliveryConfiguration: {where}.{name} must be an xs:dateTime.")
    for name in ("RelativeBeginDate", "RelativeExpirationDate", "GracePeriod"):
        el = _present(template, name)
        if el is not None and not _DURATION.match((el.text or "").strip()):
            raise _refuse(f"KeyDeliveryConfiguration: {where}.{name} must be an xs:duration such as PT1H.")
    if has("BeginDate") and has("RelativeBeginDate"):
        raise _refuse(f"KeyDeliveryConfiguration: {where} may set BeginDate or RelativeBeginDate, not both.")
    if has("ExpirationDate") and has("RelativeExpirationDate"):
        raise _refuse(f"KeyDeliveryConfiguration: {where} may set ExpirationDate or RelativeExpirationDate, not both.")
    if (el := _present(template, "AllowTestDevices")) is not None:
        _bool_text(el, f"{where}.AllowTestDevices")

    key = _present(template, "ContentKey")
    if key is None:
        raise _refuse(f"KeyDeliveryConfiguration: {where}.ContentKey is required.")
    key_type = _xsi_type(key)
    if key_type == "ContentEncryptionKeyFromKeyIdentifier":
        try:
            uuid.UUID(_child_text(key, "KeyIdentifier"))
        except ValueError:
            raise _refuse(f"KeyDeliveryConfiguration: {where}.ContentKey.KeyIdentifier must be a GUID.") from None
    elif key_type != "ContentEncryptionKeyFromHeader":
        raise _refuse(f"KeyDeliveryConfiguration: {where}.ContentKey i:type must be ContentEncryptionKeyFromHeader or "
                      "ContentEncryptionKeyFromKeyIdentifier.")

    license_el = _present(template, "LicenseType")
    license_type = (license_el.text or "").strip() if license_el is not None else "Nonpersistent"
    if license_type not in ("Nonpersistent", "Persistent"):
        raise _refuse(f"KeyDeliveryConfiguration: {where}.LicenseType must be Nonpersistent or Persistent.")

    right = _child(template, "PlayRight")
    if right is None or _is_nil(right):
        raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight is required (an empty <PlayRight /> is fine).")
    if license_type == "Nonpersistent":
        for name, parent in (("FirstPlayExpiration", right), ("GracePeriod", template), ("BeginDate", template),
                             ("ExpirationDate", template)):
            if _present(parent, name) is not None:
                raise _refuse(f"KeyDeliveryConfiguration: a Nonpersistent licence ({where}) cannot set {name}.")
    if (el := _present(right, "FirstPlayExpiration")) is not None and not _DURATION.match((el.text or "").strip()):
        raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight.FirstPlayExpiration must be an xs:duration.")
    for name, allowed in _OPLS.items():
        el = _present(right, name)
        if el is None:
            continue
        text = (el.text or "").strip()
        if not text.isdigit() or int(text) not in allowed:
            raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight.{name} must be one of "
                          f"{', '.join(map(str, allowed))}.")
    scms = _present(right, "ScmsRestriction")
    if scms is not None:
        data = _child_text(scms, "ConfigurationData")
        if not data.isdigit() or int(data) > 3:
            raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight.ScmsRestriction.ConfigurationData must be "
                          "0 to 3.")
    unknown = _present(right, "AllowPassingVideoContentToUnknownOutput")
    unknown_value = (unknown.text or "").strip() if unknown is not None else "NotAllowed"
    if unknown_value not in _UNKNOWN_OUTPUT:
        raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight.AllowPassingVideoContentToUnknownOutput must be "
                      f"{', '.join(_UNKNOWN_OUTPUT)}.")
    digital_only = _present(right, "DigitalVideoOnlyContentRestriction")
    if digital_only is not None and _bool_text(digital_only, f"{where}.PlayRight.DigitalVideoOnlyContentRestriction") \
            and unknown_value != "NotAllowed":
        raise _refuse(f"KeyDeliveryConfiguration: {where}.PlayRight: DigitalVideoOnlyContentRestriction forbids "
                      "passing video to unknown outputs (AllowPassingVideoContentToUnknownOutput must be NotAllowed).")


def validate_playready(text: str) -> None:
    """The PlayReadyLicenseResponseTemplate rules the SDK's serializer enforces (§3.6). Unknown
    elements are tolerated: the SDK's contracts are extensible."""
    try:
        root = SafeElementTree.fromstring(text.lstrip("\ufeff"), forbid_dtd=True)
    except DefusedXmlException:
        raise _refuse("KeyDeliveryConfiguration uses DTDs or entities, which are not accepted.") from None
    except (ParseError, ValueError):
        raise _refuse("KeyDeliveryConfiguration is not well-formed XML (a PlayReady licence response template is "
                      "expected).") from None
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if _local(root.tag) != "PlayReadyLicenseResponseTemplate" or namespace not in (PLAYREADY_NS, ""):
        raise _refuse(f"KeyDeliveryConfiguration must be a <PlayReadyLicenseResponseTemplate xmlns=\"{PLAYREADY_NS}\">"
                      " for PlayReadyLicense delivery.")
    templates_el = _present(root, "LicenseTemplates")
    templates = [t for t in (templates_el if templates_el is not None else [])
                 if _local(t.tag) == "PlayReadyLicenseTemplate" and not _is_nil(t)]
    if not templates:
        raise _refuse("KeyDeliveryConfiguration: LicenseTemplates must hold at least one PlayReadyLicenseTemplate.")
    for i, template in enumerate(templates):
        _check_playready_template(template, f"LicenseTemplates[{i}]")


def _json_object(text: str, kind: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise _refuse(f"KeyDeliveryConfiguration is not valid JSON (a {kind} configuration object is expected).") \
            from None
    if not isinstance(value, dict):
        raise _refuse(f"KeyDeliveryConfiguration must be a JSON object for {kind} delivery.")
    return value


_HDCP = ("HDCP_NONE", "HDCP_V1", "HDCP_V2")


def validate_widevine(text: str) -> None:
    """The SDK's WidevineMessage (§3.7); `{}` is valid, unknown members are passed through."""
    message = _json_object(text, "Widevine")
    allowed = message.get("allowed_track_types")
    if allowed is not None and allowed not in ("SD_ONLY", "SD_HD"):
        raise _refuse("KeyDeliveryConfiguration.allowed_track_types must be SD_ONLY or SD_HD.")
    specs = message.get("content_key_specs")
    if specs is not None:
        if not isinstance(specs, list):
            raise _refuse("KeyDeliveryConfiguration.content_key_specs must be an array.")
        for i, spec in enumerate(specs):
            where = f"KeyDeliveryConfiguration.content_key_specs[{i}]"
            if not isinstance(spec, dict):
                raise _refuse(f"{where} must be an object.")
            if spec.get("track_type") is not None and not isinstance(spec["track_type"], str):
                raise _refuse(f"{where}.track_type must be a string (SD, HD, AUDIO…).")
            level = spec.get("security_level")
            if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5):
                raise _refuse(f"{where}.security_level must be an integer from 1 to 5.")
            protection = spec.get("required_output_protection")
            hdcp_ok = isinstance(protection, dict) and protection.get("hdcp") in (None, *_HDCP)
            if protection is not None and not hdcp_ok:
                raise _refuse(f"{where}.required_output_protection.hdcp must be HDCP_NONE, HDCP_V1 or HDCP_V2.")
    overrides = message.get("policy_overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise _refuse("KeyDeliveryConfiguration.policy_overrides must be an object.")


_RENTAL_TYPES = (0, 0x3DF2D9FB, 0x18F06048)


def validate_fairplay(ctx: Ctx, text: str) -> None:
    """The SDK's FairPlayConfiguration (§3.7): the ASk and the PFX password are ContentKeys of this
    account (types FairPlayASk and FairPlayPfxPassword), the PFX is base64, the IV 16 bytes in hex."""
    config = _json_object(text, "FairPlay")
    for name, key_type in (("ASkId", CONTENT_KEY_TYPE["FairPlayASk"]),
                           ("FairPlayPfxPasswordId", CONTENT_KEY_TYPE["FairPlayPfxPassword"])):
        value = config.get(name)
        try:
            guid = uuid.UUID(str(value).removeprefix(KEY_PREFIX))
        except ValueError:
            raise _refuse(f"KeyDeliveryConfiguration.{name} must be the GUID of a ContentKey.") from None
        key = _find_content_key(ctx, guid)
        if key is None:
            raise _refuse(f"KeyDeliveryConfiguration.{name}: no ContentKey '{KEY_PREFIX}{guid}' exists; create it "
                          "first.")
        if key.get("ContentKeyType") != key_type:
            type_name = next(k for k, v in CONTENT_KEY_TYPE.items() if v == key_type)
            raise _refuse(f"KeyDeliveryConfiguration.{name}: ContentKey '{key['Id']}' is not of type {type_name} "
                          f"({key_type}).")
    pfx = config.get("FairPlayPfx")
    try:
        if not isinstance(pfx, str) or not base64.b64decode(pfx, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise _refuse("KeyDeliveryConfiguration.FairPlayPfx must be the base64 PKCS #12 (pfx) of the FairPlay "
                      "application certificate with its private key.") from None
    iv = config.get("ContentEncryptionIV")
    if not isinstance(iv, str) or not re.fullmatch(r"[0-9A-Fa-f]{32}", iv):
        raise _refuse("KeyDeliveryConfiguration.ContentEncryptionIV must be 32 hexadecimal digits (16 bytes).")
    rental = config.get("RentalAndLeaseKeyType")
    if rental is not None and rental not in _RENTAL_TYPES:
        raise _refuse("KeyDeliveryConfiguration.RentalAndLeaseKeyType must be 0 (Undefined), 1039325691 "
                      "(PersistentUnlimited) or 418406472 (PersistentLimited).")
    duration = config.get("RentalDuration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)
                                 or not 0 <= duration <= 0xFFFFFFFF):
        raise _refuse("KeyDeliveryConfiguration.RentalDuration must be a whole number of seconds.")


def _find_content_key(ctx: Ctx, guid: uuid.UUID) -> dict[str, Any] | None:
    """Client-chosen key ids keep the case the client wrote: try the usual spellings."""
    keys = ctx.entity_set("ContentKeys")
    for text in dict.fromkeys((str(guid), str(guid).upper())):
        key = ctx.store.get(keys, f"{KEY_PREFIX}{text}")
        if key is not None:
            return key
    return None


def validate_delivery(ctx: Ctx, delivery_type: Any, configuration: str | None) -> None:
    if delivery_type is None:
        raise BadRequest("ContentKeyAuthorizationPolicyOption.KeyDeliveryType is required.", code="MissingProperty")
    if delivery_type not in DELIVERY_NAMES or delivery_type == CONTENT_KEY_DELIVERY_TYPE["None"]:
        raise _refuse(f"KeyDeliveryType must be 1 (PlayReadyLicense), 2 (BaselineHttp), 3 (Widevine) or 4 (FairPlay), "
                      f"not {delivery_type}.")
    text = (configuration or "").strip()
    if len(text) > MAX_CONFIGURATION_CHARS:
        raise _refuse(f"KeyDeliveryConfiguration is longer than {MAX_CONFIGURATION_CHARS} characters.")
    if delivery_type == BASELINE_HTTP:
        return  # AES keys need no configuration; whatever was sent is kept and unused
    if not text:
        raise _refuse(f"KeyDeliveryConfiguration is required for {DELIVERY_NAMES[delivery_type]} delivery "
                      f"({_CONFIG_HINT[delivery_type]}).")
    if delivery_type == PLAYREADY:
        validate_playready(text)
    elif delivery_type == WIDEVINE:
        validate_widevine(text)
    else:
        validate_fairplay(ctx, text)


_CONFIG_HINT = {
    PLAYREADY: "a PlayReadyLicenseResponseTemplate XML document",
    WIDEVINE: "a Widevine JSON message; {} is enough",
    FAIRPLAY: "a FairPlay JSON configuration",
}


# ---- rules -------------------------------------------------------------------------------------


class ContentKeyAuthorizationPolicyRules(Rules):
    set_name = "ContentKeyAuthorizationPolicies"

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        keys = ctx.entity_set("ContentKeys")
        users = ctx.store.query(keys, [ctx.store.table(keys).c.AuthorizationPolicyId == entity["Id"]], top=4)
        if users:
            names = ", ".join(f"'{k['Id']}'" for k in users[:3]) + (" and more" if len(users) > 3 else "")
            raise Conflict(f"The ContentKeyAuthorizationPolicy is in use by ContentKey {names}; clear their "
                           "AuthorizationPolicyId (or delete them) before deleting the policy.")


class ContentKeyAuthorizationPolicyOptionRules(Rules):
    set_name = "ContentKeyAuthorizationPolicyOptions"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        validate_delivery(ctx, values.get("KeyDeliveryType"), values.get("KeyDeliveryConfiguration"))
        validate_restrictions(values.get("Restrictions"))

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        merged = {**old, **changes}
        if {"KeyDeliveryType", "KeyDeliveryConfiguration"} & set(changes):
            validate_delivery(ctx, merged.get("KeyDeliveryType"), merged.get("KeyDeliveryConfiguration"))
        if "Restrictions" in changes:
            validate_restrictions(merged.get("Restrictions"))
