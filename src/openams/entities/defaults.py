"""Rows every account starts with: its default storage account, the media processor catalogue, its
reserved-unit settings and its `default` streaming endpoint. Idempotent, so it also fills in rows
added by newer versions (and, given the settings, brings streaming host names up to date)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from ..auth.accounts import Account
from ..config import Settings
from ..db.store import Store
from ..model import MODEL
from ..model.catalogue import MEDIA_PROCESSORS
from . import reserved_units, storage_accounts, streaming_endpoints


def ensure_account_defaults(conn: Connection, account: Account, settings: Settings | None = None) -> None:
    """`settings` decide the streaming endpoints' host names; without them (tools that only need the
    rows) the default endpoint is created from the environment's settings and nothing is refreshed."""
    store = Store(conn, account.id, MODEL)
    now = datetime.now(UTC)

    def put(set_name: str, values: dict) -> None:  # type: ignore[type-arg]
        es = MODEL.entity_set(set_name)
        assert es is not None
        key = values[es.entity_type.key]
        if store.exists(es, key):
            return
        row = {p.name: ([] if p.collection else p.default) for p in es.entity_type.properties}
        row.update(values)
        for stamp in ("Created", "LastModified"):
            if es.entity_type.property(stamp) is not None:
                row[stamp] = now
        store.insert(es, row)

    put("StorageAccounts", storage_accounts.seed_values(account.name))
    for processor in MEDIA_PROCESSORS:
        put("MediaProcessors", dict(processor))
    put("EncodingReservedUnitTypes", reserved_units.seed_values(account.id))
    if settings is None:
        from ..config import load

        streaming_endpoints.ensure_default(store, load(), account.name, now, refresh=False)
    else:
        streaming_endpoints.ensure_default(store, settings, account.name, now)
