"""Azure Storage service SAS: signing the container URLs that SAS Locators hand out.

A Locator's SAS references a stored access policy (`si` = the locator GUID); permissions and expiry
live in that policy, so deleting or expiring the Locator revokes the URL. The blob service verifies
these signatures with the same function.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote

SAS_VERSION = "2012-02-12"


def sas_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def string_to_sign(*, permissions: str, start: str, expiry: str, resource: str, identifier: str,
                   version: str = SAS_VERSION) -> str:
    """The 2012-02-12 service SAS string-to-sign (one field per line)."""
    return "\n".join([permissions, start, expiry, resource, identifier, version])


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def container_sas(*, key: str, storage_account: str, container: str, identifier: str,
                  start: datetime | None, expiry: datetime) -> str:
    """`?sv=…&sr=c&si=…&sig=…[&st=…]&se=…` for a container, bound to stored policy `identifier`."""
    st = sas_time(start) if start else ""
    se = sas_time(expiry)
    resource = f"/{storage_account}/{container}"
    text = string_to_sign(permissions="", start=st, expiry=se, resource=resource, identifier=identifier)
    sig = sign(key, text)
    parts = [f"sv={SAS_VERSION}", "sr=c", f"si={identifier}", f"sig={quote(sig, safe='')}"]
    if st:
        parts.append(f"st={quote(st, safe='')}")
    parts.append(f"se={quote(se, safe='')}")
    return "?" + "&".join(parts)


# ---- verification (the blob service) -----------------------------------------------------------

_RESPONSE_OVERRIDES = ("rscc", "rscd", "rsce", "rscl", "rsct")


def canonical_resource(version: str, account: str, container: str, blob: str | None) -> str:
    path = f"/{account}/{container}" + (f"/{blob}" if blob else "")
    return f"/blob{path}" if version >= "2015-02-21" else path


def service_sas_string(params: dict[str, str], account: str, container: str, blob: str | None) -> str:
    """The string-to-sign of a service SAS for the `sv` version it was made with."""
    sv = params.get("sv", SAS_VERSION)
    resource = canonical_resource(sv, account, container, blob if params.get("sr") == "b" else None)
    head = [params.get("sp", ""), params.get("st", ""), params.get("se", ""), resource, params.get("si", "")]
    overrides = [params.get(k, "") for k in _RESPONSE_OVERRIDES]
    if sv < "2013-08-15":
        return "\n".join([*head, sv])
    if sv < "2015-04-05":
        return "\n".join([*head, sv, *overrides])
    ip_proto = [params.get("sip", ""), params.get("spr", "")]
    if sv < "2018-11-09":
        return "\n".join([*head, *ip_proto, sv, *overrides])
    tail = [sv, params.get("sr", ""), params.get("snapshot", "")]
    if sv >= "2020-12-06":
        tail.append(params.get("ses", ""))
    return "\n".join([*head, *ip_proto, *tail, *overrides])


def verify_signature(keys: tuple[str, ...], text: str, signature: str) -> bool:
    try:
        given = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return any(hmac.compare_digest(base64.b64decode(sign(k, text)), given) for k in keys)


def parse_sas_time(text: str) -> datetime:
    value = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"'{text}' is not a SAS time")


def shared_key_string(method: str, headers: dict[str, str], account: str, path: str,
                      query: list[tuple[str, str]], version: str) -> str:
    """Shared Key string-to-sign (2009-09-19 and later)."""
    length = headers.get("content-length", "")
    if length == "0" and version >= "2015-02-21":
        length = ""
    h = headers.get
    fields = [method.upper(), h("content-encoding", ""), h("content-language", ""), length,
              h("content-md5", ""), h("content-type", ""), "" if "x-ms-date" in headers else h("date", ""),
              h("if-modified-since", ""), h("if-match", ""), h("if-none-match", ""),
              h("if-unmodified-since", ""), h("range", "")]
    resource = _canonical_resource_sk(account, path, query)
    return "\n".join(fields) + "\n" + _canonical_headers(headers) + resource


def shared_key_lite_string(method: str, headers: dict[str, str], account: str, path: str,
                           query: list[tuple[str, str]]) -> str:
    date = "" if "x-ms-date" in headers else headers.get("date", "")
    resource = f"/{account}{path}"
    comp = [v for k, v in query if k.lower() == "comp"]
    if comp:
        resource += f"?comp={comp[0]}"
    fields = [method.upper(), headers.get("content-md5", ""), headers.get("content-type", ""), date]
    return "\n".join(fields) + "\n" + _canonical_headers(headers) + resource


def _canonical_headers(headers: dict[str, str]) -> str:
    items = sorted((k.lower(), " ".join(v.split())) for k, v in headers.items()
                   if k.lower().startswith("x-ms-"))
    return "".join(f"{k}:{v}\n" for k, v in items)


def _canonical_resource_sk(account: str, path: str, query: list[tuple[str, str]]) -> str:
    out = f"/{account}{path}"
    grouped: dict[str, list[str]] = {}
    for k, v in query:
        grouped.setdefault(k.lower(), []).append(v)
    for k in sorted(grouped):
        out += f"\n{k}:{','.join(sorted(grouped[k]))}"
    return out
