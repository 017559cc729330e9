"""Which rules govern which entity set, and which unbound functions exist.

Entity sets without a rules module here are declared in `$metadata` but answer 501 (`NotBuilt`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from ..model import MODEL
from ..odata.edm import EntitySet
from .base import Ctx, NotBuilt, Rules

UnboundFunction = Callable[[Ctx, dict[str, Any]], Any]


def _rule_classes() -> dict[str, type[Rules]]:
    from . import (
        access_policies,
        assets,
        content_keys,
        delivery_policies,
        files,
        filters,
        jobs,
        key_policies,
        locators,
        media_processors,
        operations,
        reserved_units,
        storage_accounts,
        streaming_endpoints,
    )

    classes: list[type[Rules]] = [
        assets.AssetRules,
        files.FileRules,
        access_policies.AccessPolicyRules,
        locators.LocatorRules,
        media_processors.MediaProcessorRules,
        storage_accounts.StorageAccountRules,
        reserved_units.ReservedUnitRules,
        jobs.JobRules,
        jobs.TaskRules,
        jobs.JobTemplateRules,
        jobs.TaskTemplateRules,
        jobs.NotificationEndPointRules,
        operations.OperationRules,
        streaming_endpoints.StreamingEndpointRules,
        filters.FilterRules,
        filters.AssetFilterRules,
        content_keys.ContentKeyRules,
        key_policies.ContentKeyAuthorizationPolicyRules,
        key_policies.ContentKeyAuthorizationPolicyOptionRules,
        delivery_policies.AssetDeliveryPolicyRules,
    ]
    return {c.set_name: c for c in classes}


@cache
def _instances() -> dict[str, Rules]:
    classes = _rule_classes()
    out: dict[str, Rules] = {}
    for es in MODEL.entity_sets:
        cls = classes.get(es.name)
        out[es.name] = cls(es) if cls else NotBuilt(es)
    return out


def rules_for(es: EntitySet) -> Rules:
    return _instances()[es.name]


def unbound_function(name: str) -> UnboundFunction | None:
    return _unbound().get(name.lower())


@cache
def _unbound() -> dict[str, UnboundFunction]:
    from . import file_infos, jobs, protection

    return {
        "createfileinfos": file_infos.create_file_infos,
        "canceljob": jobs.cancel_job,
        "getprotectionkeyid": protection.get_protection_key_id,
        "getprotectionkey": protection.get_protection_key,
        "rebindcontentkey": protection.rebind_content_key,
    }
