"""The Connector's Video operations, composed of ordinary entity operations (spec §6).

A Connector video is not a new kind of entity: it is the assets, files, locators, keys, policies
and job an AMS client would create by hand, found again by names the Connector gives them. No
table of its own, so the Operations API, the portal and the CLI see a video's pieces as what they
are, and deleting a video is deleting them.

How a video is found (the mapping, all inside the caller's account — another account's video id
is simply not found):

* the **input asset** has `AlternateId = "connector-video:<video guid>"` and `Name` = the
  OriginalFileName the client sent; its one AssetFile (primary) is the upload, named
  `<video guid>.<ext>` (what the Connector answers as OriginalFileName);
* `ContentProtectionMode` AES128 ⇔ an EnvelopeEncryption content key is linked to the input asset
  (its GUID is `ContentProtectionKeyId`; its authorization policy's one option holds the SWT
  TokenRestrictionTemplate `AuthorizationToken` signs with);
* `InputStorageEncryptionMode` AES256 ⇔ the input asset is StorageEncrypted (Options 1);
* the upload SAS is the input asset's SAS (Type 1) locator; MarkComplete deletes it, which revokes
  the URL at once: the upload is then immutable;
* MarkComplete submits **the job** named `connector-video:<guid>` (input: the input asset) with two
  tasks: `Encode` (system preset "Adaptive Streaming" → output 0, the streamed asset) and
  `Thumbnails` (system preset "Thumbnails", one poster JPEG at the best frame → output 1). The
  job's state is the video's status;
* the streaming (OnDemandOrigin) locator of the encoded asset and the read SAS locator of the
  thumbnail asset are made when first asked for (PlaybackEndpoint, Thumbnails).

**InputStorageEncryption and the IV.** The Connector hands out a base64 key and IV and the client
encrypts its file with AES-256-CTR, no padding; the service must decrypt it while encoding. openams
decrypts storage-encrypted files with the AMS layout of spec §3.11: counter block =
IV (64-bit, big-endian, bytes 0 to 7) ‖ block number (64-bit, big-endian, bytes 8 to 15, from 0 at file
offset 0), the IV stored on the AssetFile as a decimal unsigned 64-bit integer. The Connector's IV
is made to be exactly that first counter block: 8 random bytes `v` followed by 8 zero bytes,
16 bytes in all (base64). A client whose CTR implementation takes a 16-byte IV as the initial
counter block and increments it as a 128-bit big-endian number (`cryptography`'s `modes.CTR`,
OpenSSL/Node `aes-256-ctr`, .NET or Java code counting over AES-ECB) produces the keystream of
§3.11, because the low half starts at 0 and a file shorter than 2^64 blocks never carries into the
high half. A client whose CTR takes an 8-byte nonce plus an 8-byte block counter from 0 uses the
first 8 bytes as the nonce and gets the same keystream. The AssetFile records
`InitializationVector = str(int.from_bytes(v, "big"))`, the asset's StorageEncryption key as
`EncryptionKeyId`, `IsEncrypted` and `EncryptionScheme` "StorageEncryption": the encoder's and the
origin's existing decrypting paths read it as they read any SDK-encrypted file, so
`packaging.storage_crypto` needed no new IV form. The key and IV appear only in the create
response (the key is kept wrapped to the account's StorageEncryption protection certificate, the
IV on the AssetFile).

Nothing here logs or puts key material in messages.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from cryptography import x509

from ..entities import jobs as job_rules
from ..entities import protection, service
from ..entities.assets import container_name
from ..entities.base import Ctx, guid_of
from ..entities.deferred import run_deferred
from ..entities.service import QueryOptions
from ..errors import ApiError, BadRequest, Conflict, Forbidden, InternalError, NotFound, NotImplementedYet
from ..jobs.states import ACTIVE, JobState
from ..model.catalogue import DEFAULT_MEDIA_PROCESSOR_ID
from ..odata.payload import EntityPayload
from ..odata.uri import ResourcePath

ALTERNATE_PREFIX = "connector-video:"
"""Input asset AlternateId and job Name: `connector-video:<video guid>`."""
ENCODE_TASK, THUMBNAIL_TASK = "Encode", "Thumbnails"
ENCODE_PRESET, THUMBNAIL_PRESET = "Adaptive Streaming", "Thumbnails"

STORAGE_ENCRYPTED = 1
STORAGE_KEY, ENVELOPE_KEY = 1, 4
"""ContentKeyType values."""
STORAGE_KEY_BYTES, ENVELOPE_KEY_BYTES = 32, 16
READ, WRITE = 1, 2
SAS, ON_DEMAND_ORIGIN = 1, 2
BASELINE_HTTP, TOKEN_RESTRICTED = 2, 1
DYNAMIC_ENVELOPE, HLS_PROTOCOL = 3, 4

UPLOAD_WINDOW = timedelta(hours=24)
"""How long an UploadUri accepts the upload."""
STREAMING_WINDOW = timedelta(days=3650)
"""How long a PlaybackUrl plays; renewed when less than a day is left."""
THUMBNAIL_WINDOW = timedelta(hours=24)
"""How long a thumbnail Url works; a new one is made when less than an hour is left."""
TOKEN_LIFETIME = timedelta(hours=1)
"""Lifetime of a viewer token from AuthorizationToken (players fetch the key at start)."""

TOKEN_ISSUER = "urn:openams:connector"
TOKEN_AUDIENCE = "urn:Nimbus"
"""The audience AMS Connector tokens carried (spec §6.2)."""
CONTENT_KEY_CLAIM = "urn:microsoft:azure:mediaservices:contentkeyidentifier"
TEMPLATE_NS = "http://schemas.microsoft.com/Azure/MediaServices/KeyDelivery/TokenRestrictionTemplate/v1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

PROTECTION_MODES = {"none": "None", "aes128": "AES128"}
STORAGE_MODES = {"none": None, "aes256": "AES256"}
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,16}$")
METADATA_LIMIT = 1 << 20
JPEG_HEAD = 64 * 1024

PLAYBACK = {
    "streaming": ("Streaming", "manifest"),
    "hls": ("HLS", "manifest(format=m3u8-aapl)"),
    "dash": ("DASH", "manifest(format=mpd-time-csf)"),
    "progressive": ("Progressive", None),
}


class InvalidRequest(BadRequest):
    """A request the Connector answers with its documented 400 body, `"The request is invalid."`,
    plus what exactly is wrong."""

    code = "InvalidRequest"


# ------------------------------------------------------------------------------------------------
# reading the pieces of a video


@dataclass
class Video:
    guid: str
    asset: dict[str, Any]
    file: dict[str, Any] | None
    job: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task name → task."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Task name → its output asset id."""
    envelope_key: dict[str, Any] | None = None

    @property
    def blob_name(self) -> str:
        return self.file["Name"] if self.file else ""

    @property
    def encoded(self) -> str | None:
        return self.outputs.get(ENCODE_TASK)

    @property
    def thumbnails(self) -> str | None:
        return self.outputs.get(THUMBNAIL_TASK)

    @property
    def state(self) -> JobState | None:
        return JobState(self.job["State"]) if self.job else None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _select(ctx: Ctx, set_name: str, condition: str) -> list[dict[str, Any]]:
    es = ctx.entity_set(set_name)
    _es, _one, rows, _count = service.read(ctx, ResourcePath("set", es), QueryOptions(filter=condition))
    return rows


def _linked(ctx: Ctx, set_name: str, relation: str, source: str) -> list[dict[str, Any]]:
    es = ctx.entity_set(set_name)
    out = []
    for key in ctx.store.link_targets(relation, source):
        entity = ctx.store.get(es, key)
        if entity is not None:
            out.append(entity)
    return out


def _video_guid(video_id: str) -> str:
    try:
        return str(uuid.UUID(video_id.strip()))
    except (ValueError, AttributeError):
        raise NotFound(f"No video with id '{video_id}' exists (a video id is a GUID).") from None


def find_video(ctx: Ctx, video_id: str) -> Video:
    """The video's pieces, or 404 (also for another account's video)."""
    guid = _video_guid(video_id)
    assets = _select(ctx, "Assets", f"AlternateId eq {_lit(ALTERNATE_PREFIX + guid)}")
    if not assets:
        raise NotFound(f"No video with id '{guid}' exists.")
    asset = assets[0]
    files = _select(ctx, "Files", f"ParentAssetId eq {_lit(asset['Id'])}")
    primary = next((f for f in files if f.get("IsPrimary")), files[0] if files else None)
    video = Video(guid, asset, primary)
    video.envelope_key = next((k for k in _linked(ctx, "ContentKeys", "asset_contentkeys", asset["Id"])
                               if k["ContentKeyType"] == ENVELOPE_KEY), None)
    jobs_es = ctx.entity_set("Jobs")
    for job_id in ctx.store.link_sources("job_inputs", asset["Id"]):
        job = ctx.store.get(jobs_es, job_id)
        if job is not None and job.get("Name") == ALTERNATE_PREFIX + guid:
            video.job = job
            break
    if video.job is not None:
        for task in job_rules.job_tasks(ctx, video.job["Id"]):
            name = task.get("Name") or ""
            video.tasks[name] = task
            outs = ctx.store.link_targets("task_outputs", task["Id"])
            if outs:
                video.outputs[name] = outs[0]
    return video


def _locators(ctx: Ctx, asset_id: str, kind: int) -> list[dict[str, Any]]:
    return _select(ctx, "Locators", f"AssetId eq {_lit(asset_id)} and Type eq {kind}")


def _blob_url(locator: dict[str, Any], name: str) -> str:
    return f"{locator['BaseUri']}/{quote(name)}{locator['ContentAccessComponent']}"


def upload_uri(ctx: Ctx, video: Video) -> str | None:
    if video.job is not None or video.file is None:
        return None
    live = [loc for loc in _locators(ctx, video.asset["Id"], SAS) if loc["ExpirationDateTime"] > ctx.now]
    return _blob_url(live[0], video.blob_name) if live else None


def to_json(ctx: Ctx, video: Video, *, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """The Video entity as the Connector writes it; `secrets` (create only) adds the client-side
    encryption key and IV."""
    encrypted = bool((video.asset.get("Options") or 0) & STORAGE_ENCRYPTED)
    key = video.envelope_key
    return {
        "Id": video.guid,
        "OriginalFileName": video.blob_name,
        "UploadUri": upload_uri(ctx, video),
        "ContentProtectionMode": "AES128" if key else "None",
        "ContentProtectionKeyId": guid_of(key["Id"]) if key else None,
        "Duration": duration_seconds(ctx, video),
        "InputStorageEncryptionMode": "AES256" if encrypted else None,
        "InputStorageEncryptionSymmetricKey": (secrets or {}).get("key"),
        "InputStorageEncryptionIv": (secrets or {}).get("iv"),
    }


# ------------------------------------------------------------------------------------------------
# create


def _mode(body: dict[str, Any], name: str, allowed: dict[str, str | None]) -> str | None:
    raw = body.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str) or raw.strip().lower() not in allowed:
        shown = ", ".join(v or "None" for v in dict.fromkeys(allowed.values()))
        raise InvalidRequest(f"{name} must be one of {shown} (or left out), not {raw!r}.")
    return allowed[raw.strip().lower()]


def parse_create(body: Any) -> tuple[str, str, bool, bool]:
    """(original name, extension, AES128?, AES256 input?) from a create body; 400 otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("Unable to deserialize JSON into Video object: send a JSON object such as "
                         '{"OriginalFileName": "movie.mp4"}.', code="InvalidVideo")
    lowered = {str(k).lower(): v for k, v in body.items()}
    fields = {"originalfilename": "OriginalFileName", "contentprotectionmode": "ContentProtectionMode",
              "inputstorageencryptionmode": "InputStorageEncryptionMode"}
    body = {fields.get(k, k): v for k, v in lowered.items()}
    name = body.get("OriginalFileName")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("Unable to deserialize JSON into Video object: OriginalFileName is required, the name of "
                         'the file you will upload with its extension, e.g. {"OriginalFileName": "movie.mp4"}.',
                         code="InvalidVideo")
    name = name.strip()
    base = re.split(r"[\\/]", name)[-1]
    ext = base.rsplit(".", 1)[1] if "." in base else ""
    if not _EXTENSION.match(ext):
        raise BadRequest(f"Unable to deserialize JSON into Video object: OriginalFileName '{name[:200]}' needs the "
                         "file's extension (letters and digits after the last '.', e.g. movie.mp4); see "
                         "GET /api/Formats.", code="InvalidVideo")
    protect = _mode(body, "ContentProtectionMode", PROTECTION_MODES) == "AES128"
    encrypt = _mode(body, "InputStorageEncryptionMode", STORAGE_MODES) == "AES256"
    return name, ext, protect, encrypt


def _new_content_key(ctx: Ctx, key_type: int, clear: bytes, name: str, asset_id: str) -> dict[str, Any]:
    """Create a ContentKey for `clear` linked to the asset, through the ContentKeys rules: wrapped to
    the account's protection certificate for its type, as every stored key is."""
    cert = protection.certificate_for_type(ctx.store, ctx.account, key_type, ctx.settings)
    wrapped = protection.wrap_for_certificate(x509.load_der_x509_certificate(cert.der), clear)
    props = {"Id": f"nb:kid:UUID:{uuid.uuid4()}", "ContentKeyType": key_type, "Name": name,
             "EncryptedContentKey": base64.b64encode(wrapped).decode("ascii"),
             "ProtectionKeyId": cert.thumbprint, "ProtectionKeyType": 0}
    assets = ctx.entity_set("Assets")
    nav = assets.entity_type.navigation("ContentKeys")
    assert nav is not None
    return service.create(ctx, ctx.entity_set("ContentKeys"), EntityPayload(properties=props),
                          parent=(assets, asset_id, nav))


def token_template(signing_key: bytes) -> str:
    """The SWT TokenRestrictionTemplate of an AES128 video's key: symmetric key, the content key
    identifier claim required (a token opens only the key it names)."""
    return (f'<TokenRestrictionTemplate xmlns:i="{XSI_NS}" xmlns="{TEMPLATE_NS}">'
            "<AlternateVerificationKeys />"
            f"<Audience>{escape(TOKEN_AUDIENCE)}</Audience>"
            f"<Issuer>{escape(TOKEN_ISSUER)}</Issuer>"
            '<PrimaryVerificationKey i:type="SymmetricVerificationKey">'
            f"<KeyValue>{base64.b64encode(signing_key).decode('ascii')}</KeyValue></PrimaryVerificationKey>"
            f'<RequiredClaims><TokenClaim><ClaimType>{CONTENT_KEY_CLAIM}</ClaimType><ClaimValue i:nil="true" />'
            "</TokenClaim></RequiredClaims>"
            "<TokenType>SWT</TokenType>"
            "</TokenRestrictionTemplate>")


def _protect_key(ctx: Ctx, guid: str, asset_id: str) -> None:
    """AES128: an envelope key on the input asset whose authorization policy lets through only SWT
    tokens from AuthorizationToken (signed with 64 random bytes kept in the policy option)."""
    key = _new_content_key(ctx, ENVELOPE_KEY, os.urandom(ENVELOPE_KEY_BYTES), f"Connector video {guid} AES-128",
                           asset_id)
    option = service.create(ctx, ctx.entity_set("ContentKeyAuthorizationPolicyOptions"), EntityPayload(properties={
        "Name": f"Connector video {guid} token", "KeyDeliveryType": BASELINE_HTTP,
        "Restrictions": [{"Name": "Connector AuthorizationToken", "KeyRestrictionType": TOKEN_RESTRICTED,
                          "Requirements": token_template(os.urandom(64))}]}))
    policies = ctx.entity_set("ContentKeyAuthorizationPolicies")
    policy = service.create(ctx, policies, EntityPayload(properties={"Name": f"Connector video {guid}"}))
    service.add_link(ctx, policies, policy["Id"], "Options",
                     f"ContentKeyAuthorizationPolicyOptions('{option['Id']}')")
    service.update(ctx, ctx.entity_set("ContentKeys"), key["Id"],
                   EntityPayload(properties={"AuthorizationPolicyId": policy["Id"]}))


def _access_policy(ctx: Ctx, name: str, window: timedelta, permissions: int) -> dict[str, Any]:
    return service.create(ctx, ctx.entity_set("AccessPolicies"), EntityPayload(properties={
        "Name": name, "DurationInMinutes": window.total_seconds() / 60, "Permissions": permissions}))


def _new_locator(ctx: Ctx, asset_id: str, kind: int, name: str, window: timedelta, permissions: int
                 ) -> dict[str, Any]:
    policy = _access_policy(ctx, name, window, permissions)
    return service.create(ctx, ctx.entity_set("Locators"), EntityPayload(properties={
        "AccessPolicyId": policy["Id"], "AssetId": asset_id, "Type": kind, "Name": name}))


def create(ctx: Ctx, body: Any) -> dict[str, Any]:
    name, ext, protect, encrypt = parse_create(body)
    guid = str(uuid.uuid4())
    asset = service.create(ctx, ctx.entity_set("Assets"), EntityPayload(properties={
        "Name": name[:512], "AlternateId": ALTERNATE_PREFIX + guid, "Options": STORAGE_ENCRYPTED if encrypt else 0}))
    blob = f"{guid}.{ext}"
    file_props: dict[str, Any] = {"Name": blob, "ParentAssetId": asset["Id"], "IsPrimary": True,
                                  "MimeType": mimetypes.guess_type(f"x.{ext.lower()}")[0] or "application/octet-stream"}
    secrets: dict[str, str] | None = None
    if encrypt:
        clear = os.urandom(STORAGE_KEY_BYTES)
        key = _new_content_key(ctx, STORAGE_KEY, clear, f"Connector video {guid} input", asset["Id"])
        upper = os.urandom(8)
        file_props.update(IsEncrypted=True, EncryptionScheme="StorageEncryption", EncryptionVersion="1.0",
                          EncryptionKeyId=key["Id"], InitializationVector=str(int.from_bytes(upper, "big")))
        secrets = {"key": base64.b64encode(clear).decode("ascii"),
                   "iv": base64.b64encode(upper + bytes(8)).decode("ascii")}
    service.create(ctx, ctx.entity_set("Files"), EntityPayload(properties=file_props))
    if protect:
        _protect_key(ctx, guid, asset["Id"])
    _new_locator(ctx, asset["Id"], SAS, f"Connector upload {guid}", UPLOAD_WINDOW, WRITE)
    return to_json(ctx, find_video(ctx, guid), secrets=secrets)


# ------------------------------------------------------------------------------------------------
# MarkComplete


def _task(body_output: int, preset: str, name: str, asset_name: str) -> EntityPayload:
    task_body = (f"<taskBody><inputAsset>JobInputAsset(0)</inputAsset><outputAsset assetName={quoteattr(asset_name)}>"
                 f"JobOutputAsset({body_output})</outputAsset></taskBody>")
    return EntityPayload(properties={"Name": name, "Configuration": preset, "TaskBody": task_body,
                                     "MediaProcessorId": DEFAULT_MEDIA_PROCESSOR_ID})


def _drop_locators(ctx: Ctx, asset_id: str, kind: int, *, only_expired: bool = False) -> None:
    for loc in _locators(ctx, asset_id, kind):
        if only_expired and loc["ExpirationDateTime"] > ctx.now:
            continue
        service.delete(ctx, ctx.entity_set("Locators"), loc["Id"])
        _drop_unused_access_policy(ctx, loc["AccessPolicyId"])


def _drop_unused_access_policy(ctx: Ctx, policy_id: str | None) -> None:
    es = ctx.entity_set("AccessPolicies")
    if policy_id and ctx.store.exists(es, policy_id) and not _select(ctx, "Locators",
                                                                      f"AccessPolicyId eq {_lit(policy_id)}"):
        service.delete(ctx, es, policy_id)


def mark_complete(ctx: Ctx, video_id: str) -> dict[str, Any]:
    video = find_video(ctx, video_id)
    if video.job is not None:
        raise Conflict(f"Video '{video.guid}' was already marked complete; its upload cannot change. Poll "
                       f"GET /api/Videos/{video.guid}/Status, or DELETE the video and create a new one.",
                       code="AlreadyComplete")
    if video.file is None:
        raise Conflict(f"Video '{video.guid}' has lost its file record; DELETE it and create the video again.")
    asset = video.asset
    props = ctx.storage.properties(asset["StorageAccountName"], container_name(asset["Id"]), video.blob_name)
    if props is None or props.size == 0:
        what = "nothing was uploaded" if props is None else "the uploaded file is empty"
        raise BadRequest(f"Video '{video.guid}' cannot be marked complete: {what}. PUT the file to the video's "
                         "UploadUri (header x-ms-blob-type: BlockBlob) first, then call MarkComplete.",
                         code="NotUploaded")
    service.update(ctx, ctx.entity_set("Files"), video.file["Id"],
                   EntityPayload(properties={"ContentFileSize": props.size}))
    _drop_locators(ctx, asset["Id"], SAS)  # the UploadUri stops working: the upload is immutable
    label = (asset.get("Name") or video.guid)[:400]
    job = service.create(ctx, ctx.entity_set("Jobs"), EntityPayload(
        properties={"Name": ALTERNATE_PREFIX + video.guid},
        inline={"InputMediaAssets": [EntityPayload(properties={"Id": asset["Id"]})],
                "Tasks": [_task(0, ENCODE_PRESET, ENCODE_TASK, f"{label} (encoded)"),
                          _task(1, THUMBNAIL_PRESET, THUMBNAIL_TASK, f"{label} (thumbnails)")]}))
    run_deferred(ctx.store.conn)  # submits the job: its output assets exist from here on
    video = find_video(ctx, video.guid)
    if video.job is None or video.job["Id"] != job["Id"] or not video.encoded:
        raise InternalError(f"The encoding job of video '{video.guid}' could not be set up.")
    if video.envelope_key is not None:
        _protect_output(ctx, video)
    return to_json(ctx, video)


def _protect_output(ctx: Ctx, video: Video) -> None:
    """The encoded asset streams HLS with AES-128 (the envelope key, delivered to token holders)."""
    assert video.envelope_key is not None and video.encoded is not None
    assets = ctx.entity_set("Assets")
    service.add_link(ctx, assets, video.encoded, "ContentKeys", f"ContentKeys('{video.envelope_key['Id']}')")
    delivery = service.create(ctx, ctx.entity_set("AssetDeliveryPolicies"), EntityPayload(properties={
        "Name": f"Connector video {video.guid} AES-128 HLS", "AssetDeliveryPolicyType": DYNAMIC_ENVELOPE,
        "AssetDeliveryProtocol": HLS_PROTOCOL}))
    service.add_link(ctx, assets, video.encoded, "DeliveryPolicies", f"AssetDeliveryPolicies('{delivery['Id']}')")


# ------------------------------------------------------------------------------------------------
# status


def _task_error(video: Video) -> str:
    for name in (ENCODE_TASK, THUMBNAIL_TASK):
        task = video.tasks.get(name)
        if task is None or task["State"] != int(JobState.ERROR):
            continue
        details = task.get("ErrorDetails") or []
        reason = "; ".join(str(d.get("Message") or d.get("Code") or "") for d in details if d) or "unknown reason"
        reason = reason.strip()
        what = "Encoding" if name == ENCODE_TASK else "Making the thumbnail"
        return f"{what} failed: {reason}" + ("" if reason.endswith((".", "!", "?")) else ".")
    return "Encoding failed."


def status(ctx: Ctx, video_id: str) -> dict[str, Any]:
    """`{StatusCode, Status, Message}`: 0 Created (waiting for upload + MarkComplete), 1 Processing,
    2 Completed (spec), 3 Failed (openams; the spec documents only 1 and 2)."""
    video = find_video(ctx, video_id)
    state = video.state
    if state is None:
        return {"StatusCode": 0, "Status": "Created",
                "Message": "Waiting for the upload: PUT the file to UploadUri, then POST MarkComplete."}
    if state == JobState.FINISHED:
        return {"StatusCode": 2, "Status": "Completed", "Message": "Video is ready."}
    if state == JobState.ERROR:
        return {"StatusCode": 3, "Status": "Failed",
                "Message": f"{_task_error(video)} Delete the video and create it again with a media file "
                           "(see GET /api/Formats)."}
    if state == JobState.CANCELED:
        return {"StatusCode": 3, "Status": "Failed",
                "Message": "Encoding was canceled. Delete the video and create it again."}
    encode = video.tasks.get(ENCODE_TASK)
    progress = f" (encoding {encode['Progress']:.0f}%)" if encode and encode.get("Progress") else ""
    return {"StatusCode": 1, "Status": "Processing",
            "Message": f"Video is still being processed{progress}; poll again in a few seconds."}


def _require_ready(video: Video, what: str) -> None:
    state = video.state
    if state == JobState.FINISHED:
        return
    if state is None:
        raise Forbidden(f"Video '{video.guid}' has no {what} yet: upload the file and call MarkComplete, then wait "
                        "until Status is Completed.", code="VideoNotReady")
    if state in ACTIVE:
        raise Forbidden(f"Video '{video.guid}' is still being processed; its {what} is available once Status is "
                        "Completed.", code="VideoNotReady")
    raise Forbidden(f"Video '{video.guid}' has no {what}: its encoding did not succeed (see its Status).",
                    code="VideoFailed")


# ------------------------------------------------------------------------------------------------
# playback, thumbnails, tokens


def _files(ctx: Ctx, asset_id: str) -> list[dict[str, Any]]:
    return _select(ctx, "Files", f"ParentAssetId eq {_lit(asset_id)}")


def _live_locator(ctx: Ctx, asset_id: str, kind: int, margin: timedelta) -> dict[str, Any] | None:
    live = [loc for loc in _locators(ctx, asset_id, kind) if loc["ExpirationDateTime"] > ctx.now + margin]
    return max(live, key=lambda loc: loc["ExpirationDateTime"]) if live else None


def playback_endpoint(ctx: Ctx, video_id: str, endpoint_type: str | None) -> tuple[dict[str, Any], bool]:
    """({Type, PlaybackUrl}, whether a locator was made)."""
    video = find_video(ctx, video_id)
    if not endpoint_type or endpoint_type.strip().lower() not in PLAYBACK:
        raise InvalidRequest(f"endpointType must be Streaming, HLS, DASH or Progressive, not {endpoint_type!r}.")
    kind, manifest = PLAYBACK[endpoint_type.strip().lower()]
    _require_ready(video, "playback endpoint")
    if video.envelope_key is not None and kind != "HLS":
        if kind == "Progressive":
            raise BadRequest(f"Video '{video.guid}' is AES128-protected and a progressive download cannot be "
                             "encrypted; play it with endpointType=HLS and a token from AuthorizationToken.",
                             code="ProtectedVideo")
        raise NotImplementedYet(f"AES-128 envelope encryption of {kind} (an AES128 video plays with "
                                "endpointType=HLS)")
    assert video.encoded is not None
    files = _files(ctx, video.encoded)
    locator = _live_locator(ctx, video.encoded, ON_DEMAND_ORIGIN, timedelta(days=1))
    made = locator is None
    if locator is None:
        _drop_locators(ctx, video.encoded, ON_DEMAND_ORIGIN, only_expired=True)
        locator = _new_locator(ctx, video.encoded, ON_DEMAND_ORIGIN, f"Connector streaming {video.guid}",
                               STREAMING_WINDOW, READ)
    if manifest is None:
        mp4s = [f for f in files if f["Name"].lower().endswith(".mp4")]
        if not mp4s:
            raise NotFound(f"Video '{video.guid}' has no MP4 to download progressively.")
        best = max(mp4s, key=lambda f: int(f.get("ContentFileSize") or 0))
        return {"Type": kind, "PlaybackUrl": f"{locator['Path']}{quote(best['Name'])}"}, made
    ism = next((f["Name"] for f in files if f["Name"].lower().endswith(".ism")), None)
    if ism is None:
        raise NotFound(f"Video '{video.guid}' has no streaming manifest (.ism) in its encoded asset.")
    return {"Type": kind, "PlaybackUrl": f"{locator['Path']}{quote(ism)}/{manifest}"}, made


def _jpeg_height(data: bytes) -> int:
    """The height in a JPEG's SOF marker (0 when the header is not found in `data`)."""
    if data[:2] != b"\xff\xd8":
        return 0
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return 0
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return 0


def _head(ctx: Ctx, asset: dict[str, Any], name: str, limit: int) -> bytes:
    props = ctx.storage.properties(asset["StorageAccountName"], container_name(asset["Id"]), name)
    if props is None or props.size == 0:
        return b""
    end = min(props.size, limit) - 1
    return b"".join(ctx.storage.read(asset["StorageAccountName"], container_name(asset["Id"]), name, 0, end))


def thumbnails(ctx: Ctx, video_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The poster JPEGs with time-limited read URLs ([] until the thumbnail task has finished)."""
    video = find_video(ctx, video_id)
    task = video.tasks.get(THUMBNAIL_TASK)
    if task is None or task["State"] != int(JobState.FINISHED) or not video.thumbnails:
        return [], False
    asset = ctx.store.get(ctx.entity_set("Assets"), video.thumbnails)
    if asset is None:
        return [], False
    images = sorted((f for f in _files(ctx, asset["Id"]) if f["Name"].lower().endswith((".jpg", ".jpeg"))),
                    key=lambda f: f["Name"])
    if not images:
        return [], False
    locator = _live_locator(ctx, asset["Id"], SAS, timedelta(hours=1))
    made = locator is None
    if locator is None:
        _drop_locators(ctx, asset["Id"], SAS, only_expired=True)
        locator = _new_locator(ctx, asset["Id"], SAS, f"Connector thumbnails {video.guid}", THUMBNAIL_WINDOW, READ)
    out = []
    for index, image in enumerate(images):
        out.append({"Id": guid_of(image["Id"]), "VideoId": video.guid, "Kind": "Poster",
                    "Height": _jpeg_height(_head(ctx, asset, image["Name"], JPEG_HEAD)), "Index": index, "Time": 0,
                    "Url": _blob_url(locator, image["Name"])})
    return out, made


def authorization_token(ctx: Ctx, video_id: str, key_id: str | None) -> dict[str, str]:
    from ..keydelivery.restrictions import TemplateError, mint_token

    video = find_video(ctx, video_id)
    key = video.envelope_key
    if key is None:
        raise BadRequest(f"Video '{video.guid}' is not protected (ContentProtectionMode None); viewer tokens are "
                         "for AES128 videos.", code="VideoNotProtected")
    if not key_id:
        raise InvalidRequest(f"KeyId is required: the video's ContentProtectionKeyId, e.g. "
                             f"?KeyId={guid_of(key['Id'])}.")
    try:
        wanted = uuid.UUID(guid_of(key_id.strip()))
    except ValueError:
        raise InvalidRequest(f"KeyId must be a GUID (the video's ContentProtectionKeyId), not {key_id!r}.") from None
    if wanted != uuid.UUID(guid_of(key["Id"])):
        raise NotFound(f"Video '{video.guid}' has no content key '{wanted}'; its ContentProtectionKeyId is "
                       f"'{guid_of(key['Id'])}'.")
    template = None
    policy_id = key.get("AuthorizationPolicyId")
    if policy_id:
        for option in _linked(ctx, "ContentKeyAuthorizationPolicyOptions", "ckap_options", policy_id):
            for restriction in option.get("Restrictions") or []:
                if restriction.get("KeyRestrictionType") == TOKEN_RESTRICTED and restriction.get("Requirements"):
                    template = restriction["Requirements"]
                    break
    if template is None:
        raise Conflict(f"The content key of video '{video.guid}' no longer has a token-restricted authorization "
                       "policy, so no token can open it; DELETE the video and create it again.")
    try:
        token = mint_token(template, key_id=wanted, lifetime=TOKEN_LIFETIME,
                           claims={"urn:ServiceAccessible": "service"})
    except (TemplateError, ValueError):
        raise Conflict(f"The authorization policy of video '{video.guid}' was changed and no longer takes "
                       "tokens this service can sign (a symmetric-key template is needed).") from None
    return {"value": f"Bearer={token}"}


# ------------------------------------------------------------------------------------------------
# duration


def _iso_seconds(text: str) -> float:
    m = re.fullmatch(r"P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?", text.strip())
    if not m:
        return 0.0
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def duration_seconds(ctx: Ctx, video: Video) -> int:
    """Seconds, from the encoder's metadata of the finished encode; 0 until known."""
    task = video.tasks.get(ENCODE_TASK)
    if task is None or task["State"] != int(JobState.FINISHED) or not video.encoded:
        return 0
    asset = ctx.store.get(ctx.entity_set("Assets"), video.encoded)
    if asset is None:
        return 0
    meta = next((f["Name"] for f in _files(ctx, asset["Id"]) if f["Name"].endswith("_metadata.xml")), None)
    if meta is None:
        return 0
    from defusedxml import ElementTree

    try:
        root = ElementTree.fromstring(_head(ctx, asset, meta, METADATA_LIMIT))
    except Exception:  # unreadable metadata: the duration is simply not known
        return 0
    source = root.find("./Inputs/AssetFile")
    return round(_iso_seconds(source.get("Duration", ""))) if source is not None else 0


# ------------------------------------------------------------------------------------------------
# delete


def delete(ctx: Ctx, video_id: str) -> str | None:
    """Delete the video and everything made for it. Returns None when done, or — while the encode
    is still stopping — a message saying to retry (the cancel is committed; nothing else changes)."""
    video = find_video(ctx, video_id)
    jobs_es = ctx.entity_set("Jobs")
    if video.job is not None and JobState(video.job["State"]) in ACTIVE:
        if video.job["State"] != int(JobState.CANCELING):
            job_rules.cancel_job(ctx, {"jobid": video.job["Id"]})
        job = ctx.store.get(jobs_es, video.job["Id"])
        if job is not None and JobState(job["State"]) in ACTIVE:
            return (f"Video '{video.guid}' was still being encoded; the encode is being stopped now. Send the "
                    "DELETE again in a few seconds.")
    assets_es = ctx.entity_set("Assets")
    asset_ids = [*(a for a in video.outputs.values()), video.asset["Id"]]
    if video.job is not None:
        asset_ids = [*ctx.store.link_targets("job_outputs", video.job["Id"]), video.asset["Id"]]
    delivery = {p for a in asset_ids for p in ctx.store.link_targets("asset_deliverypolicies", a)}
    keys = [k for a in asset_ids for k in _linked(ctx, "ContentKeys", "asset_contentkeys", a)]
    policies = {k["AuthorizationPolicyId"] for k in keys if k.get("AuthorizationPolicyId")}
    options = {o for p in policies for o in ctx.store.link_targets("ckap_options", p)}
    access = {loc["AccessPolicyId"] for a in asset_ids for kind in (SAS, ON_DEMAND_ORIGIN)
              for loc in _locators(ctx, a, kind)}
    if video.job is not None:
        service.delete(ctx, jobs_es, video.job["Id"])
    for asset_id in dict.fromkeys(asset_ids):
        if ctx.store.exists(assets_es, asset_id):
            service.delete(ctx, assets_es, asset_id)
    _delete_unused(ctx, "AssetDeliveryPolicies", delivery)
    keys_es = ctx.entity_set("ContentKeys")
    for key in keys:  # still there only when linked to an asset outside the video: leave those
        if ctx.store.exists(keys_es, key["Id"]) and not ctx.store.link_sources("asset_contentkeys", key["Id"]):
            service.delete(ctx, keys_es, key["Id"])
    _delete_unused(ctx, "ContentKeyAuthorizationPolicies", policies)
    _delete_unused(ctx, "ContentKeyAuthorizationPolicyOptions", options)
    for policy_id in access:
        _drop_unused_access_policy(ctx, policy_id)
    return None


def _delete_unused(ctx: Ctx, set_name: str, ids: set[str]) -> None:
    """Delete what the video made, skipping what a user has since put to other use (the rules say)."""
    es = ctx.entity_set(set_name)
    for entity_id in ids:
        if set_name == "ContentKeyAuthorizationPolicyOptions" and ctx.store.link_sources("ckap_options", entity_id):
            continue
        if set_name == "AssetDeliveryPolicies" and ctx.store.link_sources("asset_deliverypolicies", entity_id):
            continue
        if not ctx.store.exists(es, entity_id):
            continue
        try:
            service.delete(ctx, es, entity_id)
        except ApiError as exc:
            if exc.status != 409:
                raise
