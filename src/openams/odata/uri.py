"""Resource paths: `Set`, `Set()`, `Set('key')`, `/Nav`, `/Prop`, `/Prop/$value`, `/$count`,
`/$links/Nav`, `/$links/Nav('key')`, bound actions and service operations.

The parser works on the path *after* the service root and after the whole path has been
percent-decoded (clients send keys raw, encoded, or doubly wrapped as `%2FFiles%28%27…`). Keys are
literals (`'nb:cid:UUID:…'` with `''` escaping, `guid'…'`, numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import InvalidKey, NotFound
from .edm import EntitySet, FunctionImport, Model
from .values import coerce_primitive, parse_literal

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


@dataclass
class ResourcePath:
    """What a request path addresses.

    kind: `service` (root), `metadata`, `batch`, `function` (unbound service operation),
    `set` (a collection), `entity`, `property`, `value` (`/$value`), `count`, `links`, `action`.
    """

    kind: str
    entity_set: EntitySet | None = None
    key: Any = None
    navigation: list[tuple[str, Any]] = field(default_factory=list)
    """Navigation steps after the first `Set('key')`: (nav name, key or None)."""
    property: str | None = None
    links_nav: str | None = None
    links_key: Any = None
    function: FunctionImport | None = None
    count: bool = False


def decode_path(raw: str) -> str:
    """Percent-decode a path fully and collapse repeated slashes.

    Some clients encode an already-encoded URL, so decoding repeats while it changes (at most
    three rounds, enough for every client seen and bounded against abuse).
    """
    path = raw
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    while "//" in path:
        path = path.replace("//", "/")
    return path


def _split_segments(path: str) -> list[str]:
    """Split on '/' outside of quoted key literals (keys may contain '/')."""
    segs: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in path:
        if ch == "'":
            quoted = not quoted
        if ch == "/" and not quoted:
            segs.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    segs.append("".join(cur))
    return [s for s in segs if s != ""]


def _name_and_key(segment: str) -> tuple[str, str | None]:
    """`Assets('x')` → ('Assets', "'x'"); `Assets()` → ('Assets', ''); `Assets` → ('Assets', None)."""
    if "(" in segment and segment.endswith(")"):
        i = segment.index("(")
        return segment[:i], segment[i + 1:-1]
    return segment, None


def parse_key(entity_set: EntitySet, text: str) -> Any:
    """Read a key literal for `entity_set` (`'nb:cid:UUID:…'`, `guid'…'`, `Id='…'`)."""
    kp = entity_set.entity_type.key_property
    t = text.strip()
    if "=" in t and not t.startswith("'"):
        name, _, t = t.partition("=")
        if name.strip() != kp.name:
            raise InvalidKey(f"'{name.strip()}' is not the key of {entity_set.name} (the key is {kp.name}).")
    try:
        literal_type, value = parse_literal(t)
    except ValueError:
        # be lenient with an unquoted string key (`Assets(nb:cid:UUID:…)`)
        if kp.type == "Edm.String" and t and "'" not in t:
            return t
        raise InvalidKey(f"'{text}' is not a valid key for {entity_set.name}.") from None
    if literal_type == "null":
        raise InvalidKey(f"A key of {entity_set.name} cannot be null.")
    try:
        if kp.type == "Edm.String" and literal_type != "Edm.String":
            raise ValueError
        return coerce_primitive(kp.type, value)
    except ValueError:
        raise InvalidKey(f"'{text}' is not a valid key for {entity_set.name} ({kp.type}).") from None


def parse_path(model: Model, path: str) -> ResourcePath:
    """Parse a decoded path relative to the service root."""
    segs = _split_segments(path)
    if not segs:
        return ResourcePath("service")
    head = segs[0]
    if head == "$metadata" and len(segs) == 1:
        return ResourcePath("metadata")
    if head == "$batch" and len(segs) == 1:
        return ResourcePath("batch")
    name, key_text = _name_and_key(head)
    es = model.entity_set(name)
    if es is None:
        fn = model.function(name)
        if fn is not None and len(segs) == 1 and not key_text:
            return ResourcePath("function", function=fn)
        raise NotFound(f"Resource not found for the segment '{name}'.", code="ResourceNotFound")
    rp = ResourcePath("set", entity_set=es)
    if key_text:
        rp.kind = "entity"
        rp.key = parse_key(es, key_text)
    rest = segs[1:]
    current = es
    i = 0
    while i < len(rest):
        seg = rest[i]
        if seg == "$count":
            if rp.kind not in ("set",) or i != len(rest) - 1:
                raise NotFound("$count must follow a collection.", code="ResourceNotFound")
            rp.count = True
            rp.kind = "count"
            return rp
        if rp.kind == "set":
            raise NotFound(f"'{seg}' cannot follow a collection; address one entity by key first.")
        if seg == "$links":
            if i + 1 >= len(rest):
                raise NotFound("$links must name a navigation property.")
            nav_name, nav_key = _name_and_key(rest[i + 1])
            nav = current.entity_type.navigation(nav_name)
            if nav is None:
                raise NotFound(f"'{nav_name}' is not a navigation property of {current.entity_type.name}.")
            rp.kind = "links"
            rp.links_nav = nav.name
            if nav_key:
                rp.links_key = parse_key(model.entity_set(nav.target), nav_key)  # type: ignore[arg-type]
            if i + 2 != len(rest):
                raise NotFound("Nothing may follow $links/<Nav>.")
            return rp
        name, key_text = _name_and_key(seg)
        et = current.entity_type
        nav = et.navigation(name)
        if nav is not None:
            target = model.entity_set(nav.target)
            assert target is not None
            nav_key = parse_key(target, key_text) if key_text else None
            rp.navigation.append((nav.name, nav_key))
            current = target
            rp.kind = "entity" if (not nav.many or nav_key is not None) else "set"
            i += 1
            continue
        prop = et.property(name)
        if prop is not None and key_text is None:
            rp.kind = "property"
            rp.property = prop.name
            if i + 1 < len(rest):
                if rest[i + 1] == "$value" and i + 2 == len(rest):
                    rp.kind = "value"
                    return rp
                raise NotFound(f"Nothing may follow the property '{prop.name}' except $value.")
            return rp
        fn = model.function(name, binding=current.name)
        if fn is not None and i == len(rest) - 1:
            rp.kind = "action"
            rp.function = fn
            return rp
        raise NotFound(f"'{name}' is not a property, navigation or action of {et.name}.")
    return rp


def target_set(model: Model, rp: ResourcePath) -> EntitySet:
    """The entity set of the entities a path finally addresses."""
    current = rp.entity_set
    assert current is not None
    for nav_name, _ in rp.navigation:
        nav = current.entity_type.navigation(nav_name)
        assert nav is not None
        nxt = model.entity_set(nav.target)
        assert nxt is not None
        current = nxt
    return current


def key_from_url(model: Model, base_url: str, url: str) -> tuple[EntitySet, Any]:
    """Resolve an entity URL (absolute or relative, encoded or not) to (set, key).

    Used for bindings (`__metadata.uri`, `@odata.bind`, Atom links, `$links` bodies).
    """
    text = decode_path(url.strip())
    base = decode_path(base_url)
    low = text.lower()
    base_path = decode_path(urlsplit(base_url).path or "/")  # `/api/`: root-relative URLs
    for prefix in (base, base.rstrip("/"), base_path):
        if prefix != "/" and low.startswith(prefix.lower()):
            text = text[len(prefix):]
            break
    else:
        if _ABSOLUTE.match(text):  # `scheme:/host/…` once decode_path collapsed the `//`
            # another host or base: take what follows the first '/api/' (case-insensitive)
            idx = low.find("/api/")
            if idx < 0:
                raise InvalidKey(f"'{url}' is not a URL of this service.")
            text = text[idx + 5:]
    text = text.lstrip("/")
    rp = parse_path(model, text)
    if rp.kind != "entity" or rp.navigation or rp.entity_set is None:
        raise InvalidKey(f"'{url}' does not address a single entity.")
    return rp.entity_set, rp.key
