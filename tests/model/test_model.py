"""The AMS model declaration: completeness against the spec and the rules clients depend on."""

from __future__ import annotations

import copy
import re

import pytest

from openams.model import ENUMS, FLAGS_ENUMS, MEDIA_PROCESSORS, MODEL, READ_ONLY_SETS
from openams.model import enums as E
from openams.model.catalogue import DEFAULT_MEDIA_PROCESSOR_ID
from openams.odata.edm import is_primitive

# (set, entity type, key, key type, key prefix) in service-document order, then the later additions
SPEC_SETS = [
    ("AccessPolicies", "AccessPolicy", "Id", "Edm.String", "nb:pid:UUID:"),
    ("Locators", "Locator", "Id", "Edm.String", "nb:lid:UUID:"),
    ("ContentKeys", "ContentKey", "Id", "Edm.String", "nb:kid:UUID:"),
    ("ContentKeyAuthorizationPolicyOptions", "ContentKeyAuthorizationPolicyOption", "Id", "Edm.String",
     "nb:ckpoid:UUID:"),
    ("ContentKeyAuthorizationPolicies", "ContentKeyAuthorizationPolicy", "Id", "Edm.String",
     "nb:ckpid:UUID:"),
    ("Files", "AssetFile", "Id", "Edm.String", "nb:cid:UUID:"),
    ("Assets", "Asset", "Id", "Edm.String", "nb:cid:UUID:"),
    ("AssetDeliveryPolicies", "AssetDeliveryPolicy", "Id", "Edm.String", "nb:adpid:UUID:"),
    ("IngestManifestFiles", "IngestManifestFile", "Id", "Edm.String", "nb:mfid:UUID:"),
    ("IngestManifestAssets", "IngestManifestAsset", "Id", "Edm.String", "nb:maid:UUID:"),
    ("IngestManifests", "IngestManifest", "Id", "Edm.String", "nb:mid:UUID:"),
    ("StorageAccounts", "StorageAccount", "Name", "Edm.String", None),
    ("Tasks", "Task", "Id", "Edm.String", "nb:tid:UUID:"),
    ("NotificationEndPoints", "NotificationEndPoint", "Id", "Edm.String", "nb:nepid:UUID:"),
    ("Jobs", "Job", "Id", "Edm.String", "nb:jid:UUID:"),
    ("TaskTemplates", "TaskTemplate", "Id", "Edm.String", "nb:ttid:UUID:"),
    ("JobTemplates", "JobTemplate", "Id", "Edm.String", "nb:jtid:UUID:"),
    ("MediaProcessors", "MediaProcessor", "Id", "Edm.String", "nb:mpid:UUID:"),
    ("EncodingReservedUnitTypes", "EncodingReservedUnitType", "AccountId", "Edm.Guid", None),
    ("Operations", "Operation", "Id", "Edm.String", "nb:opid:UUID:"),
    ("StreamingEndpoints", "StreamingEndpoint", "Id", "Edm.String", "nb:oid:UUID:"),
    ("Channels", "Channel", "Id", "Edm.String", "nb:chid:UUID:"),
    ("Programs", "Program", "Id", "Edm.String", "nb:pgid:UUID:"),
    ("Filters", "Filter", "Name", "Edm.String", None),
    ("AssetFilters", "AssetFilter", "Id", "Edm.String", None),
    ("MonitoringConfigurations", "MonitoringConfiguration", "Id", "Edm.String", "nb:mcid:UUID:"),
]

SPEC_COMPLEX_TYPES = {
    "JobNotificationSubscription", "TaskNotificationSubscription", "ErrorDetail", "TaskHistoricalEvent",
    "IngestManifestStatistics", "StreamingEndpointAccessControl", "AkamaiAccessControl",
    "AkamaiSignatureHeaderAuthenticationKey", "IPAccessControl", "IPRange", "StreamingEndpointCacheControl",
    "CrossSiteAccessPolicies", "ContentKeyAuthorizationPolicyRestriction", "PresentationTimeRange",
    "FilterTrackSelect", "FilterTrackPropertyCondition", "FirstQuality", "ChannelInput",
    "ChannelInputAccessControl", "ChannelEndpoint", "ChannelPreview", "ChannelPreviewAccessControl",
    "ChannelOutput", "ChannelOutputHls", "ChannelEncoding", "VideoStream", "AudioStream", "ChannelSlate",
    "ComponentMonitoringSettings",
}


def prop(set_name: str, name: str):
    es = MODEL.entity_set(set_name)
    assert es is not None, set_name
    p = es.entity_type.property(name)
    assert p is not None, f"{set_name}.{name}"
    assert p.name == name, f"{set_name}.{name} is spelled {p.name}"
    return p


def nav(set_name: str, name: str):
    es = MODEL.entity_set(set_name)
    assert es is not None
    n = es.entity_type.navigation(name)
    assert n is not None, f"{set_name}/{name}"
    return n


def test_validate_passes() -> None:
    MODEL.validate()
    assert MODEL.namespace == "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
    assert MODEL.container == "WindowsAzureMediaServices"


def test_entity_sets_in_service_document_order() -> None:
    assert [s.name for s in MODEL.entity_sets] == [row[0] for row in SPEC_SETS]


@pytest.mark.parametrize(("set_name", "type_name", "key", "key_type", "prefix"), SPEC_SETS)
def test_entity_set_key_and_prefix(set_name, type_name, key, key_type, prefix) -> None:
    es = MODEL.entity_set(set_name)
    assert es is not None
    et = es.entity_type
    assert et.name == type_name
    assert et.key == key
    assert et.key_property.type == key_type
    assert et.key_property.nullable is False
    assert et.key_prefix == prefix
    if prefix is not None:
        assert re.fullmatch(r"nb:[a-z]+:UUID:", prefix)


def test_entity_type_names_are_unique() -> None:
    names = [s.entity_type.name for s in MODEL.entity_sets]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("set_name", ["Locators", "ContentKeys", "TaskTemplates"])
def test_client_chosen_keys_are_not_computed(set_name) -> None:
    key = MODEL.entity_set(set_name).entity_type.key_property
    assert not key.computed
    assert MODEL.entity_set(set_name).entity_type.key_prefix is not None  # generated when absent


@pytest.mark.parametrize(
    "set_name",
    ["Assets", "Files", "AccessPolicies", "Jobs", "Tasks", "JobTemplates", "NotificationEndPoints",
     "IngestManifests", "IngestManifestAssets", "IngestManifestFiles", "StreamingEndpoints", "Channels",
     "Programs", "ContentKeyAuthorizationPolicies", "ContentKeyAuthorizationPolicyOptions",
     "AssetDeliveryPolicies", "MonitoringConfigurations", "Operations", "AssetFilters"],
)
def test_server_generated_keys_are_computed(set_name) -> None:
    assert MODEL.entity_set(set_name).entity_type.key_property.computed


def test_complex_types_declared_and_resolvable() -> None:
    names = {c.name for c in MODEL.complex_types}
    assert names == SPEC_COMPLEX_TYPES
    for c in MODEL.complex_types:
        for p in c.properties:
            assert is_primitive(p.type) or p.type in names, f"{c.name}.{p.name}: {p.type}"


def test_every_property_type_is_known() -> None:
    names = {c.name for c in MODEL.complex_types}
    for es in MODEL.entity_sets:
        seen = set()
        for p in es.entity_type.properties:
            assert p.name not in seen, f"{es.name}.{p.name} declared twice"
            seen.add(p.name)
            assert is_primitive(p.type) or p.type in names, f"{es.name}.{p.name}: {p.type}"
            if p.max_length is not None:
                assert p.type == "Edm.String"
            if p.enum is not None:
                assert p.type in ("Edm.Int32", "Edm.String"), f"{es.name}.{p.name}"


def test_flags_are_consistent() -> None:
    for es in MODEL.entity_sets:
        for p in es.entity_type.properties:
            where = f"{es.name}.{p.name}"
            assert not (p.computed and p.required), where
            assert not (p.computed and p.immutable), where
            if p.default is not None and p.enum is not None:
                # defaults of enum properties are members (by value for ints, by name for strings)
                members = p.enum.values() if p.type == "Edm.Int32" else p.enum.keys()
                assert p.default in members, where
            if p.collection and p.default is not None:
                assert p.default == [], where


def test_every_entity_has_created_where_spec_says() -> None:
    for set_name in ("Assets", "Files", "AccessPolicies", "ContentKeys", "Jobs", "JobTemplates",
                     "TaskTemplates", "NotificationEndPoints", "IngestManifests", "IngestManifestAssets",
                     "IngestManifestFiles", "StreamingEndpoints", "Channels", "Programs",
                     "AssetDeliveryPolicies", "MonitoringConfigurations"):
        p = prop(set_name, "Created")
        assert p.type == "Edm.DateTime" and p.computed


# spot checks of the rules ------------------------------------------------------------------------


def test_asset() -> None:
    assert prop("Assets", "Uri").computed
    assert prop("Assets", "State").computed and prop("Assets", "State").default == 0
    assert prop("Assets", "State").enum is E.ASSET_STATE
    opts = prop("Assets", "Options")
    assert opts.immutable and opts.default == 0 and opts.enum == {
        "None": 0, "StorageEncrypted": 1, "CommonEncryptionProtected": 2, "EnvelopeEncryptionProtected": 4}
    assert prop("Assets", "FormatOption").default == 0
    assert prop("Assets", "Name").max_length == 512
    assert prop("Assets", "AlternateId").max_length == 4000
    assert prop("Assets", "StorageAccountName").immutable


def test_asset_navigations() -> None:
    assert nav("Assets", "Locators").reverse_fk == "AssetId"
    assert nav("Assets", "Locators").target == "Locators"
    ck = nav("Assets", "ContentKeys")
    assert ck.link == "asset_contentkeys" and ck.linkable
    assert nav("Assets", "Files").reverse_fk == "ParentAssetId"
    assert nav("Assets", "ParentAssets").link == "asset_parents"
    sa = nav("Assets", "StorageAccount")
    assert not sa.many and sa.fk == "StorageAccountName" and sa.target == "StorageAccounts"
    dp = nav("Assets", "DeliveryPolicies")
    assert dp.link == "asset_deliverypolicies" and dp.linkable and dp.target == "AssetDeliveryPolicies"
    assert nav("Assets", "AssetFilters").reverse_fk == "ParentAssetId"


def test_files() -> None:
    name = prop("Files", "Name")
    assert name.required and name.max_length == 260
    parent = prop("Files", "ParentAssetId")
    assert parent.required and parent.immutable
    assert prop("Files", "ContentFileSize").type == "Edm.Int64"
    assert prop("Files", "ContentFileSize").default == 0
    assert prop("Files", "IsPrimary").default is False
    assert prop("Files", "IsEncrypted").default is False
    assert prop("Files", "MimeType").max_length == 4000


def test_access_policies_are_create_only() -> None:
    et = MODEL.entity_set("AccessPolicies").entity_type
    for p in et.properties:
        assert p.computed or p.immutable, p.name
    assert prop("AccessPolicies", "Name").required
    duration = prop("AccessPolicies", "DurationInMinutes")
    assert duration.required and duration.type == "Edm.Double"
    perms = prop("AccessPolicies", "Permissions")
    assert perms.default == 0 and perms.enum == {"None": 0, "Read": 1, "Write": 2, "Delete": 4, "List": 8}
    assert "AccessPermissions" in FLAGS_ENUMS


def test_locator() -> None:
    t = prop("Locators", "Type")
    assert t.required and t.immutable and t.enum == {"None": 0, "Sas": 1, "OnDemandOrigin": 2}
    for name in ("Path", "BaseUri", "ContentAccessComponent"):
        assert prop("Locators", name).computed
    for name in ("AccessPolicyId", "AssetId"):
        assert prop("Locators", name).immutable
    assert prop("Locators", "StartTime").nullable and not prop("Locators", "StartTime").immutable
    # origin locators accept a MERGE of the expiry
    assert not prop("Locators", "ExpirationDateTime").computed
    assert not prop("Locators", "ExpirationDateTime").immutable
    ap = nav("Locators", "AccessPolicy")
    assert not ap.many and ap.fk == "AccessPolicyId" and ap.target == "AccessPolicies"
    asset = nav("Locators", "Asset")
    assert not asset.many and asset.fk == "AssetId" and asset.target == "Assets"


def test_content_keys() -> None:
    assert prop("ContentKeys", "ContentKeyType").default == 0
    assert prop("ContentKeys", "ContentKeyType").enum is E.CONTENT_KEY_TYPE
    assert E.CONTENT_KEY_TYPE["EnvelopeEncryption"] == 4
    assert E.CONTENT_KEY_TYPE["CommonEncryptionCbcs"] == 6
    assert prop("ContentKeys", "ProtectionKeyType").default == 0
    assert prop("ContentKeys", "ProtectionKeyType").enum is None  # samples send 1
    for name in ("EncryptedContentKey", "Name", "ProtectionKeyId", "Checksum"):
        assert prop("ContentKeys", name).max_length == 4000
    assert not prop("ContentKeys", "AuthorizationPolicyId").immutable
    options = nav("ContentKeyAuthorizationPolicies", "Options")
    assert options.link == "ckap_options" and options.linkable
    assert options.target == "ContentKeyAuthorizationPolicyOptions"
    kdt = prop("ContentKeyAuthorizationPolicyOptions", "KeyDeliveryType")
    assert kdt.required and kdt.enum is E.CONTENT_KEY_DELIVERY_TYPE
    restrictions = prop("ContentKeyAuthorizationPolicyOptions", "Restrictions")
    assert restrictions.collection and restrictions.type == "ContentKeyAuthorizationPolicyRestriction"
    adp = prop("AssetDeliveryPolicies", "AssetDeliveryProtocol")
    assert adp.enum is E.ASSET_DELIVERY_PROTOCOL and "AssetDeliveryProtocol" in FLAGS_ENUMS
    assert E.ASSET_DELIVERY_PROTOCOL["All"] == 0xFFFF
    assert prop("AssetDeliveryPolicies", "AssetDeliveryPolicyType").enum is E.ASSET_DELIVERY_POLICY_TYPE


def test_jobs_and_tasks() -> None:
    state = prop("Jobs", "State")
    assert state.computed and state.type == "Edm.Int32" and state.default == 0
    assert state.enum == {"Queued": 0, "Scheduled": 1, "Processing": 2, "Finished": 3, "Error": 4,
                          "Canceled": 5, "Canceling": 6}
    assert prop("Jobs", "Priority").default == 0 and not prop("Jobs", "Priority").computed
    assert prop("Jobs", "RunningDuration").computed and prop("Jobs", "RunningDuration").type == "Edm.Double"
    assert prop("Jobs", "TemplateId").immutable
    subs = prop("Jobs", "JobNotificationSubscriptions")
    assert subs.collection and subs.type == "JobNotificationSubscription" and subs.default == []
    assert nav("Jobs", "Tasks").link == "job_tasks"
    assert nav("Jobs", "InputMediaAssets").link == "job_inputs" and nav("Jobs", "InputMediaAssets").bindable
    out = nav("Jobs", "OutputMediaAssets")
    assert out.link == "job_outputs" and not out.bindable

    for name in ("MediaProcessorId", "TaskBody"):
        assert prop("Tasks", name).required
    assert prop("Tasks", "Options").immutable and prop("Tasks", "Options").default == 0
    for name in ("Progress", "ErrorDetails", "HistoricalEvents", "State", "PerfMessage", "RunningDuration"):
        assert prop("Tasks", name).computed, name
    assert prop("Tasks", "Configuration").max_length == 100_000
    assert prop("Tasks", "ErrorDetails").type == "ErrorDetail" and prop("Tasks", "ErrorDetails").collection
    for name, link in (("InputMediaAssets", "task_inputs"), ("OutputMediaAssets", "task_outputs")):
        n = nav("Tasks", name)
        assert n.link == link and not n.bindable and n.target == "Assets"


def test_templates() -> None:
    assert prop("JobTemplates", "JobTemplateBody").required
    assert prop("JobTemplates", "TemplateType").immutable
    assert prop("JobTemplates", "TemplateType").enum == {"SystemLevel": 0, "AccountLevel": 1}
    assert nav("JobTemplates", "TaskTemplates").link == "jobtemplate_tasktemplates"
    for name in ("NumberofInputAssets", "NumberofOutputAssets"):
        assert prop("TaskTemplates", name).required
    assert prop("TaskTemplates", "Configuration").max_length == 100_000


def test_media_processors_and_notifications() -> None:
    for p in MODEL.entity_set("MediaProcessors").entity_type.properties:
        assert p.type == "Edm.String" and p.computed
    for name in ("Name", "EndPointType", "EndPointAddress"):
        assert prop("NotificationEndPoints", name).required
    assert prop("NotificationEndPoints", "EndPointType").enum == {
        "None": 0, "AzureQueue": 1, "AzureTable": 2, "WebHook": 3}
    assert prop("NotificationEndPoints", "EndPointType").immutable
    assert not MODEL.entity_set("NotificationEndPoints").entity_type.navigations


def test_encoding_reserved_unit_types() -> None:
    et = MODEL.entity_set("EncodingReservedUnitTypes").entity_type
    assert et.key == "AccountId" and et.key_property.type == "Edm.Guid" and et.key_prefix is None
    assert prop("EncodingReservedUnitTypes", "MaxReservableUnits").computed
    assert not prop("EncodingReservedUnitTypes", "CurrentReservedUnits").computed
    assert prop("EncodingReservedUnitTypes", "ReservedUnitType").enum == {"S1": 0, "S2": 1, "S3": 2}


def test_ingest() -> None:
    assert nav("IngestManifests", "IngestManifestAssets").reverse_fk == "ParentIngestManifestId"
    pending = nav("IngestManifests", "PendingIngestManifestAssets")
    assert pending.reverse_fk == "ParentIngestManifestId" and not pending.bindable
    assert nav("IngestManifests", "StorageAccount").fk == "StorageAccountName"
    assert nav("IngestManifestAssets", "IngestManifestFiles").reverse_fk == "ParentIngestManifestAssetId"
    asset = nav("IngestManifestAssets", "Asset")
    assert not asset.many and asset.link == "ingestasset_asset"
    assert prop("IngestManifests", "Statistics").type == "IngestManifestStatistics"
    assert prop("IngestManifests", "Statistics").computed
    assert prop("IngestManifests", "BlobStorageUriForUpload").computed
    for name in ("Name", "ParentIngestManifestId", "ParentIngestManifestAssetId"):
        assert prop("IngestManifestFiles", name).required
    assert prop("IngestManifestAssets", "ParentIngestManifestId").required


def test_storage_accounts() -> None:
    et = MODEL.entity_set("StorageAccounts").entity_type
    assert et.key == "Name" and et.key_prefix is None
    assert prop("StorageAccounts", "IsDefault").type == "Edm.Boolean"
    bytes_used = prop("StorageAccounts", "BytesUsed")
    assert bytes_used.type == "Edm.Int64" and bytes_used.nullable


def test_streaming_endpoint() -> None:
    state = prop("StreamingEndpoints", "State")
    assert state.type == "Edm.String" and state.computed and state.default == "Stopped"
    assert set(state.enum) == {"Stopped", "Starting", "Running", "Stopping", "Deleting", "Scaling"}
    assert prop("StreamingEndpoints", "Name").max_length == 32
    assert prop("StreamingEndpoints", "Description").max_length == 256
    assert prop("StreamingEndpoints", "HostName").computed
    assert prop("StreamingEndpoints", "CdnEnabled").default is False
    assert prop("StreamingEndpoints", "ScaleUnits").immutable  # changed through Scale only
    hosts = prop("StreamingEndpoints", "CustomHostNames")
    assert hosts.collection and hosts.type == "Edm.String"
    assert prop("StreamingEndpoints", "AccessControl").type == "StreamingEndpointAccessControl"
    assert prop("StreamingEndpoints", "CacheControl").type == "StreamingEndpointCacheControl"
    assert MODEL.complex_type("StreamingEndpointCacheControl").property("MaxAge").type == "Edm.Int64"
    assert prop("StreamingEndpoints", "CrossSiteAccessPolicies").type == "CrossSiteAccessPolicies"


def test_operation() -> None:
    et = MODEL.entity_set("Operations").entity_type
    assert all(p.computed for p in et.properties)
    assert prop("Operations", "State").type == "Edm.String"
    assert set(prop("Operations", "State").enum) == {"Succeeded", "Failed", "InProgress"}


def test_live() -> None:
    state = prop("Channels", "State")
    assert state.type == "Edm.String" and state.computed and state.default == "Stopped"
    assert prop("Programs", "State").type == "Edm.String" and prop("Programs", "State").default == "Stopped"
    assert prop("Channels", "Input").type == "ChannelInput"
    assert prop("Channels", "EncodingType").default == "None"
    progs = nav("Channels", "Programs")
    assert progs.reverse_fk == "ChannelId" and progs.target == "Programs"
    chan = nav("Programs", "Channel")
    assert not chan.many and chan.fk == "ChannelId" and chan.target == "Channels"
    awl = prop("Programs", "ArchiveWindowLength")
    assert awl.type == "Edm.Time" and awl.required
    assert prop("Programs", "ChannelId").immutable and prop("Programs", "ChannelId").required
    enc = MODEL.complex_type("ChannelEncoding")
    assert enc.property("AudioStreams").collection and enc.property("AudioStreams").type == "AudioStream"
    assert MODEL.complex_type("ChannelOutputHls").property("FragmentsPerSegment").type == "Edm.Int16"
    assert MODEL.complex_type("ChannelInput").property("KeyFrameInterval").type == "Edm.Time"


def test_filters_and_monitoring() -> None:
    assert MODEL.entity_set("Filters").entity_type.key == "Name"
    assert prop("Filters", "Name").required
    assert prop("AssetFilters", "ParentAssetId").required and prop("AssetFilters", "ParentAssetId").immutable
    tracks = prop("AssetFilters", "Tracks")
    assert tracks.collection and tracks.type == "FilterTrackSelect"
    ptr = MODEL.complex_type("PresentationTimeRange")
    assert {p.name: p.type for p in ptr.properties} == {
        "StartTimestamp": "Edm.Int64", "EndTimestamp": "Edm.Int64", "PresentationWindowDuration": "Edm.Int64",
        "LiveBackoffDuration": "Edm.Int64", "Timescale": "Edm.Int64", "ForceEndTimestamp": "Edm.Boolean"}
    assert ptr.property("Timescale").default == 10_000_000
    settings = prop("MonitoringConfigurations", "Settings")
    assert settings.collection and settings.type == "ComponentMonitoringSettings"
    assert prop("MonitoringConfigurations", "NotificationEndPointId").required


def test_reverse_fk_and_fk_properties_exist() -> None:
    for es in MODEL.entity_sets:
        for n in es.entity_type.navigations:
            target = MODEL.entity_set(n.target).entity_type
            if n.fk:
                assert not n.many
                assert es.entity_type.property(n.fk) is not None
            if n.reverse_fk:
                assert n.many
                assert target.property(n.reverse_fk) is not None


def test_link_tables_are_named_once() -> None:
    links = [n.link for es in MODEL.entity_sets for n in es.entity_type.navigations if n.link]
    assert len(links) == len(set(links))
    assert all(re.fullmatch(r"[a-z_]+", name) for name in links)


# functions ---------------------------------------------------------------------------------------


def test_unbound_functions() -> None:
    expected = {
        "CancelJob": ([("jobid", "Edm.String")], None),
        "CreateFileInfos": ([("assetid", "Edm.String")], None),
        "GetProtectionKeyId": ([("contentKeyType", "Edm.Int32")], "Edm.String"),
        "GetProtectionKey": ([("protectionKeyId", "Edm.String")], "Edm.String"),
        "RebindContentKey": ([("id", "Edm.String"), ("x509Certificate", "Edm.String")], "Edm.String"),
    }
    for name, (params, returns) in expected.items():
        fn = MODEL.function(name)
        assert fn is not None, name
        assert fn.http_method == "GET" and fn.binding is None
        assert [(p.name, p.type) for p in fn.parameters] == params
        assert fn.return_type == returns


def test_bound_actions() -> None:
    expected = {
        ("Publish", "Assets"): [],
        ("GetKeyDeliveryUrl", "ContentKeys"): [("keyDeliveryType", "Edm.Int32")],
        ("Scale", "StreamingEndpoints"): [("scaleUnits", "Edm.Int32")],
        ("ShowSlate", "Channels"): [("duration", "Edm.Time"), ("assetId", "Edm.String")],
        ("HideSlate", "Channels"): [],
        ("StartAdvertisement", "Channels"): [("duration", "Edm.Time"), ("cueId", "Edm.Int32"),
                                             ("showSlate", "Edm.Boolean")],
        ("EndAdvertisement", "Channels"): [("cueId", "Edm.Int32")],
        ("Reset", "Channels"): [],
        ("GetMonitoringSasUris", "NotificationEndPoints"): [("monitoringStartDate", "Edm.DateTime"),
                                                            ("monitoringEndDate", "Edm.DateTime")],
    }
    for set_name in ("StreamingEndpoints", "Channels", "Programs"):
        expected[("Start", set_name)] = []
        expected[("Stop", set_name)] = []
    for (name, binding), params in expected.items():
        fn = MODEL.function(name, binding)
        assert fn is not None, (name, binding)
        assert fn.http_method == "POST"
        assert [(p.name, p.type) for p in fn.parameters] == params
    assert MODEL.function("GetKeyDeliveryUrl", "ContentKeys").return_type == "Edm.String"
    assert MODEL.function("Start") is None  # only bound forms
    assert {f.name for f in MODEL.functions_bound_to("Channels")} == {
        "Start", "Stop", "ShowSlate", "HideSlate", "StartAdvertisement", "EndAdvertisement", "Reset"}
    assert len(MODEL.functions) == len(expected) + 5
    for fn in MODEL.functions:
        if fn.binding:
            assert MODEL.entity_set(fn.binding) is not None


# enums and catalogue -----------------------------------------------------------------------------


def test_enums_have_unique_values() -> None:
    for name, members in ENUMS.items():
        if name in FLAGS_ENUMS:
            continue
        values = list(members.values())
        assert len(values) == len(set(values)), name


def test_flags_enums_are_bits() -> None:
    for name in FLAGS_ENUMS:
        for member, value in ENUMS[name].items():
            if member != "All":
                assert value & (value - 1) == 0, f"{name}.{member}"


def test_media_processor_catalogue() -> None:
    by_name = {row["Name"]: row for row in MEDIA_PROCESSORS}
    mes = by_name["Media Encoder Standard"]
    assert mes == {
        "Id": "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56",
        "Name": "Media Encoder Standard",
        "Description": "Media Encoder Standard",
        "Sku": "",
        "Vendor": "Microsoft",
        "Version": "1.1",
    }
    assert by_name["Azure Media Encoder"]["Id"] == "nb:mpid:UUID:1b1da727-93ae-4e46-a8a1-268828765609"
    assert by_name["Azure Media Encoder"]["Version"] == "4.4"
    assert by_name["Windows Azure Media Encoder"]["Id"] == "nb:mpid:UUID:70bdc2c3-ebf4-42a9-8542-5afc1e55d217"
    assert mes["Id"] == DEFAULT_MEDIA_PROCESSOR_ID
    props = {p.name for p in MODEL.entity_set("MediaProcessors").entity_type.properties}
    for row in MEDIA_PROCESSORS:
        assert set(row) == props
        assert re.fullmatch(r"\d+(\.\d+){1,3}", row["Version"])  # .NET System.Version


def test_read_only_sets_exist() -> None:
    assert all(MODEL.entity_set(name) is not None for name in READ_ONLY_SETS)


def test_model_is_copyable() -> None:
    # the model is plain data: workers may deep-copy or pickle it
    clone = copy.deepcopy(MODEL)
    clone.validate()
    assert [s.name for s in clone.entity_sets] == [s.name for s in MODEL.entity_sets]
