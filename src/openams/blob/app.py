"""The blob service listener (Azure-Blob-compatible, path-style).

The upload and download operations arrive with the storage step; until then every request is
answered 501 in the Azure Storage XML error format, naming what is missing.
"""

from __future__ import annotations

import uuid
from typing import Any
from xml.sax.saxutils import escape


class BlobApp:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        if scope["path"] == "/health":
            body = b'{"status":"ok"}'
            status, ctype = 200, b"application/json"
        else:
            message = "The blob service (Put Blob, Put Block, Get Blob, List Blobs) is not implemented yet."
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>NotImplemented</Code>'
                    f"<Message>{escape(message)}\nRequestId:{request_id}</Message></Error>").encode()
            status, ctype = 501, b"application/xml"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                                (b"x-ms-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": body})
