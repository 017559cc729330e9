"""EncodingReservedUnitTypes: one row per account saying how many tasks may encode at once."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from .base import Ctx, Rules

MAX_RESERVABLE_UNITS = 25


def seed_values(account_id: str) -> dict[str, Any]:
    return {"AccountId": account_id, "ReservedUnitType": 0, "CurrentReservedUnits": 0,
            "MaxReservableUnits": MAX_RESERVABLE_UNITS}


class ReservedUnitRules(Rules):
    set_name = "EncodingReservedUnitTypes"
    can_create = False
    can_delete = False

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        if "CurrentReservedUnits" in changes:
            units = changes["CurrentReservedUnits"]
            limit = old.get("MaxReservableUnits") or MAX_RESERVABLE_UNITS
            if units is None or not 0 <= units <= limit:
                raise BadRequest(f"CurrentReservedUnits must be between 0 and {limit}.")
        if "ReservedUnitType" in changes and changes["ReservedUnitType"] not in (0, 1, 2):
            raise BadRequest("ReservedUnitType must be 0 (S1), 1 (S2) or 2 (S3).")
