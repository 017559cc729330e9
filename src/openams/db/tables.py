"""Database tables, derived from the one entity model in `openams.model`.

Each entity set gets a table named `e_<set>` with one column per property (complex values and
collections as JSON) plus the owning `account_id`, an internal row id (stable default order) and a
row version (ETags). Many-to-many and ordered navigation relations share one `links` table.
Non-entity state (accounts, server secrets) has tables of its own here too.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeEngine

from ..model import MODEL
from ..odata.edm import EntitySet, Model, Property
from .types import Duration, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ACCOUNT_ID_LEN = 36


def column_type(prop: Property) -> TypeEngine:  # type: ignore[type-arg]
    if prop.collection or prop.is_complex:
        return JSON()
    t = prop.type
    if t == "Edm.String":
        return String(prop.max_length) if prop.max_length and prop.max_length <= 4000 else Text()
    if t in ("Edm.Int32",):
        return Integer()
    if t in ("Edm.Int16", "Edm.Byte", "Edm.SByte"):
        return SmallInteger()
    if t == "Edm.Int64":
        return BigInteger()
    if t in ("Edm.Double", "Edm.Single"):
        return Float()
    if t == "Edm.Decimal":
        return Numeric(38, 10)
    if t == "Edm.Boolean":
        return Boolean()
    if t in ("Edm.DateTime", "Edm.DateTimeOffset"):
        return UTCDateTime()
    if t == "Edm.Guid":
        return String(36)
    if t == "Edm.Time":
        return Duration()
    if t == "Edm.Binary":
        return LargeBinary()
    raise ValueError(f"no column type for {t}")


def table_name(entity_set: EntitySet) -> str:
    return "e_" + entity_set.name.lower()


def _entity_table(md: MetaData, model: Model, es: EntitySet) -> Table:
    et = es.entity_type
    fk_columns = {n.fk for n in et.navigations if n.fk}
    # columns other sets point at with reverse_fk are indexed for navigation queries
    reverse_fk = {
        n.reverse_fk
        for other in model.entity_sets
        for n in other.entity_type.navigations
        if n.reverse_fk and n.target == es.name
    }
    cols: list[Column] = [  # type: ignore[type-arg]
        Column("_rowid", Integer, primary_key=True, autoincrement=True),
        Column("account_id", String(ACCOUNT_ID_LEN), nullable=False),
        Column("_version", Integer, nullable=False, default=1),
    ]
    for p in et.properties:
        cols.append(Column(p.name, column_type(p), nullable=True))
    name = table_name(es)
    args: list[object] = [UniqueConstraint("account_id", et.key)]
    for col in sorted((fk_columns | reverse_fk) - {et.key}):
        args.append(Index(f"ix_{name}_{col.lower()}", "account_id", col))
    return Table(name, md, *cols, *args)  # type: ignore[arg-type]


GLOBAL_KEYS: frozenset[str] = frozenset({"Locators", "ContentKeys"})
"""Sets whose key is unique across all accounts, not only within one (a unique index on the key
alone): the streaming origin finds a locator by the GUID in the URL, and the key delivery service a
content key by the `KID` in its URL, before either knows the account."""


def build(md: MetaData, model: Model) -> dict[str, Table]:
    tables = {es.name: _entity_table(md, model, es) for es in model.entity_sets}
    for name in sorted(GLOBAL_KEYS):
        es = model.entity_set(name)
        assert es is not None
        table = tables[name]
        Index(f"ix_{table.name}_{es.entity_type.key.lower()}_global", table.c[es.entity_type.key], unique=True)
    return tables


ENTITY_TABLES: dict[str, Table] = build(metadata, MODEL)

links = Table(
    "links",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LEN), primary_key=True),
    Column("relation", String(64), primary_key=True),
    Column("source", String(255), primary_key=True),
    Column("target", String(255), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    Index("ix_links_target", "account_id", "relation", "target"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ACCOUNT_ID_LEN), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("primary_key", Text, nullable=False),
    Column("secondary_key", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)
"""Media Services accounts. Keys are stored encrypted with the server key (see `auth.secrets`)."""

api_clients = Table(
    "api_clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LEN), nullable=False, index=True),
    Column("secret", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)
"""AAD-style service principals registered for an account (secret encrypted at rest)."""

task_leases = Table(
    "task_leases",
    metadata,
    Column("task_id", String(255), primary_key=True),
    Column("account_id", String(ACCOUNT_ID_LEN), nullable=False),
    Column("worker", String(255), nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
)
"""Which worker is running a task, until when. A lease that runs out means the worker died: the
task is re-queued (or failed after too many attempts) by whoever notices first."""

protection_certificates = Table(
    "protection_certificates",
    metadata,
    Column("account_id", String(ACCOUNT_ID_LEN), primary_key=True),
    Column("content_key_type", Integer, primary_key=True),
    Column("thumbprint", String(40), nullable=False),
    Column("certificate", Text, nullable=False),
    Column("private_key", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_protection_certificates_thumbprint", "account_id", "thumbprint", unique=True),
)
"""The certificates clients encrypt content keys to (GetProtectionKeyId / GetProtectionKey): one
self-signed RSA-2048 certificate per account and ContentKeyType, made on first use and kept.
`certificate` is the public DER, base64; `private_key` its PKCS#8 key sealed with the server key
(`auth.secrets`), so the database alone cannot unwrap any content key."""
