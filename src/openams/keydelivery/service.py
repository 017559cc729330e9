"""Who gets a content key: look the key up by its id, evaluate its authorization policy against
the caller's token and address, and hand out the clear key only on an allow.

The key delivery URL names no account (`/keydelivery/?KID=<guid>`), so the key is found across
accounts first (content key ids are globally unique) and everything after that is scoped to the
owning account. Decisions are logged with the key id, account, reason and option — never the
token or the key.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..db.store import Store
from ..entities import content_keys
from ..model import MODEL
from .restrictions import Reason, evaluate_policy, strip_bearer

log = logging.getLogger("openams.keydelivery")

ENVELOPE, COMMON, COMMON_CBCS = 4, 0, 6
BASELINE_HTTP = 2
KIND_KEY_TYPES = {"aes": (ENVELOPE,), "clearkey": (COMMON, COMMON_CBCS)}
"""Which ContentKeyTypes each delivery kind hands out: AES-128 envelope keys as 16 raw bytes
(BaselineHttp), CENC/CBCS keys as W3C ClearKey licences."""

_UNAUTHORIZED = {Reason.TOKEN_MISSING, Reason.MALFORMED_TOKEN, Reason.WRONG_TOKEN_TYPE, Reason.INVALID_SIGNATURE,
                 Reason.TOKEN_EXPIRED, Reason.TOKEN_NOT_YET_VALID}
"""Denials that a better token can cure (401); the others are 403."""


@dataclass(frozen=True)
class Outcome:
    status: int
    reason: str
    message: str
    key: bytes = b""
    key_id: uuid.UUID | None = None


def parse_kid(value: str | None) -> uuid.UUID | None:
    text = (value or "").strip()
    if text.lower().startswith("nb:kid:uuid:"):
        text = text[12:]
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def deliver(engine: Any, settings: Any, key_id: uuid.UUID, token: str | None, client_ip: str | None,
            kind: str, now: datetime | None = None) -> Outcome:
    """The clear key for `key_id` if the caller may have it, else a 401/403/404 outcome with a reason."""
    now = now or datetime.now(UTC)
    token = strip_bearer(token) or None
    with engine.connect() as conn:
        found = content_keys.find_content_key_in_any_account(conn, str(key_id))
        if found is None:
            return _log(Outcome(404, "KeyNotFound", f"No content key with id {key_id} exists."), None, key_id)
        account_id, key = found
        if int(key.get("ContentKeyType") or 0) not in KIND_KEY_TYPES[kind]:
            return _log(Outcome(400, "WrongKeyType", "This key cannot be delivered this way (an AES-128 envelope "
                                "key is fetched at /keydelivery/?KID=…, a CENC key through a licence)."),
                        account_id, key_id)
        policy_id = key.get("AuthorizationPolicyId")
        if not policy_id:
            return _log(Outcome(403, "NoAuthorizationPolicy", "The key has no authorization policy, so it is not "
                                "delivered to anyone."), account_id, key_id)
        store = Store(conn, account_id, MODEL)
        options = _options(store, policy_id)
        decision = evaluate_policy(options, token, key_id, client_ip, now,
                                   delivery_type=BASELINE_HTTP if kind == "aes" else None)
        if not decision.allowed:
            status = 401 if decision.reason in _UNAUTHORIZED else 403
            return _log(Outcome(status, str(decision.reason), decision.message), account_id, key_id,
                        decision.option_id)
        clear = content_keys.clear_key(conn, account_id, str(key_id), settings=settings)
    return _log(Outcome(200, "Allowed", decision.message, clear, key_id), account_id, key_id, decision.option_id)


def _options(store: Store, policy_id: str) -> list[dict[str, Any]]:
    policies = MODEL.entity_set("ContentKeyAuthorizationPolicies")
    options = MODEL.entity_set("ContentKeyAuthorizationPolicyOptions")
    assert policies is not None and options is not None
    if store.get(policies, policy_id) is None:
        return []
    ids = store.link_targets("ckap_options", policy_id)
    return store.query(options, [store.key_column(options).in_(ids)], top=None) if ids else []


def _log(outcome: Outcome, account_id: str | None, key_id: uuid.UUID, option_id: str | None = None) -> Outcome:
    log.info("key delivery kid=%s account=%s status=%s reason=%s option=%s", key_id, account_id, outcome.status,
             outcome.reason, option_id)
    return outcome
