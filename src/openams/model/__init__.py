"""The AMS v2 data model, declared once with `openams.odata.edm`.

`MODEL` is the whole Operations API service: entity sets in the order of the real service
document (then the later additions), complex types, service operations and bound actions.
`$metadata`, the database tables, payload reading/writing and `$filter` column mapping are all
derived from it. Declarations only: nothing here does I/O.
"""

from __future__ import annotations

from openams.odata.edm import EntitySet, Model

from . import assets, ingest, jobs, keys, live, monitoring, streaming
from .catalogue import DEFAULT_MEDIA_PROCESSOR_ID, MEDIA_PROCESSORS
from .common import CONTAINER, NAMESPACE
from .complex import COMPLEX_TYPES
from .enums import ENUMS, FLAGS_ENUMS
from .functions import FUNCTIONS

ENTITY_SETS: tuple[EntitySet, ...] = (
    EntitySet("AccessPolicies", assets.ACCESS_POLICY),
    EntitySet("Locators", assets.LOCATOR),
    EntitySet("ContentKeys", keys.CONTENT_KEY),
    EntitySet("ContentKeyAuthorizationPolicyOptions", keys.CONTENT_KEY_AUTHORIZATION_POLICY_OPTION),
    EntitySet("ContentKeyAuthorizationPolicies", keys.CONTENT_KEY_AUTHORIZATION_POLICY),
    EntitySet("Files", assets.ASSET_FILE),
    EntitySet("Assets", assets.ASSET),
    EntitySet("AssetDeliveryPolicies", keys.ASSET_DELIVERY_POLICY),
    EntitySet("IngestManifestFiles", ingest.INGEST_MANIFEST_FILE),
    EntitySet("IngestManifestAssets", ingest.INGEST_MANIFEST_ASSET),
    EntitySet("IngestManifests", ingest.INGEST_MANIFEST),
    EntitySet("StorageAccounts", assets.STORAGE_ACCOUNT),
    EntitySet("Tasks", jobs.TASK),
    EntitySet("NotificationEndPoints", jobs.NOTIFICATION_END_POINT),
    EntitySet("Jobs", jobs.JOB),
    EntitySet("TaskTemplates", jobs.TASK_TEMPLATE),
    EntitySet("JobTemplates", jobs.JOB_TEMPLATE),
    EntitySet("MediaProcessors", jobs.MEDIA_PROCESSOR),
    EntitySet("EncodingReservedUnitTypes", jobs.ENCODING_RESERVED_UNIT_TYPE),
    EntitySet("Operations", streaming.OPERATION),
    EntitySet("StreamingEndpoints", streaming.STREAMING_ENDPOINT),
    EntitySet("Channels", live.CHANNEL),
    EntitySet("Programs", live.PROGRAM),
    # later additions (REST 2.13 / 2.17, SDK)
    EntitySet("Filters", streaming.FILTER),
    EntitySet("AssetFilters", streaming.ASSET_FILTER),
    EntitySet("MonitoringConfigurations", monitoring.MONITORING_CONFIGURATION),
)

READ_ONLY_SETS: frozenset[str] = frozenset(
    {"MediaProcessors", "Operations", "StorageAccounts", "TaskTemplates", "Tasks"}
)
"""Sets clients never POST to directly (Tasks and TaskTemplates are created inside their parent)."""

MODEL = Model(
    namespace=NAMESPACE,
    container=CONTAINER,
    entity_sets=list(ENTITY_SETS),
    complex_types=list(COMPLEX_TYPES),
    functions=list(FUNCTIONS),
)
MODEL.validate()

__all__ = [
    "CONTAINER",
    "DEFAULT_MEDIA_PROCESSOR_ID",
    "ENTITY_SETS",
    "ENUMS",
    "FLAGS_ENUMS",
    "MEDIA_PROCESSORS",
    "MODEL",
    "NAMESPACE",
    "READ_ONLY_SETS",
]
