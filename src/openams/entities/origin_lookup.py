"""What the streaming origin needs to know per request, in a few indexed queries.

The origin (an HTTP surface) calls these with the database (an Engine, or a Connection inside a
transaction it already holds) and gets plain frozen values back — no rows, no sessions:

* `find_origin_target(db, locator_guid, host, now)`: for `/<locator-guid>/…`, the account,
  the OnDemandOrigin locator, its asset and files (with what decrypting storage-encrypted files
  takes: each file's IV and the id of the asset's StorageEncryption key — never the key itself),
  and the streaming endpoint serving the request; None when no usable origin locator has that
  GUID (missing, SAS, expired, not started yet).
* `find_filters(db, account_id, asset_id, names)`: the filters a manifest URL names
  (`filter=a;b;c`), asset filters before global ones.
* `endpoint_for_host(db, host)`: the endpoint a Host header names, for the requests that carry no
  locator (`/crossdomain.xml`, `/clientaccesspolicy.xml`).

Endpoint choice by Host header: a custom host name of one of the account's endpoints; else an
endpoint's HostName (with a base domain configured: `<account>.streaming.<domain>` for `default`,
`<name>-<account>.streaming.<domain>` for the others — a name under the account's streaming domain
that is none of its endpoints does not serve the locator: None); else (an IP, localhost, the public
API host…) the account's `default` endpoint. HostNames are stored from the settings (and refreshed
at every start), so no settings are needed here.

Results may be cached briefly by the caller; nothing here caches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, select

from ..db.store import Store
from ..db.tables import ENTITY_TABLES, accounts
from ..errors import BadRequest, NotFound
from ..model import MODEL
from .assets import container_name
from .delivery_policies import asset_delivery_policies
from .files import STORAGE_KEY_TYPE, is_storage_encrypted
from .filters import MAX_FILTERS_PER_REQUEST
from .locators import ON_DEMAND_ORIGIN, find_locator_in_any_account
from .streaming_endpoints import DEFAULT_NAME, RUNNING, find_endpoints_with_custom_host, is_default, normalize_host


@dataclass(frozen=True)
class OriginLocator:
    id: str
    guid: str
    type: int
    start_time: datetime | None
    expiration: datetime
    asset_id: str


@dataclass(frozen=True)
class OriginAsset:
    id: str
    name: str | None
    options: int
    """AssetCreationOptions: 0 None, 1 StorageEncrypted, 2 CommonEncryptionProtected, 4 EnvelopeEncryptionProtected."""
    storage_account_name: str
    container: str
    """The blob container holding the asset's files (`asset-<guid>`)."""
    last_modified: datetime | None


@dataclass(frozen=True)
class OriginFile:
    name: str
    size: int
    is_primary: bool
    mime_type: str | None
    last_modified: datetime | None
    """When the AssetFile row last changed (a re-upload is followed by a MERGE of its size)."""
    storage_encrypted: bool = False
    """The stored bytes are AES-256-CTR ciphertext (storage encryption): read them decrypted."""
    initialization_vector: str | None = None
    """The file's InitializationVector as stored (decimal 64-bit IV) — not a secret."""
    encryption_key_id: str | None = None
    """The content key id the file says it was encrypted with."""


@dataclass(frozen=True)
class OriginEndpoint:
    id: str
    name: str
    account_id: str
    state: str
    """Stopped, Starting, Running, Stopping, Deleting or Scaling; only Running streams."""
    host_name: str | None
    custom_host_names: tuple[str, ...]
    cache_max_age: int | None
    """CacheControl.MaxAge in seconds (overrides the max-age of fragments and VOD manifests);
    None: the origin's default."""
    ip_allow: tuple[ipaddress.IPv4Network, ...] | None
    """None: everyone may connect; an empty tuple: nobody."""
    client_access_policy: str | None
    """Body of /clientaccesspolicy.xml (Silverlight), or None for the origin's default."""
    cross_domain_policy: str | None
    """Body of /crossdomain.xml (Flash), or None for the origin's default."""

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def cross_site_access_policies(self) -> dict[str, str | None]:
        """The policy bodies by property name (`ClientAccessPolicy`, `CrossDomainPolicy`)."""
        return {"ClientAccessPolicy": self.client_access_policy, "CrossDomainPolicy": self.cross_domain_policy}

    def allows(self, client_ip: str | None) -> bool:
        """Whether a client at `client_ip` may stream from this endpoint (IPv4-mapped IPv6 counts
        as its IPv4 address; other IPv6 clients only pass when there is no allow-list)."""
        if self.ip_allow is None:
            return True
        try:
            addr = ipaddress.ip_address((client_ip or "").strip())
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is None:
                return False
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.ip_allow)


@dataclass(frozen=True)
class OriginTarget:
    account_id: str
    account_name: str
    locator: OriginLocator
    asset: OriginAsset
    files: tuple[OriginFile, ...]
    """In creation order."""
    endpoint: OriginEndpoint | None
    """The endpoint serving this request; None only if the account has no `default` endpoint yet
    (its default rows were never seeded) and the Host header names none of its endpoints."""
    delivery_policies: tuple[dict[str, Any], ...] = ()
    """The asset's AssetDeliveryPolicies (entity dicts), for `delivery_policies.delivery_decision`."""
    content_keys: tuple[tuple[str, int], ...] = ()
    """(Id, ContentKeyType) of every content key linked to the asset, in link order."""
    storage_key_id: str | None = None
    """The asset's StorageEncryption content key (the one that decrypts its storage-encrypted
    files), if one is linked. Only the id: the origin unwraps it through `content_keys.clear_key`."""

    @property
    def storage_encrypted_files(self) -> tuple[OriginFile, ...]:
        return tuple(f for f in self.files if f.storage_encrypted)

    def file(self, name: str) -> OriginFile | None:
        return next((f for f in self.files if f.name == name), None)


Db = Engine | Connection


@contextmanager
def _connection(db: Db) -> Iterator[Connection]:
    if isinstance(db, Connection):
        yield db
        return
    with db.connect() as conn, conn.begin():
        yield conn


def _set(name: str) -> Any:
    es = MODEL.entity_set(name)
    assert es is not None
    return es


# ------------------------------------------------------------------------------------------------
# endpoints


def _endpoint(account_id: str, e: dict[str, Any]) -> OriginEndpoint:
    access = e.get("AccessControl") or {}
    ip = access.get("IP")
    allow: tuple[ipaddress.IPv4Network, ...] | None = None
    if ip is not None:
        nets = []
        for entry in ip.get("Allow") or []:
            bits = entry.get("SubnetPrefixLength")
            nets.append(ipaddress.IPv4Network(f"{entry['Address']}/{32 if bits is None else bits}", strict=False))
        allow = tuple(nets)
    policies = e.get("CrossSiteAccessPolicies") or {}
    return OriginEndpoint(
        id=e["Id"], name=e["Name"], account_id=account_id, state=e["State"], host_name=e.get("HostName"),
        custom_host_names=tuple(e.get("CustomHostNames") or ()),
        cache_max_age=(e.get("CacheControl") or {}).get("MaxAge"), ip_allow=allow,
        client_access_policy=policies.get("ClientAccessPolicy"),
        cross_domain_policy=policies.get("CrossDomainPolicy"),
    )


_FOREIGN = object()
"""A host under the streaming domain that names no endpoint of the account in question."""


def _streaming_suffix(account_name: str, endpoints: list[dict[str, Any]]) -> str | None:
    """`streaming.<domain>` when the account's host names were generated under a base domain."""
    default = next((e for e in endpoints if is_default(e)), None)
    host = normalize_host(default.get("HostName")) if default else ""
    suffix = host[len(account_name) + 1:] if host.startswith(account_name + ".") else ""
    return suffix if suffix.startswith("streaming.") else None


def _pick_endpoint(account_name: str, endpoints: list[dict[str, Any]], host: str | None
                   ) -> dict[str, Any] | object | None:
    h = normalize_host(host)
    default = next((e for e in endpoints if is_default(e)), None)
    if not h:
        return default
    for e in endpoints:
        if h in (e.get("CustomHostNames") or []):
            return e
    # the default first: without a base domain every endpoint has the public host as its HostName
    for e in sorted(endpoints, key=lambda e: not is_default(e)):
        if h == normalize_host(e.get("HostName")):
            return e
    suffix = _streaming_suffix(account_name, endpoints)
    if suffix and (h == suffix or h.endswith("." + suffix)):
        return _FOREIGN
    return default


def endpoint_for_host(db: Db, host: str | None) -> OriginEndpoint | None:
    """The endpoint a request without a locator reaches (`/crossdomain.xml`, `/clientaccesspolicy.xml`).

    A custom host name, or a generated `….streaming.<domain>` HostName, names one endpoint. Any
    other host (an IP, localhost, the shared public API host) names no account — except on a server
    with a single account, whose `default` endpoint it is then (the usual local set-up). Else None."""
    h = normalize_host(host)
    es = _set("StreamingEndpoints")
    with _connection(db) as conn:
        if h:
            found = find_endpoints_with_custom_host(conn, h)
            if found:
                account_id, e = found[0]
                return _endpoint(account_id, e)
        if ".streaming." in h:
            label = h.split(".streaming.", 1)[0]
            account_name = label.rsplit("-", 1)[-1]
            row = conn.execute(select(accounts.c.id).where(accounts.c.name == account_name)).first()
            if row is None:
                return None
            endpoints = Store(conn, row.id, MODEL).query(es, top=None)
            match = next((e for e in endpoints if normalize_host(e.get("HostName")) == h), None)
            return _endpoint(row.id, match) if match is not None else None
        ids = conn.execute(select(accounts.c.id).limit(2)).fetchall()
        if len(ids) != 1:
            return None
        account_id = ids[0].id
        t = Store.table(es)
        rows = Store(conn, account_id, MODEL).query(es, [t.c.Name == DEFAULT_NAME], top=1)
        return _endpoint(account_id, rows[0]) if rows else None


# ------------------------------------------------------------------------------------------------
# locator → asset, files, endpoint


def find_origin_target(db: Db, locator_guid: str, host: str | None, now: datetime) -> OriginTarget | None:
    """Resolve `/<locator_guid>/…` as received with Host header `host` at time `now` (aware UTC).

    Three indexed queries: the locator (by GUID, across accounts), the asset with its account name
    and files, the account's endpoints. None when no OnDemandOrigin locator with that GUID is valid
    now, or when `host` names a streaming endpoint that is not this account's."""
    with _connection(db) as conn:
        found = find_locator_in_any_account(conn, locator_guid)
        if found is None:
            return None
        account_id, loc = found
        if loc["Type"] != ON_DEMAND_ORIGIN or not loc.get("AssetId"):
            return None
        if loc["ExpirationDateTime"] is None or loc["ExpirationDateTime"] <= now:
            return None
        if loc.get("StartTime") is not None and loc["StartTime"] > now:
            return None
        assets_t, files_t = ENTITY_TABLES["Assets"], ENTITY_TABLES["Files"]
        stmt = (
            select(assets_t.c.Id, assets_t.c.Name, assets_t.c.Options, assets_t.c.StorageAccountName,
                   assets_t.c.LastModified, accounts.c.name.label("account_name"), files_t.c.Name.label("file_name"),
                   files_t.c.ContentFileSize, files_t.c.IsPrimary, files_t.c.MimeType,
                   files_t.c.LastModified.label("file_modified"), files_t.c.IsEncrypted, files_t.c.EncryptionScheme,
                   files_t.c.InitializationVector, files_t.c.EncryptionKeyId)
            .join(accounts, accounts.c.id == assets_t.c.account_id)
            .outerjoin(files_t, and_(files_t.c.account_id == assets_t.c.account_id,
                                     files_t.c.ParentAssetId == assets_t.c.Id))
            .where(assets_t.c.account_id == account_id, assets_t.c.Id == loc["AssetId"])
            .order_by(files_t.c._rowid)
        )
        rows = conn.execute(stmt).fetchall()
        if not rows:
            return None
        first = rows[0]
        asset = OriginAsset(id=first.Id, name=first.Name, options=first.Options or 0,
                            storage_account_name=first.StorageAccountName, container=container_name(first.Id),
                            last_modified=first.LastModified)
        files = tuple(OriginFile(name=r.file_name, size=r.ContentFileSize or 0, is_primary=bool(r.IsPrimary),
                                 mime_type=r.MimeType, last_modified=r.file_modified,
                                 storage_encrypted=is_storage_encrypted(
                                     {"IsEncrypted": r.IsEncrypted, "EncryptionScheme": r.EncryptionScheme},
                                     asset.options),
                                 initialization_vector=r.InitializationVector, encryption_key_id=r.EncryptionKeyId)
                      for r in rows if r.file_name is not None)
        store = Store(conn, account_id, MODEL)
        endpoints = store.query(_set("StreamingEndpoints"), top=None)
        policies = tuple(asset_delivery_policies(store, asset.id))
        key_ids = store.link_targets("asset_contentkeys", asset.id)
        keys_es = _set("ContentKeys")
        found_keys = {k["Id"]: int(k.get("ContentKeyType") or 0) for k in
                      store.query(keys_es, [store.key_column(keys_es).in_(key_ids)], top=None)} if key_ids else {}
        content_keys = tuple((k, found_keys[k]) for k in key_ids if k in found_keys)
        storage_key_id = next((k for k, t in content_keys if t == STORAGE_KEY_TYPE), None)
    picked = _pick_endpoint(first.account_name, endpoints, host)
    if picked is _FOREIGN:
        return None
    locator = OriginLocator(id=loc["Id"], guid=loc["Id"].rsplit(":", 1)[-1], type=loc["Type"],
                            start_time=loc.get("StartTime"), expiration=loc["ExpirationDateTime"],
                            asset_id=loc["AssetId"])
    endpoint = _endpoint(account_id, picked) if isinstance(picked, dict) else None
    return OriginTarget(account_id=account_id, account_name=first.account_name, locator=locator, asset=asset,
                        files=files, endpoint=endpoint, delivery_policies=policies, content_keys=content_keys,
                        storage_key_id=storage_key_id)


# ------------------------------------------------------------------------------------------------
# filters


def find_filters(db: Db, account_id: str, asset_id: str, names: list[str]) -> list[dict[str, Any]]:
    """The filters named in a manifest URL, in the order named: an asset filter of `asset_id` wins
    over a global filter of the same name. Each is `{"Name", "Scope" ("asset" or "global"),
    "PresentationTimeRange" (dict with every member, or None), "Tracks" (list of
    {"PropertyConditions": [{"Property", "Value", "Operator"}]}), "FirstQuality" ({"Bitrate"} or None)}`,
    as validated and normalized on write. Raises BadRequest for more than three names and NotFound
    naming the first unknown one."""
    names = [n for n in (n.strip() for n in names) if n]
    if not names:
        return []
    if len(names) > MAX_FILTERS_PER_REQUEST:
        raise BadRequest(f"A manifest URL may combine at most {MAX_FILTERS_PER_REQUEST} filters, not {len(names)}.")
    local_es, global_es = _set("AssetFilters"), _set("Filters")
    with _connection(db) as conn:
        store = Store(conn, account_id, MODEL)
        lt, gt = Store.table(local_es), Store.table(global_es)
        local = {r["Name"]: r for r in store.query(local_es, [lt.c.ParentAssetId == asset_id, lt.c.Name.in_(names)],
                                                   top=None)}
        missing = [n for n in names if n not in local]
        glob = {r["Name"]: r for r in store.query(global_es, [gt.c.Name.in_(missing)], top=None)} if missing else {}
    out = []
    for name in names:
        row, scope = (local[name], "asset") if name in local else (glob.get(name), "global")
        if row is None:
            raise NotFound(f"The filter '{name}' does not exist (neither for this asset nor for the account).")
        out.append({"Name": name, "Scope": scope, "PresentationTimeRange": row.get("PresentationTimeRange"),
                    "Tracks": row.get("Tracks") or [], "FirstQuality": row.get("FirstQuality")})
    return out
