"""Secrets at rest: a per-installation server key that encrypts account keys and other secrets.

The server key lives in `<data dir>/server.key` (created on first use, mode 0600). Stored secrets
are Fernet tokens (AES-128-CBC + HMAC-SHA256), so a copied database alone reveals no key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def for_settings(cls, server_key: str, data_dir: Path) -> SecretBox:
        """The configured key, or the data directory's own one."""
        if server_key:
            try:
                return cls(server_key.strip().encode("ascii"))
            except ValueError:
                raise ValueError("OPENAMS_SERVER_KEY is not a valid key (32 url-safe base64 bytes, as "
                                 "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'` "
                                 "prints)") from None
        return cls.for_data_dir(data_dir)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> SecretBox:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "server.key"
        if not path.exists():
            key = Fernet.generate_key()
            # create exclusively so two processes starting together agree on one key
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(key)
        return cls(path.read_bytes().strip())

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ValueError("a stored secret cannot be decrypted with this server key: every process that "
                             "shares the database needs the same key (OPENAMS_SERVER_KEY, or the same data "
                             "directory's server.key)") from None

    def __repr__(self) -> str:  # never show the key
        return "SecretBox(<hidden>)"
