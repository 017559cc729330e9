"""Assets: a named container of files; the unit everything else (locators, jobs, keys) refers to."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, NotFound
from ..odata.edm import FunctionImport, NavigationProperty
from ..odata.payload import EntityPayload
from .base import Ctx, Rules, guid_of
from .outcome import on_commit, on_rollback
from .storage_accounts import default_storage_account, storage_account_exists

ASSET_OPTIONS = {0: "None", 1: "StorageEncrypted", 2: "CommonEncryptionProtected",
                 4: "EnvelopeEncryptionProtected"}


def container_name(asset_id: str) -> str:
    return f"asset-{guid_of(asset_id)}"


def container_url(ctx: Ctx, storage_account: str, asset_id: str) -> str:
    return f"{ctx.settings.blob_base}/{storage_account}/{container_name(asset_id)}"


def _drop_container(storage: Any, account: str, container: str) -> None:
    from ..storage.base import StorageError

    try:
        storage.delete_container(account, container)
    except StorageError as exc:
        if exc.code != "ContainerNotFound":
            raise


def account_containers(conn: Any, account_id: str) -> list[tuple[str, str]]:
    """(storage account, container) of every asset of an account: what deleting the account must
    remove from blob storage (a later account of the same name would otherwise own those names)."""
    from ..db.store import Store
    from ..model import MODEL

    es = MODEL.entity_set("Assets")
    assert es is not None
    return [(a["StorageAccountName"], container_name(a["Id"])) for a in Store(conn, account_id, MODEL).query(es)]


def drop_containers(storage: Any, containers: list[tuple[str, str]]) -> list[str]:
    """Delete the containers (already gone is fine); the errors, one line each, for the caller to show."""
    from ..storage.base import StorageError

    failed = []
    for account, container in containers:
        try:
            _drop_container(storage, account, container)
        except StorageError as exc:
            failed.append(f"{account}/{container}: {exc}")
    return failed


class AssetRules(Rules):
    set_name = "Assets"

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        options = values.get("Options") or 0
        if options not in ASSET_OPTIONS:
            raise BadRequest(f"Asset.Options must be one of {sorted(ASSET_OPTIONS)} "
                             f"({', '.join(ASSET_OPTIONS.values())}), not {options}.")
        values["Options"] = options
        if values.get("FormatOption") not in (None, 0, 1):
            raise BadRequest("Asset.FormatOption must be 0 (None) or 1 (AdaptiveStreaming).")
        storage = values.get("StorageAccountName") or default_storage_account(ctx)
        if not storage_account_exists(ctx, storage):
            raise NotFound(f"Storage account '{storage}' is not attached to this Media Services account.")
        values["StorageAccountName"] = storage
        values["State"] = 0
        values["Uri"] = container_url(ctx, storage, values["Id"])

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        if ctx.storage is not None:
            from ..storage.base import StorageError

            account, container = entity["StorageAccountName"], container_name(entity["Id"])
            try:
                ctx.storage.create_container(account, container)
            except StorageError as exc:
                if exc.code != "ContainerAlreadyExists":
                    raise
            else:  # a create that does not commit leaves no container behind
                on_rollback(ctx.store.conn, lambda: _drop_container(ctx.storage, account, container))

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        from .service import remove_row

        asset_id = entity["Id"]
        store = ctx.store
        for set_name, column in (("Locators", "AssetId"), ("Files", "ParentAssetId"),
                                 ("AssetFilters", "ParentAssetId")):
            es = ctx.entity_set(set_name)
            for row in store.query(es, [store.table(es).c[column] == asset_id], top=None):
                remove_row(ctx, es, row[es.entity_type.key])
        # content keys linked only to this asset go with it
        keys = ctx.entity_set("ContentKeys")
        for key_id in store.link_targets("asset_contentkeys", asset_id):
            if store.link_sources("asset_contentkeys", key_id) == [asset_id]:
                remove_row(ctx, keys, key_id)
        keep = params.get("keepcontainer", "false").strip().lower() == "true"
        if ctx.storage is not None and not keep:
            # only once the delete has committed: a rolled-back delete keeps its media
            account, container, storage = entity["StorageAccountName"], container_name(asset_id), ctx.storage
            on_commit(ctx.store.conn, lambda: _drop_container(storage, account, container))

    def on_link(self, ctx: Ctx, entity: dict[str, Any], nav: NavigationProperty, target: dict[str, Any],
                add: bool) -> None:
        if nav.name == "ContentKeys":  # the key-type rules live with the keys
            from .content_keys import on_asset_link

            on_asset_link(ctx, entity, target, add)
        elif nav.name == "DeliveryPolicies":  # one policy per protocol, none changed while streaming
            from . import delivery_policies

            delivery_policies.on_asset_link(ctx, entity, target, add)

    def call(self, ctx: Ctx, fn: FunctionImport, entity: dict[str, Any] | None,
             params: dict[str, Any]) -> Any:
        if fn.name == "Publish":
            # Deprecated in AMS: accepted, changes nothing (publishing is done with locators).
            return None
        return super().call(ctx, fn, entity, params)
