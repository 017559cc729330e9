"""Content protection: content keys, authorization policies and options, asset delivery policies."""

from __future__ import annotations

from openams.odata.edm import EntityType, NavigationProperty, Property

from . import enums
from .common import UNBOUNDED_TEXT, client_id, created, last_modified, server_id

CONTENT_KEY = EntityType(
    "ContentKey",
    key="Id",
    key_prefix="nb:kid:UUID:",
    properties=(
        client_id(),
        created(),
        last_modified(),
        Property("ContentKeyType", "Edm.Int32", nullable=False, immutable=True, default=0,
                 enum=enums.CONTENT_KEY_TYPE),
        Property("EncryptedContentKey", "Edm.String", max_length=UNBOUNDED_TEXT,
                 description="base64 RSA-OAEP(protection certificate, clear key)"),
        Property("Name", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("ProtectionKeyId", "Edm.String", max_length=UNBOUNDED_TEXT,
                 description="thumbprint from GetProtectionKeyId"),
        # 0 = X509CertificateThumbprint is the only defined value but samples send 1: no enum check.
        Property("ProtectionKeyType", "Edm.Int32", nullable=False, default=0),
        Property("Checksum", "Edm.String", max_length=UNBOUNDED_TEXT),
        Property("AuthorizationPolicyId", "Edm.String"),
        Property("TrackIdentifiers", "Edm.String"),
    ),
)

CONTENT_KEY_AUTHORIZATION_POLICY_OPTION = EntityType(
    "ContentKeyAuthorizationPolicyOption",
    key="Id",
    key_prefix="nb:ckpoid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String"),
        Property("KeyDeliveryType", "Edm.Int32", nullable=False, required=True,
                 enum=enums.CONTENT_KEY_DELIVERY_TYPE),
        Property("KeyDeliveryConfiguration", "Edm.String",
                 description="PlayReady license template XML, Widevine or FairPlay JSON"),
        Property("Restrictions", "ContentKeyAuthorizationPolicyRestriction", collection=True,
                 required=True, default=[]),
    ),
)

CONTENT_KEY_AUTHORIZATION_POLICY = EntityType(
    "ContentKeyAuthorizationPolicy",
    key="Id",
    key_prefix="nb:ckpid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String"),
    ),
    navigations=(
        NavigationProperty("Options", "ContentKeyAuthorizationPolicyOptions", link="ckap_options",
                           linkable=True),
    ),
)

ASSET_DELIVERY_POLICY = EntityType(
    "AssetDeliveryPolicy",
    key="Id",
    key_prefix="nb:adpid:UUID:",
    properties=(
        server_id(),
        Property("Name", "Edm.String"),
        Property("AssetDeliveryProtocol", "Edm.Int32", nullable=False, required=True,
                 enum=enums.ASSET_DELIVERY_PROTOCOL),
        Property("AssetDeliveryPolicyType", "Edm.Int32", nullable=False, required=True,
                 enum=enums.ASSET_DELIVERY_POLICY_TYPE),
        Property("AssetDeliveryConfiguration", "Edm.String",
                 description='JSON text [{"Key": <AssetDeliveryPolicyConfigurationKey>, "Value": "…"}]'),
        created(),
        last_modified(),
    ),
)
