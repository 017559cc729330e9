"""StreamingEndpoints: the origins that serve an account's OnDemandOrigin locators.

State machine (AMS names; SDK numbers Stopped 0, Starting 1, Running 2, Stopping 3, Deleting 4,
Scaling 5), one long-running Operation per transition:

    Start   Stopped → Starting → Running
    Stop    Running → Stopping → Stopped
    Scale   Running, or Stopped with ScaleUnits > 0 → Scaling → the state it started from
    Delete  Stopped → Deleting → (removed); never the `default` endpoint

Create, the transitions and a settings update of a Running endpoint answer 202 Accepted with an
`operation-id`. A self-hosted origin has nothing to provision, so every transition completes inside
the request: the Operation is recorded InProgress, the endpoint passes through the intermediate
state, and both reach their final state before the transaction commits (so a client polling the
Operation sees Succeeded at once). `_run` / `_complete` are split so that a transition that really
takes time can finish later from a worker.

The default endpoint: every account has one named `default`, created with the account's other
default rows (`defaults.ensure_account_defaults`, run at account creation and at every start). It
starts **Running** with ScaleUnits 0 and StreamingEndpointVersion "2.0": the older REST page says a
new account's default endpoint is started (later docs say Stopped), and Running makes publish-then-
play work out of the box. It can be stopped, scaled and updated but not deleted.

Host names: with a base domain configured, `default` is `<account>.streaming.<domain>` and the
others `<name>-<account>.streaming.<domain>` (AMS's scheme). Without one, every endpoint's HostName
is the host:port of the public base URL: the origin answers at the root of the API listener, so
locator URLs work with no DNS set up. HostName follows the settings: it is refreshed at start.

IP allow-list (`AccessControl.IP.Allow`): `AccessControl` or `IP` null means everyone may connect;
an `IP` whose `Allow` list is empty means nobody (as the reference page says). OData collections are
never null, so `{"IP": {"Allow": null}}` is read as an empty list: send `"IP": null` to allow all.

Custom host names are kept lower-case and are unique across every account (the origin picks the
endpoint, and for policy files the account, by Host header).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Text, cast, select

from ..config import Settings
from ..db.store import Store
from ..errors import BadRequest, Conflict, PreconditionFailed
from ..model import MODEL
from ..model.enums import CDN_PROVIDER, STREAMING_ENDPOINT_VERSIONS
from ..odata.edm import FunctionImport
from ..odata.payload import EntityPayload
from . import operations
from .base import Ctx, Rules, new_id

DEFAULT_NAME = "default"
STOPPED, STARTING, RUNNING, STOPPING, DELETING, SCALING = (
    "Stopped", "Starting", "Running", "Stopping", "Deleting", "Scaling")
MAX_SCALE_UNITS = 10
"""Streaming units one endpoint may have (a quota, as in AMS; more needed a support request)."""
PREFIX = "nb:oid:UUID:"

NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CLIENT_ACCESS_ROOT = "access-policy"
_CROSS_DOMAIN_ROOT = "cross-domain-policy"


@dataclass(frozen=True)
class Transition:
    during: str
    """State while the operation runs."""
    final: str | None
    """State once it succeeds; None: the state it started from (Scale) or removed (Delete)."""


TRANSITIONS: dict[str, Transition] = {
    "Start": Transition(STARTING, RUNNING),
    "Stop": Transition(STOPPING, STOPPED),
    "Scale": Transition(SCALING, None),
    "Delete": Transition(DELETING, None),
}


def allowed_actions(endpoint: dict[str, Any]) -> list[str]:
    """What may be done to an endpoint in its state (the action matrix of the AMS pool table)."""
    state, units = endpoint.get("State"), endpoint.get("ScaleUnits") or 0
    if state == STOPPED:
        out = ["Start", "Scale", "Delete"] if units > 0 else ["Start", "Delete"]
    elif state == RUNNING:
        out = ["Stop", "Scale"]
    else:  # an operation is still running on it
        out = []
    if is_default(endpoint) and "Delete" in out:
        out.remove("Delete")
    return out


def is_default(endpoint: dict[str, Any]) -> bool:
    return str(endpoint.get("Name") or "").lower() == DEFAULT_NAME


# ------------------------------------------------------------------------------------------------
# host names


def streaming_suffix(settings: Settings) -> str | None:
    """`streaming.<base domain>` when a base domain is configured."""
    domain = settings.base_domain.strip().strip(".").lower()
    return f"streaming.{domain}" if domain else None


def host_name(settings: Settings, account_name: str, endpoint_name: str) -> str:
    suffix = streaming_suffix(settings)
    if suffix is None:
        return urlsplit(settings.api_base).netloc.lower()
    if endpoint_name.lower() == DEFAULT_NAME:
        return f"{account_name}.{suffix}"
    return f"{endpoint_name.lower()}-{account_name}.{suffix}"


def origin_base_url(settings: Settings, account_name: str) -> str:
    """Where the account's default endpoint serves locators (no trailing slash): the base of an
    OnDemandOrigin locator's Path. The scheme (and any port) is the public base URL's, so the URL
    works as it is on the machine the server runs on."""
    if streaming_suffix(settings) is None:
        return settings.api_base
    parts = urlsplit(settings.api_base)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host_name(settings, account_name, DEFAULT_NAME)}{port}"


def normalize_host(host: str | None) -> str:
    """A Host header as compared with host names: lower-case, no port, no trailing dot."""
    if not host:
        return ""
    h = host.strip().lower()
    if h.startswith("["):  # [v6]:port
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def is_host_name(host: str) -> bool:
    """A DNS name of at least two labels that is not an IPv4 address."""
    labels = host.split(".")
    return (len(host) <= 253 and len(labels) >= 2 and all(_LABEL_RE.match(label) for label in labels)
            and not all(label.isdigit() for label in labels))


# ------------------------------------------------------------------------------------------------
# the default endpoint and host-name refresh


def default_values(settings: Settings, account_name: str, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {p.name: ([] if p.collection else p.default) for p in _es().entity_type.properties}
    row.update({
        "Id": new_id(PREFIX), "Name": DEFAULT_NAME, "Description": "The account's default streaming endpoint.",
        "State": RUNNING, "ScaleUnits": 0, "StreamingEndpointVersion": "2.0", "CdnEnabled": False,
        "HostName": host_name(settings, account_name, DEFAULT_NAME), "Created": now, "LastModified": now,
    })
    return row


def ensure_default(store: Store, settings: Settings, account_name: str, now: datetime, *,
                   refresh: bool = True) -> None:
    """Create the account's `default` endpoint if it has none; with `refresh`, bring every
    endpoint's HostName in line with the current settings (base domain, public URL)."""
    es = _es()
    endpoints = store.query(es, top=None)
    if not any(is_default(e) for e in endpoints):
        store.insert(es, default_values(settings, account_name, now))
    if refresh:
        for e in endpoints:
            want = host_name(settings, account_name, e["Name"])
            if e["HostName"] != want:
                store.update(es, e["Id"], {"HostName": want})


def _es() -> Any:
    es = MODEL.entity_set("StreamingEndpoints")
    assert es is not None
    return es


def find_endpoints_with_custom_host(conn: Connection, host: str) -> list[tuple[str, dict[str, Any]]]:
    """(account id, endpoint) of every endpoint, in any account, that lists `host` among its
    CustomHostNames. Deliberately unscoped: a custom host name is unique across accounts and it is
    how the origin finds the account of a request that names no locator. `host` must be normalized."""
    if not is_host_name(host):
        return []
    es = _es()
    t = Store.table(es)
    rows = conn.execute(select(t).where(cast(t.c.CustomHostNames, Text).like(f"%{host}%")))
    out = []
    for row in rows:
        entity = Store(conn, row.account_id, MODEL).to_entity(es, row)
        if host in (entity.get("CustomHostNames") or []):
            out.append((row.account_id, entity))
    return out


# ------------------------------------------------------------------------------------------------
# validation


def _validate_name(name: Any) -> None:
    if name in (None, ""):
        raise BadRequest("StreamingEndpoint.Name is required.", code="MissingProperty")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f"StreamingEndpoint.Name '{name}' is not valid: use 1 to 32 letters, digits and hyphens, "
                         "starting and ending with a letter or digit.", code="InvalidResourceName")


def _configured(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_configured(v) for v in value.values())
    if isinstance(value, list):
        return bool(value)
    return value is not None


def _check_ip_allow(access: dict[str, Any] | None) -> None:
    ip = (access or {}).get("IP")
    for n, entry in enumerate((ip or {}).get("Allow") or []):
        where = f"AccessControl.IP.Allow[{n}]"
        address = (entry or {}).get("Address")
        try:
            ipaddress.IPv4Address(address or "")
        except ValueError:
            raise BadRequest(f"{where}.Address '{address}' is not an IPv4 address (such as 192.168.1.0).") \
                from None
        bits = entry.get("SubnetPrefixLength")
        if bits is not None and not 0 <= bits <= 32:
            raise BadRequest(f"{where}.SubnetPrefixLength must be between 0 and 32, not {bits}.")


def _check_akamai(access: dict[str, Any] | None) -> None:
    akamai = (access or {}).get("Akamai")
    for n, key in enumerate((akamai or {}).get("AkamaiSignatureHeaderAuthenticationKeyList") or []):
        where = f"AccessControl.Akamai.AkamaiSignatureHeaderAuthenticationKeyList[{n}]"
        if not (key or {}).get("Identifier"):
            raise BadRequest(f"{where}.Identifier is required.")
        if key.get("Expiration") is None:
            raise BadRequest(f"{where}.Expiration is required.")
        try:
            if not base64.b64decode(key.get("Base64Key") or "", validate=True):
                raise ValueError
        except ValueError:
            raise BadRequest(f"{where}.Base64Key must be the key's bytes, base64-encoded.") from None


def _check_policy_xml(field: str, text: str | None, root_name: str) -> None:
    if text is None:
        return
    from defusedxml import ElementTree as SafeET
    from defusedxml.common import DefusedXmlException

    try:
        root = SafeET.fromstring(text.encode("utf-8"))
    except DefusedXmlException:
        raise BadRequest(f"CrossSiteAccessPolicies.{field} uses DTD entities, which are not allowed.") from None
    except SafeET.ParseError as exc:
        raise BadRequest(f"CrossSiteAccessPolicies.{field} is not well-formed XML: {exc}.") from None
    if root.tag != root_name:
        raise BadRequest(f"CrossSiteAccessPolicies.{field} must be a <{root_name}> document, not <{root.tag}>.")


def _normalize_hosts(ctx: Ctx, hosts: list[Any], own_id: str) -> list[str]:
    out: list[str] = []
    suffix = streaming_suffix(ctx.settings)
    api_host = normalize_host(urlsplit(ctx.settings.api_base).netloc)
    for raw in hosts:
        host = str(raw or "").strip().lower().rstrip(".")
        if not is_host_name(host):
            raise BadRequest(f"CustomHostNames: '{raw}' is not a host name (such as video.example.com).")
        if host in out:
            raise BadRequest(f"CustomHostNames lists '{host}' twice.")
        if host == api_host or (suffix and (host == suffix or host.endswith("." + suffix))):
            raise BadRequest(f"CustomHostNames: '{host}' is one of the service's own host names.")
        for account_id, other in find_endpoints_with_custom_host(ctx.store.conn, host):
            if account_id != ctx.account.id or other["Id"] != own_id:
                raise Conflict(f"The custom host name '{host}' is already used by another streaming endpoint.",
                               code="ResourceNameTaken")
        out.append(host)
    return out


def _validate(ctx: Ctx, merged: dict[str, Any], touched: set[str], own_id: str) -> dict[str, Any]:
    """Check the settings of an endpoint as they will be; returns normalized values for `touched`."""
    fixed: dict[str, Any] = {}
    if "StreamingEndpointVersion" in touched:
        version = merged.get("StreamingEndpointVersion") or "2.0"
        if version not in STREAMING_ENDPOINT_VERSIONS:
            raise BadRequest(f"StreamingEndpointVersion must be \"1.0\" or \"2.0\", not \"{version}\".")
        fixed["StreamingEndpointVersion"] = version
    if "CdnProvider" in touched and merged.get("CdnProvider") is not None:
        match = next((n for n in CDN_PROVIDER if n.lower() == str(merged["CdnProvider"]).lower()), None)
        if match is None:
            raise BadRequest(f"CdnProvider must be one of {', '.join(CDN_PROVIDER)}, not '{merged['CdnProvider']}'.")
        fixed["CdnProvider"] = match
    if "CdnEnabled" in touched and merged.get("CdnEnabled"):
        raise PreconditionFailed(f"CDN is not available in region '{ctx.settings.region}': openams streams from "
                                 "its own origin. Put a CDN in front of it yourself and keep CdnEnabled false.")
    if "AccessControl" in touched:
        _check_ip_allow(merged.get("AccessControl"))
        _check_akamai(merged.get("AccessControl"))
    if "CacheControl" in touched:
        max_age = (merged.get("CacheControl") or {}).get("MaxAge")
        if max_age is not None and max_age < 0:
            raise BadRequest(f"CacheControl.MaxAge is a number of seconds and cannot be negative ({max_age}).")
    if "CrossSiteAccessPolicies" in touched:
        policies = merged.get("CrossSiteAccessPolicies") or {}
        _check_policy_xml("ClientAccessPolicy", policies.get("ClientAccessPolicy"), _CLIENT_ACCESS_ROOT)
        _check_policy_xml("CrossDomainPolicy", policies.get("CrossDomainPolicy"), _CROSS_DOMAIN_ROOT)
    if "CustomHostNames" in touched:
        fixed["CustomHostNames"] = _normalize_hosts(ctx, merged.get("CustomHostNames") or [], own_id)
    version = fixed.get("StreamingEndpointVersion", merged.get("StreamingEndpointVersion"))
    if version == "1.0" and not merged.get("ScaleUnits"):
        extras = [p for p in ("AccessControl", "CustomHostNames", "CacheControl", "CrossSiteAccessPolicies")
                  if _configured(fixed.get(p, merged.get(p)))]
        if extras:
            raise BadRequest(f"{', '.join(extras)} can only be configured on a version 1.0 streaming endpoint with "
                             "at least one scale unit.")
    return fixed


def _check_scale_units(units: Any, endpoint: dict[str, Any]) -> int:
    if units is None:
        raise BadRequest("Scale needs scaleUnits (for example {\"scaleUnits\": 1}).")
    if not 0 <= units <= MAX_SCALE_UNITS:
        raise BadRequest(f"ScaleUnits must be between 0 and {MAX_SCALE_UNITS}, not {units}.",
                         code="ExceededResourceQuota" if units > MAX_SCALE_UNITS else "BadRequest")
    if units == 0 and endpoint.get("CdnEnabled"):
        raise BadRequest("Set CdnEnabled to false before scaling to 0 units.", code="InvalidOperation")
    return int(units)


# ------------------------------------------------------------------------------------------------
# transitions


def _refuse(endpoint: dict[str, Any], action: str) -> BadRequest:
    allowed = allowed_actions(endpoint)
    can = f"allowed now: {', '.join(allowed)}" if allowed else "wait for the running operation to finish"
    return BadRequest(f"The streaming endpoint '{endpoint['Name']}' is {endpoint['State']} with "
                      f"{endpoint.get('ScaleUnits') or 0} scale unit(s); {action} is not allowed ({can}).",
                      code="InvalidOperation")


def _run(ctx: Ctx, endpoint: dict[str, Any], action: str, changes: dict[str, Any] | None = None) -> str:
    """Start the operation `action` on `endpoint`, and — there being nothing to provision — finish it."""
    if action not in allowed_actions(endpoint):
        raise _refuse(endpoint, action)
    op_id = operations.begin(ctx, endpoint["Id"])
    ctx.store.update(ctx.entity_set("StreamingEndpoints"), endpoint["Id"], {"State": TRANSITIONS[action].during})
    _complete(ctx, endpoint, action, op_id, changes or {})
    return op_id


def _complete(ctx: Ctx, endpoint: dict[str, Any], action: str, op_id: str, changes: dict[str, Any]) -> None:
    """The end of a transition: the final state (and any settings it carries), Operation Succeeded.
    A Delete leaves removing the row to the caller (the generic delete that called the rules)."""
    if action != "Delete":
        final = TRANSITIONS[action].final or endpoint["State"]
        ctx.store.update(ctx.entity_set("StreamingEndpoints"), endpoint["Id"],
                         {**changes, "State": final, "LastModified": ctx.now})
    operations.succeed(ctx, op_id)


def _settings_operation(ctx: Ctx, endpoint: dict[str, Any]) -> None:
    """An update of a Running endpoint is itself a long-running operation (202 + operation-id)."""
    op_id = operations.begin(ctx, endpoint["Id"])
    operations.succeed(ctx, op_id)


class StreamingEndpointRules(Rules):
    set_name = "StreamingEndpoints"

    def _others(self, ctx: Ctx, own_id: str) -> list[dict[str, Any]]:
        return [e for e in ctx.store.query(self.entity_set, top=None) if e["Id"] != own_id]

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        name = values.get("Name")
        _validate_name(name)
        assert isinstance(name, str)
        if any(str(e["Name"]).lower() == name.lower() for e in self._others(ctx, values["Id"])):
            raise Conflict(f"A streaming endpoint named '{name}' already exists in this account.",
                           code="ResourceNameTaken")
        values["ScaleUnits"] = _check_scale_units(values.get("ScaleUnits") or 0, {})
        values["State"] = STOPPED
        values["HostName"] = host_name(ctx.settings, ctx.account.name, name)
        values["FreeTrialEndTime"] = None
        values["CdnEnabled"] = bool(values.get("CdnEnabled"))
        values["StreamingEndpointVersion"] = values.get("StreamingEndpointVersion") or "2.0"
        touched = {k for k, v in values.items() if v is not None} | {"StreamingEndpointVersion"}
        values.update(_validate(ctx, values, touched, values["Id"]))

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        # created Stopped at once: the create's operation has nothing left to do
        operations.succeed(ctx, operations.begin(ctx, entity["Id"]))

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if not changes:
            return
        if old["State"] not in (STOPPED, RUNNING):
            raise BadRequest(f"The streaming endpoint '{old['Name']}' is {old['State']}; change its settings once "
                             "the running operation has finished.", code="SettingsUpdateInProgress")
        changes.update(_validate(ctx, {**old, **changes}, set(changes), old["Id"]))
        if old["State"] == RUNNING:
            _settings_operation(ctx, old)

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        if is_default(entity):
            raise BadRequest("The default streaming endpoint cannot be deleted (stop it instead).",
                             code="DeleteNotAllowedOnDefaultOrigin")
        _run(ctx, entity, "Delete")

    def call(self, ctx: Ctx, fn: FunctionImport, entity: dict[str, Any] | None, params: dict[str, Any]) -> Any:
        assert entity is not None
        if fn.name in ("Start", "Stop"):
            _run(ctx, entity, fn.name)
            return None
        if fn.name == "Scale":
            if "Scale" not in allowed_actions(entity):
                raise _refuse(entity, "Scale")
            units = _check_scale_units(params.get("scaleUnits"), entity)
            _run(ctx, entity, "Scale", {"ScaleUnits": units})
            return None
        return super().call(ctx, fn, entity, params)
