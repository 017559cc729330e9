"""Atom/XML writer and reader: document shapes, typing, bindings and hostile input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from lxml import etree

from openams.errors import InvalidPayload
from openams.odata.atom import AtomWriter, parse_xml, read_entry, read_link
from openams.odata.edm import (
    ComplexType,
    EntitySet,
    EntityType,
    FunctionImport,
    Model,
    NavigationProperty,
    Parameter,
    Property,
)
from openams.odata.payload import NS_ATOM, NS_D, NS_M, NS_SCHEME, REL_RELATED, WriteContext
from openams.odata.values import coerce

NS = "Microsoft.Cloud.Media.Vod.Rest.Data.Models"
BASE = "http://acct.restv2.local.test:8700/api/"
XP = {"a": NS_ATOM, "d": NS_D, "m": NS_M, "app": "http://www.w3.org/2007/app"}
XML_NS = "http://www.w3.org/XML/1998/namespace"
ASSET_ID = "nb:cid:UUID:0b3f7a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
ENCODED_ASSET_PATH = "Assets('nb%3Acid%3AUUID%3A0b3f7a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b')"


# ------------------------------------------------------------------------------------------------
# a tiny model


def _model() -> Model:
    address = ComplexType("Address", (Property("Street"), Property("Zip", "Edm.Int32")))
    subscription = ComplexType("JobNotificationSubscription", (
        Property("NotificationEndPointId"),
        Property("TargetJobState", "Edm.Int32", nullable=False),
    ))
    asset = EntityType(
        "Asset", "Id",
        (
            Property("Id", computed=True),
            Property("Name"),
            Property("AlternateId"),
            Property("Options", "Edm.Int32", nullable=False),
            Property("Size", "Edm.Int64", nullable=False),
            Property("Ratio", "Edm.Double"),
            Property("IsPrimary", "Edm.Boolean", nullable=False),
            Property("Created", "Edm.DateTime", nullable=False),
            Property("LastModified", "Edm.DateTime", nullable=False),
            Property("Tracking", "Edm.Guid"),
            Property("Home", "Address"),
            Property("Subscriptions", "JobNotificationSubscription", collection=True),
            Property("Tags", collection=True),
        ),
        (
            NavigationProperty("Locators", "Locators", reverse_fk="AssetId"),
            NavigationProperty("ParentAssets", "Assets", link="AssetParents"),
        ),
        key_prefix="nb:cid:UUID:",
    )
    policy = EntityType("AccessPolicy", "Id", (
        Property("Id"), Property("Name"), Property("DurationInMinutes", "Edm.Double"),
        Property("Permissions", "Edm.Int32"),
    ))
    locator = EntityType(
        "Locator", "Id",
        (
            Property("Id"), Property("AccessPolicyId"), Property("AssetId"),
            Property("StartTime", "Edm.DateTime"), Property("ExpirationDateTime", "Edm.DateTime"),
            Property("Type", "Edm.Int32"),
        ),
        (
            NavigationProperty("AccessPolicy", "AccessPolicies", many=False, fk="AccessPolicyId"),
            NavigationProperty("Asset", "Assets", many=False, fk="AssetId"),
        ),
    )
    job = EntityType(
        "Job", "Id",
        (
            Property("Id"), Property("Name"), Property("State", "Edm.Int32"),
            Property("Priority", "Edm.Int32"),
            Property("Created", "Edm.DateTime"),
            Property("JobNotificationSubscriptions", "JobNotificationSubscription", collection=True),
        ),
        (
            NavigationProperty("InputMediaAssets", "Assets", link="JobInputs"),
            NavigationProperty("Tasks", "Tasks", reverse_fk="JobId"),
        ),
    )
    task = EntityType("Task", "Id", (
        Property("Id"), Property("JobId"), Property("Name"), Property("Configuration"),
        Property("MediaProcessorId"), Property("TaskBody"),
    ))
    unit = EntityType("EncodingReservedUnitType", "AccountId", (
        Property("AccountId", "Edm.Guid"), Property("CurrentReservedUnits", "Edm.Int32"),
    ))
    model = Model(
        namespace=NS,
        container="WindowsAzureMediaServices",
        entity_sets=[
            EntitySet("Assets", asset), EntitySet("AccessPolicies", policy), EntitySet("Locators", locator),
            EntitySet("Jobs", job), EntitySet("Tasks", task), EntitySet("EncodingReservedUnitTypes", unit),
        ],
        complex_types=[address, subscription],
        functions=[
            FunctionImport("Publish", http_method="POST", binding="Assets"),
            FunctionImport("GetProtectionKeyId", (Parameter("contentKeyType", "Edm.Int32"),),
                           return_type="Edm.String"),
        ],
    )
    model.validate()
    return model


@pytest.fixture(scope="module")
def model() -> Model:
    return _model()


@pytest.fixture()
def ctx(model: Model) -> WriteContext:
    return WriteContext(model=model, base_url=BASE)


def _asset(**over: object) -> dict[str, object]:
    entity: dict[str, object] = {
        "Id": ASSET_ID,
        "Name": "clip <one> & \"two\"",
        "AlternateId": None,
        "Options": 1,
        "Size": 12345678901,
        "Ratio": 0.5,
        "IsPrimary": True,
        "Created": datetime(2026, 1, 31, 12, 0, 0, 123000, tzinfo=UTC),
        "LastModified": datetime(2026, 2, 1, 8, 30, tzinfo=UTC),
        "Tracking": "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "Home": {"Street": "Main St", "Zip": 12345},
        "Subscriptions": [{"NotificationEndPointId": "nb:nepid:UUID:1", "TargetJobState": 2}],
        "Tags": ["a", "b"],
    }
    entity.update(over)
    return entity


def _xml(data: bytes) -> etree._Element:
    assert data.startswith(b"<?xml ")
    return etree.fromstring(data)


def _props(entry: etree._Element) -> etree._Element:
    (props,) = entry.xpath("a:content/m:properties", namespaces=XP)
    return props


def _prop(entry: etree._Element, name: str) -> etree._Element:
    (el,) = _props(entry).xpath(f"d:{name}", namespaces=XP)
    return el


M_TYPE = f"{{{NS_M}}}type"
M_NULL = f"{{{NS_M}}}null"


# ------------------------------------------------------------------------------------------------
# entry


def test_entry_envelope(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    assert root.tag == f"{{{NS_ATOM}}}entry"
    assert root.get(f"{{{XML_NS}}}base") == BASE
    assert root.nsmap == {None: NS_ATOM, "d": NS_D, "m": NS_M}
    assert root.findtext(f"{{{NS_ATOM}}}id") == BASE + ENCODED_ASSET_PATH
    (category,) = root.xpath("a:category", namespaces=XP)
    assert category.get("term") == f"{NS}.Asset"
    assert category.get("scheme") == NS_SCHEME
    (edit,) = root.xpath("a:link[@rel='edit']", namespaces=XP)
    assert edit.get("title") == "Asset"
    assert edit.get("href") == ENCODED_ASSET_PATH
    assert root.xpath("a:title", namespaces=XP)[0].text is None
    assert root.xpath("a:author/a:name", namespaces=XP)
    assert root.findtext(f"{{{NS_ATOM}}}updated") == "2026-02-01T08:30:00.000Z"


def test_entry_related_links(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    related = root.xpath("a:link[starts-with(@rel, $r)]", namespaces=XP, r=REL_RELATED)
    assert [link.get("title") for link in related] == ["Locators", "ParentAssets"]
    locators = related[0]
    assert locators.get("rel") == REL_RELATED + "Locators"
    assert locators.get("type") == "application/atom+xml;type=feed"
    assert locators.get("href") == ENCODED_ASSET_PATH + "/Locators"

    locator = {"Id": "nb:lid:UUID:9", "AccessPolicyId": "nb:pid:UUID:1", "AssetId": ASSET_ID,
               "StartTime": None, "ExpirationDateTime": None, "Type": 1}
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Locators"), locator))
    (single,) = root.xpath("a:link[@title='Asset']", namespaces=XP)
    assert single.get("type") == "application/atom+xml;type=entry"
    assert single.get("href") == "Locators('nb%3Alid%3AUUID%3A9')/Asset"
    assert not root.xpath("m:action", namespaces=XP)


def test_entry_bound_action(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    (action,) = root.xpath("m:action", namespaces=XP)
    assert action.get("metadata") == BASE + "$metadata#WindowsAzureMediaServices.Publish"
    assert action.get("title") == "Publish"
    assert action.get("target") == BASE + ENCODED_ASSET_PATH + "/Publish"
    # the action sits before the content, as WCF Data Services wrote it
    children = [etree.QName(c).localname for c in root]
    assert children.index("action") < children.index("content")


def test_entry_primitive_typing(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    name = _prop(root, "Name")
    assert M_TYPE not in name.attrib
    assert name.text == "clip <one> & \"two\""
    expected = {
        "Options": ("Edm.Int32", "1"),
        "Size": ("Edm.Int64", "12345678901"),
        "Ratio": ("Edm.Double", "0.5"),
        "IsPrimary": ("Edm.Boolean", "true"),
        "Created": ("Edm.DateTime", "2026-01-31T12:00:00.123Z"),
        "Tracking": ("Edm.Guid", "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
    }
    for prop, (type_name, text) in expected.items():
        el = _prop(root, prop)
        assert el.get(M_TYPE) == type_name, prop
        assert el.text == text, prop
    assert [etree.QName(c).localname for c in _props(root)] == [
        p.name for p in model.entity_set("Assets").entity_type.properties
    ]


def test_entry_nulls(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"),
                                   _asset(Ratio=None, Tracking=None, Home=None)))
    alt = _prop(root, "AlternateId")
    assert alt.get(M_NULL) == "true"
    assert M_TYPE not in alt.attrib
    assert _prop(root, "Ratio").get(M_TYPE) == "Edm.Double"
    assert _prop(root, "Ratio").get(M_NULL) == "true"
    assert _prop(root, "Tracking").get(M_NULL) == "true"
    home = _prop(root, "Home")
    assert home.get(M_TYPE) == f"{NS}.Address"
    assert home.get(M_NULL) == "true"
    assert len(home) == 0


def test_entry_complex_and_collections(ctx: WriteContext, model: Model) -> None:
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    home = _prop(root, "Home")
    assert home.get(M_TYPE) == f"{NS}.Address"
    assert home.xpath("d:Street/text()", namespaces=XP) == ["Main St"]
    (zip_el,) = home.xpath("d:Zip", namespaces=XP)
    assert zip_el.get(M_TYPE) == "Edm.Int32"
    assert zip_el.text == "12345"

    subs = _prop(root, "Subscriptions")
    assert subs.get(M_TYPE) == f"Collection({NS}.JobNotificationSubscription)"
    (element,) = subs.xpath("d:element", namespaces=XP)
    assert element.xpath("d:NotificationEndPointId/text()", namespaces=XP) == ["nb:nepid:UUID:1"]
    assert element.xpath("d:TargetJobState/@m:type", namespaces=XP) == ["Edm.Int32"]

    tags = _prop(root, "Tags")
    assert tags.get(M_TYPE) == "Collection(Edm.String)"
    assert tags.xpath("d:element/text()", namespaces=XP) == ["a", "b"]

    empty = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset(Subscriptions=[])))
    subs = _prop(empty, "Subscriptions")
    assert subs.get(M_TYPE) == f"Collection({NS}.JobNotificationSubscription)"
    assert len(subs) == 0
    assert M_NULL not in subs.attrib


def test_entry_select(model: Model) -> None:
    ctx = WriteContext(model=model, base_url=BASE, select=["Name", "options"])
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"), _asset()))
    assert [etree.QName(c).localname for c in _props(root)] == ["Name", "Options"]
    assert root.findtext(f"{{{NS_ATOM}}}id") == BASE + ENCODED_ASSET_PATH
    assert not root.xpath("a:link[starts-with(@rel, $r)]", namespaces=XP, r=REL_RELATED)
    assert not root.xpath("m:action", namespaces=XP)

    star = WriteContext(model=model, base_url=BASE, select=["*"])
    root = _xml(AtomWriter().entry(star, model.entity_set("Assets"), _asset()))
    assert len(_props(root)) == 13


def test_entry_guid_key_and_special_values(ctx: WriteContext, model: Model) -> None:
    account = uuid.UUID("12345678-1234-1234-1234-123456789abc")
    root = _xml(AtomWriter().entry(ctx, model.entity_set("EncodingReservedUnitTypes"),
                                   {"AccountId": str(account), "CurrentReservedUnits": 2}))
    assert root.findtext(f"{{{NS_ATOM}}}id") == (
        BASE + "EncodingReservedUnitTypes(guid'12345678-1234-1234-1234-123456789abc')")
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Assets"),
                                   _asset(Name="bell\x07 ok", Ratio=float("inf"))))
    assert _prop(root, "Name").text == "bell\ufffd ok"
    assert _prop(root, "Ratio").text == "INF"


def test_entry_without_last_modified_uses_now(ctx: WriteContext, model: Model) -> None:
    job = {"Id": "nb:jid:UUID:1", "Name": "j", "State": 0, "Priority": 0, "Created": None,
           "JobNotificationSubscriptions": []}
    root = _xml(AtomWriter().entry(ctx, model.entity_set("Jobs"), job))
    updated = root.findtext(f"{{{NS_ATOM}}}updated")
    stamp = datetime.strptime(updated, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


# ------------------------------------------------------------------------------------------------
# feed and other documents


def test_feed(ctx: WriteContext, model: Model) -> None:
    writer = AtomWriter()
    second = _asset(Id="nb:cid:UUID:2")
    root = _xml(writer.feed(ctx, model.entity_set("Assets"), [_asset(), second], count=7))
    assert root.tag == f"{{{NS_ATOM}}}feed"
    assert root.get(f"{{{XML_NS}}}base") == BASE
    assert root.findtext(f"{{{NS_ATOM}}}id") == BASE + "Assets"
    (title,) = root.xpath("a:title", namespaces=XP)
    assert (title.text, title.get("type")) == ("Assets", "text")
    assert root.xpath("a:updated/text()", namespaces=XP)
    (self_link,) = root.xpath("a:link[@rel='self']", namespaces=XP)
    assert (self_link.get("title"), self_link.get("href")) == ("Assets", "Assets")
    assert root.xpath("m:count/text()", namespaces=XP) == ["7"]
    entries = root.xpath("a:entry", namespaces=XP)
    assert [e.findtext(f"{{{NS_ATOM}}}id") for e in entries] == [
        BASE + ENCODED_ASSET_PATH, BASE + "Assets('nb%3Acid%3AUUID%3A2')"]
    assert all(e.get(f"{{{XML_NS}}}base") is None for e in entries)
    assert entries[0].xpath("m:action/@title", namespaces=XP) == ["Publish"]

    plain = _xml(writer.feed(ctx, model.entity_set("Assets"), []))
    assert not plain.xpath("m:count", namespaces=XP)
    assert not plain.xpath("a:entry", namespaces=XP)

    nav = _xml(writer.feed(ctx, model.entity_set("Locators"), [],
                           self_path=ENCODED_ASSET_PATH + "/Locators"))
    assert nav.findtext(f"{{{NS_ATOM}}}id") == BASE + ENCODED_ASSET_PATH + "/Locators"


def test_property_documents(ctx: WriteContext) -> None:
    writer = AtomWriter()
    root = _xml(writer.property(ctx, "State", "Edm.Int32", 2))
    assert root.tag == f"{{{NS_D}}}State"
    assert root.nsmap == {"d": NS_D, "m": NS_M}
    assert (root.get(M_TYPE), root.text) == ("Edm.Int32", "2")

    name = _xml(writer.property(ctx, "Name", "Edm.String", "x"))
    assert M_TYPE not in name.attrib and name.text == "x"

    null = _xml(writer.property(ctx, "StartTime", "Edm.DateTime", None))
    assert (null.get(M_TYPE), null.get(M_NULL)) == ("Edm.DateTime", "true")

    home = _xml(writer.property(ctx, "Home", f"{NS}.Address", {"Street": "s", "Zip": None}))
    assert home.get(M_TYPE) == f"{NS}.Address"
    assert home.xpath("d:Zip/@m:null", namespaces=XP) == ["true"]

    subs = _xml(writer.property(ctx, "JobNotificationSubscriptions", f"{NS}.JobNotificationSubscription",
                                [], collection=True))
    assert subs.get(M_TYPE) == f"Collection({NS}.JobNotificationSubscription)"
    tags = _xml(writer.property(ctx, "Tags", "Collection(Edm.String)", ["x"]))
    assert tags.get(M_TYPE) == "Collection(Edm.String)"
    assert tags.xpath("d:element/text()", namespaces=XP) == ["x"]


def test_links_documents(ctx: WriteContext) -> None:
    writer = AtomWriter()
    one = _xml(writer.links(ctx, [BASE + "ContentKeys('k')"], single=True))
    assert one.tag == f"{{{NS_D}}}uri"
    assert one.nsmap == {None: NS_D}
    assert one.text == BASE + "ContentKeys('k')"
    many = _xml(writer.links(ctx, ["u1", "u2"], single=False))
    assert many.tag == f"{{{NS_D}}}links"
    assert many.xpath("d:uri/text()", namespaces=XP) == ["u1", "u2"]
    assert writer.content_type_links == "application/xml;charset=utf-8"


def test_function_result(ctx: WriteContext) -> None:
    root = _xml(AtomWriter().function_result(ctx, "GetProtectionKeyId", "Edm.String", "nb:kid:UUID:1"))
    assert root.tag == f"{{{NS_D}}}GetProtectionKeyId"
    assert (root.get(M_TYPE), root.text) == ("Edm.String", "nb:kid:UUID:1")


def test_service_document(ctx: WriteContext) -> None:
    root = _xml(AtomWriter().service_document(ctx))
    assert root.tag == "{http://www.w3.org/2007/app}service"
    assert root.get(f"{{{XML_NS}}}base") == BASE
    assert root.xpath("app:workspace/a:title/text()", namespaces=XP) == ["Default"]
    assert root.xpath("app:workspace/app:collection/@href", namespaces=XP)[:2] == ["Assets", "AccessPolicies"]
    assert root.xpath("app:workspace/app:collection[@href='Jobs']/a:title/text()", namespaces=XP) == ["Jobs"]


def test_error_document() -> None:
    data = AtomWriter().error("ResourceNotFound", "No asset 'x' & more.")
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"')
    root = etree.fromstring(data)
    assert root.tag == f"{{{NS_M}}}error"
    assert root.xpath("m:code/text()", namespaces=XP) == ["ResourceNotFound"]
    (message,) = root.xpath("m:message", namespaces=XP)
    assert message.text == "No asset 'x' & more."
    assert message.get(f"{{{XML_NS}}}lang") == "en-US"


def test_content_types() -> None:
    writer = AtomWriter()
    assert writer.content_type_entry == "application/atom+xml;type=entry;charset=utf-8"
    assert writer.content_type_feed == "application/atom+xml;type=feed;charset=utf-8"
    for attr in ("property", "links", "function", "error", "service"):
        assert getattr(writer, f"content_type_{attr}") == "application/xml;charset=utf-8"


# ------------------------------------------------------------------------------------------------
# reading


def test_round_trip(ctx: WriteContext, model: Model) -> None:
    original = _asset()
    payload = read_entry(AtomWriter().entry(ctx, model.entity_set("Assets"), original), model)
    assert payload.type_name == f"{NS}.Asset"
    assert payload.properties["Name"] == original["Name"]
    assert payload.properties["AlternateId"] is None
    assert payload.properties["Size"] == "12345678901"
    assert payload.properties["Home"] == {"Street": "Main St", "Zip": "12345"}
    assert payload.properties["Tags"] == ["a", "b"]
    et = model.entity_set("Assets").entity_type
    typed = {name: coerce(model, et.property(name), raw) for name, raw in payload.properties.items()}
    assert typed == original
    # the entry's own related links are navigation URLs relative to xml:base
    assert payload.bindings == {
        "Locators": [BASE + ENCODED_ASSET_PATH + "/Locators"],
        "ParentAssets": [BASE + ENCODED_ASSET_PATH + "/ParentAssets"],
    }


SDK_ASSET = b"""<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"
       xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <category scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
            term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Asset" />
  <title />
  <author>
    <name />
  </author>
  <updated>2026-11-23T10:00:00.0000000Z</updated>
  <id />
  <content type="application/xml">
    <m:properties>
      <d:AlternateId m:null="true" />
      <d:Created m:type="Edm.DateTime">0001-01-01T00:00:00</d:Created>
      <d:FormatOption m:type="Edm.Int32">0</d:FormatOption>
      <d:Id m:null="true" />
      <d:LastModified m:type="Edm.DateTime">0001-01-01T00:00:00</d:LastModified>
      <d:Name>  upload  me </d:Name>
      <d:Options m:type="Edm.Int32">1</d:Options>
      <d:StorageAccountName></d:StorageAccountName>
      <d:Uri m:null="true" />
    </m:properties>
  </content>
</entry>"""


def test_read_sdk_asset_create(model: Model) -> None:
    payload = read_entry(SDK_ASSET, model)
    assert payload.type_name == f"{NS}.Asset"
    props = payload.properties
    assert props["Id"] is None
    assert props["AlternateId"] is None
    assert props["Created"] == "0001-01-01T00:00:00"
    assert props["Options"] == "1"
    assert props["FormatOption"] == "0"  # SDK-only property: kept raw, the service decides
    assert props["Name"] == "  upload  me "
    assert props["StorageAccountName"] == ""
    assert payload.bindings == {}
    assert payload.inline == {}
    et = model.entity_set("Assets").entity_type
    assert coerce(model, et.property("Options"), props["Options"]) == 1
    assert coerce(model, et.property("Created"), props["Created"]) == datetime(1, 1, 1, tzinfo=UTC)


SDK_LOCATOR = b"""<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"
       xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <category scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
            term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Locator" />
  <title />
  <author><name /></author>
  <updated>2026-11-23T10:00:01Z</updated>
  <id />
  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/AccessPolicy"
        type="application/atom+xml;type=entry" title="AccessPolicy"
        href="http://acct.restv2.local.test:8700/api/AccessPolicies('nb%3Apid%3AUUID%3Aaaaa')" />
  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/Asset"
        type="application/atom+xml;type=entry" title="Asset"
        href="http://acct.restv2.local.test:8700/api/Assets('nb%3Acid%3AUUID%3Abbbb')" />
  <content type="application/xml">
    <m:properties>
      <d:AccessPolicyId m:null="true" />
      <d:AssetId m:null="true" />
      <d:ExpirationDateTime m:type="Edm.DateTime">0001-01-01T00:00:00</d:ExpirationDateTime>
      <d:Id m:null="true" />
      <d:StartTime m:type="Edm.DateTime" m:null="true" />
      <d:Type m:type="Edm.Int32">1</d:Type>
    </m:properties>
  </content>
</entry>"""


def test_read_sdk_locator_binds_through_links(model: Model) -> None:
    payload = read_entry(SDK_LOCATOR, model)
    assert payload.type_name == f"{NS}.Locator"
    assert payload.properties["AccessPolicyId"] is None
    assert payload.properties["AssetId"] is None
    assert payload.properties["StartTime"] is None
    assert payload.properties["Type"] == "1"
    assert payload.bindings == {
        "AccessPolicy": [BASE + "AccessPolicies('nb%3Apid%3AUUID%3Aaaaa')"],
        "Asset": [BASE + "Assets('nb%3Acid%3AUUID%3Abbbb')"],
    }


SDK_JOB = b"""<?xml version="1.0" encoding="utf-8"?>
<entry xml:base="http://acct.restv2.local.test:8700/api/"
       xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"
       xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <category scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
            term="Microsoft.Cloud.Media.Vod.Rest.Data.Models.Job" />
  <title />
  <author><name /></author>
  <updated>2026-11-23T10:00:02Z</updated>
  <id />
  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/InputMediaAssets"
        type="application/atom+xml;type=feed" title="InputMediaAssets"
        href="http://acct.restv2.local.test:8700/api/Assets('nb%3Acid%3AUUID%3A1111')" />
  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/InputMediaAssets"
        type="application/atom+xml;type=feed" title="InputMediaAssets" href="Assets('nb:cid:UUID:2222')" />
  <link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/OutputMediaAssets"
        type="application/atom+xml;type=feed" title="OutputMediaAssets" href="$2" />
  <content type="application/xml">
    <m:properties>
      <d:Created m:type="Edm.DateTime">0001-01-01T00:00:00</d:Created>
      <d:Id m:null="true" />
      <d:JobNotificationSubscriptions
          m:type="Collection(Microsoft.Cloud.Media.Vod.Rest.Data.Models.JobNotificationSubscription)" />
      <d:Name>encode</d:Name>
      <d:Priority m:type="Edm.Int32">0</d:Priority>
      <d:State m:type="Edm.Int32">0</d:State>
    </m:properties>
  </content>
</entry>"""


def test_read_sdk_job(model: Model) -> None:
    payload = read_entry(SDK_JOB, model)
    assert payload.type_name == f"{NS}.Job"
    assert payload.properties["JobNotificationSubscriptions"] == []
    assert payload.properties["Name"] == "encode"
    assert payload.bindings["InputMediaAssets"] == [
        BASE + "Assets('nb%3Acid%3AUUID%3A1111')",
        BASE + "Assets('nb:cid:UUID:2222')",  # relative href resolved against xml:base
    ]
    assert payload.bindings["OutputMediaAssets"] == ["$2"]  # batch reference left alone


def test_read_relative_href_without_base_stays_relative(model: Model) -> None:
    body = SDK_LOCATOR.replace(b"http://acct.restv2.local.test:8700/api/Assets", b"Assets")
    payload = read_entry(body, model)
    assert payload.bindings["Asset"] == ["Assets('nb%3Acid%3AUUID%3Abbbb')"]


def test_read_collection_and_complex_values(model: Model) -> None:
    body = f"""<entry xmlns="{NS_ATOM}" xmlns:d="{NS_D}" xmlns:m="{NS_M}">
      <category term="{NS}.Job" scheme="{NS_SCHEME}"/>
      <content type="application/xml"><m:properties>
        <d:JobNotificationSubscriptions m:type="Collection({NS}.JobNotificationSubscription)">
          <d:element>
            <d:NotificationEndPointId>nb:nepid:UUID:7</d:NotificationEndPointId>
            <d:TargetJobState m:type="Edm.Int32">2</d:TargetJobState>
          </d:element>
        </d:JobNotificationSubscriptions>
        <d:Home m:type="{NS}.Address"><d:Street>x</d:Street><d:Zip m:null="true"/></d:Home>
        <d:Tags><d:element>a</d:element><d:element m:null="true"/></d:Tags>
      </m:properties></content>
    </entry>""".encode()
    props = read_entry(body, model).properties
    assert props["JobNotificationSubscriptions"] == [
        {"NotificationEndPointId": "nb:nepid:UUID:7", "TargetJobState": "2"}]
    assert props["Home"] == {"Street": "x", "Zip": None}
    assert props["Tags"] == ["a", None]


def test_read_empty_collection_without_type_uses_model(model: Model) -> None:
    body = f"""<entry xmlns="{NS_ATOM}" xmlns:d="{NS_D}" xmlns:m="{NS_M}">
      <category term="{NS}.Job" scheme="{NS_SCHEME}"/>
      <content type="application/xml"><m:properties>
        <d:JobNotificationSubscriptions/><d:Name/>
      </m:properties></content></entry>""".encode()
    props = read_entry(body, model).properties
    assert props == {"JobNotificationSubscriptions": [], "Name": ""}


def test_read_media_link_entry_properties(model: Model) -> None:
    body = f"""<entry xmlns="{NS_ATOM}" xmlns:d="{NS_D}" xmlns:m="{NS_M}">
      <content type="video/mp4" src="Files('x')/$value"/>
      <m:properties><d:Name>file.mp4</d:Name></m:properties></entry>""".encode()
    payload = read_entry(body, model)
    assert payload.properties == {"Name": "file.mp4"}
    assert payload.type_name is None


def test_read_inline_entries(model: Model) -> None:
    body = f"""<entry xmlns="{NS_ATOM}" xmlns:d="{NS_D}" xmlns:m="{NS_M}" xml:base="{BASE}">
      <category term="{NS}.Job" scheme="{NS_SCHEME}"/>
      <link rel="{REL_RELATED}Tasks" type="application/atom+xml;type=feed" title="Tasks" href="Jobs(1)/Tasks">
        <m:inline><feed>
          <entry><content type="application/xml"><m:properties><d:Name>t1</d:Name></m:properties></content>
            <link rel="{REL_RELATED}InputMediaAssets" href="Assets('a')"/></entry>
          <entry><content type="application/xml"><m:properties><d:Name>t2</d:Name></m:properties></content>
          </entry>
        </feed></m:inline>
      </link>
      <link rel="{REL_RELATED}InputMediaAssets" href="Assets('b')"><m:inline/></link>
      <content type="application/xml"><m:properties><d:Name>j</d:Name></m:properties></content>
    </entry>""".encode()
    payload = read_entry(body, model)
    assert "Tasks" not in payload.bindings
    tasks = payload.inline["Tasks"]
    assert [t.properties for t in tasks] == [{"Name": "t1"}, {"Name": "t2"}]
    assert tasks[0].bindings == {"InputMediaAssets": [BASE + "Assets('a')"]}
    assert payload.inline["InputMediaAssets"] == []
    assert payload.bindings == {}


def test_read_utf16(model: Model) -> None:
    text = SDK_ASSET.decode().replace('encoding="utf-8"', 'encoding="utf-16"').replace("upload", "übertragen")
    for data in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        assert read_entry(data, model).properties["Name"] == "  übertragen  me "
    # declared utf-16 but really UTF-8 (with and without a BOM)
    assert read_entry(text.encode("utf-8"), model).properties["Name"] == "  übertragen  me "
    assert read_entry(b"\xef\xbb\xbf" + text.encode("utf-8"), model).properties["Options"] == "1"
    with pytest.raises(InvalidPayload, match="UTF-16"):
        read_entry(b"\xff\xfe<\x00e\x00\x00\xd8", model)


def test_read_malformed(model: Model) -> None:
    with pytest.raises(InvalidPayload, match="not well-formed"):
        read_entry(SDK_ASSET[:-20], model)
    with pytest.raises(InvalidPayload, match="not well-formed"):
        read_entry(b"<entry xmlns='http://www.w3.org/2005/Atom'><m:properties/></entry>", model)
    with pytest.raises(InvalidPayload, match="empty"):
        read_entry(b"  \n", model)
    with pytest.raises(InvalidPayload, match="more than once"):
        read_entry(SDK_ASSET.replace(b"<d:Uri m:null", b"<d:Name>x</d:Name><d:Uri m:null"), model)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE entry [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices"
       xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
  <content type="application/xml"><m:properties><d:Name>&lol4;</d:Name></m:properties></content>
</entry>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE uri [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<uri xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices">&secret;</uri>"""


def test_refuses_dtds(model: Model) -> None:
    with pytest.raises(InvalidPayload, match="document type declaration"):
        read_entry(BILLION_LAUGHS, model)
    with pytest.raises(InvalidPayload, match="document type declaration"):
        read_link(XXE)
    with pytest.raises(InvalidPayload, match="document type declaration"):
        read_entry(b'<!DOCTYPE entry><entry xmlns="http://www.w3.org/2005/Atom"/>', model)
    utf16 = BILLION_LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="utf-16"')
    with pytest.raises(InvalidPayload, match="document type declaration"):
        read_entry(utf16.encode("utf-16"), model)


def test_wrong_root(model: Model) -> None:
    with pytest.raises(InvalidPayload, match="<feed>"):
        read_entry(b'<feed xmlns="http://www.w3.org/2005/Atom"/>', model)
    with pytest.raises(InvalidPayload, match="without a namespace"):
        read_entry(b"<entry><content/></entry>", model)
    with pytest.raises(InvalidPayload, match="<uri>"):
        read_link(b'<links xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices"/>')


def test_too_deep(model: Model) -> None:
    nested = "<d:X>" * 100 + "v" + "</d:X>" * 100
    body = (f'<entry xmlns="{NS_ATOM}" xmlns:d="{NS_D}" xmlns:m="{NS_M}"><content type="application/xml">'
            f"<m:properties>{nested}</m:properties></content></entry>").encode()
    with pytest.raises(InvalidPayload, match="nested"):
        read_entry(body, model)


def test_read_link() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
    <uri xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices">
      http://acct.restv2.local.test:8700/api/ContentKeys('nb%3Akid%3AUUID%3A1')
    </uri>"""
    assert read_link(body) == BASE + "ContentKeys('nb%3Akid%3AUUID%3A1')"
    relative = b'<uri xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices">ContentKeys(\'k\')</uri>'
    assert read_link(relative) == "ContentKeys('k')"
    assert read_link(relative.decode().encode("utf-16")) == "ContentKeys('k')"
    with pytest.raises(InvalidPayload, match="empty"):
        read_link(b'<uri xmlns="http://schemas.microsoft.com/ado/2007/08/dataservices"> </uri>')
    ctx = WriteContext(model=_model(), base_url=BASE)
    links = AtomWriter().links(ctx, [BASE + "Assets('a')"], single=True)
    assert read_link(links) == BASE + "Assets('a')"


def test_parse_xml_returns_root() -> None:
    root = parse_xml(b"<a><b/></a>")
    assert root.tag == "a"
    assert [c.tag for c in root] == ["b"]
