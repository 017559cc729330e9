"""Live: channels (ingest points) and programs (archives of a channel's stream)."""

from __future__ import annotations

from openams.odata.edm import EntityType, NavigationProperty, Property

from . import enums
from .common import created, last_modified, server_id

CHANNEL = EntityType(
    "Channel",
    key="Id",
    key_prefix="nb:chid:UUID:",
    properties=(
        server_id(),
        # unique; alphanumerics and inner hyphens (entity rules); part of the ingest host names
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True, max_length=32),
        Property("Description", "Edm.String", max_length=256),
        created(),
        last_modified(),
        Property("State", "Edm.String", nullable=False, computed=True, default="Stopped",
                 enum=enums.CHANNEL_STATE),
        Property("Input", "ChannelInput"),
        Property("Preview", "ChannelPreview"),
        Property("Output", "ChannelOutput"),
        Property("CrossSiteAccessPolicies", "CrossSiteAccessPolicies"),
        Property("EncodingType", "Edm.String", nullable=False, default="None", enum=enums.ENCODING_TYPE),
        Property("Encoding", "ChannelEncoding"),
        Property("Slate", "ChannelSlate"),
        Property("VanityUrl", "Edm.Boolean", nullable=False, default=True),
    ),
    navigations=(NavigationProperty("Programs", "Programs", reverse_fk="ChannelId", bindable=False),),
)

PROGRAM = EntityType(
    "Program",
    key="Id",
    key_prefix="nb:pgid:UUID:",
    properties=(
        server_id(),
        # letters, digits, '-' and space; starts and ends alphanumeric (entity rules)
        Property("Name", "Edm.String", nullable=False, required=True, max_length=256),
        Property("Description", "Edm.String", max_length=256),
        Property("ChannelId", "Edm.String", nullable=False, required=True, immutable=True),
        # the archive asset; changeable only while Stopped (entity rules)
        Property("AssetId", "Edm.String", required=True),
        Property("ArchiveWindowLength", "Edm.Time", nullable=False, required=True,
                 description="5 minutes to 25 hours"),
        Property("ManifestName", "Edm.String", description="filled with a GUID when null"),
        Property("State", "Edm.String", nullable=False, computed=True, default="Stopped",
                 enum=enums.PROGRAM_STATE),
        created(),
        last_modified(),
    ),
    navigations=(NavigationProperty("Channel", "Channels", many=False, fk="ChannelId"),),
)
