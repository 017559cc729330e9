"""The error catalogue: every failure a client can see is one of these.

Each surface renders an `ApiError` in its own wire format (OData JSON/Atom error bodies, Azure
Storage XML, plain JSON); the status code, the machine-readable code and the human message are
decided here, once. This module imports nothing from openams, so every layer may raise from it.
"""

from __future__ import annotations


class ApiError(Exception):
    """A failure with a definite HTTP status, a stable code and a message a person can act on."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class BadRequest(ApiError):
    status, code = 400, "BadRequest"


class InvalidPayload(BadRequest):
    code = "InvalidPayload"


class InvalidProperty(BadRequest):
    code = "InvalidPropertyValue"


class UnknownProperty(BadRequest):
    code = "UndefinedProperty"


class InvalidQuery(BadRequest):
    code = "InvalidQueryOption"


class InvalidKey(BadRequest):
    code = "InvalidKey"


class Unauthorized(ApiError):
    status, code = 401, "Unauthorized"

    def __init__(self, message: str, **kw) -> None:  # type: ignore[no-untyped-def]
        headers = kw.pop("headers", None) or {}
        headers.setdefault("WWW-Authenticate", 'Bearer realm="openams", error="invalid_token"')
        super().__init__(message, headers=headers, **kw)


class Forbidden(ApiError):
    status, code = 403, "Forbidden"


class NotFound(ApiError):
    status, code = 404, "ResourceNotFound"


class MethodNotAllowed(ApiError):
    status, code = 405, "MethodNotAllowed"


class NotAcceptable(ApiError):
    status, code = 406, "NotAcceptable"


class Conflict(ApiError):
    status, code = 409, "Conflict"


class PreconditionFailed(ApiError):
    status, code = 412, "PreconditionFailed"


class PayloadTooLarge(ApiError):
    status, code = 413, "RequestEntityTooLarge"


class UriTooLong(ApiError):
    status, code = 414, "RequestUriTooLong"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UnsupportedMediaType"


class InternalError(ApiError):
    status, code = 500, "InternalError"


class NotImplementedYet(ApiError):
    """A feature that openams does not have yet. Names the feature; never a fake success."""

    status, code = 501, "NotImplemented"

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} is not implemented in this version of openams.")
        self.feature = feature
