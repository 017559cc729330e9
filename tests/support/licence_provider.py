"""A licence provider of the kind an operator plugs into the key service (`license_provider`
setting): this one answers with a JSON summary of what it was handed, so tests can check that the
key service authorised the request first and passed the right system, challenge and key."""

from __future__ import annotations

import hashlib
import json
import uuid


class SummaryProvider:
    """Answers every licence request with {system, kid, challenge sha256, key sha256}."""

    def license(self, system: str, body: bytes, key_id: uuid.UUID, key: bytes) -> tuple[int, str, bytes]:
        summary = {"system": system, "kid": str(key_id), "challenge": hashlib.sha256(body).hexdigest(),
                   "key": hashlib.sha256(key).hexdigest()}
        return 200, "application/json", json.dumps(summary).encode()


def make_provider() -> SummaryProvider:
    return SummaryProvider()


NOT_A_PROVIDER = 42
