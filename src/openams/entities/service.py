"""Generic entity operations: read, query, create (with bindings and deep insert), update, delete,
`$links` and functions — applying the model's annotations and each set's `Rules` hooks.

Surfaces call these; they never touch the database themselves.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import (
    BadRequest,
    Conflict,
    InvalidKey,
    InvalidProperty,
    InvalidQuery,
    NotFound,
    NotImplementedYet,
    PreconditionFailed,
    UnknownProperty,
)
from ..odata import jsonfmt, query
from ..odata.batch import resolve_reference
from ..odata.edm import EntitySet, EntityType, FunctionImport, NavigationProperty, Parameter
from ..odata.payload import EntityPayload
from ..odata.uri import ResourcePath, key_from_url
from ..odata.values import coerce, coerce_primitive, parse_literal
from .base import Ctx, NotBuilt, Rules
from .registry import rules_for, unbound_function

PAGE_CAP = 1000


@dataclass
class QueryOptions:
    filter: str | None = None
    orderby: str | None = None
    top: int | None = None
    skip: int | None = None
    select: list[str] | None = None
    inlinecount: bool = False


def etag(entity: dict[str, Any]) -> str:
    return f'W/"{entity.get("__version", 1)}"'


def check_if_match(entity: dict[str, Any], if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    wanted = {t.strip() for t in if_match.split(",")}
    if etag(entity) not in wanted:
        raise PreconditionFailed("The entity was changed since you read it (If-Match does not match its ETag).")


def _rules(es: EntitySet) -> Rules:
    rules = rules_for(es)
    if isinstance(rules, NotBuilt):
        rules.refuse()
    return rules


# ------------------------------------------------------------------------------------------------
# reading


def get(ctx: Ctx, es: EntitySet, key: Any) -> dict[str, Any]:
    _rules(es)
    entity = ctx.store.get(es, key)
    if entity is None:
        raise NotFound(f"No {es.entity_type.name} with key '{key}' exists.")
    return entity


def _walk(ctx: Ctx, rp: ResourcePath) -> tuple[EntitySet, dict[str, Any] | None, list[Any], tuple[str, Any] | None]:
    """Follow a path to its final entity (single) or to where-clauses for a collection."""
    assert rp.entity_set is not None
    es = rp.entity_set
    if rp.key is None:
        _rules(es)
        return es, None, [], None
    entity = get(ctx, es, rp.key)
    for i, (nav_name, nav_key) in enumerate(rp.navigation):
        nav = es.entity_type.navigation(nav_name)
        assert nav is not None
        target, where, join = ctx.store.navigation_query(es, entity[es.entity_type.key], nav)
        _rules(target)
        last = i == len(rp.navigation) - 1
        if nav.many and nav_key is None:
            if not last:
                raise BadRequest(f"Address one of {nav_name} by key before navigating further.")
            return target, None, where, join
        if nav_key is not None:
            where = [*where, ctx.store.key_column(target) == nav_key]
        rows = ctx.store.query(target, where, top=1, join_links=join)
        if not rows:
            raise NotFound(f"No related {nav_name} entity found.")
        es, entity = target, rows[0]
    return es, entity, [], None


def read(ctx: Ctx, rp: ResourcePath, opts: QueryOptions
         ) -> tuple[EntitySet, dict[str, Any] | None, list[dict[str, Any]], int | None]:
    """Resolve a GET path: (set, single entity or None, collection rows, inline count)."""
    es, entity, where, join = _walk(ctx, rp)
    if entity is not None:
        return es, entity, [], None
    resolve = _resolver(es)
    conditions = list(where)
    if opts.filter:
        conditions.append(query.to_sql(query.parse_filter(opts.filter), resolve))
    order = query.to_sql_order(query.parse_orderby(opts.orderby), resolve) if opts.orderby else []
    top = PAGE_CAP if opts.top is None else min(opts.top, PAGE_CAP)
    rows = ctx.store.query(es, conditions, order, top=top, skip=opts.skip, join_links=join)
    count = ctx.store.count(es, conditions, join_links=join) if opts.inlinecount else None
    return es, None, rows, count


def count(ctx: Ctx, rp: ResourcePath, opts: QueryOptions) -> int:
    es, _entity, where, join = _walk(ctx, rp)
    conditions = list(where)
    if opts.filter:
        conditions.append(query.to_sql(query.parse_filter(opts.filter), _resolver(es)))
    return ctx.store.count(es, conditions, join_links=join)


def _resolver(es: EntitySet) -> Any:
    from ..db.store import Store

    table = Store.table(es)

    def resolve(path: str) -> tuple[Any, str]:
        prop = es.entity_type.property(path)
        if prop is None or "/" in path:
            raise InvalidQuery(f"'{path}' is not a property of {es.entity_type.name}.")
        if prop.collection or prop.is_complex:
            raise InvalidQuery(f"'{path}' is a complex property and cannot be used in $filter or $orderby.")
        return table.c[prop.name], prop.type

    return resolve


def related_keys(ctx: Ctx, es: EntitySet, key: Any, nav_name: str) -> tuple[EntitySet, list[Any]]:
    """Keys of the entities linked through `nav_name` (for `$links` reads)."""
    entity = get(ctx, es, key)
    nav = es.entity_type.navigation(nav_name)
    assert nav is not None
    target, where, join = ctx.store.navigation_query(es, entity[es.entity_type.key], nav)
    rows = ctx.store.query(target, where, top=PAGE_CAP, join_links=join)
    return target, [r[target.entity_type.key] for r in rows]


# ------------------------------------------------------------------------------------------------
# writing


def _coerce(ctx: Ctx, et: EntityType, raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        prop = et.property(name)
        if prop is None:
            if et.navigation(name) is not None:
                raise BadRequest(f"'{name}' is a navigation property of {et.name}; bind it by URL.")
            raise UnknownProperty(f"'{name}' is not a property of {et.name}.")
        if prop.computed:
            continue
        try:
            out[prop.name] = coerce(ctx.model, prop, value)
        except ValueError as exc:
            raise InvalidProperty(f"Invalid value for {et.name}.{exc}" if str(exc).startswith(prop.name)
                                  else f"Invalid value for {et.name}.{prop.name}: {exc}") from None
    return out


def _resolve_binding(ctx: Ctx, nav: NavigationProperty, url: str) -> tuple[EntitySet, Any]:
    if "$" in url and ctx.content_ids:
        url = resolve_reference(url, ctx.content_ids, base=ctx.base_url)
    target_es, key = key_from_url(ctx.model, ctx.base_url, url)
    if target_es.name != nav.target:
        raise BadRequest(f"{nav.name} must reference {nav.target}, not {target_es.name}.")
    if not ctx.store.exists(target_es, key):
        raise NotFound(f"{nav.name} references {target_es.entity_type.name} '{key}', which does not exist.")
    return target_es, key


def _new_key(ctx: Ctx, es: EntitySet, values: dict[str, Any]) -> Any:
    et = es.entity_type
    kp = et.key_property
    given = values.get(kp.name)
    if kp.computed or given in (None, ""):
        if et.key_prefix is None:
            if given in (None, ""):
                raise BadRequest(f"{et.name}.{kp.name} is required.")
            return given
        return f"{et.key_prefix}{uuid.uuid4()}"
    if et.key_prefix:
        guid = str(given)[len(et.key_prefix):] if str(given).lower().startswith(et.key_prefix.lower()) else None
        try:
            if guid is None:
                raise ValueError
            uuid.UUID(guid)
        except ValueError:
            raise InvalidKey(f"{et.name}.{kp.name} must look like '{et.key_prefix}<GUID>', not '{given}'.") \
                from None
        return f"{et.key_prefix}{guid}"
    return given


def create(ctx: Ctx, es: EntitySet, payload: EntityPayload,
           parent: tuple[EntitySet, Any, NavigationProperty] | None = None) -> dict[str, Any]:
    """Create one entity (and any deep-inserted children) inside the caller's transaction."""
    rules = _rules(es)
    rules.check_verb("create")
    et = es.entity_type
    values = _coerce(ctx, et, payload.properties)

    # bindings: foreign keys now, link rows after the insert
    pending_links: list[tuple[NavigationProperty, EntitySet, Any]] = []
    for nav_name, urls in payload.bindings.items():
        nav = et.navigation(nav_name)
        if nav is None:
            raise UnknownProperty(f"'{nav_name}' is not a navigation property of {et.name}.")
        if not nav.bindable:
            raise BadRequest(f"{et.name}.{nav.name} is set by the service and cannot be bound.")
        if not nav.many and len(urls) > 1:
            raise BadRequest(f"{et.name}.{nav.name} takes one entity, not {len(urls)}.")
        for url in urls:
            target_es, key = _resolve_binding(ctx, nav, url)
            if nav.fk:
                current = values.get(nav.fk)
                if current not in (None, "") and current != key:
                    raise BadRequest(f"{et.name}.{nav.fk} ({current}) disagrees with the {nav.name} link ({key}).")
                values[nav.fk] = key
            elif nav.link:
                pending_links.append((nav, target_es, key))
            else:
                raise BadRequest(f"{et.name}.{nav.name} cannot be bound on create.")

    # inline entities that are only references (`{"Id": …}`) are bindings too
    children: list[tuple[NavigationProperty, EntitySet, EntityPayload]] = []
    for nav_name, items in payload.inline.items():
        nav = et.navigation(nav_name)
        if nav is None:
            raise UnknownProperty(f"'{nav_name}' is not a navigation property of {et.name}.")
        target = ctx.model.entity_set(nav.target)
        assert target is not None
        for item in items:
            item = _normalize_nested(ctx, item, target.entity_type)
            tkey = target.entity_type.key
            if set(item.properties) == {tkey} and not item.bindings and not item.inline:
                key = item.properties[tkey]
                if not ctx.store.exists(target, key):
                    raise NotFound(f"{nav.name} references {target.entity_type.name} '{key}', which does not exist.")
                if nav.fk:
                    values[nav.fk] = key
                elif nav.link:
                    pending_links.append((nav, target, key))
                continue
            children.append((nav, target, item))

    if parent is not None:
        _p_es, p_key, p_nav = parent
        if p_nav.reverse_fk:
            values[p_nav.reverse_fk] = p_key
    key = rules.new_key(ctx, values)
    if key is None:
        key = _new_key(ctx, es, values)
    values[et.key] = key
    if ctx.store.exists(es, key):
        raise Conflict(f"A {et.name} with {et.key} '{key}' already exists.")
    for prop in et.properties:
        if prop.name in values:
            continue
        values[prop.name] = copy.deepcopy(prop.default) if prop.default is not None else (
            [] if prop.collection else None)
    for stamp in ("Created", "LastModified"):
        p = et.property(stamp)
        if p is not None and p.computed and p.type == "Edm.DateTime":
            values[stamp] = ctx.now
    rules.on_create(ctx, values, payload)
    for prop in et.properties:
        if prop.required and values.get(prop.name) in (None, ""):
            raise BadRequest(f"{et.name}.{prop.name} is required.", code="MissingProperty")
    ctx.store.insert(es, values)
    for nav, target_es, tkey in pending_links:
        target_entity = ctx.store.get(target_es, tkey)
        assert target_entity is not None
        rules.on_link(ctx, values, nav, target_entity, True)
        if not ctx.store.has_link(nav.link, key, tkey):  # type: ignore[arg-type]
            ctx.store.add_link(nav.link, key, tkey)  # type: ignore[arg-type]
    if parent is not None:
        _p_es, p_key, p_nav = parent
        if p_nav.link:
            ctx.store.add_link(p_nav.link, p_key, key)
    entity = ctx.store.get(es, key)
    assert entity is not None
    for nav, target, item in children:
        create(ctx, target, item, parent=(es, key, nav))
    rules.after_create(ctx, entity, payload)
    result = ctx.store.get(es, key)
    assert result is not None
    return result


def _normalize_nested(ctx: Ctx, item: EntityPayload, et: EntityType) -> EntityPayload:
    """A JSON inline entity arrives with its navigations still among its properties."""
    if any(et.navigation(k) is not None or k.endswith("@odata.bind") or k == "__metadata"
           for k in item.properties):
        nested = jsonfmt.read_nested(item, ctx.model, et)
        nested.bindings = {**item.bindings, **nested.bindings}
        nested.inline = {**item.inline, **nested.inline}
        return nested
    return item


def create_related(ctx: Ctx, rp: ResourcePath, payload: EntityPayload) -> tuple[EntitySet, dict[str, Any]]:
    """POST to `Set('key')/Nav`: create the entity and attach it to its parent."""
    assert rp.entity_set is not None and rp.key is not None and len(rp.navigation) == 1
    parent_es = rp.entity_set
    get(ctx, parent_es, rp.key)
    nav = parent_es.entity_type.navigation(rp.navigation[0][0])
    assert nav is not None
    target = ctx.model.entity_set(nav.target)
    assert target is not None
    if not nav.many or rp.navigation[0][1] is not None:
        raise BadRequest(f"Entities are created in a collection; {nav.name} here is a single entity.")
    if nav.fk:
        raise BadRequest(f"{nav.name} cannot be created through its parent.")
    return target, create(ctx, target, payload, parent=(parent_es, rp.key, nav))


def update(ctx: Ctx, es: EntitySet, key: Any, payload: EntityPayload, *, replace: bool = False,
           if_match: str | None = None) -> None:
    rules = _rules(es)
    rules.check_verb("update")
    old = get(ctx, es, key)
    check_if_match(old, if_match)
    et = es.entity_type
    given = _coerce(ctx, et, payload.properties)
    for nav_name, urls in payload.bindings.items():
        nav = et.navigation(nav_name)
        if nav is None:
            raise UnknownProperty(f"'{nav_name}' is not a navigation property of {et.name}.")
        if not nav.fk or len(urls) != 1:
            raise BadRequest(f"{et.name}.{nav.name} cannot be changed by an update; use $links.")
        _, tkey = _resolve_binding(ctx, nav, urls[0])
        given[nav.fk] = tkey
    if replace:
        for prop in et.properties:
            if prop.name not in given and not prop.computed and not prop.immutable and prop.name != et.key:
                given[prop.name] = copy.deepcopy(prop.default) if prop.default is not None else (
                    [] if prop.collection else None)
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name == et.key:
            if value not in (None, "") and value != old[name]:
                raise BadRequest(f"{et.name}.{name} (the key) cannot be changed.")
            continue
        prop = et.property(name)
        assert prop is not None
        if _same(value, old.get(name)):
            continue
        if prop.immutable:
            raise BadRequest(f"{et.name}.{name} cannot be changed after creation.", code="PropertyNotUpdatable")
        if prop.required and value in (None, ""):
            raise BadRequest(f"{et.name}.{name} is required and cannot be cleared.")
        changes[name] = value
    rules.on_update(ctx, old, changes)
    if not changes:
        return  # nothing changes: keep LastModified and the ETag as they are
    lm = et.property("LastModified")
    if lm is not None and lm.computed:
        changes["LastModified"] = ctx.now
    ctx.store.update(es, key, changes)


def _same(new: Any, old: Any) -> bool:
    """Equal as a client can tell: dates are written with millisecond precision, so a full-entity
    MERGE that echoes a date back is not a change."""
    if isinstance(new, datetime) and isinstance(old, datetime):
        return abs((new - old).total_seconds()) < 0.001
    return bool(new == old)


def delete(ctx: Ctx, es: EntitySet, key: Any, params: dict[str, str] | None = None,
           if_match: str | None = None) -> None:
    rules = _rules(es)
    rules.check_verb("delete")
    entity = get(ctx, es, key)
    check_if_match(entity, if_match)
    rules.on_delete(ctx, entity, params or {})
    remove_row(ctx, es, key)


def remove_row(ctx: Ctx, es: EntitySet, key: Any) -> None:
    """Delete a row and every link that mentions it (used by cascades too)."""
    for nav in es.entity_type.navigations:
        if nav.link:
            ctx.store.remove_links(nav.link, source=key)
    for other in ctx.model.entity_sets:
        for nav in other.entity_type.navigations:
            if nav.link and nav.target == es.name:
                ctx.store.remove_links(nav.link, target=key)
    ctx.store.delete(es, key)


# ------------------------------------------------------------------------------------------------
# $links


def _link_nav(es: EntitySet, nav_name: str) -> NavigationProperty:
    nav = es.entity_type.navigation(nav_name)
    assert nav is not None
    if not nav.linkable or not nav.link:
        raise BadRequest(f"Links of {es.entity_type.name}.{nav.name} cannot be changed with $links.")
    return nav


def add_link(ctx: Ctx, es: EntitySet, key: Any, nav_name: str, url: str) -> None:
    rules = _rules(es)
    entity = get(ctx, es, key)
    nav = _link_nav(es, nav_name)
    target_es, tkey = _resolve_binding(ctx, nav, url)
    _rules(target_es)
    if ctx.store.has_link(nav.link, key, tkey):  # type: ignore[arg-type]
        raise Conflict(f"{target_es.entity_type.name} '{tkey}' is already linked to this {es.entity_type.name}.")
    target = ctx.store.get(target_es, tkey)
    assert target is not None
    rules.on_link(ctx, entity, nav, target, True)
    ctx.store.add_link(nav.link, key, tkey)  # type: ignore[arg-type]


def remove_link(ctx: Ctx, es: EntitySet, key: Any, nav_name: str, target_key: Any) -> None:
    rules = _rules(es)
    entity = get(ctx, es, key)
    nav = _link_nav(es, nav_name)
    target_es = ctx.model.entity_set(nav.target)
    assert target_es is not None
    if target_key is None:
        raise BadRequest(f"Name the link to remove: $links/{nav.name}('<key>').")
    if not ctx.store.has_link(nav.link, key, target_key):  # type: ignore[arg-type]
        raise NotFound(f"{target_es.entity_type.name} '{target_key}' is not linked to this {es.entity_type.name}.")
    target = ctx.store.get(target_es, target_key)
    rules.on_link(ctx, entity, nav, target or {target_es.entity_type.key: target_key}, False)
    ctx.store.remove_links(nav.link, source=key, target=target_key)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# functions


def function_params(fn: FunctionImport, raw: dict[str, Any], *, literals: bool) -> dict[str, Any]:
    """Parameters by declared name (matched case-insensitively), coerced to their EDM types.

    `literals` means the values are URI literals (`'nb%3Ajid…'`, `1`) from a query string.
    """
    lowered = {k.lower(): v for k, v in raw.items()}
    out: dict[str, Any] = {}
    for p in fn.parameters:
        if p.name.lower() not in lowered:
            out[p.name] = None
            continue
        out[p.name] = _param_value(p, lowered[p.name.lower()], literals)
    return out


def _param_value(p: Parameter, value: Any, literals: bool) -> Any:
    try:
        if literals and isinstance(value, str):
            kind, parsed = parse_literal(value)
            if kind == "null":
                return None
            value = parsed
        return coerce_primitive(p.type, value)
    except ValueError as exc:
        raise BadRequest(f"Parameter {p.name}: {exc}") from None


def call(ctx: Ctx, fn: FunctionImport, params: dict[str, Any], bound: tuple[EntitySet, Any] | None) -> Any:
    if bound is not None:
        es, key = bound
        rules = _rules(es)
        entity = get(ctx, es, key)
        return rules.call(ctx, fn, entity, params)
    impl = unbound_function(fn.name)
    if impl is None:
        raise NotImplementedYet(f"The {fn.name} function")
    return impl(ctx, params)
