"""Conventions shared by tests that start real `openams serve` processes."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

STORAGE_VARS = ("OPENAMS_STORAGE_BACKEND", "OPENAMS_AZURE_", "OPENAMS_S3_", "OPENAMS_SERVER_KEY")
"""Environment variables a test server or worker keeps: the selected storage backend (so the whole
suite runs against it) and the session's server key (every process sharing a database needs it)."""

READY = re.compile(r"openams \S+ ready in \d")
"""What `openams serve` prints once *all* of its listeners are bound (see `cli.serve`)."""
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PORT_TAKEN = ("error while attempting to bind", "address already in use", "could not start every listener")


def free_port() -> int:
    """A port nobody listens on *now*. Only a hint: until our server binds it, any other process
    on the machine (the other xdist worker's servers, say) may be handed the same port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    """Terminate a test server or worker and wait for it; kill it if it does not exit in `grace` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _output(log: Path, start: int) -> str:
    """What the server wrote to its log since `start` (an offset), without colour codes."""
    with open(log, "rb") as fh:
        fh.seek(start)
        return ANSI.sub("", fh.read().decode("utf-8", "replace"))


def start_serve(command: list[str], log: Path, env: dict[str, str], *, timeout: float = 60.0,
                attempts: int = 5, **popen: Any) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start `command` (an `openams serve …` without --host/--port/--blob-port) on free loopback
    ports and return (process, api port, blob port) once *this* process serves both.

    A /health answer alone proves nothing: between `free_port()` and our bind another server may
    take the port, and our process then keeps running with one listener while the other server
    answers on the port we think is ours (every token request then meets a stranger's accounts:
    `invalid_client`). So readiness is the server's own "ready" line — printed only when all its
    listeners are bound — and a lost race is retried on new ports."""
    for _ in range(attempts):
        port = free_port()
        blob_port = free_port()
        while blob_port == port:
            blob_port = free_port()
        start = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as fh:
            proc = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port), "--blob-port",
                                     str(blob_port)], stdout=fh, stderr=subprocess.STDOUT, env=env, **popen)
        deadline = time.monotonic() + timeout
        while True:
            text = _output(log, start)
            if any(marker in text for marker in PORT_TAKEN):
                stop_process(proc)  # someone else got a port first: try others
                break
            if READY.search(text):
                try:
                    if all(httpx.get(f"http://127.0.0.1:{p}/health", timeout=2).status_code == 200
                           for p in (port, blob_port)):
                        return proc, port, blob_port
                except httpx.HTTPError:
                    pass
            if proc.poll() is not None:
                raise RuntimeError(f"openams serve exited with {proc.returncode}:\n{_output(log, start)[-4000:]}")
            if time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError(f"openams serve was not ready within {timeout}s:\n{_output(log, start)[-4000:]}")
            time.sleep(0.1)
    raise RuntimeError(f"openams serve lost the race for free ports {attempts} times:\n{_output(log, start)[-4000:]}")
