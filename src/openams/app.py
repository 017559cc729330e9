"""Composes the ASGI apps and runs every listener of `openams serve` in one process.

The API port serves the Operations API, token endpoints, health and the streaming origin
(`/<locator-guid>/…`); the blob service has its own
port (path-style URLs, as the Azure Storage SDKs expect for loopback hosts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from .blob.app import BlobApp
from .rest.app import RestApp
from .runtime import Runtime

log = logging.getLogger("openams")


async def _quiet(coro: Any) -> None:
    """Run a server; a failure to bind is reported by `serve`, not as an asyncio traceback."""
    try:
        await coro
    except (OSError, SystemExit) as exc:
        log.error("listener stopped: %s", exc)


class ApiListener:
    """The API port: streaming paths (`/<locator-guid>/…`, the cross-domain policy files) go to
    the origin, `/keydelivery/…` to the key delivery service, `/connector/…` to the Connector API,
    everything else to the Operations API."""

    def __init__(self, rt: Runtime) -> None:
        from .connector.app import ConnectorApp
        from .keydelivery.app import KeyDeliveryApp
        from .origin.app import OriginApp

        self.rest = RestApp(rt)
        self.connector = ConnectorApp(rt)
        self.origin = OriginApp(rt)
        self.keys = KeyDeliveryApp(rt, rt.license_provider)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from .connector.app import is_connector_path
        from .keydelivery.app import is_keydelivery_path
        from .origin.app import is_origin_path

        if scope["type"] == "http" and is_origin_path(scope["path"]):
            await self.origin(scope, receive, send)
        elif scope["type"] == "http" and is_keydelivery_path(scope["path"]):
            await self.keys(scope, receive, send)
        elif scope["type"] == "http" and is_connector_path(scope["path"]):
            await self.connector(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def build_apps(rt: Runtime) -> tuple[Any, Any]:
    return ApiListener(rt), BlobApp(rt)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # one handler for all servers, installed by serve()
        pass


async def serve(rt: Runtime, on_ready: Callable[[], None] | None = None) -> None:
    """Run the API and blob listeners until interrupted."""
    api_app, blob_app = build_apps(rt)
    s = rt.settings
    common: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off",
                              "timeout_keep_alive": 30, "server_header": False}
    api = _Server(uvicorn.Config(api_app, host=s.host, port=s.port, **common))
    blob = _Server(uvicorn.Config(blob_app, host=s.host, port=s.blob_port, **common))
    servers = [api, blob]
    loop = asyncio.get_running_loop()
    import signal

    def stop(*_: Any) -> None:
        for srv in servers:
            srv.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):
            pass
    tasks = [asyncio.create_task(_quiet(srv.serve())) for srv in servers]

    async def announce() -> None:
        while not all(srv.started for srv in servers):
            if any(t.done() for t in tasks):
                stop()  # one listener could not bind: do not go on half-started (the others stop too)
                return
            await asyncio.sleep(0.02)
        rt.ready = True
        if on_ready:
            on_ready()

    clean = getattr(rt.storage, "clean_staging", None)
    if clean is not None:
        clean()  # spool files of requests a previous process was killed during
    if rt.settings.run_jobs:
        rt.start_jobs()
    try:
        await asyncio.gather(announce(), *tasks)
    finally:
        rt.stop_jobs()
    failed = [t for t in tasks if t.exception() is not None] if all(t.done() for t in tasks) else []
    if any(not srv.started for srv in servers):
        stop()
        raise SystemExit("openams could not start every listener (is a port already in use?)")
    for t in failed:
        raise t.exception()  # type: ignore[misc]
