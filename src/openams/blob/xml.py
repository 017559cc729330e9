"""Azure Blob XML bodies: errors, block lists and blob listings (written), block lists (read)."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from ..storage.base import BlobProperties, BlockInfo, StorageError

MAX_BLOCK_LIST_BYTES = 8 * 1024 * 1024


def http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def _doc(root: Element) -> bytes:
    return b'<?xml version="1.0" encoding="utf-8"?>' + tostring(root, encoding="utf-8", xml_declaration=False)


def error_body(code: str, message: str, request_id: str, now: datetime) -> bytes:
    root = Element("Error")
    SubElement(root, "Code").text = code
    when = now.strftime("%Y-%m-%dT%H:%M:%S.%f")
    SubElement(root, "Message").text = f"{message}\nRequestId:{request_id}\nTime:{when}Z"
    return _doc(root)


def parse_block_list(body: bytes) -> list[tuple[str, str]]:
    """`<BlockList><Latest>id</Latest><Committed>…</Committed><Uncommitted>…</Uncommitted></BlockList>`."""
    if len(body) > MAX_BLOCK_LIST_BYTES:
        raise StorageError(413, "RequestBodyTooLarge", "The block list is too large.")
    try:
        root = safe_xml.fromstring(body, forbid_dtd=True)
    except (safe_xml.ParseError, DefusedXmlException, ValueError):
        raise StorageError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.") from None
    if root.tag != "BlockList":
        raise StorageError(400, "InvalidXmlDocument", "XML specified is not syntactically valid (root must "
                           "be BlockList).")
    blocks: list[tuple[str, str]] = []
    for child in root:
        if child.tag not in ("Latest", "Committed", "Uncommitted") or len(child):
            raise StorageError(400, "InvalidXmlNodeValue", f"The value for one of the XML nodes is not in "
                               f"the correct format (unexpected element {child.tag}).")
        blocks.append((child.tag, (child.text or "").strip()))
    return blocks


def block_list_body(committed: list[BlockInfo], uncommitted: list[BlockInfo], kind: str) -> bytes:
    root = Element("BlockList")
    for tag, items, wanted in (("CommittedBlocks", committed, kind in ("committed", "all")),
                               ("UncommittedBlocks", uncommitted, kind in ("uncommitted", "all"))):
        if not wanted:
            continue
        section = SubElement(root, tag)
        for b in items:
            block = SubElement(section, "Block")
            SubElement(block, "Name").text = b.id
            SubElement(block, "Size").text = str(b.size)
    return _doc(root)


def list_blobs_body(service_endpoint: str, container: str, prefix: str, marker: str, max_results: int | None,
                    delimiter: str, blobs: list[BlobProperties], prefixes: list[str], next_marker: str,
                    include_metadata: bool) -> bytes:
    root = Element("EnumerationResults", ServiceEndpoint=service_endpoint, ContainerName=container)
    if prefix:
        SubElement(root, "Prefix").text = prefix
    if marker:
        SubElement(root, "Marker").text = marker
    if max_results is not None:
        SubElement(root, "MaxResults").text = str(max_results)
    if delimiter:
        SubElement(root, "Delimiter").text = delimiter
    items = SubElement(root, "Blobs")
    for b in blobs:
        el = SubElement(items, "Blob")
        SubElement(el, "Name").text = b.name
        props = SubElement(el, "Properties")
        for tag, value in (
            ("Creation-Time", http_date(b.created)), ("Last-Modified", http_date(b.last_modified)),
            ("Etag", b.etag.strip('"')), ("Content-Length", str(b.size)),
            ("Content-Type", b.settings.content_type or "application/octet-stream"),
            ("Content-Encoding", b.settings.content_encoding),
            ("Content-Language", b.settings.content_language),
            ("Content-CRC64", None), ("Content-MD5", b.content_md5),
            ("Cache-Control", b.settings.cache_control),
            ("Content-Disposition", b.settings.content_disposition), ("BlobType", "BlockBlob"),
            ("AccessTier", "Hot"), ("AccessTierInferred", "true"), ("LeaseStatus", "unlocked"),
            ("LeaseState", "available"), ("ServerEncrypted", "true"),
        ):
            SubElement(props, tag).text = value
        if include_metadata:
            meta = SubElement(el, "Metadata")
            for k, v in b.metadata.items():
                SubElement(meta, k).text = v
    for p in prefixes:
        bp = SubElement(items, "BlobPrefix")
        SubElement(bp, "Name").text = p
    SubElement(root, "NextMarker").text = next_marker or None
    return _doc(root)
