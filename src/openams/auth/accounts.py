"""Media Services accounts: names, ids and their two access keys.

Keys are base64 strings clients use as `client_secret` (ACS and AAD styles); they also sign the
tokens we issue, so regenerating a key invalidates every token signed with the old one.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select, update

from ..db.tables import accounts, api_clients
from ..errors import BadRequest, Conflict, NotFound
from .secrets import SecretBox

NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    primary_key: str
    secondary_key: str
    created: datetime
    disabled: bool = False

    def keys(self) -> tuple[str, str]:
        return self.primary_key, self.secondary_key

    def __repr__(self) -> str:  # keys never appear in logs or reprs
        return f"Account(name={self.name!r}, id={self.id!r})"


@dataclass(frozen=True)
class AccountIdentity:
    id: str
    name: str


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def validate_key(key: str) -> str:
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        raise BadRequest("An account key must be base64 (e.g. 32 random bytes, base64-encoded).") from None
    if len(raw) < 16:
        raise BadRequest("An account key must be at least 16 bytes before base64 encoding.")
    return key


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadRequest(
            f"'{name}' is not a valid account name: use 3 to 24 lower-case letters and digits "
            "(the Azure Media Services SDKs require this form)."
        )
    return name


class AccountStore:
    """Account rows, with keys sealed by the server key."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box
        self._opened: dict[str, str] = {}

    def _from_row(self, row: object) -> Account:
        r = row._mapping  # type: ignore[attr-defined]
        return Account(r["id"], r["name"], self._open(r["primary_key"]), self._open(r["secondary_key"]),
                       r["created"], bool(r["disabled"]))

    def _open(self, sealed: str) -> str:
        """Decrypt a stored key, remembering the result: every API request reads its account, and a
        rotated key has a different sealed form, so the cache can never hand out a stale key."""
        clear = self._opened.get(sealed)
        if clear is None:
            clear = self.box.open(sealed)
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened[sealed] = clear
        return clear

    def create(self, conn: Connection, name: str, key: str | None = None,
               secondary_key: str | None = None) -> Account:
        validate_name(name)
        if self.find(conn, name) is not None:
            raise Conflict(f"An account named '{name}' already exists.")
        account = Account(str(uuid.uuid4()), name, validate_key(key) if key else new_key(),
                          validate_key(secondary_key) if secondary_key else new_key(), datetime.now(UTC))
        conn.execute(accounts.insert().values(
            id=account.id, name=name, primary_key=self.box.seal(account.primary_key),
            secondary_key=self.box.seal(account.secondary_key), created=account.created, disabled=False))
        return account

    def find(self, conn: Connection, name: str) -> Account | None:
        row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
        return self._from_row(row) if row else None

    def get(self, conn: Connection, name: str) -> Account:
        account = self.find(conn, name)
        if account is None:
            raise NotFound(f"There is no account named '{name}'.")
        return account

    def by_id(self, conn: Connection, account_id: str) -> Account | None:
        row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
        return self._from_row(row) if row else None

    def identities(self, conn: Connection) -> list[AccountIdentity]:
        """Every account's id and name, without touching its keys."""
        rows = conn.execute(select(accounts.c.id, accounts.c.name).order_by(accounts.c.name))
        return [AccountIdentity(r.id, r.name) for r in rows]

    def list(self, conn: Connection) -> list[Account]:
        return [self._from_row(r) for r in conn.execute(select(accounts).order_by(accounts.c.name))]

    def delete(self, conn: Connection, name: str) -> Account:
        """Delete the account and every row it owns: entities, links, service principals, task
        leases, protection certificates — every table with an `account_id` column, so a table
        added later is not left behind. (Blob content in storage is not touched.)"""
        account = self.get(conn, name)
        from ..db.tables import metadata

        for table in metadata.sorted_tables:
            if table is not accounts and "account_id" in table.c:
                conn.execute(delete(table).where(table.c.account_id == account.id))
        conn.execute(delete(accounts).where(accounts.c.id == account.id))
        return account

    def regenerate(self, conn: Connection, name: str, which: str = "primary", key: str | None = None) -> Account:
        if which not in ("primary", "secondary"):
            raise BadRequest("Choose the primary or the secondary key.")
        account = self.get(conn, name)
        value = validate_key(key) if key else new_key()
        column = "primary_key" if which == "primary" else "secondary_key"
        conn.execute(update(accounts).where(accounts.c.id == account.id).values({column: self.box.seal(value)}))
        return self.get(conn, name)

    # AAD-style service principals ------------------------------------------------------------
    def add_client(self, conn: Connection, name: str, client_id: str | None = None) -> tuple[str, str]:
        account = self.get(conn, name)
        cid = client_id or str(uuid.uuid4())
        secret = secrets.token_urlsafe(32)
        if conn.execute(select(api_clients.c.client_id).where(api_clients.c.client_id == cid)).first():
            raise Conflict(f"A client with id '{cid}' is already registered.")
        conn.execute(api_clients.insert().values(client_id=cid, account_id=account.id,
                                                 secret=self.box.seal(secret), created=datetime.now(UTC)))
        return cid, secret

    def client(self, conn: Connection, client_id: str) -> tuple[Account, str] | None:
        row = conn.execute(select(api_clients).where(api_clients.c.client_id == client_id)).first()
        if row is None:
            return None
        account = self.by_id(conn, row.account_id)
        if account is None:
            return None
        return account, self.box.open(row.secret)
