"""EDM model types: the vocabulary an OData v3 service is described in.

A service declares its entity types, complex types, entity sets and function imports once with
these classes; `$metadata`, payload readers and writers, `$filter` column mapping and the database
tables are all derived from that one declaration. Nothing here knows about any particular service.

Besides the pure EDM facts (names, types, keys, navigation) a property carries a few generic
service annotations that every OData server needs to apply create/update rules: whether the server
computes it, whether it may change after creation, whether it is required, and its default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PRIMITIVE_TYPES: frozenset[str] = frozenset(
    {
        "Edm.String",
        "Edm.Boolean",
        "Edm.Byte",
        "Edm.SByte",
        "Edm.Int16",
        "Edm.Int32",
        "Edm.Int64",
        "Edm.Single",
        "Edm.Double",
        "Edm.Decimal",
        "Edm.DateTime",
        "Edm.DateTimeOffset",
        "Edm.Time",
        "Edm.Guid",
        "Edm.Binary",
    }
)

INTEGER_TYPES: frozenset[str] = frozenset({"Edm.Byte", "Edm.SByte", "Edm.Int16", "Edm.Int32", "Edm.Int64"})


def is_primitive(type_name: str) -> bool:
    return type_name in PRIMITIVE_TYPES


@dataclass(frozen=True)
class Property:
    """A structural property of an entity or complex type.

    `type` is an `Edm.*` primitive name or the short name of a complex type of the same schema.
    `collection` makes it `Collection(type)`.
    """

    name: str
    type: str = "Edm.String"
    collection: bool = False
    nullable: bool = True
    max_length: int | None = None
    computed: bool = False
    """Set by the server; values sent by clients are ignored on create and on update."""
    immutable: bool = False
    """May be given on create; an update that changes it is refused."""
    required: bool = False
    """Must be present (and not null) on create."""
    default: Any = None
    """Value stored when a create omits the property (copied for mutable defaults)."""
    enum: Mapping[str, int] | None = None
    """Allowed values by name, for validation and documentation; None means any value of the type."""
    description: str = ""

    @property
    def is_complex(self) -> bool:
        return not is_primitive(self.type)


@dataclass(frozen=True)
class NavigationProperty:
    """A navigation property and the way the relation is stored.

    Exactly one storage form is used:
    * `fk`: a property of this entity holds the target's key (a single-valued navigation);
    * `reverse_fk`: a property of the target entity holds this entity's key (a collection);
    * `link`: a named link table holds (source key, target key) pairs.
    """

    name: str
    target: str
    """Name of the target entity set."""
    many: bool = True
    fk: str | None = None
    reverse_fk: str | None = None
    link: str | None = None
    linkable: bool = False
    """Clients may add or remove links with `$links/<Nav>`."""
    bindable: bool = True
    """Clients may bind it in a create payload (`__metadata.uri`, `@odata.bind`, Atom link)."""

    def __post_init__(self) -> None:
        forms = [x for x in (self.fk, self.reverse_fk, self.link) if x]
        if len(forms) != 1:
            raise ValueError(f"navigation {self.name}: give exactly one of fk, reverse_fk, link")


@dataclass(frozen=True)
class ComplexType:
    name: str
    properties: tuple[Property, ...]

    def property(self, name: str) -> Property | None:
        for p in self.properties:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class EntityType:
    name: str
    key: str
    properties: tuple[Property, ...]
    navigations: tuple[NavigationProperty, ...] = ()
    key_prefix: str | None = None
    """Server-generated keys are `key_prefix + <uuid4>`; None means the key is not generated."""

    @property
    def key_property(self) -> Property:
        prop = _find(self.properties, self.key)
        assert prop is not None, f"{self.name}: key {self.key} is not a property"
        return prop

    def property(self, name: str) -> Property | None:
        return _find(self.properties, name)

    def navigation(self, name: str) -> NavigationProperty | None:
        return _find(self.navigations, name)


@dataclass(frozen=True)
class EntitySet:
    name: str
    entity_type: EntityType


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "Edm.String"
    nullable: bool = True


@dataclass(frozen=True)
class FunctionImport:
    """A service operation or action.

    `binding` is the entity set an action is bound to (`POST Set('key')/Name`); None for unbound
    functions called as `GET /Name?param=literal`.
    """

    name: str
    parameters: tuple[Parameter, ...] = ()
    return_type: str | None = None
    http_method: str = "GET"
    binding: str | None = None
    side_effecting: bool = True


@dataclass
class Model:
    """A whole service: one schema namespace and one entity container."""

    namespace: str
    container: str
    entity_sets: list[EntitySet] = field(default_factory=list)
    complex_types: list[ComplexType] = field(default_factory=list)
    functions: list[FunctionImport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sets = {s.name: s for s in self.entity_sets}
        self._sets_ci = {s.name.lower(): s for s in self.entity_sets}
        self._complex = {c.name: c for c in self.complex_types}
        self._functions: dict[str, list[FunctionImport]] = {}
        for f in self.functions:
            self._functions.setdefault(f.name.lower(), []).append(f)

    # lookups ----------------------------------------------------------------------------------
    def entity_set(self, name: str) -> EntitySet | None:
        return self._sets.get(name) or self._sets_ci.get(name.lower())

    def complex_type(self, name: str) -> ComplexType:
        short = name.rsplit(".", 1)[-1]
        try:
            return self._complex[short]
        except KeyError:
            raise KeyError(f"unknown complex type {name}") from None

    def function(self, name: str, binding: str | None = None) -> FunctionImport | None:
        for f in self._functions.get(name.lower(), []):
            if f.binding == binding:
                return f
        return None

    def functions_bound_to(self, set_name: str) -> list[FunctionImport]:
        return [f for f in self.functions if f.binding == set_name]

    def qualified(self, short_name: str) -> str:
        """`Asset` → `<namespace>.Asset`."""
        return f"{self.namespace}.{short_name}"

    def type_name(self, prop: Property) -> str:
        """The EDM type name of a property as written in CSDL and payloads."""
        base = prop.type if not prop.is_complex else self.qualified(prop.type)
        return f"Collection({base})" if prop.collection else base

    def entity_types(self) -> Iterable[EntityType]:
        seen: set[str] = set()
        for s in self.entity_sets:
            if s.entity_type.name not in seen:
                seen.add(s.entity_type.name)
                yield s.entity_type

    def validate(self) -> None:
        """Check internal consistency: navigation targets, fk properties and complex types exist."""
        for s in self.entity_sets:
            et = s.entity_type
            if et.property(et.key) is None:
                raise ValueError(f"{et.name}: key {et.key} not declared")
            for p in et.properties:
                if p.is_complex:
                    self.complex_type(p.type)
            for n in et.navigations:
                target = self._sets.get(n.target)
                if target is None:
                    raise ValueError(f"{et.name}.{n.name}: unknown target set {n.target}")
                if n.fk and et.property(n.fk) is None:
                    raise ValueError(f"{et.name}.{n.name}: fk {n.fk} not a property")
                if n.reverse_fk and target.entity_type.property(n.reverse_fk) is None:
                    raise ValueError(f"{et.name}.{n.name}: reverse fk {n.reverse_fk} not on {n.target}")
        for c in self.complex_types:
            for p in c.properties:
                if p.is_complex:
                    self.complex_type(p.type)


def _find(items: Iterable[Any], name: str) -> Any:
    for item in items:
        if item.name == name:
            return item
    lowered = name.lower()
    for item in items:
        if item.name.lower() == lowered:
            return item
    return None
