"""Streaming: streaming endpoints (origins), long-running operations, global and asset filters."""

from __future__ import annotations

from openams.odata.edm import EntityType, Property

from . import enums
from .common import created, last_modified, server_id

OPERATION = EntityType(
    "Operation",
    key="Id",
    key_prefix="nb:opid:UUID:",
    properties=(
        server_id(),
        Property("State", "Edm.String", nullable=False, computed=True, default="InProgress",
                 enum=enums.OPERATION_STATE),
        Property("TargetEntityId", "Edm.String", computed=True),
        Property("ErrorCode", "Edm.String", computed=True, description="see enums.OPERATION_ERROR_CODES"),
        Property("ErrorMessage", "Edm.String", computed=True),
    ),
)

STREAMING_ENDPOINT = EntityType(
    "StreamingEndpoint",
    key="Id",
    key_prefix="nb:oid:UUID:",
    properties=(
        server_id(),
        # unique per account; letters, digits and inner hyphens (entity rules); part of the host name
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True, max_length=32),
        Property("Description", "Edm.String", max_length=256),
        created(),
        last_modified(),
        # the reference page says Edm.Int32; the wire and the SDK use the state name
        Property("State", "Edm.String", nullable=False, computed=True, default="Stopped",
                 enum=enums.STREAMING_ENDPOINT_STATE),
        Property("HostName", "Edm.String", computed=True),
        # given on create, changed afterwards only through the Scale action
        Property("ScaleUnits", "Edm.Int32", immutable=True, default=0),
        Property("CdnEnabled", "Edm.Boolean", nullable=False, default=False),
        Property("CdnProvider", "Edm.String", enum=enums.CDN_PROVIDER),
        Property("CdnProfile", "Edm.String"),
        Property("StreamingEndpointVersion", "Edm.String", default="2.0", description='"1.0" or "2.0"'),
        Property("FreeTrialEndTime", "Edm.DateTime", computed=True),
        Property("CustomHostNames", "Edm.String", collection=True, default=[]),
        Property("AccessControl", "StreamingEndpointAccessControl"),
        Property("CacheControl", "StreamingEndpointCacheControl"),
        Property("CrossSiteAccessPolicies", "CrossSiteAccessPolicies"),
    ),
)

FILTER = EntityType(
    "Filter",
    key="Name",
    key_prefix=None,
    properties=(
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True),
        Property("PresentationTimeRange", "PresentationTimeRange"),
        Property("Tracks", "FilterTrackSelect", collection=True, default=[]),
        Property("FirstQuality", "FirstQuality"),
    ),
)

ASSET_FILTER_ID_SEPARATOR = "__###__"
"""AssetFilter ids are `<ParentAssetId>__###__<Name>`, composed by the service."""

ASSET_FILTER = EntityType(
    "AssetFilter",
    key="Id",
    key_prefix=None,
    properties=(
        server_id(),
        Property("ParentAssetId", "Edm.String", nullable=False, required=True, immutable=True),
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True),
        Property("PresentationTimeRange", "PresentationTimeRange"),
        Property("Tracks", "FilterTrackSelect", collection=True, default=[]),
        Property("FirstQuality", "FirstQuality"),
    ),
)
