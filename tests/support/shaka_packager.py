"""Locate Shaka Packager, the reference packager the origin's output can be compared against.

It comes from the npm package ``shaka-packager`` (pinned in the repository's package.json and
installed by ``scripts/players.sh``): that package carries the statically linked binaries for
linux/macOS/windows inside its tarball (``bin/packager-<os>-<arch>``) — nothing is downloaded at
install time, which is why it is usable on a machine that only reaches the npm registry.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

ENV_VAR = "OPENAMS_SHAKA_PACKAGER"
"""Environment variable naming a packager binary to use instead of the npm one."""

NPM_BIN = Path(__file__).resolve().parents[2] / "node_modules" / "shaka-packager" / "bin"


def _binary_name() -> str | None:
    """The file name the npm package uses for this platform (mirrors the package's own index.js)."""
    system = {"linux": "linux", "darwin": "osx", "win32": "win"}.get(sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if system is None or arch is None:
        return None
    return f"packager-{system}-{arch}" + (".exe" if system == "win" else "")


def packager_path() -> Path | None:
    """The Shaka Packager binary: ``$OPENAMS_SHAKA_PACKAGER``, else the npm package's binary for this
    platform, else ``packager`` on PATH; None when there is none (tests then skip)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        found = shutil.which(configured)
        return Path(found) if found else None
    name = _binary_name()
    if name:
        candidate = NPM_BIN / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("packager")
    return Path(found) if found else None
