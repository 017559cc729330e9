"""The Operations API request executor: one parsed HTTP request in, one reply out.

Runs synchronously inside a database transaction opened by the caller (one per request, or one per
`$batch` changeset), so a failure anywhere rolls back everything the request wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..entities import service
from ..entities.base import Ctx
from ..errors import ApiError, BadRequest, InvalidQuery, MethodNotAllowed, NotFound
from ..model import MODEL
from ..odata import atom, jsonfmt, query
from ..odata.batch import BatchRequest, BatchResponse, ChangeSet, parse_batch, resolve_reference, write_batch
from ..odata.csdl import write_csdl
from ..odata.payload import EntityPayload, WriteContext
from ..odata.uri import ResourcePath, decode_path, parse_path, target_set
from ..odata.values import to_text
from .negotiate import body_kind, choose_writer, content_type

DSV = "3.0;"
MAX_INT32 = 2**31 - 1
"""$top and $skip are Int32 in WCF Data Services (larger values also overflow SQL OFFSET)."""
SYSTEM_OPTIONS = {"$filter", "$orderby", "$top", "$skip", "$select", "$inlinecount", "$format", "$expand",
                  "$skiptoken"}


@dataclass
class ApiRequest:
    method: str
    path: str
    """Percent-decoded path relative to the service root (no leading slash)."""
    query: list[tuple[str, str]]
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes
    base_url: str
    """Absolute service root, ending in '/'."""


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@cache
def metadata_document() -> bytes:
    return write_csdl(MODEL)


def _writer(req: ApiRequest) -> Any:
    fmt = next((v for k, v in req.query if k == "$format"), None)
    return choose_writer(req.headers.get("accept"), fmt, req.headers.get("maxdataserviceversion"))


def error_reply(req_headers: dict[str, str], query_pairs: list[tuple[str, str]], exc: ApiError) -> Reply:
    """An OData error body in the format the client asked for (Atom/XML when that cannot be told)."""
    try:
        fmt = next((v for k, v in query_pairs if k == "$format"), None)
        writer = choose_writer(req_headers.get("accept"), fmt, req_headers.get("maxdataserviceversion"))
    except ApiError:
        writer = choose_writer(None)
    headers = [("Content-Type", content_type(writer, "error")), ("DataServiceVersion", "1.0;"),
               *exc.headers.items()]
    return Reply(exc.status, headers, writer.error(exc.code, exc.message))


def _options(req: ApiRequest) -> tuple[service.QueryOptions, dict[str, str]]:
    opts = service.QueryOptions()
    params: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in req.query:
        if not name.startswith("$"):
            params[name] = value
            continue
        if name not in SYSTEM_OPTIONS:
            raise InvalidQuery(f"Unknown query option '{name}'.")
        if name in seen:
            raise InvalidQuery(f"Query option '{name}' is given more than once.")
        seen.add(name)
        if name == "$filter":
            opts.filter = value
        elif name == "$orderby":
            opts.orderby = value
        elif name in ("$top", "$skip"):
            if not value.strip().isdigit():
                raise InvalidQuery(f"{name} must be a non-negative integer, not '{value}'.")
            if int(value) > MAX_INT32:
                raise InvalidQuery(f"{name} must be at most {MAX_INT32}, not {value.strip()}.")
            setattr(opts, name[1:], int(value))
        elif name == "$select":
            opts.select = query.parse_select(value)
        elif name == "$inlinecount":
            if value not in ("allpages", "none"):
                raise InvalidQuery("$inlinecount must be 'allpages' or 'none'.")
            opts.inlinecount = value == "allpages"
        elif name == "$expand":
            raise InvalidQuery("$expand is not supported by Media Services; request related entities by URL.")
    return opts, params


def _read_payload(req: ApiRequest, ctx: Ctx, rp: ResourcePath) -> EntityPayload:
    if not req.body.strip():
        raise BadRequest("The request body is empty; send the entity as JSON or Atom.", code="InvalidPayload")
    kind = body_kind(req.headers.get("content-type"), req.body)
    if kind == "json":
        es = target_set(ctx.model, rp)
        return jsonfmt.read_entry(req.body, ctx.model, es.entity_type)
    return atom.read_entry(req.body, ctx.model)


def _read_link_body(req: ApiRequest) -> str:
    kind = body_kind(req.headers.get("content-type"), req.body)
    return jsonfmt.read_link(req.body) if kind == "json" else atom.read_link(req.body)


def _check_select(rp_set: Any, select: list[str] | None) -> None:
    if not select:
        return
    et = rp_set.entity_type
    for name in select:
        if et.property(name) is None and et.navigation(name) is None:
            raise InvalidQuery(f"$select: '{name}' is not a property of {et.name}.")


def _check_url_text(req: ApiRequest) -> None:
    """No key, name or literal contains control characters; a NUL also breaks PostgreSQL text."""
    if any(ord(c) < 32 or ord(c) == 127 for c in req.path):
        raise BadRequest("The URL path contains control characters (such as %00).")
    if any("\x00" in k or "\x00" in v for k, v in req.query):
        raise BadRequest("The query string contains a NUL character (%00).")


def execute(ctx: Ctx, req: ApiRequest) -> Reply:
    """Serve one request (no `$batch`) against the caller's transaction."""
    method = req.method.upper()
    _check_url_text(req)
    if method == "POST" and req.headers.get("x-http-method"):
        method = req.headers["x-http-method"].strip().upper()
    rp = parse_path(ctx.model, req.path)
    opts, params = _options(req)
    writer = _writer(req)
    wctx = WriteContext(ctx.model, req.base_url, select=opts.select,
                        metadata=getattr(writer, "metadata", "minimal"))
    head = method == "HEAD"
    if head:
        method = "GET"

    def ok(status: int, body: bytes, kind: str, extra: list[tuple[str, str]] | None = None) -> Reply:
        headers = [("Content-Type", content_type(writer, kind)), ("DataServiceVersion", DSV), *(extra or [])]
        return Reply(status, headers, b"" if head else body)

    if rp.kind == "service":
        if method != "GET":
            raise MethodNotAllowed("The service document is read-only.")
        return ok(200, writer.service_document(wctx), "service")
    if rp.kind == "batch":
        raise MethodNotAllowed("$batch takes POST with a multipart/mixed body.")
    if rp.kind == "metadata":
        if method != "GET":
            raise MethodNotAllowed("$metadata is read-only.")
        return Reply(200, [("Content-Type", "application/xml;charset=utf-8"), ("DataServiceVersion", DSV)],
                     b"" if head else metadata_document())
    if rp.kind == "function":
        fn = rp.function
        assert fn is not None
        values = service.function_params(fn, dict(params), literals=True)
        if method == "POST" and req.body.strip():
            from_body = service.function_params(fn, jsonfmt.read_parameters(req.body), literals=False)
            values.update({k: v for k, v in from_body.items() if v is not None})
        result = service.call(ctx, fn, values, None)
        if fn.return_type is None or result is None:
            return Reply(204, [("DataServiceVersion", DSV)])
        return ok(200, writer.function_result(wctx, fn.name, fn.return_type, result), "function")

    es = rp.entity_set
    assert es is not None
    if method == "GET":
        return _get(ctx, rp, opts, writer, wctx, ok)
    if method == "POST":
        if rp.kind == "set" and rp.key is None:
            entity = service.create(ctx, es, _read_payload(req, ctx, rp))
            return _created(ctx, es, entity, writer, wctx, ok, req)
        if rp.kind == "set":
            target, entity = service.create_related(ctx, rp, _read_payload(req, ctx, rp))
            return _created(ctx, target, entity, writer, wctx, ok, req)
        if rp.kind == "links":
            if rp.links_key is not None:
                raise MethodNotAllowed("POST a link to $links/<Nav>, without a key.")
            service.add_link(ctx, es, rp.key, rp.links_nav or "", _read_link_body(req))
            return Reply(204, [("DataServiceVersion", DSV)])
        if rp.kind == "action":
            fn = rp.function
            assert fn is not None
            raw = jsonfmt.read_parameters(req.body) if req.body.strip() else {}
            raw.update(params)
            result = service.call(ctx, fn, service.function_params(fn, raw, literals=False), (es, rp.key))
            if ctx.operation_id:
                return _accepted(ctx)
            if fn.return_type is None or result is None:
                return Reply(204, [("DataServiceVersion", DSV)])
            return ok(200, writer.function_result(wctx, fn.name, fn.return_type, result), "function")
        raise MethodNotAllowed("POST creates entities in a collection or calls an action.")
    if method in ("MERGE", "PATCH", "PUT"):
        if rp.kind != "entity" or rp.navigation:
            raise MethodNotAllowed(f"{method} updates one entity addressed as Set('key').")
        service.update(ctx, es, rp.key, _read_payload(req, ctx, rp), replace=method == "PUT",
                       if_match=req.headers.get("if-match"))
        return _accepted(ctx) if ctx.operation_id else Reply(204, [("DataServiceVersion", DSV)])
    if method == "DELETE":
        if rp.kind == "links":
            service.remove_link(ctx, es, rp.key, rp.links_nav or "", rp.links_key)
            return Reply(204, [("DataServiceVersion", DSV)])
        if rp.kind != "entity" or rp.navigation:
            raise MethodNotAllowed("DELETE removes one entity addressed as Set('key').")
        service.delete(ctx, es, rp.key, params, if_match=req.headers.get("if-match"))
        return _accepted(ctx) if ctx.operation_id else Reply(204, [("DataServiceVersion", DSV)])
    raise MethodNotAllowed(f"The method {method} is not supported.")


def _accepted(ctx: Ctx) -> Reply:
    """202: the request started a long-running operation; the client polls Operations('<id>')."""
    assert ctx.operation_id
    return Reply(202, [("DataServiceVersion", DSV), ("operation-id", ctx.operation_id)])


def _created(ctx: Ctx, es: Any, entity: dict[str, Any], writer: Any, wctx: WriteContext, ok: Any,
             req: ApiRequest) -> Reply:
    location = wctx.entity_url(es, entity[es.entity_type.key])
    extra = [("Location", location), ("ETag", service.etag(entity))]
    status = 201
    if ctx.operation_id:  # long-running create: 202 + operation-id, with the entity as created
        extra.append(("operation-id", ctx.operation_id))
        status = 202
    if "return-no-content" in req.headers.get("prefer", ""):
        return Reply(204 if status == 201 else status,
                     [("DataServiceVersion", DSV), *extra, ("Preference-Applied", "return-no-content")])
    return ok(status, writer.entry(wctx, es, entity), "entry", extra)


def _get(ctx: Ctx, rp: ResourcePath, opts: service.QueryOptions, writer: Any, wctx: WriteContext, ok: Any
         ) -> Reply:
    assert rp.entity_set is not None
    if rp.kind == "count":
        n = service.count(ctx, rp, opts)
        return Reply(200, [("Content-Type", "text/plain;charset=utf-8"), ("DataServiceVersion", DSV)],
                     str(n).encode())
    if rp.kind == "links":
        target, keys = service.related_keys(ctx, rp.entity_set, rp.key, rp.links_nav or "")
        if rp.links_key is not None:
            if rp.links_key not in keys:
                raise NotFound("That entity is not linked.")
            keys = [rp.links_key]
        nav = rp.entity_set.entity_type.navigation(rp.links_nav or "")
        single = rp.links_key is not None or (nav is not None and not nav.many)
        if single and not keys:
            raise NotFound("No entity is linked.")
        return ok(200, writer.links(wctx, [wctx.entity_url(target, k) for k in keys], single=single), "links")
    final = target_set(ctx.model, rp)
    _check_select(final, opts.select)
    if rp.kind in ("property", "value"):
        single_rp = ResourcePath("entity", entity_set=rp.entity_set, key=rp.key, navigation=rp.navigation)
        es, entity, _rows, _count = service.read(ctx, single_rp, opts)
        assert entity is not None and es is not None
        prop = es.entity_type.property(rp.property or "")
        assert prop is not None
        value = entity.get(prop.name)
        if rp.kind == "value":
            if value is None or prop.collection or prop.is_complex:
                raise NotFound(f"{prop.name} has no raw value.")
            return Reply(200, [("Content-Type", "text/plain;charset=utf-8"), ("DataServiceVersion", DSV)],
                         to_text(prop.type, value).encode())
        type_name = prop.type if not prop.is_complex else ctx.model.qualified(prop.type)
        body = writer.property(wctx, prop.name, type_name, value, collection=prop.collection)
        return ok(200, body, "property")
    es, entity, rows, count = service.read(ctx, rp, opts)
    if entity is not None:
        return ok(200, writer.entry(wctx, es, entity), "entry", [("ETag", service.etag(entity))])
    self_path = rp.entity_set.name if not rp.navigation else None
    return ok(200, writer.feed(wctx, es, rows, count=count, self_path=self_path), "feed")


# ------------------------------------------------------------------------------------------------
# $batch


def batch_items(req: ApiRequest) -> list[BatchRequest | ChangeSet]:
    return parse_batch(req.headers.get("content-type", ""), req.body)


def sub_request(parent: ApiRequest, item: BatchRequest, content_ids: dict[str, str]) -> ApiRequest:
    """An operation inside a batch as a request of its own (with `$n` references resolved)."""
    url = resolve_reference(item.url, content_ids, base=parent.base_url)
    parts = urlsplit(url)
    path = decode_path(parts.path)
    base_path = decode_path(urlsplit(parent.base_url).path)
    if parts.scheme:
        if not path.lower().startswith(base_path.lower()):
            raise BadRequest(f"{item.label}: '{item.url}' is not a URL of this service.")
        path = path[len(base_path):]
    elif path.lower().startswith(base_path.lower()):
        path = path[len(base_path):]
    headers = dict(item.headers)
    for name in ("accept", "maxdataserviceversion"):
        if name not in headers and name in parent.headers and name != "accept":
            headers[name] = parent.headers[name]
    return ApiRequest(item.method, path.lstrip("/"), parse_qsl(parts.query, keep_blank_values=True), headers,
                      item.body, parent.base_url)


def batch_response(results: list[BatchResponse | list[BatchResponse]]) -> Reply:
    ctype, body = write_batch(results)
    return Reply(202, [("Content-Type", ctype), ("DataServiceVersion", DSV)], body)


def to_batch_response(reply: Reply, content_id: str | None) -> BatchResponse:
    return BatchResponse(reply.status, list(reply.headers), reply.body, content_id)
