"""StorageAccounts: the blob storage attached to a Media Services account (one default)."""

from __future__ import annotations

from typing import Any

from .base import Ctx, Rules


def default_storage_name(account_name: str) -> str:
    """Each account gets a storage account of the same name (valid: 3-24 lower-case alnum)."""
    return account_name


def default_storage_account(ctx: Ctx) -> str:
    es = ctx.entity_set("StorageAccounts")
    rows = ctx.store.query(es, [ctx.store.table(es).c.IsDefault.is_(True)], top=1)
    return rows[0]["Name"] if rows else default_storage_name(ctx.account.name)


def storage_account_exists(ctx: Ctx, name: str) -> bool:
    return ctx.store.exists(ctx.entity_set("StorageAccounts"), name)


def seed_values(account_name: str) -> dict[str, Any]:
    return {"Name": default_storage_name(account_name), "IsDefault": True, "BytesUsed": 0}


class StorageAccountRules(Rules):
    set_name = "StorageAccounts"
    can_create = False
    can_update = False
    can_delete = False
