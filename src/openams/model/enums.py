"""AMS enumerations: wire name → integer value.

Integer-typed properties carry the number on the wire; the string-typed ones (streaming endpoint,
channel, program and operation states, channel settings, monitoring settings) carry the name, and
the number is the .NET SDK's ordinal, kept for ordering and documentation. Flags enums are listed
with their single bits (plus any named combinations); checking that a value is a valid
combination is the business of the entity rules, not of this table.

String-valued names should be matched case-insensitively: the SDK parses them that way and the
documentation is not consistent about case (`NotEqual` / `notEqual`).
"""

from __future__ import annotations

from collections.abc import Mapping


def _enum(**members: int) -> Mapping[str, int]:
    # plain dicts (not MappingProxyType) so the model stays copyable and picklable; treat as read-only
    return dict(members)


# assets and files --------------------------------------------------------------------------------

ASSET_CREATION_OPTIONS = _enum(
    **{"None": 0, "StorageEncrypted": 1, "CommonEncryptionProtected": 2, "EnvelopeEncryptionProtected": 4}
)
"""Asset.Options (and `assetCreationOptions` in task bodies). Exactly one value, not a combination."""

ASSET_STATE = _enum(Initialized=0, Published=1, Deleted=2)

ASSET_FORMAT_OPTION = _enum(**{"None": 0, "AdaptiveStreaming": 1})

ASSET_FILE_OPTIONS = _enum(**{"None": 0, "Fragmented": 1})
"""AssetFile.Options (SDK-only field)."""

ACCESS_PERMISSIONS = _enum(**{"None": 0, "Read": 1, "Write": 2, "Delete": 4, "List": 8})
"""AccessPolicy.Permissions — flags."""

LOCATOR_TYPE = _enum(**{"None": 0, "Sas": 1, "OnDemandOrigin": 2})
"""Locator.Type; `None` is never valid on create."""

ENCRYPTION_SCHEMES: tuple[str, ...] = ("StorageEncryption", "CommonEncryption", "EnvelopeEncryption")
"""Values of AssetFile/IngestManifestFile `EncryptionScheme` (a string property)."""

# content protection ------------------------------------------------------------------------------

CONTENT_KEY_TYPE = _enum(
    CommonEncryption=0,
    StorageEncryption=1,
    ConfigurationEncryption=2,
    UrlEncryption=3,
    EnvelopeEncryption=4,
    CommonEncryptionCbcs=6,
    FairPlayASk=7,
    FairPlayPfxPassword=8,
)

PROTECTION_KEY_TYPE = _enum(X509CertificateThumbprint=0)
"""Only defined value is 0, but real samples send 1; not attached to ContentKey.ProtectionKeyType."""

CONTENT_KEY_DELIVERY_TYPE = _enum(
    **{"None": 0, "PlayReadyLicense": 1, "BaselineHttp": 2, "Widevine": 3, "FairPlay": 4}
)

CONTENT_KEY_RESTRICTION_TYPE = _enum(Open=0, TokenRestricted=1, IPRestricted=2)

ASSET_DELIVERY_PROTOCOL = _enum(
    **{
        "None": 0x0,
        "SmoothStreaming": 0x1,
        "Dash": 0x2,
        "HLS": 0x4,
        "Hds": 0x8,
        "ProgressiveDownload": 0x10,
        "All": 0xFFFF,
    }
)
"""AssetDeliveryPolicy.AssetDeliveryProtocol — flags."""

ASSET_DELIVERY_POLICY_TYPE = _enum(
    **{
        "None": 0,
        "Blocked": 1,
        "NoDynamicEncryption": 2,
        "DynamicEnvelopeEncryption": 3,
        "DynamicCommonEncryption": 4,
        "DynamicCommonEncryptionCbcs": 5,
    }
)
"""`None` (0) is listed but invalid on create."""

ASSET_DELIVERY_POLICY_CONFIGURATION_KEY = _enum(
    **{
        "None": 0,
        "EnvelopeKeyAcquisitionUrl": 1,
        "EnvelopeBaseKeyAcquisitionUrl": 2,
        "EnvelopeEncryptionIVAsBase64": 3,
        "PlayReadyLicenseAcquisitionUrl": 4,
        "PlayReadyCustomAttributes": 5,
        "EnvelopeEncryptionIV": 6,
        "WidevineLicenseAcquisitionUrl": 7,
        "WidevineBaseLicenseAcquisitionUrl": 8,
        "FairPlayLicenseAcquisitionUrl": 9,
        "FairPlayBaseLicenseAcquisitionUrl": 10,
        "CommonEncryptionIVForCbcs": 11,
        "UnencryptedTracksByFourCC": 12,
        "AllowPersistentLicense": 13,
    }
)
"""Keys of the `[{"Key": n, "Value": "…"}]` list in AssetDeliveryPolicy.AssetDeliveryConfiguration."""

# jobs and tasks ----------------------------------------------------------------------------------

JOB_STATE = _enum(Queued=0, Scheduled=1, Processing=2, Finished=3, Error=4, Canceled=5, Canceling=6)
"""Job.State and (as the SDK reads it) Task.State."""

JOB_FINAL_STATES: frozenset[int] = frozenset({3, 4, 5})

TASK_OPTIONS = _enum(
    **{
        "None": 0,
        "ProtectedConfiguration": 1,
        "DoNotDeleteOutputAssetOnFailure": 2,
        "DoNotCancelOnJobFailure": 4,
    }
)
"""Task.Options — flags."""

TASK_TEMPLATE_OPTIONS = _enum(**{"None": 0, "ProtectedConfiguration": 1})

JOB_TEMPLATE_TYPE = _enum(SystemLevel=0, AccountLevel=1)

NOTIFICATION_JOB_STATE = _enum(**{"None": 0, "FinalStatesOnly": 1, "AllStates": 2})
"""TargetJobState / TargetTaskState of notification subscriptions; 0 is rejected on create."""

# notifications -----------------------------------------------------------------------------------

ENDPOINT_TYPE = _enum(**{"None": 0, "AzureQueue": 1, "AzureTable": 2, "WebHook": 3})

CREDENTIAL_TYPE = _enum(**{"None": 0, "SigningKey": 1})

NOTIFICATION_EVENT_TYPE = _enum(
    **{
        "None": 0,
        "JobStateChange": 1,
        "NotificationEndPointRegistration": 2,
        "NotificationEndPointUnregistration": 3,
        "TaskStateChange": 4,
        "TaskProgress": 5,
    }
)
"""EventType of notification messages (not a property)."""

# bulk ingest -------------------------------------------------------------------------------------

INGEST_MANIFEST_STATE = _enum(Inactive=0, Activating=1, Active=2)

INGEST_MANIFEST_FILE_STATE = _enum(Pending=0, Finished=1, Error=2)

# encoding units ----------------------------------------------------------------------------------

RESERVED_UNIT_TYPE = _enum(S1=0, S2=1, S3=2)
"""EncodingReservedUnitType.ReservedUnitType; the SDK calls them Basic/Standard/Premium."""

RESERVED_UNIT_TYPE_SDK_NAMES = _enum(Basic=0, Standard=1, Premium=2)

# long-running operations, streaming and live (string-valued on the wire) -------------------------

OPERATION_STATE = _enum(Succeeded=0, Failed=1, InProgress=2)

OPERATION_ERROR_CODES: tuple[str, ...] = (
    "BadRequest",
    "InsufficientCapacity",
    "InternalError",
    "InvalidIdentifierFormat",
    "InvalidOperation",
    "InvalidResourceName",
    "OperationInProgress",
    "OperationNotFound",
    "ResourceNameTaken",
    "ResourceNotFound",
    "ExceededResourceQuota",
    "Timeout",
    "DeleteNotAllowedOnDefaultOrigin",
    "SettingsUpdateInProgress",
)
"""Values of Operation.ErrorCode."""

STREAMING_ENDPOINT_STATE = _enum(Stopped=0, Starting=1, Running=2, Stopping=3, Deleting=4, Scaling=5)

CDN_PROVIDER = _enum(StandardVerizon=0, PremiumVerizon=1, StandardAkamai=2)

STREAMING_ENDPOINT_VERSIONS: tuple[str, ...] = ("1.0", "2.0")

CHANNEL_STATE = _enum(Stopped=0, Starting=1, Running=2, Stopping=3, Deleting=4)

PROGRAM_STATE = _enum(Stopped=0, Starting=1, Running=2, Stopping=3)

STREAMING_PROTOCOL = _enum(FragmentedMP4=0, RTMP=1, RTPMPEG2TS=2)
"""ChannelInput.StreamingProtocol and ChannelEndpoint.Protocol."""

ENCODING_TYPE = _enum(**{"None": 0, "Standard": 1, "Premium": 2})
"""Channel.EncodingType."""

AD_MARKER_SOURCE = _enum(Api=0, Scte35=1)

# filters -----------------------------------------------------------------------------------------

FILTER_TRACK_PROPERTIES: tuple[str, ...] = ("Type", "Name", "Language", "FourCC", "Bitrate")
"""Allowed FilterTrackPropertyCondition.Property names."""

FILTER_TRACK_COMPARE_OPERATOR = _enum(Equal=0, NotEqual=1)

FILTER_TRACK_TYPE = _enum(Audio=0, Video=1, Text=2)
"""Values of a `Type` condition, written lower-case on the wire (`audio`, `video`, `text`)."""

# monitoring --------------------------------------------------------------------------------------

MONITORING_COMPONENT = _enum(Channel=0, StreamingEndpoint=1)

MONITORING_LEVEL = _enum(Disabled=0, Normal=1, Verbose=2)


ENUMS: Mapping[str, Mapping[str, int]] = (
    {
        "AssetCreationOptions": ASSET_CREATION_OPTIONS,
        "AssetState": ASSET_STATE,
        "AssetFormatOption": ASSET_FORMAT_OPTION,
        "AssetFileOptions": ASSET_FILE_OPTIONS,
        "AccessPermissions": ACCESS_PERMISSIONS,
        "LocatorType": LOCATOR_TYPE,
        "ContentKeyType": CONTENT_KEY_TYPE,
        "ProtectionKeyType": PROTECTION_KEY_TYPE,
        "ContentKeyDeliveryType": CONTENT_KEY_DELIVERY_TYPE,
        "ContentKeyRestrictionType": CONTENT_KEY_RESTRICTION_TYPE,
        "AssetDeliveryProtocol": ASSET_DELIVERY_PROTOCOL,
        "AssetDeliveryPolicyType": ASSET_DELIVERY_POLICY_TYPE,
        "AssetDeliveryPolicyConfigurationKey": ASSET_DELIVERY_POLICY_CONFIGURATION_KEY,
        "JobState": JOB_STATE,
        "TaskOptions": TASK_OPTIONS,
        "TaskTemplateOptions": TASK_TEMPLATE_OPTIONS,
        "JobTemplateType": JOB_TEMPLATE_TYPE,
        "NotificationJobState": NOTIFICATION_JOB_STATE,
        "EndPointType": ENDPOINT_TYPE,
        "CredentialType": CREDENTIAL_TYPE,
        "NotificationEventType": NOTIFICATION_EVENT_TYPE,
        "IngestManifestState": INGEST_MANIFEST_STATE,
        "IngestManifestFileState": INGEST_MANIFEST_FILE_STATE,
        "ReservedUnitType": RESERVED_UNIT_TYPE,
        "OperationState": OPERATION_STATE,
        "StreamingEndpointState": STREAMING_ENDPOINT_STATE,
        "CdnProvider": CDN_PROVIDER,
        "ChannelState": CHANNEL_STATE,
        "ProgramState": PROGRAM_STATE,
        "StreamingProtocol": STREAMING_PROTOCOL,
        "EncodingType": ENCODING_TYPE,
        "AdMarkerSource": AD_MARKER_SOURCE,
        "FilterTrackCompareOperator": FILTER_TRACK_COMPARE_OPERATOR,
        "FilterTrackType": FILTER_TRACK_TYPE,
        "MonitoringComponent": MONITORING_COMPONENT,
        "MonitoringLevel": MONITORING_LEVEL,
    }
)
"""Every enumeration by its SDK name."""

FLAGS_ENUMS: frozenset[str] = frozenset({"AccessPermissions", "AssetDeliveryProtocol", "TaskOptions"})
"""Enumerations whose values may be combined with bitwise OR."""
