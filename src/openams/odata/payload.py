"""What payload readers produce and what payload writers are given, for every wire format.

Readers turn a request body into an `EntityPayload` of *raw* values (JSON natives, or XML text for
Atom) plus navigation bindings and inline (deep-insert) entities; the service then coerces the raw
values against the model with `values.coerce`, so every format gets the same lenient typing.

Writers turn entities (dicts of Python EDM values, see `values`) into bytes. They get a
`WriteContext` that knows the model and the absolute base URL the client used, so every URI in a
response (`__metadata.uri`, `odata.metadata`, Atom `id`/`xml:base`, `Location`) is absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from .edm import EntitySet, Model
from .values import format_literal

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_D = "http://schemas.microsoft.com/ado/2007/08/dataservices"
NS_M = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
NS_SCHEME = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
REL_RELATED = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"


@dataclass
class EntityPayload:
    """One entity as a client sent it.

    `properties` holds raw values keyed by the name the client used; `bindings` maps a navigation
    name to the URIs (absolute or relative, encoded or not) of entities to link; `inline` maps a
    navigation name to nested entities to create with this one (deep insert). `type_name` is the
    type the client declared, if any.
    """

    properties: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, list[str]] = field(default_factory=dict)
    inline: dict[str, list[EntityPayload]] = field(default_factory=dict)
    type_name: str | None = None


@dataclass
class WriteContext:
    """Everything a writer needs besides the data."""

    model: Model
    base_url: str
    """Absolute service root ending in '/', e.g. `http://127.0.0.1:8700/api/`."""
    select: Sequence[str] | None = None
    """Property names to write ($select); None writes all."""
    metadata: str = "minimal"
    """JSON light metadata level: `minimal`, `full` or `none`."""

    def entity_path(self, entity_set: EntitySet, key: Any) -> str:
        """`Assets('nb%3Acid%3AUUID%3A…')`: the key literal percent-encoded as the service emits it."""
        literal = format_literal(entity_set.entity_type.key_property.type, key)
        return f"{entity_set.name}({quote(literal, safe=chr(39))})"

    def entity_url(self, entity_set: EntitySet, key: Any) -> str:
        return self.base_url + self.entity_path(entity_set, key)

    def metadata_url(self, fragment: str = "") -> str:
        return self.base_url + "$metadata" + (f"#{fragment}" if fragment else "")


class Writer(Protocol):
    """A response format. Every method returns the body bytes."""

    content_type_entry: str
    content_type_feed: str

    def entry(self, ctx: WriteContext, entity_set: EntitySet, entity: dict[str, Any]) -> bytes: ...

    def feed(self, ctx: WriteContext, entity_set: EntitySet, entities: Sequence[dict[str, Any]],
             *, count: int | None = None, self_path: str | None = None) -> bytes:
        """A collection; `count` is written when `$inlinecount=allpages` was asked; `self_path` is
        the request path relative to the base (e.g. `Assets('…')/Files`), used for feed ids."""
        ...

    def property(self, ctx: WriteContext, name: str, type_name: str, value: Any,
                 *, collection: bool = False) -> bytes:
        """A single property (`Jobs('…')/State`); `type_name` is `Edm.*` or a qualified complex
        type name; complex values are dicts, collections lists."""
        ...

    def links(self, ctx: WriteContext, uris: Sequence[str], *, single: bool) -> bytes:
        """`$links` response: one `{"uri": …}` or a list of them."""
        ...

    def function_result(self, ctx: WriteContext, name: str, type_name: str, value: Any) -> bytes:
        """Result of a service operation returning a primitive."""
        ...

    def service_document(self, ctx: WriteContext) -> bytes: ...

    def error(self, code: str, message: str) -> bytes: ...
