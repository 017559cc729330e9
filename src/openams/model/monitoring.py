"""Telemetry configuration (one per account)."""

from __future__ import annotations

from openams.odata.edm import EntityType, Property

from .common import created, last_modified, server_id

MONITORING_CONFIGURATION = EntityType(
    "MonitoringConfiguration",
    key="Id",
    key_prefix="nb:mcid:UUID:",
    properties=(
        server_id(),
        # an AzureTable (2) notification endpoint
        Property("NotificationEndPointId", "Edm.String", nullable=False, required=True),
        created(),
        # the reference page types it Edm.Int32; the sample returns a date
        last_modified(),
        Property("Settings", "ComponentMonitoringSettings", collection=True, default=[]),
    ),
)
