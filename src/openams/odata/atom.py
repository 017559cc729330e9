"""Atom/XML payloads (OData v3 as WCF Data Services wrote and read them).

`AtomWriter` renders entries, feeds, single properties, `$links` answers, service-operation results,
the AtomPub service document and errors. `read_entry` and `read_link` parse what clients POST, MERGE
or PUT in Atom/XML into the format-neutral `EntityPayload` of `payload`; values stay raw (XML text)
and are typed later by `values.coerce`, exactly like the JSON readers.

Incoming XML is parsed with defusedxml: a document type declaration (and so any entity definition or
external reference) is refused outright, which rules out entity-expansion bombs and XXE.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException
from lxml import etree

from ..errors import InvalidPayload
from .edm import ComplexType, EntitySet, EntityType, Model, Property, is_primitive
from .payload import NS_ATOM, NS_D, NS_M, NS_SCHEME, REL_RELATED, EntityPayload, WriteContext
from .values import format_datetime, to_text

NS_APP = "http://www.w3.org/2007/app"
NS_XML = "http://www.w3.org/XML/1998/namespace"

CT_ENTRY = "application/atom+xml;type=entry;charset=utf-8"
CT_FEED = "application/atom+xml;type=feed;charset=utf-8"
CT_XML = "application/xml;charset=utf-8"
CT_ATOMSVC = "application/atomsvc+xml;charset=utf-8"

_XML_DECL = b'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'

_A = f"{{{NS_ATOM}}}"
_D = f"{{{NS_D}}}"
_M = f"{{{NS_M}}}"
_APP = f"{{{NS_APP}}}"
_XML_BASE = f"{{{NS_XML}}}base"
_XML_LANG = f"{{{NS_XML}}}lang"
_M_TYPE = f"{_M}type"
_M_NULL = f"{_M}null"

_ENTRY_NSMAP = {None: NS_ATOM, "d": NS_D, "m": NS_M}
_VALUE_NSMAP = {"d": NS_D, "m": NS_M}

# Characters XML 1.0 cannot carry at all (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_MAX_DEPTH = 32
"""Nesting limit for complex values, collections and inline entries in incoming payloads."""


# ------------------------------------------------------------------------------------------------
# writing


class AtomWriter:
    """The Atom/XML response format (implements `payload.Writer`)."""

    content_type_entry = CT_ENTRY
    content_type_feed = CT_FEED
    content_type_property = CT_XML
    content_type_links = CT_XML
    content_type_function = CT_XML
    content_type_service = CT_XML
    """WCF answered `Accept: application/atom+xml,application/xml` (what the SDK sends) with
    `application/xml`; `CT_ATOMSVC` is the AtomPub type for clients that ask for it explicitly."""
    content_type_error = CT_XML

    # entities -----------------------------------------------------------------------------------
    def entry(self, ctx: WriteContext, entity_set: EntitySet, entity: dict[str, Any]) -> bytes:
        root = etree.Element(f"{_A}entry", nsmap=_ENTRY_NSMAP)
        root.set(_XML_BASE, ctx.base_url)
        self._fill_entry(root, ctx, entity_set, entity)
        return _serialise(root)

    def feed(self, ctx: WriteContext, entity_set: EntitySet, entities: Sequence[dict[str, Any]],
             *, count: int | None = None, self_path: str | None = None) -> bytes:
        path = self_path or entity_set.name
        root = etree.Element(f"{_A}feed", nsmap=_ENTRY_NSMAP)
        root.set(_XML_BASE, ctx.base_url)
        _sub(root, f"{_A}id", ctx.base_url + path)
        _sub(root, f"{_A}title", entity_set.name, type="text")
        _sub(root, f"{_A}updated", _now())
        _sub(root, f"{_A}link", rel="self", title=entity_set.name, href=path)
        if count is not None:
            _sub(root, f"{_M}count", str(count))
        for entity in entities:
            self._fill_entry(etree.SubElement(root, f"{_A}entry"), ctx, entity_set, entity)
        return _serialise(root)

    def _fill_entry(self, el: etree._Element, ctx: WriteContext, entity_set: EntitySet,
                    entity: dict[str, Any]) -> None:
        model = ctx.model
        et = entity_set.entity_type
        chosen = _Selection(ctx.select)
        key = entity.get(et.key)
        if key is None:
            raise ValueError(f"{et.name} entity has no value for its key {et.key}")
        path = ctx.entity_path(entity_set, key)
        url = ctx.base_url + path

        _sub(el, f"{_A}id", url)
        _sub(el, f"{_A}category", term=model.qualified(et.name), scheme=NS_SCHEME)
        _sub(el, f"{_A}link", rel="edit", title=et.name, href=path)
        for nav in et.navigations:
            if not chosen.has(nav.name):
                continue
            kind = "feed" if nav.many else "entry"
            _sub(el, f"{_A}link", rel=REL_RELATED + nav.name, type=f"application/atom+xml;type={kind}",
                 title=nav.name, href=f"{path}/{nav.name}")
        _sub(el, f"{_A}title")
        modified = entity.get("LastModified")
        _sub(el, f"{_A}updated", format_datetime(modified) if isinstance(modified, datetime) else _now())
        author = _sub(el, f"{_A}author")
        _sub(author, f"{_A}name")
        for fn in model.functions_bound_to(entity_set.name):
            if not chosen.has(fn.name):
                continue
            _sub(el, f"{_M}action", metadata=ctx.metadata_url(f"{model.container}.{fn.name}"),
                 title=fn.name, target=f"{url}/{fn.name}")
        content = _sub(el, f"{_A}content", type="application/xml")
        props = _sub(content, f"{_M}properties")
        for prop in et.properties:
            if prop.name in entity and chosen.has(prop.name):
                child = etree.SubElement(props, _D + prop.name)
                _fill_value(child, model, prop.type, entity[prop.name], collection=prop.collection)

    # single values ------------------------------------------------------------------------------
    def property(self, ctx: WriteContext, name: str, type_name: str, value: Any,
                 *, collection: bool = False) -> bytes:
        type_name, collection = _split_collection(type_name, collection)
        root = etree.Element(_D + name, nsmap=_VALUE_NSMAP)
        _fill_value(root, ctx.model, type_name, value, collection=collection)
        return _serialise(root)

    def function_result(self, ctx: WriteContext, name: str, type_name: str, value: Any) -> bytes:
        type_name, collection = _split_collection(type_name, False)
        root = etree.Element(_D + name, nsmap=_VALUE_NSMAP)
        _fill_value(root, ctx.model, type_name, value, collection=collection, typed_strings=True)
        return _serialise(root)

    def links(self, ctx: WriteContext, uris: Sequence[str], *, single: bool) -> bytes:
        if single:
            if len(uris) != 1:
                raise ValueError(f"a single $links answer needs exactly one uri, got {len(uris)}")
            root = etree.Element(f"{_D}uri", nsmap={None: NS_D})
            root.text = _xml_text(uris[0])
        else:
            root = etree.Element(f"{_D}links", nsmap={None: NS_D})
            for uri in uris:
                _sub(root, f"{_D}uri", uri)
        return _serialise(root)

    # service level ------------------------------------------------------------------------------
    def service_document(self, ctx: WriteContext) -> bytes:
        root = etree.Element(f"{_APP}service", nsmap={None: NS_APP, "atom": NS_ATOM})
        root.set(_XML_BASE, ctx.base_url)
        workspace = _sub(root, f"{_APP}workspace")
        _sub(workspace, f"{_A}title", "Default")
        for entity_set in ctx.model.entity_sets:
            collection = _sub(workspace, f"{_APP}collection", href=entity_set.name)
            _sub(collection, f"{_A}title", entity_set.name)
        return _serialise(root)

    def error(self, code: str, message: str) -> bytes:
        root = etree.Element(f"{_M}error", nsmap={"m": NS_M})
        _sub(root, f"{_M}code", code)
        msg = _sub(root, f"{_M}message", message)
        msg.set(_XML_LANG, "en-US")
        return _serialise(root)


class _Selection:
    """`$select` as the entry writer applies it: None or `*` keeps everything; otherwise only the
    named properties, navigation links and actions (first path segment, case-insensitive)."""

    def __init__(self, select: Sequence[str] | None) -> None:
        names = {s.strip().split("/", 1)[0].lower() for s in select} if select is not None else None
        self._names = None if names is None or "*" in names else names

    def has(self, name: str) -> bool:
        return self._names is None or name.lower() in self._names


def _fill_value(el: etree._Element, model: Model, type_name: str, value: Any, *, collection: bool,
                typed_strings: bool = False) -> None:
    """Give the property element `el` its `m:type`/`m:null` and content for `value`.

    `type_name` is the (item) type: `Edm.*` or a complex type name, short or qualified.
    """
    if collection:
        ctype = None if is_primitive(type_name) else model.complex_type(type_name)
        item_type = type_name if ctype is None else model.qualified(ctype.name)
        el.set(_M_TYPE, f"Collection({item_type})")
        for item in value or ():
            child = etree.SubElement(el, f"{_D}element")
            if item is None:
                child.set(_M_NULL, "true")
            elif ctype is not None:
                _fill_complex(child, model, ctype, item)
            else:
                child.text = _primitive_text(type_name, item)
        return
    if not is_primitive(type_name):
        ctype = model.complex_type(type_name)
        el.set(_M_TYPE, model.qualified(ctype.name))
        if value is None:
            el.set(_M_NULL, "true")
        else:
            _fill_complex(el, model, ctype, value)
        return
    if type_name != "Edm.String" or typed_strings:
        el.set(_M_TYPE, type_name)
    if value is None:
        el.set(_M_NULL, "true")
    else:
        el.text = _primitive_text(type_name, value)


def _fill_complex(el: etree._Element, model: Model, ctype: ComplexType, value: dict[str, Any]) -> None:
    for prop in ctype.properties:
        if prop.name in value:
            child = etree.SubElement(el, _D + prop.name)
            _fill_value(child, model, prop.type, value[prop.name], collection=prop.collection)


def _primitive_text(type_name: str, value: Any) -> str:
    if type_name in ("Edm.Double", "Edm.Single") and not isinstance(value, str):
        f = float(value)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "INF" if f > 0 else "-INF"
    return _xml_text(to_text(type_name, value))


def _split_collection(type_name: str, collection: bool) -> tuple[str, bool]:
    if type_name.startswith("Collection(") and type_name.endswith(")"):
        return type_name[len("Collection("):-1], True
    return type_name, collection


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag)
    for name, value in attrs.items():
        el.set(name, value)
    if text is not None:
        el.text = _xml_text(text)
    return el


def _xml_text(text: str) -> str:
    """Text XML can carry: characters XML 1.0 forbids become U+FFFD instead of failing the response."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _now() -> str:
    return format_datetime(datetime.now(UTC))


def _serialise(root: etree._Element) -> bytes:
    return _XML_DECL + etree.tostring(root, encoding="utf-8", xml_declaration=False)


# ------------------------------------------------------------------------------------------------
# reading


def parse_xml(body: bytes | str, *, what: str = "XML") -> Element:
    """Parse an untrusted XML body safely and return its root (an `xml.etree` element).

    Refuses DTDs, entity declarations and external references. Accepts UTF-8 (with or without a
    BOM) and UTF-16 (with or without a BOM), and tolerates a `utf-16` declaration on bytes that are
    really UTF-8 (a common .NET mistake). Anything unreadable is an `InvalidPayload`.
    """
    data = _normalise_encoding(body, what)
    if not data.strip():
        raise InvalidPayload(f"The request body is empty; expected {what}.")
    try:
        return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise InvalidPayload(
            f"The {what} body contains a document type declaration or entity definitions, "
            "which are not accepted."
        ) from None
    except ParseError as exc:
        raise InvalidPayload(f"The {what} body is not well-formed XML: {exc}.") from None


_DECL = re.compile(r"^\s*<\?xml\s[^>]*\?>")
_DECL_ENCODING = re.compile(rb"^\s*<\?xml\s[^>]*\bencoding\s*=\s*[\"']\s*(utf-16\w*|unicode)\s*[\"']",
                            re.IGNORECASE)


def _normalise_encoding(body: bytes | str, what: str) -> bytes:
    """Return bytes expat reads without surprises: UTF-16 input and mislabelled UTF-8 input are
    re-encoded as UTF-8 with the declaration dropped; everything else is passed through."""
    if isinstance(body, str):
        return _DECL.sub("", body.lstrip("\ufeff"), count=1).encode("utf-8")
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"  # the BOM tells the byte order
    elif len(body) >= 4 and body[1] == 0 and body[3] == 0 and body[0] and body[2]:
        encoding = "utf-16-le"  # UTF-8 never contains NUL bytes; ASCII markup in UTF-16 does
    elif len(body) >= 4 and body[0] == 0 and body[2] == 0 and body[1] and body[3]:
        encoding = "utf-16-be"
    else:
        head = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
        if not _DECL_ENCODING.match(head[:400]):
            return body
        encoding = "utf-8-sig"  # declared UTF-16, but the bytes are UTF-8
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        label = "UTF-8" if encoding == "utf-8-sig" else "UTF-16"
        raise InvalidPayload(f"The {what} body is not valid {label}: {exc.reason}.") from None
    return _DECL.sub("", text.lstrip("\ufeff"), count=1).encode("utf-8")


def read_entry(body: bytes | str, model: Model) -> EntityPayload:
    """Parse a POSTed/MERGEd/PUT Atom `<entry>` into raw properties, link bindings and inline entries.

    Primitive values are the element text (`m:null="true"` → None), complex values dicts and
    collections lists of those. `<link rel="…/related/<Nav>" href="…">` adds `href` to
    `bindings[Nav]` (resolved against the applicable `xml:base`, if any; `$n` batch references are
    left alone); a link holding `<m:inline>` adds the nested entries to `inline[Nav]` instead.
    """
    root = parse_xml(body, what="Atom entry")
    if root.tag != f"{_A}entry":
        raise InvalidPayload(f"Expected an Atom <entry> element ({NS_ATOM}) as the document root, "
                             f"found {_describe(root.tag)}.")
    return _read_entry(root, model, root.get(_XML_BASE), None, 0)


def read_link(body: bytes | str) -> str:
    """Parse a `$links` request body `<uri xmlns="…/dataservices">URL</uri>` and return the URL."""
    root = parse_xml(body, what="$links")
    if root.tag not in (f"{_D}uri", "uri"):
        raise InvalidPayload(f"Expected a <uri> element ({NS_D}) as the document root, "
                             f"found {_describe(root.tag)}.")
    uri = (root.text or "").strip()
    if not uri:
        raise InvalidPayload("The <uri> element of the $links body is empty.")
    return _resolve(root.get(_XML_BASE), uri)


def _read_entry(el: Element, model: Model, base: str | None, hint: EntityType | None,
                depth: int) -> EntityPayload:
    if depth > _MAX_DEPTH:
        raise InvalidPayload(f"Inline entries are nested more than {_MAX_DEPTH} levels deep.")
    base = _resolve(base, el.get(_XML_BASE)) if el.get(_XML_BASE) else base
    payload = EntityPayload()
    for category in el.findall(f"{_A}category"):
        scheme = category.get("scheme")
        if category.get("term") and (scheme is None or scheme == NS_SCHEME):
            payload.type_name = category.get("term")
            break
    et = _entity_type(model, payload.type_name) or hint

    containers: list[Element] = []
    for content in el.findall(f"{_A}content"):
        containers.extend(content.findall(f"{_M}properties"))
    containers.extend(el.findall(f"{_M}properties"))  # media link entries
    for container in containers:
        for child in container:
            if not isinstance(child.tag, str):
                continue
            name = _local(child.tag)
            if name in payload.properties:
                raise InvalidPayload(f"Property '{name}' appears more than once in the entry.")
            prop = et.property(name) if et is not None else None
            payload.properties[name] = _read_value(child, model, prop, depth + 1)

    for link in el.findall(f"{_A}link"):
        rel = link.get("rel") or ""
        if not rel.startswith(REL_RELATED):
            continue
        nav_name = rel[len(REL_RELATED):]
        if not nav_name:
            continue
        link_base = _resolve(base, link.get(_XML_BASE)) if link.get(_XML_BASE) else base
        inline = link.find(f"{_M}inline")
        if inline is not None:
            target = _nav_target(model, et, nav_name)
            nested = payload.inline.setdefault(nav_name, [])
            for item in inline:
                if item.tag == f"{_A}entry":
                    nested.append(_read_entry(item, model, link_base, target, depth + 1))
                elif item.tag == f"{_A}feed":
                    feed_base = _resolve(link_base, item.get(_XML_BASE)) if item.get(_XML_BASE) else link_base
                    nested.extend(_read_entry(e, model, feed_base, target, depth + 1)
                                  for e in item.findall(f"{_A}entry"))
            continue
        href = (link.get("href") or "").strip()
        if href:
            payload.bindings.setdefault(nav_name, []).append(_resolve(link_base, href))
    return payload


def _read_value(el: Element, model: Model, prop: Property | None, depth: int) -> Any:
    """Raw value of one property (or collection item) element; `prop` is the model's declaration
    when known, used only where the markup itself is ambiguous (an empty element without m:type)."""
    if depth > _MAX_DEPTH:
        raise InvalidPayload(f"Property values are nested more than {_MAX_DEPTH} levels deep.")
    if (el.get(_M_NULL) or "").strip().lower() == "true":
        return None
    type_attr = (el.get(_M_TYPE) or "").strip()
    children = [c for c in el if isinstance(c.tag, str)]

    is_collection = type_attr.startswith("Collection(") or (not type_attr and prop is not None
                                                             and prop.collection)
    if not is_collection and children and all(_local(c.tag) == "element" for c in children) \
            and (prop is None or prop.collection):
        is_collection = True
    if is_collection:
        item_type = type_attr[len("Collection("):-1] if type_attr.startswith("Collection(") else None
        item_prop = _item_property(prop, item_type)
        return [_read_value(c, model, item_prop, depth + 1) for c in children]

    if type_attr:
        is_complex = bool(children) or not is_primitive(type_attr)
    else:
        is_complex = bool(children) or (prop is not None and prop.is_complex)
    if is_complex:
        ctype = _complex_type(model, type_attr or (prop.type if prop is not None else ""))
        out: dict[str, Any] = {}
        for child in children:
            name = _local(child.tag)
            if name in out:
                raise InvalidPayload(f"Property '{name}' appears more than once in a complex value.")
            sub = ctype.property(name) if ctype is not None else None
            out[name] = _read_value(child, model, sub, depth + 1)
        return out
    return el.text or ""


def _item_property(prop: Property | None, item_type: str | None) -> Property | None:
    if prop is not None:
        return Property(prop.name, prop.type)
    if item_type:
        return Property("element", item_type)
    return None


def _complex_type(model: Model, name: str) -> ComplexType | None:
    if not name or is_primitive(name):
        return None
    try:
        return model.complex_type(name)
    except KeyError:
        return None


def _entity_type(model: Model, term: str | None) -> EntityType | None:
    if not term:
        return None
    short = term.rsplit(".", 1)[-1]
    fallback = None
    for et in model.entity_types():
        if model.qualified(et.name) == term:
            return et
        if et.name == short:
            fallback = et
    return fallback


def _nav_target(model: Model, et: EntityType | None, nav_name: str) -> EntityType | None:
    nav = et.navigation(nav_name) if et is not None else None
    target = model.entity_set(nav.target) if nav is not None else None
    return target.entity_type if target is not None else None


def _resolve(base: str | None, href: str | None) -> str:
    href = href or ""
    if not base or href.startswith("$"):  # `$1` is a $batch Content-ID reference, not a path
        return href
    return urljoin(base, href)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _describe(tag: str) -> str:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return f"<{local}> in namespace {ns}"
    return f"<{tag}> without a namespace"
