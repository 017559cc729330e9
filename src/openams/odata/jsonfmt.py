"""JSON verbose and JSON light (minimal, full, no metadata): readers and writers.

Verbose is the OData v2-style `{"d": …}` envelope with `__metadata` and `__deferred` links and
`/Date(ms)/` dates; light is the v3 `odata.metadata` form with ISO dates. Both write Int64 and
Decimal as strings. The reader accepts both shapes and the lenient JSON real clients send
(single-quoted strings with raw newlines, unquoted property names) — see `lenient_json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidPayload
from .edm import ComplexType, EntitySet, EntityType, Model, Property
from .payload import EntityPayload, WriteContext
from .values import to_json

JSON_VERBOSE = "application/json;odata=verbose;charset=utf-8"


def _dumps(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _dumps_verbose(obj: Any) -> bytes:
    # Verbose dates are written as "\/Date(ms)\/" (escaped slashes), as WCF Data Services did;
    # some .NET JSON readers only recognise dates in that escaped form.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = text.replace('"/Date(', '"\\/Date(').replace(')/"', ')\\/"')
    return text.encode("utf-8")


# ------------------------------------------------------------------------------------------------
# shared value writing


def _complex_value(model: Model, ctype: ComplexType, value: dict[str, Any], verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if verbose:
        out["__metadata"] = {"type": model.qualified(ctype.name)}
    for p in ctype.properties:
        out[p.name] = _prop_value(model, p, value.get(p.name), verbose)
    return out


def _prop_value(model: Model, prop: Property, value: Any, verbose: bool) -> Any:
    if prop.collection:
        items = value or []
        if prop.is_complex:
            ctype = model.complex_type(prop.type)
            results = [_complex_value(model, ctype, v, verbose) for v in items]
        else:
            results = [to_json(prop.type, v, verbose=verbose) for v in items]
        if verbose:
            return {"__metadata": {"type": model.type_name(prop)}, "results": results}
        return results
    if value is None:
        return None
    if prop.is_complex:
        return _complex_value(model, model.complex_type(prop.type), value, verbose)
    return to_json(prop.type, value, verbose=verbose)


def _selected(et: EntityType, select: Sequence[str] | None) -> list[Property]:
    if not select:
        return list(et.properties)
    wanted = set(select)
    return [p for p in et.properties if p.name in wanted or p.name == et.key]


# ------------------------------------------------------------------------------------------------
# writers


class VerboseWriter:
    content_type_entry = JSON_VERBOSE
    content_type_feed = JSON_VERBOSE
    content_type_other = JSON_VERBOSE

    def _entity(self, ctx: WriteContext, es: EntitySet, entity: dict[str, Any]) -> dict[str, Any]:
        et = es.entity_type
        url = ctx.entity_url(es, entity[et.key])
        meta: dict[str, Any] = {"id": url, "uri": url, "type": ctx.model.qualified(et.name)}
        actions = ctx.model.functions_bound_to(es.name)
        if actions:
            meta["actions"] = {
                ctx.metadata_url(f"{ctx.model.container}.{f.name}"):
                    [{"title": f.name, "target": f"{url}/{f.name}"}]
                for f in actions
            }
        out: dict[str, Any] = {"__metadata": meta}
        if not ctx.select:
            for nav in et.navigations:
                out[nav.name] = {"__deferred": {"uri": f"{url}/{nav.name}"}}
        for p in _selected(et, ctx.select):
            out[p.name] = _prop_value(ctx.model, p, entity.get(p.name), True)
        return out

    def entry(self, ctx: WriteContext, entity_set: EntitySet, entity: dict[str, Any]) -> bytes:
        return _dumps_verbose({"d": self._entity(ctx, entity_set, entity)})

    def feed(self, ctx: WriteContext, entity_set: EntitySet, entities: Sequence[dict[str, Any]],
             *, count: int | None = None, self_path: str | None = None) -> bytes:
        d: dict[str, Any] = {}
        if count is not None:
            d["__count"] = str(count)
        d["results"] = [self._entity(ctx, entity_set, e) for e in entities]
        return _dumps_verbose({"d": d})

    def property(self, ctx: WriteContext, name: str, type_name: str, value: Any,
                 *, collection: bool = False) -> bytes:
        prop = Property(name, type_name.rsplit(".", 1)[-1] if not type_name.startswith("Edm.") else type_name,
                        collection=collection)
        return _dumps_verbose({"d": {name: _prop_value(ctx.model, prop, value, True)}})

    def links(self, ctx: WriteContext, uris: Sequence[str], *, single: bool) -> bytes:
        if single:
            return _dumps({"d": {"uri": uris[0]}})
        return _dumps({"d": {"results": [{"uri": u} for u in uris]}})

    def function_result(self, ctx: WriteContext, name: str, type_name: str, value: Any) -> bytes:
        return _dumps_verbose({"d": {name: to_json(type_name, value, verbose=True)}})

    def service_document(self, ctx: WriteContext) -> bytes:
        return _dumps({"d": {"EntitySets": [s.name for s in ctx.model.entity_sets]}})

    def error(self, code: str, message: str) -> bytes:
        return _dumps({"error": {"code": code, "message": {"lang": "en-US", "value": message}}})


class LightWriter:
    """JSON light. `ctx.metadata` picks minimal (default), full or none."""

    def __init__(self, metadata: str = "minimal") -> None:
        self.metadata = metadata
        ct = f"application/json;odata={metadata}metadata;streaming=true;charset=utf-8"
        self.content_type_entry = ct
        self.content_type_feed = ct
        self.content_type_other = ct

    def _entity(self, ctx: WriteContext, es: EntitySet, entity: dict[str, Any]) -> dict[str, Any]:
        et = es.entity_type
        out: dict[str, Any] = {}
        if self.metadata == "full":
            url = ctx.entity_url(es, entity[et.key])
            out["odata.type"] = ctx.model.qualified(et.name)
            out["odata.id"] = url
            out["odata.editLink"] = ctx.entity_path(es, entity[et.key])
            if not ctx.select:
                for nav in et.navigations:
                    link = f"{ctx.entity_path(es, entity[et.key])}/{nav.name}"
                    out[f"{nav.name}@odata.navigationLinkUrl"] = link
            for f in ctx.model.functions_bound_to(es.name):
                out[f"#{ctx.model.container}.{f.name}"] = {"target": f"{url}/{f.name}"}
        for p in _selected(et, ctx.select):
            out[p.name] = _prop_value(ctx.model, p, entity.get(p.name), False)
        return out

    def _meta(self, ctx: WriteContext, fragment: str) -> dict[str, Any]:
        return {} if self.metadata == "none" else {"odata.metadata": ctx.metadata_url(fragment)}

    def entry(self, ctx: WriteContext, entity_set: EntitySet, entity: dict[str, Any]) -> bytes:
        frag = f"{entity_set.name}/@Element"
        if ctx.select:
            frag = f"{entity_set.name}&$select={','.join(ctx.select)}/@Element"
        return _dumps({**self._meta(ctx, frag), **self._entity(ctx, entity_set, entity)})

    def feed(self, ctx: WriteContext, entity_set: EntitySet, entities: Sequence[dict[str, Any]],
             *, count: int | None = None, self_path: str | None = None) -> bytes:
        frag = entity_set.name + (f"&$select={','.join(ctx.select)}" if ctx.select else "")
        out: dict[str, Any] = self._meta(ctx, frag)
        if count is not None:
            out["odata.count"] = str(count)
        out["value"] = [self._entity(ctx, entity_set, e) for e in entities]
        return _dumps(out)

    def property(self, ctx: WriteContext, name: str, type_name: str, value: Any,
                 *, collection: bool = False) -> bytes:
        is_edm = type_name.startswith("Edm.")
        prop = Property(name, type_name if is_edm else type_name.rsplit(".", 1)[-1], collection=collection)
        frag = ctx.model.type_name(prop)
        return _dumps({**self._meta(ctx, frag), "value": _prop_value(ctx.model, prop, value, False)})

    def links(self, ctx: WriteContext, uris: Sequence[str], *, single: bool) -> bytes:
        if single:
            return _dumps({**self._meta(ctx, ""), "url": uris[0]})
        return _dumps({**self._meta(ctx, ""), "value": [{"url": u} for u in uris]})

    def function_result(self, ctx: WriteContext, name: str, type_name: str, value: Any) -> bytes:
        return _dumps({**self._meta(ctx, type_name), "value": to_json(type_name, value, verbose=False)})

    def service_document(self, ctx: WriteContext) -> bytes:
        return _dumps({
            "odata.metadata": ctx.metadata_url(),
            "value": [{"name": s.name, "url": s.name} for s in ctx.model.entity_sets],
        })

    def error(self, code: str, message: str) -> bytes:
        return _dumps({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}})


# ------------------------------------------------------------------------------------------------
# reading


def lenient_json(body: bytes) -> Any:
    """Parse JSON the way WCF Data Services accepted it.

    Strict JSON first; failing that, rewrite single-quoted strings (which may contain raw
    newlines) to double-quoted ones and quote bare property names, then parse non-strictly.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidPayload("The request body is not valid UTF-8.") from None
    try:
        try:
            data = json.loads(text, strict=False)
        except json.JSONDecodeError as first:
            try:
                data = json.loads(_relax(text), strict=False)
            except (json.JSONDecodeError, ValueError):
                where = f"line {first.lineno} column {first.colno}"
                raise InvalidPayload(f"The request body is not valid JSON: {first.msg} at {where}.") from None
        _check_text(data)
    except RecursionError:
        raise InvalidPayload("The request body is nested too deeply.") from None
    return data


_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _check_text(value: Any) -> None:
    """Refuse strings no store or writer can hold: NUL characters and unpaired surrogates (`\\ud800`)."""
    if isinstance(value, str):
        if _BAD_TEXT.search(value):
            raise InvalidPayload("The request body contains a NUL character (\\u0000) or an unpaired "
                                 "surrogate (\\ud800-\\udfff) in a string.")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)
    elif isinstance(value, list):
        for v in value:
            _check_text(v)


def _relax(text: str) -> str:
    """Rewrite single-quoted strings and bare keys into standard JSON (outside of strings)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != "'":
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append("'" if nxt == "'" else "\\" + nxt)
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            if j >= n:
                raise ValueError("unterminated single-quoted string")
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif c.isalpha() or c == "_" or c == "$":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_$.@"):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k] in " \t\r\n":
                k += 1
            if k < n and text[k] == ":" and word not in ("true", "false", "null"):
                out.append(f'"{word}"')
            else:
                out.append(word)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_entry(body: bytes, model: Model, entity_type: EntityType) -> EntityPayload:
    """Read one entity from a verbose or light JSON body."""
    data = lenient_json(body)
    if isinstance(data, dict) and set(data) == {"d"} and isinstance(data["d"], dict):
        data = data["d"]
    if not isinstance(data, dict):
        raise InvalidPayload("The request body must be a JSON object describing one entity.")
    return _read_object(data, model, entity_type)


def _read_object(data: dict[str, Any], model: Model, et: EntityType) -> EntityPayload:
    payload = EntityPayload()
    meta = data.get("__metadata")
    if isinstance(meta, dict) and isinstance(meta.get("type"), str):
        payload.type_name = meta["type"]
    if isinstance(data.get("odata.type"), str):
        payload.type_name = data["odata.type"]
    for key, value in data.items():
        if key in ("__metadata", "odata.type", "odata.metadata", "odata.id", "odata.editLink"):
            continue
        if key.endswith("@odata.bind"):
            nav_name = key[: -len("@odata.bind")]
            uris = value if isinstance(value, list) else [value]
            if not all(isinstance(u, str) for u in uris):
                raise InvalidPayload(f"{key} must be a URL or a list of URLs.")
            payload.bindings.setdefault(nav_name, []).extend(uris)
            continue
        if "@odata." in key or key.startswith("#"):
            continue  # annotations such as navigationLinkUrl that clients echo back
        nav = et.navigation(key)
        if nav is None:
            payload.properties[key] = value
            continue
        _read_navigation(payload, nav.name, value, model)
    return payload


def _read_navigation(payload: EntityPayload, name: str, value: Any, model: Model) -> None:
    items: list[Any]
    if value is None:
        return
    if isinstance(value, dict) and "__deferred" in value:
        return
    if isinstance(value, dict) and "results" in value and isinstance(value["results"], list):
        items = value["results"]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    for item in items:
        if isinstance(item, str):
            payload.bindings.setdefault(name, []).append(item)
            continue
        if not isinstance(item, dict):
            raise InvalidPayload(f"{name}: expected entity references or entities.")
        meta = item.get("__metadata")
        others = [k for k in item if k != "__metadata"]
        if isinstance(meta, dict) and isinstance(meta.get("uri"), str) and not others:
            payload.bindings.setdefault(name, []).append(meta["uri"])
        elif set(item) == {"uri"} and isinstance(item["uri"], str):
            payload.bindings.setdefault(name, []).append(item["uri"])
        else:
            payload.inline.setdefault(name, []).append(EntityPayload(properties=dict(item)))


def read_nested(payload: EntityPayload, model: Model, entity_type: EntityType) -> EntityPayload:
    """Interpret an inline entity's raw properties against its own type (deep insert)."""
    return _read_object(payload.properties, model, entity_type)


def read_link(body: bytes) -> str:
    """`$links` body: `{"uri": …}` (verbose/light) or `{"url": …}` (v3 light)."""
    data = lenient_json(body)
    if isinstance(data, dict) and set(data) == {"d"}:
        data = data["d"]
    if isinstance(data, dict):
        for key in ("uri", "url"):
            if isinstance(data.get(key), str):
                return data[key]
    raise InvalidPayload('A $links body must be {"uri": "<entity URL>"}.')


def read_parameters(body: bytes) -> dict[str, Any]:
    """Action parameters from a JSON body (`{"keyDeliveryType": 2}`); empty body → {}."""
    if not body.strip():
        return {}
    data = lenient_json(body)
    if not isinstance(data, dict):
        raise InvalidPayload("Action parameters must be a JSON object.")
    return data
