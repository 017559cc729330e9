"""The frame every entity set's rules plug into.

`Ctx` carries who is asking (the account), the account-scoped `Store` and the settings.
`Rules` is the default behaviour of an entity set; each module in this package subclasses it for
one set and overrides the hooks where Azure Media Services has a rule. Sets without a module are
declared in `$metadata` but answer 501 naming the set (`NotBuilt`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..auth.accounts import Account
from ..config import Settings
from ..db.store import Store
from ..errors import MethodNotAllowed, NotImplementedYet
from ..model import MODEL
from ..odata.edm import EntitySet, FunctionImport, Model, NavigationProperty
from ..odata.payload import EntityPayload


@dataclass
class Ctx:
    store: Store
    account: Account
    settings: Settings
    base_url: str = ""
    """The API root the client used (`http://host:port/api/`), for resolving binding URLs."""
    storage: Any = None
    """The blob backend (`storage.base.BlobBackend`); None where no blob work can happen."""
    content_ids: dict[str, str] = field(default_factory=dict)
    """Inside a `$batch` changeset: Content-ID → URL of the entity that part created (`$1` refs)."""
    on_job_submitted: Any = None
    """Called with a job id once it is queued (wakes the runner); None where nothing runs jobs."""
    on_job_canceled: Any = None
    """Called with a job id after CancelJob (lets a runner stop its processor at once)."""
    operation_id: str | None = None
    """The long-running Operation (`nb:opid:UUID:…`) this request started, if any: the surface then
    answers 202 Accepted with an `operation-id` header (streaming endpoints, channels, programs)."""
    model: Model = field(default_factory=lambda: MODEL)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def entity_set(self, name: str) -> EntitySet:
        es = self.model.entity_set(name)
        assert es is not None, name
        return es


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4()}"


def guid_of(entity_id: str) -> str:
    """`nb:cid:UUID:<guid>` → `<guid>`."""
    return entity_id.rsplit(":", 1)[-1]


class Rules:
    """Default behaviour of an entity set: plain OData CRUD with the model's annotations."""

    set_name: ClassVar[str] = ""
    can_create: ClassVar[bool] = True
    can_update: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True

    def __init__(self, entity_set: EntitySet) -> None:
        self.entity_set = entity_set

    # hooks -------------------------------------------------------------------------------------
    def new_key(self, ctx: Ctx, values: dict[str, Any]) -> Any:
        """The key of a new entity when the set composes it from other values (AssetFilters:
        `<ParentAssetId>__###__<Name>`); None means the generic rule (client key or a new GUID)."""
        return None

    def check_verb(self, verb: str) -> None:
        allowed = {"create": self.can_create, "update": self.can_update, "delete": self.can_delete}
        if not allowed.get(verb, True):
            raise MethodNotAllowed(f"{self.entity_set.name} cannot be {_past(verb)} through the API.")

    def on_create(self, ctx: Ctx, values: dict[str, Any], payload: EntityPayload) -> None:
        """Apply rules to a new entity's values before it is stored (raise to refuse)."""

    def after_create(self, ctx: Ctx, entity: dict[str, Any], payload: EntityPayload) -> None:
        """Side effects once the row exists (links, related rows)."""

    def on_update(self, ctx: Ctx, old: dict[str, Any], changes: dict[str, Any]) -> None:
        """Apply rules to an update; `changes` holds only the properties being changed."""

    def on_delete(self, ctx: Ctx, entity: dict[str, Any], params: dict[str, str]) -> None:
        """Cascade or refuse before the row is removed."""

    def on_link(self, ctx: Ctx, entity: dict[str, Any], nav: NavigationProperty, target: dict[str, Any],
                add: bool) -> None:
        """Rules for `$links` changes (and bindings on create)."""

    def call(self, ctx: Ctx, fn: FunctionImport, entity: dict[str, Any] | None, params: dict[str, Any]) -> Any:
        raise NotImplementedYet(f"The action {fn.name} on {self.entity_set.name}")


class NotBuilt(Rules):
    """An entity set declared in `$metadata` whose behaviour comes in a later version."""

    def __init__(self, entity_set: EntitySet) -> None:
        super().__init__(entity_set)

    def refuse(self) -> None:
        raise NotImplementedYet(f"The {self.entity_set.name} entity set")


def _past(verb: str) -> str:
    return {"create": "created", "update": "updated", "delete": "deleted"}.get(verb, verb)
