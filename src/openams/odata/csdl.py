"""`$metadata`: the CSDL (EDMX 1.0, OData v3) document of a `Model`.

Generic: everything is derived from the model's declarations. Associations are not declared in
the model; each navigation property gets its own association (`<Type>_<Navigation>`) whose ends
are the declaring type (role named after it) and the target type (role named after the
navigation). Multiplicities follow the storage form: the target end is `*` for collections and
`0..1` for single-valued navigations; the source end is `0..1` when the target holds the foreign
key (`reverse_fk`, one parent) and `*` otherwise.

Service operations carry `m:HttpMethod`; actions bound to an entity set are written as bindable
function imports whose first parameter is the binding entity (named after its type in camel case).

`write_csdl` is a pure function of the model (no clock, no ordering from hashing), so its result
can be cached and given a strong ETag by the caller.
"""

from __future__ import annotations

from lxml import etree

from .edm import EntitySet, EntityType, FunctionImport, Model, NavigationProperty, is_primitive

NS_EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
NS_EDM = "http://schemas.microsoft.com/ado/2009/11/edm"
NS_M = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'

_EDMX = f"{{{NS_EDMX}}}"
_EDM = f"{{{NS_EDM}}}"
_M = f"{{{NS_M}}}"


def write_csdl(model: Model) -> bytes:
    """The EDMX document describing `model`, UTF-8 encoded with an XML declaration."""
    root = etree.Element(_EDMX + "Edmx", nsmap={"edmx": NS_EDMX})
    root.set("Version", "1.0")
    services = etree.SubElement(root, _EDMX + "DataServices", nsmap={"m": NS_M})
    services.set(_M + "DataServiceVersion", "3.0")
    services.set(_M + "MaxDataServiceVersion", "3.0")
    schema = etree.SubElement(services, _EDM + "Schema", nsmap={None: NS_EDM})
    schema.set("Namespace", model.namespace)

    entity_types = list(model.entity_types())
    for et in entity_types:
        _entity_type(schema, model, et)
    for ct in model.complex_types:
        el = _sub(schema, "ComplexType", Name=ct.name)
        for p in ct.properties:
            _property(el, model, p)
    for et in entity_types:
        for nav in et.navigations:
            _association(schema, model, et, nav)

    container = _sub(schema, "EntityContainer", Name=model.container)
    container.set(_M + "IsDefaultEntityContainer", "true")
    for es in model.entity_sets:
        _sub(container, "EntitySet", Name=es.name, EntityType=model.qualified(es.entity_type.name))
    for es in model.entity_sets:
        for nav in es.entity_type.navigations:
            _association_set(container, model, es, nav)
    for fn in model.functions:
        _function_import(container, model, fn)

    return XML_DECLARATION + etree.tostring(root, encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# names shared by the association, the navigation property and the association set


def association_name(et: EntityType, nav: NavigationProperty) -> str:
    return f"{et.name}_{nav.name}"


def association_roles(et: EntityType, nav: NavigationProperty) -> tuple[str, str]:
    """(from role, to role); distinct even for a navigation named like its declaring type."""
    to_role = nav.name if nav.name != et.name else f"{nav.name}Target"
    return et.name, to_role


def association_set_name(es: EntitySet, nav: NavigationProperty) -> str:
    return f"{es.name}_{nav.name}"


def binding_parameter_name(type_name: str) -> str:
    """`ContentKey` → `contentKey`: the name of a bound action's binding parameter."""
    return type_name[:1].lower() + type_name[1:]


# ------------------------------------------------------------------------------------------------
# elements


def _sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, _EDM + tag)
    for name, value in attrs.items():
        el.set(name, value)
    return el


def _entity_type(schema: etree._Element, model: Model, et: EntityType) -> None:
    el = _sub(schema, "EntityType", Name=et.name)
    key = _sub(el, "Key")
    _sub(key, "PropertyRef", Name=et.key)
    for p in et.properties:
        _property(el, model, p, is_key=p.name == et.key)
    for nav in et.navigations:
        from_role, to_role = association_roles(et, nav)
        _sub(
            el,
            "NavigationProperty",
            Name=nav.name,
            Relationship=model.qualified(association_name(et, nav)),
            FromRole=from_role,
            ToRole=to_role,
        )


def _property(parent: etree._Element, model: Model, prop, *, is_key: bool = False) -> None:
    # OData v3 collections are never null, and keys never are
    nullable = prop.nullable and not prop.collection and not is_key
    el = _sub(parent, "Property", Name=prop.name, Type=model.type_name(prop))
    el.set("Nullable", "true" if nullable else "false")
    if prop.max_length is not None:
        el.set("MaxLength", str(prop.max_length))


def _target_type(model: Model, nav: NavigationProperty) -> EntityType:
    target = model.entity_set(nav.target)
    if target is None:
        raise ValueError(f"navigation {nav.name}: unknown target set {nav.target}")
    return target.entity_type


def _association(schema: etree._Element, model: Model, et: EntityType, nav: NavigationProperty) -> None:
    target = _target_type(model, nav)
    from_role, to_role = association_roles(et, nav)
    source_multiplicity = "0..1" if nav.reverse_fk else "*"
    target_multiplicity = "*" if nav.many else "0..1"
    el = _sub(schema, "Association", Name=association_name(et, nav))
    _sub(el, "End", Type=model.qualified(et.name), Role=from_role, Multiplicity=source_multiplicity)
    _sub(el, "End", Type=model.qualified(target.name), Role=to_role, Multiplicity=target_multiplicity)


def _association_set(container: etree._Element, model: Model, es: EntitySet, nav: NavigationProperty) -> None:
    from_role, to_role = association_roles(es.entity_type, nav)
    el = _sub(
        container,
        "AssociationSet",
        Name=association_set_name(es, nav),
        Association=model.qualified(association_name(es.entity_type, nav)),
    )
    _sub(el, "End", Role=from_role, EntitySet=es.name)
    _sub(el, "End", Role=to_role, EntitySet=nav.target)


def _qualify_type(model: Model, type_name: str) -> str:
    """Qualify a short complex/entity type name, also inside `Collection(...)`."""
    if type_name.startswith("Collection(") and type_name.endswith(")"):
        return f"Collection({_qualify_type(model, type_name[len('Collection('):-1])})"
    if is_primitive(type_name) or "." in type_name:
        return type_name
    return model.qualified(type_name)


def _function_import(container: etree._Element, model: Model, fn: FunctionImport) -> None:
    el = _sub(container, "FunctionImport", Name=fn.name)
    if fn.return_type:
        el.set("ReturnType", _qualify_type(model, fn.return_type))
    if fn.binding is None:
        el.set(_M + "HttpMethod", fn.http_method)
    else:
        bound = model.entity_set(fn.binding)
        if bound is None:
            raise ValueError(f"function {fn.name}: unknown binding set {fn.binding}")
        el.set("IsSideEffecting", "true" if fn.side_effecting else "false")
        el.set("IsBindable", "true")
        el.set(_M + "IsAlwaysBindable", "true")
        type_name = bound.entity_type.name
        _sub(el, "Parameter", Name=binding_parameter_name(type_name), Type=model.qualified(type_name),
             Mode="In")
    for param in fn.parameters:
        _sub(el, "Parameter", Name=param.name, Type=_qualify_type(model, param.type), Mode="In")
