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
    sig = sign(key, string_to_sign(permissions="", start=st, expiry=se, resource=resource, identifier=identifier))
    parts = [f"sv={SAS_VERSION}", "sr=c", f"si={identifier}", f"sig={quote(sig, safe='')}"]
    if st:
        parts.append(f"st={quote(st, safe='')}")
    parts.append(f"se={quote(se, safe='')}")
    return "?" + "&".join(parts)
