"""Files (AssetFile): the blobs of an asset, with size, type, checksum and the primary flag."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..odata.payload import EntityPayload
from .base import Ctx, Rules

FORBIDDEN = set("!*'();:@&=+$,/?%#[]\"")
MAX_NAME = 260


def validate_file_name(name: str) -> None:
    """AMS file-name rules: the name is used verbatim in blob and streaming URLs."""
    if not name or not name.strip():
        raise BadRequest("AssetFile.Name must not be empty.")
    if len(name) > MAX_NAME:
        raise BadRequest(f"AssetFile.Name must be at most {MAX_NAME} characters.")
    bad = sorted(FORBIDDEN.intersection(name))
    if bad or "\\" in name or any(ord(c) < 32 for c in name):
        shown = " ".join(bad) if bad else "control characters or backslashes"
        raise BadRequest(f"AssetFile.Name '{name}' contains characters that cannot be used in media URLs: {shown}.")
    if name.count(".") > 1:
        raise BadRequest(f"AssetFile.Name '{name}' has more than one '.'; use one dot, before the extension.")


class FileRules(Rules):
    set_name = "Files"

    def _siblings(self, ctx: Ctx, asset_id: str) -> list[dict[str, Any]]:
        es = self.entity_set
        return ctx.store.query(es, [ctx.store.table(es).c.ParentAssetId == asset_id], top=None)

    def _check(self, ctx: Ctx, values: dict[str, Any], own_id: str | None) -> None:
        asset_id = values["ParentAssetId"]
        others = [f for f in self._siblings(ctx, asset_id) if f["Id"] != own_id]
        if any(f["Name"] == values["Name"] for f in others):
            raise Conflict(f"The asset already has a file named '{values['Name']}'.")
        if values.get("IsPrimary") and any(f["IsPrimary"] for f in others):
            raise Conflict("The asset already has a primary file; unset it first.")
        size = values.get("ContentFileSize")
        if size is not None and size < 0:
            raise BadRequest("AssetFile.ContentFileSize cannot be negative.")

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        if not values.get("ParentAssetId"):
            raise BadRequest("AssetFile.ParentAssetId is required.", code="MissingProperty")
        if not ctx.store.exists(ctx.entity_set("Assets"), values["ParentAssetId"]):
            raise NotFound(f"Asset '{values['ParentAssetId']}' does not exist.")
        validate_file_name(values.get("Name") or "")
        self._check(ctx, values, None)

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if "Name" in changes:
            validate_file_name(changes["Name"] or "")
        if {"Name", "IsPrimary", "ContentFileSize"} & changes.keys():
            self._check(ctx, {**old, **changes}, old["Id"])
