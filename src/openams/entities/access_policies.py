"""AccessPolicies: permissions and duration that a Locator grants. Never updated in place."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..odata.payload import EntityPayload
from .base import Ctx, Rules

PERMISSIONS = {"Read": 1, "Write": 2, "Delete": 4, "List": 8}
ALL_PERMISSIONS = 15
MAX_MINUTES = 100 * 365 * 24 * 60


class AccessPolicyRules(Rules):
    set_name = "AccessPolicies"
    can_update = False

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        minutes = values.get("DurationInMinutes")
        if minutes is None:
            raise BadRequest("AccessPolicy.DurationInMinutes is required.", code="MissingProperty")
        if not 0 < minutes <= MAX_MINUTES:
            raise BadRequest(f"AccessPolicy.DurationInMinutes must be more than 0 and at most {MAX_MINUTES}.")
        perms = values.get("Permissions") or 0
        if perms & ~ALL_PERMISSIONS or perms < 0:
            raise BadRequest("AccessPolicy.Permissions is a combination of Read=1, Write=2, Delete=4, List=8.")
        values["Permissions"] = perms
        if not values.get("Name"):
            raise BadRequest("AccessPolicy.Name is required.", code="MissingProperty")
