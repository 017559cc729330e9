"""Loading an operator's licence provider (PlayReady, Widevine, FairPlay) from the settings.

openams cannot issue commercial DRM licences itself (that needs each vendor's server SDK or
credentials), so an operator plugs one in: `license_provider = "package.module:name"` in the
config file or `OPENAMS_LICENSE_PROVIDER`. `name` is either an object with a
`license(system, body, key_id, key)` method (see `app.LicenseProvider`) or a callable taking no
arguments that returns one (a class or a factory). The key service authorises the request with the
key's policy first and hands the provider only the key it may use.
"""

from __future__ import annotations

import importlib
from typing import Any


class ProviderError(ValueError):
    """The configured provider cannot be loaded; the message says what to fix."""


def load_provider(spec: str) -> Any | None:
    """The provider named by `spec` ("module:attribute"), None when `spec` is empty."""
    spec = spec.strip()
    if not spec:
        return None
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ProviderError(f"license_provider must look like 'package.module:name', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderError(f"license_provider: cannot import {module_name!r} ({exc})") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ProviderError(f"license_provider: {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    # a class or a factory is called once; anything else with a `license` method is the provider
    is_factory = isinstance(target, type) or (callable(target) and not hasattr(target, "license"))
    provider = target() if is_factory else target
    if not callable(getattr(provider, "license", None)):
        raise ProviderError(f"license_provider: {spec!r} is neither a provider (an object with a "
                            "license(system, body, key_id, key) method) nor a factory returning one")
    return provider
