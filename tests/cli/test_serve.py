"""`openams serve` when a port is taken: it must exit with a message, not run half-started (a
supervisor or a health check would otherwise see a server that answers on one port only)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.serve import CLI, serve_env
from tests.support.servers import free_port


def test_a_taken_port_stops_the_server_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
                            "--blob-port", str(free_port())], capture_output=True, text=True, timeout=60,
                           env=serve_env())
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "could not start every listener" in r.stderr.replace("\n", " "), r.stderr
    assert "Traceback" not in r.stderr and "ready in" not in r.stdout
