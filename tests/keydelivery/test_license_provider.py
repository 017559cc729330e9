"""Plugging an operator's licence provider into the key service: the `license_provider` setting
names it, the key service authorises each PlayReady/Widevine/FairPlay request with the key's
policy before the provider sees it, and a setting that names nothing usable stops `openams serve`
with a message instead of a traceback."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from openams.keydelivery.app import KeyDeliveryApp
from openams.keydelivery.providers import ProviderError, load_provider
from openams.keydelivery.restrictions import mint_token
from tests.keydelivery.test_app import protect, template, token_restricted
from tests.support.client import ApiClient
from tests.support.licence_provider import SummaryProvider
from tests.support.serve import CLI, serve_env
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec", ["tests.support.licence_provider:SummaryProvider",
                                  "tests.support.licence_provider:make_provider"])
def test_a_class_or_a_factory_is_loaded(spec: str) -> None:
    assert isinstance(load_provider(spec), SummaryProvider)
    assert load_provider("") is None


@pytest.mark.parametrize(("spec", "words"), [
    ("tests.support.licence_provider", "package.module:name"),
    ("tests.support.no_such_module:X", "cannot import"),
    ("tests.support.licence_provider:Missing", "has no 'Missing'"),
    ("tests.support.licence_provider:NOT_A_PROVIDER", "neither a provider"),
])
def test_unusable_settings_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ProviderError, match=words):
        load_provider(spec)


def test_the_provider_gets_only_authorised_requests(api: ApiClient, runtime: Any) -> None:
    keys = TestClient(KeyDeliveryApp(runtime, SummaryProvider()), base_url="http://openams.test")
    tmpl = template()
    kid, clear = protect(api, 0, token_restricted(tmpl), delivery=3)
    token = mint_token(tmpl, key_id=kid)
    challenge = b"\x08\x04" + bytes(range(40))
    for system in ("PlayReady", "Widevine", "FairPlay"):
        r = keys.post(f"/keydelivery/{system}/?KID={kid}", content=challenge,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"system": system, "kid": kid, "challenge": hashlib.sha256(challenge).hexdigest(),
                            "key": hashlib.sha256(clear).hexdigest()}
        refused = keys.post(f"/keydelivery/{system}/?KID={kid}", content=challenge)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "TokenMissing"
    assert keys.post("/keydelivery/Widevine/", content=challenge).status_code == 400  # which key?


def test_serve_refuses_a_provider_it_cannot_load(tmp_path: Path) -> None:
    env = serve_env(OPENAMS_LICENSE_PROVIDER="tests.support.no_such_module:X")
    r = subprocess.run([*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
                        "--blob-port", str(free_port())], capture_output=True, text=True, timeout=120, env=env,
                       cwd=ROOT)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "license_provider: cannot import 'tests.support.no_such_module'" in r.stderr.replace("\n", " ")
    assert "Traceback" not in r.stderr
