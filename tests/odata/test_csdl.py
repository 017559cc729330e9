"""`$metadata` (CSDL): shape, internal consistency, and acceptance by a third-party EDMX reader."""

from __future__ import annotations

import pytest
from lxml import etree

from openams.model import MODEL
from openams.odata.csdl import NS_EDM, NS_EDMX, NS_M, write_csdl
from openams.odata.edm import (
    PRIMITIVE_TYPES,
    ComplexType,
    EntitySet,
    EntityType,
    FunctionImport,
    Model,
    NavigationProperty,
    Parameter,
    Property,
)

NS = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
XP = {"edmx": NS_EDMX, "e": NS_EDM, "m": NS_M}
M_ = f"{{{NS_M}}}"

SPEC_SETS = {
    "AccessPolicies": "AccessPolicy",
    "Locators": "Locator",
    "ContentKeys": "ContentKey",
    "ContentKeyAuthorizationPolicyOptions": "ContentKeyAuthorizationPolicyOption",
    "ContentKeyAuthorizationPolicies": "ContentKeyAuthorizationPolicy",
    "Files": "AssetFile",
    "Assets": "Asset",
    "AssetDeliveryPolicies": "AssetDeliveryPolicy",
    "IngestManifestFiles": "IngestManifestFile",
    "IngestManifestAssets": "IngestManifestAsset",
    "IngestManifests": "IngestManifest",
    "StorageAccounts": "StorageAccount",
    "Tasks": "Task",
    "NotificationEndPoints": "NotificationEndPoint",
    "Jobs": "Job",
    "TaskTemplates": "TaskTemplate",
    "JobTemplates": "JobTemplate",
    "MediaProcessors": "MediaProcessor",
    "EncodingReservedUnitTypes": "EncodingReservedUnitType",
    "Operations": "Operation",
    "StreamingEndpoints": "StreamingEndpoint",
    "Channels": "Channel",
    "Programs": "Program",
    "Filters": "Filter",
    "AssetFilters": "AssetFilter",
    "MonitoringConfigurations": "MonitoringConfiguration",
}

UNBOUND = {"CancelJob", "CreateFileInfos", "GetProtectionKeyId", "GetProtectionKey", "RebindContentKey"}
BOUND = {
    ("Publish", "Asset"),
    ("GetKeyDeliveryUrl", "ContentKey"),
    ("Start", "StreamingEndpoint"), ("Stop", "StreamingEndpoint"), ("Scale", "StreamingEndpoint"),
    ("Start", "Channel"), ("Stop", "Channel"), ("Reset", "Channel"),
    ("ShowSlate", "Channel"), ("HideSlate", "Channel"),
    ("StartAdvertisement", "Channel"), ("EndAdvertisement", "Channel"),
    ("Start", "Program"), ("Stop", "Program"),
    ("GetMonitoringSasUris", "NotificationEndPoint"),
}


@pytest.fixture(scope="module")
def body() -> bytes:
    return write_csdl(MODEL)


@pytest.fixture(scope="module")
def doc(body: bytes) -> etree._Element:
    return etree.fromstring(body)


@pytest.fixture(scope="module")
def schema(doc: etree._Element) -> etree._Element:
    found = doc.xpath("/edmx:Edmx/edmx:DataServices/e:Schema", namespaces=XP)
    assert len(found) == 1
    return found[0]


def _strip_ns(qualified: str) -> str:
    assert qualified.startswith(NS + "."), qualified
    return qualified[len(NS) + 1:]


def _collection_inner(type_name: str) -> str:
    if type_name.startswith("Collection(") and type_name.endswith(")"):
        return type_name[len("Collection("):-1]
    return type_name


# document shape ----------------------------------------------------------------------------------


def test_envelope(body: bytes, doc: etree._Element, schema: etree._Element) -> None:
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"')
    body.decode("utf-8")
    assert doc.tag == f"{{{NS_EDMX}}}Edmx"
    assert doc.get("Version") == "1.0"
    services = doc.find(f"{{{NS_EDMX}}}DataServices")
    assert services.get(M_ + "DataServiceVersion") == "3.0"
    assert services.get(M_ + "MaxDataServiceVersion") == "3.0"
    assert schema.get("Namespace") == NS
    assert schema.nsmap[None] == NS_EDM


def test_deterministic(body: bytes) -> None:
    assert write_csdl(MODEL) == body


def test_container(schema: etree._Element) -> None:
    containers = schema.findall("e:EntityContainer", XP)
    assert len(containers) == 1
    assert containers[0].get("Name") == "WindowsAzureMediaServices"
    assert containers[0].get(M_ + "IsDefaultEntityContainer") == "true"


def test_entity_sets(schema: etree._Element) -> None:
    declared = schema.findall("e:EntityContainer/e:EntitySet", XP)
    sets = {es.get("Name"): es.get("EntityType") for es in declared}
    assert sets == {name: f"{NS}.{t}" for name, t in SPEC_SETS.items()}
    order = [es.get("Name") for es in schema.iterfind("e:EntityContainer/e:EntitySet", XP)]
    assert order == list(SPEC_SETS)
    types = {et.get("Name") for et in schema.iterfind("e:EntityType", XP)}
    assert types == set(SPEC_SETS.values())


def test_keys(schema: etree._Element) -> None:
    for et in schema.iterfind("e:EntityType", XP):
        refs = et.findall("e:Key/e:PropertyRef", XP)
        assert len(refs) == 1
        key = et.find(f"e:Property[@Name='{refs[0].get('Name')}']", XP)
        assert key is not None, et.get("Name")
        assert key.get("Nullable") == "false"
    ert = schema.find("e:EntityType[@Name='EncodingReservedUnitType']", XP)
    assert ert.find("e:Key/e:PropertyRef", XP).get("Name") == "AccountId"
    assert ert.find("e:Property[@Name='AccountId']", XP).get("Type") == "Edm.Guid"
    sa = schema.find("e:EntityType[@Name='StorageAccount']", XP)
    assert sa.find("e:Key/e:PropertyRef", XP).get("Name") == "Name"


def test_properties_match_model(schema: etree._Element) -> None:
    for es in MODEL.entity_sets:
        et = schema.find(f"e:EntityType[@Name='{es.entity_type.name}']", XP)
        written = et.findall("e:Property", XP)
        assert [p.get("Name") for p in written] == [p.name for p in es.entity_type.properties]
        for el, p in zip(written, es.entity_type.properties, strict=True):
            assert el.get("Type") == MODEL.type_name(p)
            assert el.get("Nullable") in ("true", "false")
            if p.max_length is not None:
                assert el.get("MaxLength") == str(p.max_length)
            else:
                assert el.get("MaxLength") is None
    files = schema.find("e:EntityType[@Name='AssetFile']", XP)
    assert files.find("e:Property[@Name='Name']", XP).get("MaxLength") == "260"
    se = schema.find("e:EntityType[@Name='StreamingEndpoint']", XP)
    assert se.find("e:Property[@Name='State']", XP).get("Type") == "Edm.String"
    assert se.find("e:Property[@Name='CustomHostNames']", XP).get("Type") == "Collection(Edm.String)"
    job = schema.find("e:EntityType[@Name='Job']", XP)
    assert job.find("e:Property[@Name='EndTime']", XP).get("Nullable") == "true"
    assert job.find("e:Property[@Name='State']", XP).get("Nullable") == "false"


def test_complex_types_referenced_by_qualified_name(schema: etree._Element) -> None:
    complex_names = {c.get("Name") for c in schema.iterfind("e:ComplexType", XP)}
    assert complex_names == {c.name for c in MODEL.complex_types}
    referenced = set()
    for el in schema.iterfind(".//e:Property", XP):
        inner = _collection_inner(el.get("Type"))
        if inner in PRIMITIVE_TYPES:
            continue
        short = _strip_ns(inner)  # qualified with the schema namespace
        assert short in complex_names, inner
        referenced.add(short)
    task = schema.find("e:EntityType[@Name='Task']", XP)
    assert task.find("e:Property[@Name='ErrorDetails']", XP).get("Type") == f"Collection({NS}.ErrorDetail)"
    assert {"ErrorDetail", "TaskHistoricalEvent", "ChannelInput", "PresentationTimeRange"} <= referenced
    assert "IPRange" in referenced


def test_navigation_properties_have_associations(schema: etree._Element) -> None:
    associations = {a.get("Name"): a for a in schema.iterfind("e:Association", XP)}
    association_sets = {
        a.get("Association"): a for a in schema.iterfind("e:EntityContainer/e:AssociationSet", XP)
    }
    set_of_type = {v: k for k, v in SPEC_SETS.items()}
    count = 0
    for et in schema.iterfind("e:EntityType", XP):
        type_name = et.get("Name")
        for nav in et.iterfind("e:NavigationProperty", XP):
            count += 1
            rel = nav.get("Relationship")
            assoc = associations[_strip_ns(rel)]
            ends = {e.get("Role"): e for e in assoc.findall("e:End", XP)}
            assert len(ends) == 2
            from_end, to_end = ends[nav.get("FromRole")], ends[nav.get("ToRole")]
            assert from_end.get("Type") == f"{NS}.{type_name}"
            model_nav = MODEL.entity_set(set_of_type[type_name]).entity_type.navigation(nav.get("Name"))
            target_type = MODEL.entity_set(model_nav.target).entity_type.name
            assert to_end.get("Type") == f"{NS}.{target_type}"
            assert to_end.get("Multiplicity") == ("*" if model_nav.many else "0..1")
            assert from_end.get("Multiplicity") in ("*", "0..1")
            aset = association_sets[rel]
            set_ends = {e.get("Role"): e.get("EntitySet") for e in aset.findall("e:End", XP)}
            expected = {nav.get("FromRole"): set_of_type[type_name], nav.get("ToRole"): model_nav.target}
            assert set_ends == expected
    assert count == sum(len(es.entity_type.navigations) for es in MODEL.entity_sets)
    assert len(associations) == count
    assert len(association_sets) == count


def test_asset_navigation_multiplicities(schema: etree._Element) -> None:
    def ends(name: str) -> dict[str, str]:
        a = schema.find(f"e:Association[@Name='{name}']", XP)
        return {e.get("Role"): e.get("Multiplicity") for e in a.findall("e:End", XP)}

    assert ends("Asset_Files") == {"Asset": "0..1", "Files": "*"}
    assert ends("Locator_Asset") == {"Locator": "*", "Asset": "0..1"}
    assert ends("Asset_ParentAssets") == {"Asset": "*", "ParentAssets": "*"}
    assert ends("Program_Channel") == {"Program": "*", "Channel": "0..1"}


def test_function_imports(schema: etree._Element) -> None:
    imports = schema.findall("e:EntityContainer/e:FunctionImport", XP)
    unbound, bound = set(), set()
    for fi in imports:
        params = fi.findall("e:Parameter", XP)
        if fi.get("IsBindable") == "true":
            assert fi.get(M_ + "IsAlwaysBindable") == "true"
            assert fi.get("IsSideEffecting") == "true"
            assert fi.get(M_ + "HttpMethod") is None
            binding = _strip_ns(params[0].get("Type"))
            assert params[0].get("Name") == binding[0].lower() + binding[1:]
            bound.add((fi.get("Name"), binding))
        else:
            assert fi.get(M_ + "HttpMethod") == "GET"
            unbound.add(fi.get("Name"))
        for p in params:
            inner = _collection_inner(p.get("Type"))
            assert inner in PRIMITIVE_TYPES or _strip_ns(inner) in SPEC_SETS.values()
    assert unbound == UNBOUND
    assert bound == BOUND
    assert len(imports) == len(UNBOUND) + len(BOUND)

    def one(name: str, binding: str | None = None) -> etree._Element:
        for fi in imports:
            params = fi.findall("e:Parameter", XP)
            if fi.get("Name") == name and (binding is None or params[0].get("Type") == f"{NS}.{binding}"):
                return fi
        raise AssertionError(name)

    gkd = one("GetKeyDeliveryUrl", "ContentKey")
    assert gkd.get("ReturnType") == "Edm.String"
    assert [(p.get("Name"), p.get("Type")) for p in gkd.findall("e:Parameter", XP)] == [
        ("contentKey", f"{NS}.ContentKey"), ("keyDeliveryType", "Edm.Int32")]
    assert one("GetProtectionKeyId").get("ReturnType") == "Edm.String"
    assert one("CancelJob").get("ReturnType") is None
    adv = one("StartAdvertisement", "Channel")
    assert [p.get("Type") for p in adv.findall("e:Parameter", XP)] == [
        f"{NS}.Channel", "Edm.Time", "Edm.Int32", "Edm.Boolean"]
    assert one("GetMonitoringSasUris", "NotificationEndPoint").get("ReturnType") == "Collection(Edm.String)"


def test_structurally_valid(schema: etree._Element) -> None:
    """Names unique per scope, every type reference resolves, element order as CSDL requires."""
    entity_types = [et.get("Name") for et in schema.iterfind("e:EntityType", XP)]
    complex_types = [ct.get("Name") for ct in schema.iterfind("e:ComplexType", XP)]
    associations = [a.get("Name") for a in schema.iterfind("e:Association", XP)]
    schema_names = entity_types + complex_types + associations + ["WindowsAzureMediaServices"]
    assert len(schema_names) == len(set(schema_names))
    for el in list(schema.iterfind("e:EntityType", XP)) + list(schema.iterfind("e:ComplexType", XP)):
        member_tags = (f"{{{NS_EDM}}}Property", f"{{{NS_EDM}}}NavigationProperty")
        members = [c.get("Name") for c in el if c.tag in member_tags]
        assert len(members) == len(set(members)), el.get("Name")
        assert el.get("Name") not in members  # a member may not share its type's name
        tags = [etree.QName(c).localname for c in el]
        if el.tag.endswith("EntityType"):
            assert tags[0] == "Key"
            # properties before navigation properties, as WCF Data Services writes them
            assert tags == ["Key", *sorted(tags[1:], key=lambda t: t == "NavigationProperty")]
    for a in schema.iterfind("e:Association", XP):
        ends = a.findall("e:End", XP)
        assert len(ends) == 2 and ends[0].get("Role") != ends[1].get("Role")
        for end in ends:
            assert _strip_ns(end.get("Type")) in entity_types
            assert end.get("Multiplicity") in ("*", "0..1", "1")
    container = schema.find("e:EntityContainer", XP)
    container_names = [c.get("Name") for c in container if etree.QName(c).localname != "FunctionImport"]
    assert len(container_names) == len(set(container_names))
    sets = {c.get("Name") for c in container.iterfind("e:EntitySet", XP)}
    for aset in container.iterfind("e:AssociationSet", XP):
        assert _strip_ns(aset.get("Association")) in associations
        for end in aset.findall("e:End", XP):
            assert end.get("EntitySet") in sets
    # the container comes last in the schema
    assert etree.QName(schema[-1]).localname == "EntityContainer"


# generic behaviour on a small model (no AMS knowledge in the writer) -----------------------------


def test_generic_model() -> None:
    point = ComplexType("Point", (Property("X", "Edm.Int32", nullable=False), Property("Y", "Edm.Int32")))
    node = EntityType(
        "Node",
        key="Id",
        properties=(
            Property("Id", "Edm.Int64", nullable=False),
            Property("Label", "Edm.String", max_length=10),
            Property("At", "Point"),
            Property("Trail", "Point", collection=True),
            Property("ParentId", "Edm.Int64"),
        ),
        navigations=(
            # a navigation named like its own type: roles must still differ
            NavigationProperty("Node", "Nodes", many=False, fk="ParentId"),
            NavigationProperty("Children", "Nodes", reverse_fk="ParentId"),
        ),
    )
    model = Model(
        "Test.Ns",
        "Box",
        entity_sets=[EntitySet("Nodes", node)],
        complex_types=[point],
        functions=[
            FunctionImport("Ping", (Parameter("n", "Edm.Int32"),), return_type="Point"),
            FunctionImport("Poke", (), return_type="Collection(Point)", http_method="POST", binding="Nodes",
                           side_effecting=False),
        ],
    )
    model.validate()
    root = etree.fromstring(write_csdl(model))
    ns = {**XP}
    schema = root.find("edmx:DataServices/e:Schema", ns)
    assert schema.get("Namespace") == "Test.Ns"
    props = {p.get("Name"): p for p in schema.iterfind("e:EntityType/e:Property", ns)}
    assert props["At"].get("Type") == "Test.Ns.Point"
    assert props["Trail"].get("Type") == "Collection(Test.Ns.Point)"
    assert props["Trail"].get("Nullable") == "false"
    assert props["Label"].get("MaxLength") == "10"
    self_assoc = schema.find("e:Association[@Name='Node_Node']", ns)
    roles = [e.get("Role") for e in self_assoc.findall("e:End", ns)]
    assert len(set(roles)) == 2
    fis = {f.get("Name"): f for f in schema.iterfind("e:EntityContainer/e:FunctionImport", ns)}
    assert fis["Ping"].get("ReturnType") == "Test.Ns.Point"
    assert fis["Ping"].get(M_ + "HttpMethod") == "GET"
    assert fis["Poke"].get("ReturnType") == "Collection(Test.Ns.Point)"
    assert fis["Poke"].get("IsSideEffecting") == "false"
    assert fis["Poke"].find("e:Parameter", ns).get("Name") == "node"


# third-party reader ------------------------------------------------------------------------------


def test_pyodata_reads_metadata(body: bytes) -> None:
    """pyodata (SAP's OData client) parses EDMX 1.0 with the 2009/11 (v3) schema namespace."""
    pyodata_model = pytest.importorskip(
        "pyodata.v2.model", reason="pyodata is not installed (pip install pyodata>=1.11)"
    )
    parsed = pyodata_model.MetadataBuilder(body).build()  # default policy: any parser error is fatal
    assert {s.name for s in parsed.entity_sets} == set(SPEC_SETS)
    for set_name, type_name in SPEC_SETS.items():
        assert parsed.entity_set(set_name).entity_type.name == type_name
    asset = parsed.entity_type("Asset", namespace=NS)
    assert {n.name for n in asset.nav_proprties} == {
        "Locators", "ContentKeys", "Files", "ParentAssets", "StorageAccount", "DeliveryPolicies",
        "AssetFilters",
    }
    assert asset.proprty("Options").typ.name == "Edm.Int32"
    channel_input = parsed.complex_type("ChannelInput", namespace=NS)
    assert channel_input.proprty("KeyFrameInterval").typ.name == "Edm.Time"
    # pyodata keys function imports by name, so the three bound Start/Stop overloads collapse to one
    assert {f.name for f in parsed.function_imports} == UNBOUND | {name for name, _ in BOUND}
    gkd = parsed.function_import("GetKeyDeliveryUrl", namespace=NS)
    assert gkd.return_type.name == "Edm.String"
    assert [p.name for p in gkd.parameters] == ["contentKey", "keyDeliveryType"]
    assert parsed.function_import("CancelJob", namespace=NS).http_method == "GET"
    assert len(parsed.associations) == sum(len(es.entity_type.navigations) for es in MODEL.entity_sets)
