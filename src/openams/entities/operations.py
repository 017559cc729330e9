"""Operations: the record of a long-running call (start, stop, scale, delete… of streaming endpoints,
and later channels and programs), polled by clients with `GET Operations('<id>')`.

A call that starts one answers 202 Accepted with an `operation-id` header (the surface reads
`ctx.operation_id`). The record moves once from `InProgress` to `Succeeded` or `Failed` (with an
`ErrorCode` from `model.enums.OPERATION_ERROR_CODES` and a message). Clients never write it: the set
is read-only over the API, and every row is account-scoped like any other.
"""

from __future__ import annotations

from ..errors import MethodNotAllowed
from ..model.enums import OPERATION_ERROR_CODES
from .base import Ctx, Rules, new_id

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"
PREFIX = "nb:opid:UUID:"


class OperationRules(Rules):
    set_name = "Operations"
    can_create = False
    can_update = False
    can_delete = False

    def check_verb(self, verb: str) -> None:
        if verb in ("create", "update", "delete"):
            raise MethodNotAllowed("Operations is read-only: the service records an Operation for every "
                                   "long-running call (answered 202 with an operation-id header); poll it with "
                                   "GET Operations('<operation-id>').")


def begin(ctx: Ctx, target_id: str) -> str:
    """Record a new InProgress operation on `target_id` and make it this request's operation."""
    op_id = new_id(PREFIX)
    ctx.store.insert(ctx.entity_set("Operations"), {
        "Id": op_id, "State": IN_PROGRESS, "TargetEntityId": target_id, "ErrorCode": None, "ErrorMessage": None,
    })
    ctx.operation_id = op_id
    return op_id


def succeed(ctx: Ctx, op_id: str) -> None:
    ctx.store.update(ctx.entity_set("Operations"), op_id, {"State": SUCCEEDED})


def fail(ctx: Ctx, op_id: str, code: str, message: str) -> None:
    """Finish an operation as Failed (for transitions that complete after the request)."""
    assert code in OPERATION_ERROR_CODES, code
    ctx.store.update(ctx.entity_set("Operations"), op_id,
                     {"State": FAILED, "ErrorCode": code, "ErrorMessage": message})

