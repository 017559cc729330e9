"""Locators: time-limited entry points to an asset — SAS URLs for upload/download (Type 1) and
streaming paths on the origin (Type 2, OnDemandOrigin).

An origin locator's Path is `<default streaming endpoint>/<locator GUID>/`. The origin finds a
locator by that GUID alone, before it knows the account, so locator ids are unique across every
account (a client-chosen id another account already uses is refused with 409, without saying whose
it is). `find_locator_in_any_account` is the one query that looks at locators of all accounts.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from ..auth.sas import container_sas
from ..errors import BadRequest, Conflict, NotFound
from ..odata.payload import EntityPayload
from .access_policies import PERMISSIONS
from .assets import container_name
from .base import Ctx, Rules, guid_of
from .delivery_policies import asset_delivery_policies
from .files import STORAGE_ENCRYPTED
from .streaming_endpoints import origin_base_url

SAS, ON_DEMAND_ORIGIN = 1, 2
MAX_LIVE_LOCATORS = 5
PREFIX = "nb:lid:UUID:"


def find_locator_in_any_account(conn: Connection, guid: str) -> tuple[str, dict[str, Any]] | None:
    """(account id, locator) of the locator whose id carries `guid`, whichever account owns it.

    Deliberately unscoped — the one place that reads locators across accounts: the origin resolves
    `/<guid>/…` before it knows an account, and creating a locator checks that its id is free
    everywhere. Clients may choose ids, so the GUID is matched as given, lower- and upper-case (one
    indexed lookup; ids are unique across accounts, see db.tables.GLOBAL_KEYS)."""
    from ..db.store import Store
    from ..db.tables import ENTITY_TABLES
    from ..model import MODEL

    try:
        canonical = str(uuid.UUID(guid))
    except ValueError:
        return None
    ids = {f"{PREFIX}{guid}", f"{PREFIX}{canonical}", f"{PREFIX}{canonical.upper()}"}
    t = ENTITY_TABLES["Locators"]
    row = conn.execute(select(t).where(t.c.Id.in_(sorted(ids))).limit(1)).first()
    if row is None:
        return None
    es = MODEL.entity_set("Locators")
    assert es is not None
    return row.account_id, Store(conn, row.account_id, MODEL).to_entity(es, row)


def _expiry(start: datetime, minutes: float) -> datetime:
    try:
        return start + timedelta(minutes=minutes)
    except OverflowError:
        raise BadRequest("Locator.StartTime plus the access policy's duration is beyond the year 9999.") \
            from None


def _require_delivery_policy_if_storage_encrypted(ctx: Ctx, asset: dict[str, Any]) -> None:
    """Spec §3.8: a StorageEncrypted asset (Options 1) gets a streaming locator only once a
    delivery policy says how to deliver it — the origin could only refuse every request. SAS
    locators (downloading the ciphertext) stay allowed."""
    if not (asset.get("Options") or 0) & STORAGE_ENCRYPTED:
        return
    if asset_delivery_policies(ctx.store, asset["Id"]):
        return
    raise BadRequest(f"Asset '{asset['Id']}' is StorageEncrypted (Options 1) and has no delivery policy, so it "
                     "cannot get a streaming (OnDemandOrigin, Type 2) locator: link an AssetDeliveryPolicy to the "
                     "asset first (POST Assets('<id>')/$links/DeliveryPolicies; a NoDynamicEncryption (2) "
                     "policy streams it decrypted), then create the locator. SAS (Type 1) locators are allowed.")


class LocatorRules(Rules):
    set_name = "Locators"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        kind = values.get("Type")
        if kind not in (SAS, ON_DEMAND_ORIGIN):
            raise BadRequest("Locator.Type must be 1 (Sas) or 2 (OnDemandOrigin).")
        for prop in ("AssetId", "AccessPolicyId"):
            if not values.get(prop):
                raise BadRequest(f"Locator.{prop} is required (as a property or a link).",
                                 code="MissingProperty")
        asset = ctx.store.get(ctx.entity_set("Assets"), values["AssetId"])
        if asset is None:
            raise NotFound(f"Asset '{values['AssetId']}' does not exist.")
        policy = ctx.store.get(ctx.entity_set("AccessPolicies"), values["AccessPolicyId"])
        if policy is None:
            raise NotFound(f"AccessPolicy '{values['AccessPolicyId']}' does not exist.")
        writes = PERMISSIONS["Write"] | PERMISSIONS["Delete"]
        if kind == ON_DEMAND_ORIGIN and policy["Permissions"] & writes:
            raise BadRequest("An OnDemandOrigin locator cannot use an access policy with Write or Delete "
                             "permission.")
        if kind == ON_DEMAND_ORIGIN:
            _require_delivery_policy_if_storage_encrypted(ctx, asset)
        live = [loc for loc in self._asset_locators(ctx, asset["Id"]) if loc["ExpirationDateTime"] > ctx.now]
        if len(live) >= MAX_LIVE_LOCATORS:
            raise Conflict(f"The asset already has {MAX_LIVE_LOCATORS} locators in use; delete one first.")
        if find_locator_in_any_account(ctx.store.conn, guid_of(values["Id"])) is not None:
            raise Conflict(f"The locator id '{values['Id']}' is already taken; choose another GUID or let the "
                           "service generate the id.")
        start = values.get("StartTime") or ctx.now
        values["ExpirationDateTime"] = _expiry(start, policy["DurationInMinutes"])
        self._fill_urls(ctx, values, asset)

    def _asset_locators(self, ctx: Ctx, asset_id: str) -> list[dict[str, Any]]:
        es = self.entity_set
        return ctx.store.query(es, [ctx.store.table(es).c.AssetId == asset_id], top=None)

    def _fill_urls(self, ctx: Ctx, values: dict[str, Any], asset: dict[str, Any]) -> None:
        guid = guid_of(values["Id"])
        if values["Type"] == SAS:
            base = asset["Uri"]
            sas = container_sas(key=ctx.account.primary_key, storage_account=asset["StorageAccountName"],
                                container=container_name(asset["Id"]), identifier=guid,
                                start=values.get("StartTime"), expiry=values["ExpirationDateTime"])
            values.update(BaseUri=base, ContentAccessComponent=sas, Path=base + sas)
        else:
            base = origin_base_url(ctx.settings, ctx.account.name)
            values.update(BaseUri=base, ContentAccessComponent=guid, Path=f"{base}/{guid}/")

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if not changes:
            return
        if old["Type"] == SAS:
            raise BadRequest("A SAS locator cannot be updated; create a new locator instead.")
        allowed = {"StartTime", "ExpirationDateTime", "Name"}
        extra = sorted(set(changes) - allowed)
        if extra:
            raise BadRequest("Only StartTime and ExpirationDateTime of a locator can change, not "
                             f"{', '.join(extra)}.")
        if "StartTime" in changes and "ExpirationDateTime" not in changes:
            policy = ctx.store.get(ctx.entity_set("AccessPolicies"), old["AccessPolicyId"])
            minutes = policy["DurationInMinutes"] if policy else 0
            changes["ExpirationDateTime"] = _expiry(changes["StartTime"] or ctx.now, minutes)
        start = changes.get("StartTime", old.get("StartTime"))
        expiry = changes.get("ExpirationDateTime", old["ExpirationDateTime"])
        if start is not None and expiry is not None and expiry <= start:
            raise BadRequest("Locator.ExpirationDateTime must be after StartTime.")


# letters of an Azure SAS for each AccessPolicy permission
SAS_LETTERS = {"Read": "r", "Write": "w", "Delete": "d", "List": "l"}


def sas_grant(store: Any, identifier: str, container: str) -> tuple[str, datetime | None, datetime] | None:
    """What a SAS whose `si` is `identifier` may do on `container`: (permission letters, start,
    expiry) of the live SAS Locator of that asset, or None when no such Locator exists (deleted,
    never created, an origin locator, or another asset's). Deleting a Locator revokes its URL."""
    from ..model import MODEL

    try:
        guid = str(uuid.UUID(identifier))
    except ValueError:
        return None
    locators, policies = MODEL.entity_set("Locators"), MODEL.entity_set("AccessPolicies")
    assert locators is not None and policies is not None
    loc = store.get(locators, f"nb:lid:UUID:{guid}")
    if loc is None or loc["Type"] != SAS or container_name(loc["AssetId"] or "") != container:
        return None
    policy = store.get(policies, loc["AccessPolicyId"])
    if policy is None:
        return None
    bits = policy["Permissions"] or 0
    letters = "".join(SAS_LETTERS[name] for name, bit in PERMISSIONS.items() if bits & bit)
    return letters, loc.get("StartTime"), loc["ExpirationDateTime"]
