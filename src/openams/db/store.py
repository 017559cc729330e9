"""Account-scoped row access for entity sets and links.

`Store` is the one place the account filter is applied: every read, write and link operation
adds `account_id = <this account>`, so nothing above it can touch another tenant's rows.
Rows come back as dicts of EDM Python values (see `odata.values`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from ..odata.edm import EntitySet, Model, NavigationProperty
from ..odata.values import coerce, to_json
from .tables import ENTITY_TABLES, links


def _plain(model: Model, prop: Any, value: Any) -> Any:
    """A complex or collection value as JSON-storable data (dates as ISO strings)."""
    if value is None:
        return None
    if prop.collection:
        single = type(prop)(prop.name, prop.type)
        return [_plain(model, single, v) for v in value]
    if prop.is_complex:
        ctype = model.complex_type(prop.type)
        return {p.name: _plain(model, p, value.get(p.name)) for p in ctype.properties}
    return to_json(prop.type, value, verbose=False)


class Store:
    def __init__(self, conn: Connection, account_id: str, model: Model) -> None:
        self.conn = conn
        self.account_id = account_id
        self.model = model

    # tables ---------------------------------------------------------------------------------------
    @staticmethod
    def table(es: EntitySet) -> Table:
        return ENTITY_TABLES[es.name]

    def scope(self, es: EntitySet) -> ColumnElement[bool]:
        return self.table(es).c.account_id == self.account_id

    def key_column(self, es: EntitySet) -> Any:
        return self.table(es).c[es.entity_type.key]

    # conversion -----------------------------------------------------------------------------------
    def to_entity(self, es: EntitySet, row: Any) -> dict[str, Any]:
        m = row._mapping
        out: dict[str, Any] = {}
        for p in es.entity_type.properties:
            v = m[p.name]
            if (p.collection or p.is_complex) and v is not None:
                v = coerce(self.model, p, v)
            elif p.collection and v is None:
                v = []
            out[p.name] = v
        out["__version"] = m["_version"]
        return out

    def to_row(self, es: EntitySet, values: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        et = es.entity_type
        for name, v in values.items():
            p = et.property(name)
            if p is None:
                continue
            row[p.name] = _plain(self.model, p, v) if (p.collection or p.is_complex) else v
        return row

    # reads ----------------------------------------------------------------------------------------
    def get(self, es: EntitySet, key: Any) -> dict[str, Any] | None:
        t = self.table(es)
        row = self.conn.execute(select(t).where(self.scope(es), self.key_column(es) == key)).first()
        return self.to_entity(es, row) if row else None

    def exists(self, es: EntitySet, key: Any) -> bool:
        t = self.table(es)
        return self.conn.execute(select(t.c._rowid).where(self.scope(es), self.key_column(es) == key)).first() \
            is not None

    def query(self, es: EntitySet, where: Sequence[ColumnElement[bool]] = (), order: Sequence[Any] = (),
              top: int | None = None, skip: int | None = None, join_links: tuple[str, Any] | None = None
              ) -> list[dict[str, Any]]:
        t = self.table(es)
        stmt = select(t).where(self.scope(es), *where)
        if join_links is not None:
            relation, source = join_links
            stmt = stmt.join(links, and_(links.c.account_id == t.c.account_id, links.c.relation == relation,
                                         links.c.source == source, links.c.target == self.key_column(es)))
            stmt = stmt.order_by(*order, links.c.position, t.c._rowid)
        else:
            stmt = stmt.order_by(*order, t.c._rowid)
        if skip:
            stmt = stmt.offset(skip)
        if top is not None:
            stmt = stmt.limit(top)
        return [self.to_entity(es, r) for r in self.conn.execute(stmt)]

    def count(self, es: EntitySet, where: Sequence[ColumnElement[bool]] = (),
              join_links: tuple[str, Any] | None = None) -> int:
        t = self.table(es)
        stmt = select(func.count()).select_from(t).where(self.scope(es), *where)
        if join_links is not None:
            relation, source = join_links
            stmt = stmt.join(links, and_(links.c.account_id == t.c.account_id, links.c.relation == relation,
                                         links.c.source == source, links.c.target == self.key_column(es)))
        return int(self.conn.execute(stmt).scalar_one())

    # writes ---------------------------------------------------------------------------------------
    def insert(self, es: EntitySet, values: dict[str, Any]) -> None:
        row = self.to_row(es, values)
        row["account_id"] = self.account_id
        row["_version"] = 1
        self.conn.execute(insert(self.table(es)).values(row))

    def update(self, es: EntitySet, key: Any, values: dict[str, Any]) -> None:
        t = self.table(es)
        row = self.to_row(es, values)
        row["_version"] = t.c._version + 1
        self.conn.execute(update(t).where(self.scope(es), self.key_column(es) == key).values(row))

    def delete(self, es: EntitySet, key: Any) -> None:
        t = self.table(es)
        self.conn.execute(delete(t).where(self.scope(es), self.key_column(es) == key))

    def delete_where(self, es: EntitySet, *where: ColumnElement[bool]) -> None:
        self.conn.execute(delete(self.table(es)).where(self.scope(es), *where))

    # links ----------------------------------------------------------------------------------------
    def _links_scope(self, relation: str) -> ColumnElement[bool]:
        return and_(links.c.account_id == self.account_id, links.c.relation == relation)

    def link_targets(self, relation: str, source: Any) -> list[str]:
        stmt = select(links.c.target).where(self._links_scope(relation), links.c.source == source) \
            .order_by(links.c.position)
        return [r[0] for r in self.conn.execute(stmt)]

    def link_sources(self, relation: str, target: Any) -> list[str]:
        stmt = select(links.c.source).where(self._links_scope(relation), links.c.target == target)
        return [r[0] for r in self.conn.execute(stmt)]

    def has_link(self, relation: str, source: Any, target: Any) -> bool:
        stmt = select(links.c.target).where(self._links_scope(relation), links.c.source == source,
                                            links.c.target == target)
        return self.conn.execute(stmt).first() is not None

    def add_link(self, relation: str, source: Any, target: Any) -> None:
        pos = self.conn.execute(select(func.count()).select_from(links).where(
            self._links_scope(relation), links.c.source == source)).scalar_one()
        self.conn.execute(insert(links).values(account_id=self.account_id, relation=relation, source=source,
                                               target=target, position=pos))

    def remove_links(self, relation: str, source: Any = None, target: Any = None) -> None:
        cond = [self._links_scope(relation)]
        if source is not None:
            cond.append(links.c.source == source)
        if target is not None:
            cond.append(links.c.target == target)
        self.conn.execute(delete(links).where(*cond))

    # navigation -----------------------------------------------------------------------------------
    def navigation_query(self, es: EntitySet, key: Any, nav: NavigationProperty
                         ) -> tuple[EntitySet, list[ColumnElement[bool]], tuple[str, Any] | None]:
        """Where-clauses (and link join) selecting the targets of `nav` from entity `key`."""
        target = self.model.entity_set(nav.target)
        assert target is not None
        tt = self.table(target)
        if nav.reverse_fk:
            return target, [tt.c[nav.reverse_fk] == key], None
        if nav.fk:
            src = self.table(es)
            fk_value = select(src.c[nav.fk]).where(self.scope(es), self.key_column(es) == key).scalar_subquery()
            return target, [self.key_column(target) == fk_value], None
        assert nav.link
        return target, [], (nav.link, key)
