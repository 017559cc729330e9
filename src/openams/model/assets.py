"""Assets, their files, access policies, locators and storage accounts."""

from __future__ import annotations

from openams.odata.edm import EntityType, NavigationProperty, Property

from . import enums
from .common import UNBOUNDED_TEXT, client_id, created, last_modified, server_id

ASSET = EntityType(
    "Asset",
    key="Id",
    key_prefix="nb:cid:UUID:",
    properties=(
        server_id(),
        Property("State", "Edm.Int32", nullable=False, computed=True, default=0, enum=enums.ASSET_STATE),
        created(),
        last_modified(),
        Property("AlternateId", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("Name", "Edm.String", max_length=512),
        Property("Options", "Edm.Int32", nullable=False, immutable=True, default=0,
                 enum=enums.ASSET_CREATION_OPTIONS),
        Property("FormatOption", "Edm.Int32", nullable=False, default=0, enum=enums.ASSET_FORMAT_OPTION),
        Property("Uri", "Edm.String", computed=True, description="blob container URL"),
        # default: the account's default storage account (filled in by the entity rules)
        Property("StorageAccountName", "Edm.String", immutable=True),
    ),
    navigations=(
        NavigationProperty("Locators", "Locators", reverse_fk="AssetId", bindable=False),
        NavigationProperty("ContentKeys", "ContentKeys", link="asset_contentkeys", linkable=True),
        NavigationProperty("Files", "Files", reverse_fk="ParentAssetId"),
        NavigationProperty("ParentAssets", "Assets", link="asset_parents"),
        NavigationProperty("StorageAccount", "StorageAccounts", many=False, fk="StorageAccountName"),
        NavigationProperty("DeliveryPolicies", "AssetDeliveryPolicies", link="asset_deliverypolicies",
                           linkable=True),
        NavigationProperty("AssetFilters", "AssetFilters", reverse_fk="ParentAssetId"),
    ),
)

ASSET_FILE = EntityType(
    "AssetFile",
    key="Id",
    key_prefix="nb:cid:UUID:",
    properties=(
        server_id(),
        # blob name in the asset container; ≤ 260, no `!*'();:@&=+$,/?%#[]"`, one `.` (entity rules)
        Property("Name", "Edm.String", nullable=False, required=True, max_length=260),
        Property("ContentFileSize", "Edm.Int64", nullable=False, default=0),
        Property("ParentAssetId", "Edm.String", nullable=False, required=True, immutable=True),
        Property("EncryptionVersion", "Edm.String"),
        Property("EncryptionScheme", "Edm.String", description="StorageEncryption or CommonEncryption"),
        Property("IsEncrypted", "Edm.Boolean", nullable=False, default=False),
        Property("EncryptionKeyId", "Edm.String"),
        Property("InitializationVector", "Edm.String"),
        Property("IsPrimary", "Edm.Boolean", nullable=False, default=False),
        last_modified(),
        created(),
        Property("MimeType", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("ContentChecksum", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("Options", "Edm.Int32", nullable=False, default=0, enum=enums.ASSET_FILE_OPTIONS),
    ),
)

# AccessPolicies have no update operation: every client field is create-only.
ACCESS_POLICY = EntityType(
    "AccessPolicy",
    key="Id",
    key_prefix="nb:pid:UUID:",
    properties=(
        server_id(),
        created(),
        last_modified(),
        Property("Name", "Edm.String", nullable=False, required=True, immutable=True),
        Property("DurationInMinutes", "Edm.Double", nullable=False, required=True, immutable=True),
        Property("Permissions", "Edm.Int32", nullable=False, immutable=True, default=0,
                 enum=enums.ACCESS_PERMISSIONS),
    ),
)

LOCATOR = EntityType(
    "Locator",
    key="Id",
    key_prefix="nb:lid:UUID:",
    properties=(
        client_id(),
        Property("Name", "Edm.String", max_length=UNBOUNDED_TEXT, immutable=True),
        # Computed on create from StartTime (or now) + the policy's duration, yet clients may MERGE it
        # on origin locators: not `computed`, the entity rules fill it in.
        Property("ExpirationDateTime", "Edm.DateTime", nullable=False),
        Property("Type", "Edm.Int32", nullable=False, required=True, immutable=True, enum=enums.LOCATOR_TYPE),
        Property("Path", "Edm.String", computed=True),
        Property("BaseUri", "Edm.String", computed=True),
        Property("ContentAccessComponent", "Edm.String", computed=True),
        # Either the scalar or the `AccessPolicy` / `Asset` binding must be given on create.
        Property("AccessPolicyId", "Edm.String", immutable=True),
        Property("AssetId", "Edm.String", immutable=True),
        Property("StartTime", "Edm.DateTime"),
    ),
    navigations=(
        NavigationProperty("AccessPolicy", "AccessPolicies", many=False, fk="AccessPolicyId"),
        NavigationProperty("Asset", "Assets", many=False, fk="AssetId"),
    ),
)

# Managed through the Management API / configuration; read-only over the Operations API.
STORAGE_ACCOUNT = EntityType(
    "StorageAccount",
    key="Name",
    key_prefix=None,
    properties=(
        Property("Name", "Edm.String", nullable=False),
        Property("IsDefault", "Edm.Boolean", nullable=False, computed=True, default=False),
        Property("BytesUsed", "Edm.Int64", computed=True),
    ),
)
