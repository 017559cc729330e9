"""`openams protect`: encrypt an asset on the fly (AES-128 HLS, or CENC/CBCS DASH + HLS CMAF) and
print the URLs that play it, the key delivery URL and — when token-restricted — a viewer token.

It sets the asset up through the public API only, exactly as an AMS client app does, so what it
builds is what SDK users build and the command doubles as a worked example:

1. a content key made client-side (wrapped to the service's protection certificate), linked to the
   asset (`client_protection.create_content_key`);
2. an authorization policy with one option — Open, or TokenRestricted by a TokenRestrictionTemplate
   (JWT or SWT, symmetric key, the content key identifier claim required) — set on the key;
3. an asset delivery policy naming the protocols the origin can encrypt that way;
4. an OnDemandOrigin locator (last: delivery policies cannot change once the asset streams).

Anything it created is deleted again (best effort) when a later step fails, so a refused request
leaves the account as it was. The clear content key is never printed: players get it from the key
service, which applies the policy.

Registers itself on the `openams` Typer app when imported (cli.py imports it at the bottom).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape

from .cli import ConfigFile, DatabaseUrl, DataDir, _local_key, _settings, app, err
from .cli_publish import streaming_urls
from .client_protection import (
    COMMON_ENCRYPTION,
    COMMON_ENCRYPTION_CBCS,
    ENVELOPE_ENCRYPTION,
    KEY_TYPE_NAMES,
    create_content_key,
    decode_token_key,
    key_delivery_url,
    key_guid,
    new_token_key,
    token_restriction_template,
)
from .config import DEV_ACCOUNT_NAME

if TYPE_CHECKING:
    from .client import AmsClient

BASELINE_HTTP, WIDEVINE, FAIRPLAY = 2, 3, 4
"""ContentKeyDeliveryType values."""
OPEN, TOKEN_RESTRICTED = 0, 1
DASH, HLS = 0x2, 0x4
DYNAMIC_ENVELOPE, DYNAMIC_COMMON, DYNAMIC_CBCS = 3, 4, 5
"""AssetDeliveryPolicyType values."""
ON_DEMAND_ORIGIN = 2
STREAMABLE = (".ism", ".mp4", ".m4a", ".m4v", ".ismv", ".isma")
VIEWER_TOKEN_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class Mode:
    """One kind of protection and the entities that make it."""

    name: str
    label: str
    key_type: int
    delivery_type: int
    """The authorization option's KeyDeliveryType. CENC/CBCS use Widevine, the type an AMS app would
    pick for browsers; openams's key service hands ClearKey licences for any option type."""
    policy_type: int
    protocols: int
    formats: tuple[str, ...]
    """The `cli_publish.FORMATS` the origin serves under this protection (see origin/protection.py:
    envelope is built for HLS only; CENC/CBCS for fMP4 — DASH and HLS CMAF, not HLS TS, and not
    Smooth, whose players decrypt PlayReady only)."""
    url_delivery_type: int
    """The GetKeyDeliveryUrl type whose URL locates the key service for this key type."""


MODES = {
    "aes": Mode("aes", "AES-128 envelope (HLS)", ENVELOPE_ENCRYPTION, BASELINE_HTTP, DYNAMIC_ENVELOPE, HLS,
                ("hls", "hls-cmaf"), BASELINE_HTTP),
    "cenc": Mode("cenc", "CENC cenc (DASH, HLS CMAF; ClearKey licences)", COMMON_ENCRYPTION, WIDEVINE,
                 DYNAMIC_COMMON, DASH | HLS, ("dash", "dash-cmaf", "hls-cmaf"), WIDEVINE),
    "cbcs": Mode("cbcs", "CENC cbcs (DASH, HLS CMAF; ClearKey licences)", COMMON_ENCRYPTION_CBCS, WIDEVINE,
                 DYNAMIC_CBCS, DASH | HLS, ("dash", "dash-cmaf", "hls-cmaf"), FAIRPLAY),
}


UNDO_ORDER = ("Locators", "AccessPolicies", "AssetDeliveryPolicies", "ContentKeys", "ContentKeyAuthorizationPolicies",
              "ContentKeyAuthorizationPolicyOptions")
"""Deletion order when a setup fails: dependants first. The locator goes before the delivery policy
(policies cannot change while the asset streams), the delivery policy before the key (it needs a key
of its type), the key before its authorization policy (a policy in use cannot be deleted). Deleting
an entity removes its links."""


class _Refused(Exception):
    """A precondition the asset does not meet (exit 1, nothing created)."""


def _bad_usage(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _q(value: str) -> str:
    return quote(value, safe="")


def _clearkey_url(delivery_url: str, server: str) -> str:
    """The ClearKey licence URL on the same key service as `delivery_url` (GetKeyDeliveryUrl answers
    with the service's public base, which `--server` need not be)."""
    head, sep, _ = delivery_url.partition("/keydelivery/")
    return f"{head}/keydelivery/ClearKey/" if sep else f"{server.rstrip('/')}/keydelivery/ClearKey/"


def _with_token(url: str, token: str) -> str:
    return url + ("&" if "?" in url else "?") + "token=" + _q(token)


def _check_asset(client: AmsClient, asset_id: str, mode: Mode) -> list[dict[str, Any]]:
    """The asset's files, once it is known that protecting it can work; raises `_Refused` otherwise."""
    files = client.files(asset_id)
    if not any(f["Name"].lower().endswith(STREAMABLE) for f in files):
        raise _Refused(f"asset {asset_id} has no MP4 or .ism files to stream (files: "
                       f"{', '.join(f['Name'] for f in files) or 'none'}); encode it first")
    locators = client.api("GET", f"Assets('{_q(asset_id)}')/Locators", "listing the asset's locators").json()["value"]
    streaming = [loc["Id"] for loc in locators if int(loc.get("Type") or 0) == ON_DEMAND_ORIGIN]
    if streaming:
        raise _Refused(f"asset {asset_id} already has a streaming locator ({', '.join(streaming)}): an asset's "
                       "delivery policies cannot change while it streams; delete its streaming locators first "
                       "(openams protect creates a new one)")
    policies = client.api("GET", f"Assets('{_q(asset_id)}')/DeliveryPolicies",
                          "listing the asset's delivery policies").json()["value"]
    if policies:
        raise _Refused(f"asset {asset_id} already has delivery policies ({', '.join(p['Id'] for p in policies)}); "
                       "unlink them first (DELETE Assets('…')/$links/DeliveryPolicies('…'))")
    keys = client.api("GET", f"Assets('{_q(asset_id)}')/ContentKeys",
                      "listing the asset's content keys").json()["value"]
    same = [k["Id"] for k in keys if int(k.get("ContentKeyType") or 0) == mode.key_type]
    if same:
        # the origin encrypts with the asset's key of the policy's type: a second one would be ambiguous
        raise _Refused(f"asset {asset_id} already has a {KEY_TYPE_NAMES[mode.key_type]} content key "
                       f"({', '.join(same)}); unlink it first (DELETE Assets('…')/$links/ContentKeys('…'))")
    return list(files)


class _Setup:
    """Creates the entities in order and remembers them, so a failure can undo what was done."""

    def __init__(self, client: AmsClient) -> None:
        self.client = client
        self.created: list[tuple[str, str, str]] = []

    def track(self, set_name: str, entity_id: str, what: str) -> None:
        self.created.append((set_name, entity_id, what))

    def create(self, set_name: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        entity = self.client.create(set_name, body, what)
        self.track(set_name, str(entity["Id"]), what.replace("creating", "deleting", 1))
        return entity

    def link(self, source: str, nav: str, target_set: str, target_id: str, what: str) -> None:
        self.client.api("POST", f"{source}/$links/{nav}", what,
                        {"uri": f"{self.client.server}/api/{target_set}('{_q(target_id)}')"})

    def undo(self) -> list[str]:
        """Delete everything created, in `UNDO_ORDER`; returns what could not be deleted."""
        from .client import ClientError

        left: list[str] = []
        for set_name, entity_id, what in sorted(self.created, key=lambda c: UNDO_ORDER.index(c[0])):
            try:
                self.client.delete(set_name, entity_id, what)
            except ClientError as exc:
                left.append(f"{set_name}('{entity_id}'): {exc.message}")
        self.created.clear()
        return left


def _protect(setup: _Setup, asset_id: str, mode: Mode, restriction: dict[str, Any], days: float,
             label: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Steps 1-4 of the module docstring; returns (content key, locator, key delivery URL)."""
    from .client import READ

    client = setup.client
    key = create_content_key(client, mode.key_type, f"{label} key")
    setup.track("ContentKeys", key["Id"], "deleting the content key")
    setup.link(f"Assets('{_q(asset_id)}')", "ContentKeys", "ContentKeys", key["Id"], "linking the key to the asset")
    option = setup.create("ContentKeyAuthorizationPolicyOptions", {
        "Name": f"{label} {'token' if restriction['KeyRestrictionType'] == TOKEN_RESTRICTED else 'open'}",
        "KeyDeliveryType": mode.delivery_type,
        "KeyDeliveryConfiguration": "{}" if mode.delivery_type == WIDEVINE else None,
        "Restrictions": [restriction]}, "creating the authorization policy option")
    policy = setup.create("ContentKeyAuthorizationPolicies", {"Name": label}, "creating the authorization policy")
    setup.link(f"ContentKeyAuthorizationPolicies('{_q(policy['Id'])}')", "Options",
               "ContentKeyAuthorizationPolicyOptions", option["Id"], "adding the option to the policy")
    client.api("MERGE", f"ContentKeys('{_q(key['Id'])}')", "setting the key's authorization policy",
               {"AuthorizationPolicyId": policy["Id"]})
    delivery = setup.create("AssetDeliveryPolicies", {
        "Name": label, "AssetDeliveryPolicyType": mode.policy_type, "AssetDeliveryProtocol": mode.protocols},
        "creating the asset delivery policy")
    setup.link(f"Assets('{_q(asset_id)}')", "DeliveryPolicies", "AssetDeliveryPolicies", delivery["Id"],
               "linking the delivery policy to the asset")
    url = key_delivery_url(client, key["Id"], mode.url_delivery_type)
    if mode.name != "aes":
        url = _clearkey_url(url, client.server)
    access = setup.create("AccessPolicies", {"Name": f"Streaming {days:g} days", "DurationInMinutes": days * 24 * 60,
                                             "Permissions": READ}, "creating the access policy")
    locator = setup.create("Locators", {"AccessPolicyId": access["Id"], "AssetId": asset_id,
                                        "Type": ON_DEMAND_ORIGIN}, "creating the streaming locator")
    return key, locator, url


@app.command()
def protect(
    asset_id: Annotated[str, typer.Argument(help="The asset to protect (nb:cid:UUID:…), e.g. an encoding output.")],
    aes: Annotated[bool, typer.Option("--aes", help="AES-128 envelope encryption, for HLS.")] = False,
    cenc: Annotated[bool, typer.Option("--cenc", help="Common encryption (cenc), for DASH and HLS CMAF.")] = False,
    cbcs: Annotated[bool, typer.Option("--cbcs", help="Common encryption (cbcs), for DASH and HLS CMAF.")] = False,
    token_issuer: Annotated[str | None, typer.Option("--token-issuer", help="Require viewer tokens from this "
                                                     "issuer (a URL); without it the key is open to anyone.")] = None,
    audience: Annotated[str | None, typer.Option("--audience", help="The tokens' audience (a URI); required "
                                                 "with --token-issuer.")] = None,
    token_key: Annotated[str | None, typer.Option("--token-key", help="The tokens' signing key (base64, at least "
                                                  "16 bytes); 64 random bytes when omitted.")] = None,
    swt: Annotated[bool, typer.Option("--swt", help="Simple Web Tokens instead of JWT.")] = False,
    days: Annotated[float, typer.Option("--days", min=0.001, help="How long the URLs work.")] = 365.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    server: Annotated[str | None, typer.Option("--server", help="API base URL (default: from the settings, "
                                               "http://127.0.0.1:8700).")] = None,
    account: Annotated[str, typer.Option("--account", help="Account name.")] = DEV_ACCOUNT_NAME,
    key: Annotated[str | None, typer.Option("--key", help="Account key (default: looked up in the local data "
                                            "directory) [env OPENAMS_ACCOUNT_KEY].",
                                            envvar="OPENAMS_ACCOUNT_KEY")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Encrypt an asset's streams on the fly and print the URLs that play them.

    Creates a content key, an authorization policy (open, or token-restricted with --token-issuer),
    an asset delivery policy and a streaming locator, as an AMS client app would. Prints the key id,
    the streaming URLs, the key delivery URL and, when token-restricted, the token signing key (a
    secret, shown once) with a viewer token valid one hour.

    Exit status: 0 protected; 1 the asset or the server refused (nothing is left behind); 2 bad arguments.
    """
    from .client import AmsClient, ClientError
    from .keydelivery.restrictions import TemplateError, mint_token, parse_template

    chosen = [name for name, on in (("aes", aes), ("cenc", cenc), ("cbcs", cbcs)) if on]
    if len(chosen) != 1:
        raise _bad_usage("choose one protection: --aes, --cenc or --cbcs" if not chosen
                         else f"choose one protection, not {' and '.join('--' + c for c in chosen)}")
    mode = MODES[chosen[0]]
    if token_issuer is None:
        extras = [o for o, v in (("--audience", audience), ("--token-key", token_key), ("--swt", swt)) if v]
        if extras:
            raise _bad_usage(f"{', '.join(extras)}: only with --token-issuer (token-restricted keys)")
    elif not audience:
        raise _bad_usage("--token-issuer needs --audience (the URI viewer tokens are issued for)")

    template: str | None = None
    signing_key = b""
    if token_issuer is not None:
        try:
            signing_key = decode_token_key(token_key) if token_key is not None else new_token_key()
        except ValueError as exc:
            raise _bad_usage(f"--token-key {exc}") from None
        template = token_restriction_template(token_issuer, str(audience), signing_key,
                                              token_type="SWT" if swt else "JWT")
        try:
            parse_template(template)  # the service would refuse it: say so before creating anything
        except TemplateError as exc:
            raise _bad_usage(f"the token settings make an invalid TokenRestrictionTemplate: {exc}") from None
        restriction: dict[str, Any] = {"Name": "token", "KeyRestrictionType": TOKEN_RESTRICTED,
                                       "Requirements": template}
    else:
        restriction = {"Name": "open", "KeyRestrictionType": OPEN, "Requirements": None}

    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    if key is None:
        key = _local_key(settings, account)
    label = f"openams protect --{mode.name}"
    with AmsClient(server or settings.api_base, account, key) as client:
        setup = _Setup(client)
        try:
            files = _check_asset(client, asset_id, mode)
            content_key, locator, delivery_url = _protect(setup, asset_id, mode, restriction, days, label)
        except (_Refused, ClientError, KeyboardInterrupt) as exc:
            left = setup.undo()
            if isinstance(exc, KeyboardInterrupt):
                err.print("[red]interrupted[/red]" + (" (nothing left behind)" if not left else ""), soft_wrap=True)
            else:
                message = exc.message if isinstance(exc, ClientError) else str(exc)
                err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
            for item in left:
                err.print(f"[yellow]warning:[/yellow] could not delete {escape(item)}; delete it by hand",
                          soft_wrap=True)
            raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else 1) from None

    kid = str(key_guid(content_key["Id"]))
    all_urls = streaming_urls(str(locator["Path"]), files)
    urls = {fmt: all_urls[fmt] for fmt in mode.formats}
    result: dict[str, Any] = {
        "asset": asset_id, "protection": mode.name, "keyId": content_key["Id"], "kid": kid,
        "keyType": KEY_TYPE_NAMES[mode.key_type], "locator": locator["Id"],
        "expires": locator.get("ExpirationDateTime"), "urls": urls, "keyDeliveryUrl": delivery_url,
        "restriction": "token" if template else "open",
    }
    if template is not None:
        expires = datetime.now(UTC) + VIEWER_TOKEN_LIFETIME
        viewer = mint_token(template, key_id=kid, lifetime=VIEWER_TOKEN_LIFETIME)
        token_info: dict[str, Any] = {
            "type": "SWT" if swt else "JWT", "issuer": token_issuer, "audience": audience,
            "key": base64.b64encode(signing_key).decode("ascii"), "template": template,
            "viewerToken": viewer, "viewerTokenExpires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if mode.name == "aes":  # the origin carries ?token= into the playlists and the AES key URI
            token_info["urls"] = {fmt: _with_token(u, viewer) for fmt, u in urls.items()}
        else:  # players send the token with the licence request (or as ?token= on the licence URL)
            token_info["keyDeliveryUrl"] = _with_token(delivery_url, viewer)
        result["token"] = token_info
        err.print("[yellow]warning:[/yellow] the token key is a secret: anyone who has it can mint viewer tokens. "
                  "It is printed this once; keep it in your token issuer's configuration.", soft_wrap=True)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_text(result, mode)


def _print_text(result: dict[str, Any], mode: Mode) -> None:
    rows: list[tuple[str, str]] = [
        ("asset", result["asset"]),
        ("protection", f"{mode.label}, key {result['keyType']}, "
         + ("token-restricted" if "token" in result else "open (any player gets the key)")),
        ("key id", result["keyId"]),
        ("locator", f"{result['locator']} (expires {result['expires']})"),
        *result["urls"].items(),
        ("key URL" if mode.name == "aes" else "licence URL", result["keyDeliveryUrl"]),
    ]
    token = result.get("token")
    if token is not None:
        rows += [
            ("token type", f"{token['type']} (issuer {token['issuer']}, audience {token['audience']})"),
            ("token key", token["key"]),
            ("viewer token", f"{token['viewerToken']}"),
            ("", f"(valid until {token['viewerTokenExpires']}; make more with `openams token --viewer --kind "
                 f"{token['type'].lower()} --issuer … --audience … --token-key … --key-id {result['kid']}`)"),
            *((f"{fmt}+token", url) for fmt, url in token.get("urls", {}).items()),
            *((("licence+token", token["keyDeliveryUrl"]),) if "keyDeliveryUrl" in token else ()),
        ]
    for name, value in rows:
        print(f"{name:<16}{value}")
