"""Bulk ingest: manifests, the assets they will complete, and the files they wait for."""

from __future__ import annotations

from openams.odata.edm import EntityType, NavigationProperty, Property

from . import enums
from .common import UNBOUNDED_TEXT, created, last_modified, server_id

INGEST_MANIFEST = EntityType(
    "IngestManifest",
    key="Id",
    key_prefix="nb:mid:UUID:",
    properties=(
        server_id(),
        created(),
        last_modified(),
        Property("Name", "Edm.String"),
        Property("State", "Edm.Int32", nullable=False, computed=True, default=0,
                 enum=enums.INGEST_MANIFEST_STATE),
        Property("BlobStorageUriForUpload", "Edm.String", computed=True),
        Property("Statistics", "IngestManifestStatistics", computed=True),
        Property("StorageAccountName", "Edm.String", immutable=True),
    ),
    navigations=(
        NavigationProperty("IngestManifestAssets", "IngestManifestAssets",
                           reverse_fk="ParentIngestManifestId"),
        NavigationProperty("PendingIngestManifestAssets", "IngestManifestAssets",
                           reverse_fk="ParentIngestManifestId", bindable=False),
        NavigationProperty("StorageAccount", "StorageAccounts", many=False, fk="StorageAccountName"),
    ),
)

# No update operation (POST, GET, DELETE only).
INGEST_MANIFEST_ASSET = EntityType(
    "IngestManifestAsset",
    key="Id",
    key_prefix="nb:maid:UUID:",
    properties=(
        server_id(),
        created(),
        last_modified(),
        Property("ParentIngestManifestId", "Edm.String", nullable=False, required=True, immutable=True),
    ),
    navigations=(
        NavigationProperty("IngestManifestFiles", "IngestManifestFiles",
                           reverse_fk="ParentIngestManifestAssetId", bindable=False),
        # required on create (bound, or inline `{"Asset": {"Id": …}}`)
        NavigationProperty("Asset", "Assets", many=False, link="ingestasset_asset"),
    ),
)

# No update operation (POST, GET, DELETE only).
INGEST_MANIFEST_FILE = EntityType(
    "IngestManifestFile",
    key="Id",
    key_prefix="nb:mfid:UUID:",
    properties=(
        server_id(),
        created(),
        last_modified(),
        # blob name watched for; non-blank and unique within the manifest
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True,
                 max_length=UNBOUNDED_TEXT),
        Property("State", "Edm.Int32", nullable=False, computed=True, default=0,
                 enum=enums.INGEST_MANIFEST_FILE_STATE),
        Property("ParentIngestManifestId", "Edm.String", nullable=False, required=True, immutable=True),
        Property("ParentIngestManifestAssetId", "Edm.String", nullable=False, required=True, immutable=True),
        Property("ErrorDetail", "Edm.String", computed=True),
        Property("MimeType", "Edm.String"),
        Property("IsPrimary", "Edm.Boolean", nullable=False, default=False),
        Property("EncryptionVersion", "Edm.String"),
        Property("EncryptionScheme", "Edm.String",
                 description="StorageEncryption, CommonEncryption or EnvelopeEncryption"),
        Property("IsEncrypted", "Edm.Boolean", nullable=False, default=False),
        Property("EncryptionKeyId", "Edm.String"),
        Property("InitializationVector", "Edm.String"),
    ),
)
