"""AMS complex types (structured property values without identity).

Defaults given here are the values the service writes when a client leaves a member out; the
property-level flags (computed, required, …) of complex members document the rules of the owning
entity and are applied by the entity rules, not by the payload coercion.
"""

from __future__ import annotations

from openams.odata.edm import ComplexType, Property

from . import enums

INT64_MAX = 9_223_372_036_854_775_807

# jobs and tasks ----------------------------------------------------------------------------------

JOB_NOTIFICATION_SUBSCRIPTION = ComplexType(
    "JobNotificationSubscription",
    (
        Property("TargetJobState", "Edm.Int32", nullable=False, required=True,
                 enum=enums.NOTIFICATION_JOB_STATE),
        Property("NotificationEndPointId", "Edm.String", required=True),
    ),
)

TASK_NOTIFICATION_SUBSCRIPTION = ComplexType(
    "TaskNotificationSubscription",
    (
        Property("TargetTaskState", "Edm.Int32", nullable=False, required=True,
                 enum=enums.NOTIFICATION_JOB_STATE),
        Property("NotificationEndPointId", "Edm.String", required=True),
        Property("IncludeTaskProgress", "Edm.Boolean", nullable=False, default=False),
    ),
)

ERROR_DETAIL = ComplexType(
    "ErrorDetail",
    (
        Property("Code", "Edm.String"),
        # the reference page types Message as Edm.Int32 (a slip); the SDK and the wire use a string
        Property("Message", "Edm.String"),
    ),
)

TASK_HISTORICAL_EVENT = ComplexType(
    "TaskHistoricalEvent",
    (
        Property("Code", "Edm.String"),
        Property("Message", "Edm.String"),
        Property("TimeStamp", "Edm.DateTime", nullable=False),
    ),
)

INGEST_MANIFEST_STATISTICS = ComplexType(
    "IngestManifestStatistics",
    (
        Property("PendingFilesCount", "Edm.Int32", nullable=False, default=0),
        Property("FinishedFilesCount", "Edm.Int32", nullable=False, default=0),
        Property("ErrorFilesCount", "Edm.Int32", nullable=False, default=0),
        Property("ErrorFilesDetails", "Edm.String"),
    ),
)

# access control (streaming endpoints and channels) -----------------------------------------------

IP_RANGE = ComplexType(
    "IPRange",
    (
        Property("Name", "Edm.String"),
        Property("Address", "Edm.String", description="base IPv4 address"),
        Property("SubnetPrefixLength", "Edm.Int32", description="CIDR prefix bits"),
    ),
)

IP_ACCESS_CONTROL = ComplexType(
    "IPAccessControl",
    (
        # Semantics differ between a missing list (everyone) and an empty one (nobody) on
        # streaming endpoints; the entity rules keep the distinction.
        Property("Allow", "IPRange", collection=True),
    ),
)

AKAMAI_SIGNATURE_HEADER_AUTHENTICATION_KEY = ComplexType(
    "AkamaiSignatureHeaderAuthenticationKey",
    (
        Property("Identifier", "Edm.String", description="the Akamai nonce"),
        Property("Expiration", "Edm.DateTime", nullable=False),
        Property("Base64Key", "Edm.String"),
    ),
)

AKAMAI_ACCESS_CONTROL = ComplexType(
    "AkamaiAccessControl",
    (
        Property("AkamaiSignatureHeaderAuthenticationKeyList", "AkamaiSignatureHeaderAuthenticationKey",
                 collection=True),
    ),
)

STREAMING_ENDPOINT_ACCESS_CONTROL = ComplexType(
    "StreamingEndpointAccessControl",
    (
        Property("Akamai", "AkamaiAccessControl"),
        Property("IP", "IPAccessControl"),
    ),
)

STREAMING_ENDPOINT_CACHE_CONTROL = ComplexType(
    "StreamingEndpointCacheControl",
    (Property("MaxAge", "Edm.Int64", description="max-age in seconds for fragments and VOD manifests"),),
)

CROSS_SITE_ACCESS_POLICIES = ComplexType(
    "CrossSiteAccessPolicies",
    (
        Property("ClientAccessPolicy", "Edm.String", description="clientaccesspolicy.xml body"),
        Property("CrossDomainPolicy", "Edm.String", description="crossdomain.xml body"),
    ),
)

# content protection ------------------------------------------------------------------------------

CONTENT_KEY_AUTHORIZATION_POLICY_RESTRICTION = ComplexType(
    "ContentKeyAuthorizationPolicyRestriction",
    (
        Property("Name", "Edm.String"),
        Property("KeyRestrictionType", "Edm.Int32", nullable=False, required=True,
                 enum=enums.CONTENT_KEY_RESTRICTION_TYPE),
        Property("Requirements", "Edm.String", description="token restriction template XML; null for Open"),
    ),
)

# filters -----------------------------------------------------------------------------------------

PRESENTATION_TIME_RANGE = ComplexType(
    "PresentationTimeRange",
    (
        Property("StartTimestamp", "Edm.Int64", default=0),
        Property("EndTimestamp", "Edm.Int64", default=INT64_MAX),
        Property("PresentationWindowDuration", "Edm.Int64", default=INT64_MAX,
                 description="sliding window; Int64.MaxValue means no window; minimum 120 s"),
        Property("LiveBackoffDuration", "Edm.Int64", default=0, description="live only; maximum 60 s"),
        Property("Timescale", "Edm.Int64", default=10_000_000),
        Property("ForceEndTimestamp", "Edm.Boolean", default=False),
    ),
)

FILTER_TRACK_PROPERTY_CONDITION = ComplexType(
    "FilterTrackPropertyCondition",
    (
        Property("Property", "Edm.String", description="Type, Name, Language, FourCC or Bitrate"),
        Property("Value", "Edm.String"),
        Property("Operator", "Edm.String", enum=enums.FILTER_TRACK_COMPARE_OPERATOR),
    ),
)

FILTER_TRACK_SELECT = ComplexType(
    "FilterTrackSelect",
    (Property("PropertyConditions", "FilterTrackPropertyCondition", collection=True),),
)

FIRST_QUALITY = ComplexType("FirstQuality", (Property("Bitrate", "Edm.Int32", nullable=False),))

# live --------------------------------------------------------------------------------------------

CHANNEL_ENDPOINT = ComplexType(
    "ChannelEndpoint",
    (
        Property("Protocol", "Edm.String", enum=enums.STREAMING_PROTOCOL),
        Property("Url", "Edm.String"),
    ),
)

CHANNEL_INPUT_ACCESS_CONTROL = ComplexType(
    "ChannelInputAccessControl", (Property("IP", "IPAccessControl"),)
)

CHANNEL_INPUT = ComplexType(
    "ChannelInput",
    (
        Property("KeyFrameInterval", "Edm.Time"),
        Property("StreamingProtocol", "Edm.String", enum=enums.STREAMING_PROTOCOL),
        Property("AccessControl", "ChannelInputAccessControl"),
        Property("Endpoints", "ChannelEndpoint", collection=True, computed=True),
    ),
)

CHANNEL_PREVIEW_ACCESS_CONTROL = ComplexType(
    "ChannelPreviewAccessControl", (Property("IP", "IPAccessControl"),)
)

CHANNEL_PREVIEW = ComplexType(
    "ChannelPreview",
    (
        Property("AccessControl", "ChannelPreviewAccessControl"),
        Property("Endpoints", "ChannelEndpoint", collection=True, computed=True),
    ),
)

CHANNEL_OUTPUT_HLS = ComplexType(
    "ChannelOutputHls", (Property("FragmentsPerSegment", "Edm.Int16"),)
)

CHANNEL_OUTPUT = ComplexType("ChannelOutput", (Property("Hls", "ChannelOutputHls"),))

VIDEO_STREAM = ComplexType(
    "VideoStream",
    (
        Property("Index", "Edm.Int32", nullable=False, description="zero-based, PMT order"),
        Property("Name", "Edm.String"),
    ),
)

AUDIO_STREAM = ComplexType(
    "AudioStream",
    (
        Property("Index", "Edm.Int32", nullable=False),
        Property("Name", "Edm.String"),
        Property("Language", "Edm.String", description="ISO 639-2, default UND"),
    ),
)

CHANNEL_ENCODING = ComplexType(
    "ChannelEncoding",
    (
        Property("AdMarkerSource", "Edm.String", default="Api", enum=enums.AD_MARKER_SOURCE),
        Property("IgnoreCea708ClosedCaptions", "Edm.Boolean", default=False),
        # The REST page has one `VideoStream`, the SDK a list `VideoStreams`: both are accepted.
        Property("VideoStream", "VideoStream"),
        Property("VideoStreams", "VideoStream", collection=True),
        Property("AudioStreams", "AudioStream", collection=True),
        Property("SystemPreset", "Edm.String", default="Default720p"),
    ),
)

CHANNEL_SLATE = ComplexType(
    "ChannelSlate",
    (
        Property("InsertSlateOnAdMarker", "Edm.Boolean", default=True),
        Property("DefaultSlateAssetId", "Edm.String"),
    ),
)

# monitoring --------------------------------------------------------------------------------------

COMPONENT_MONITORING_SETTINGS = ComplexType(
    "ComponentMonitoringSettings",
    (
        Property("Component", "Edm.String", enum=enums.MONITORING_COMPONENT),
        Property("Level", "Edm.String", default="Disabled", enum=enums.MONITORING_LEVEL),
    ),
)


COMPLEX_TYPES: tuple[ComplexType, ...] = (
    JOB_NOTIFICATION_SUBSCRIPTION,
    TASK_NOTIFICATION_SUBSCRIPTION,
    ERROR_DETAIL,
    TASK_HISTORICAL_EVENT,
    INGEST_MANIFEST_STATISTICS,
    STREAMING_ENDPOINT_ACCESS_CONTROL,
    AKAMAI_ACCESS_CONTROL,
    AKAMAI_SIGNATURE_HEADER_AUTHENTICATION_KEY,
    IP_ACCESS_CONTROL,
    IP_RANGE,
    STREAMING_ENDPOINT_CACHE_CONTROL,
    CROSS_SITE_ACCESS_POLICIES,
    CONTENT_KEY_AUTHORIZATION_POLICY_RESTRICTION,
    PRESENTATION_TIME_RANGE,
    FILTER_TRACK_SELECT,
    FILTER_TRACK_PROPERTY_CONDITION,
    FIRST_QUALITY,
    CHANNEL_INPUT,
    CHANNEL_INPUT_ACCESS_CONTROL,
    CHANNEL_ENDPOINT,
    CHANNEL_PREVIEW,
    CHANNEL_PREVIEW_ACCESS_CONTROL,
    CHANNEL_OUTPUT,
    CHANNEL_OUTPUT_HLS,
    CHANNEL_ENCODING,
    VIDEO_STREAM,
    AUDIO_STREAM,
    CHANNEL_SLATE,
    COMPONENT_MONITORING_SETTINGS,
)
