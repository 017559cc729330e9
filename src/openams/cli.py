"""The `openams` command: serve, account management, tokens and a health report.

`serve`, `account create` and `account keys` are a contract scripts and tests rely on; keep
their options stable. Account commands work directly on the database, also while the server runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from . import __version__
from .config import DEV_ACCOUNT_NAME, Settings, load

app = typer.Typer(help="openams — a self-hostable media services platform (Azure Media Services v2 API).",
                  no_args_is_help=True, add_completion=False)
account_app = typer.Typer(help="Manage Media Services accounts.", no_args_is_help=True)
app.add_typer(account_app, name="account")
console = Console(soft_wrap=True)
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory [env OPENAMS_DATA_DIR].")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config file [env OPENAMS_CONFIG].")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url",
                                                 help="SQLAlchemy URL [env OPENAMS_DATABASE_URL].")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load(config, **overrides)
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _runtime(settings: Settings) -> Any:
    from .runtime import Runtime

    rt = Runtime(settings)
    try:
        rt.prepare()
    except Exception as exc:  # a database that cannot be reached or migrated
        err.print(f"[red]error:[/red] cannot open the database {settings.db_url.split('@')[-1]}: {exc}")
        raise typer.Exit(1) from None
    return rt


def _accounts(config: Path | None, data_dir: Path | None, database_url: str | None,
              action: Any, write: bool = False) -> Any:
    """Run `action(rt, conn)` in one transaction on the account database; errors end the command
    with their message (exit 1), never a traceback."""
    rt = _runtime(_settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False))
    try:
        with rt.engine.connect() as conn:
            conn.info["write"] = write
            with conn.begin():
                return action(rt, conn)
    except Exception as exc:
        _fail(exc)
        raise typer.Exit(1) from None


def _fail(exc: Exception) -> None:
    from .errors import ApiError

    if isinstance(exc, ApiError):
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1)
    raise exc


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [env OPENAMS_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="API port [env OPENAMS_PORT].")] = None,
    blob_port: Annotated[int | None, typer.Option("--blob-port", help="Blob service port [env OPENAMS_BLOB_PORT].")]
    = None,
    database_url: DatabaseUrl = None,
    public_url: Annotated[str | None, typer.Option("--public-url", help="Public base URL of the API port.")] = None,
    config: ConfigFile = None,
) -> None:
    """Start every openams service in one process (embedded defaults: SQLite + local disk)."""
    started = time.monotonic()
    settings = _settings(config, data_dir=data_dir, host=host, port=port, blob_port=blob_port,
                         database_url=database_url, public_url=public_url)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from .app import serve as run_servers
    from .runtime import Runtime

    rt = Runtime(settings)
    try:
        created = rt.prepare()
    except Exception as exc:
        err.print(f"[red]error:[/red] cannot open the database: {exc}")
        raise typer.Exit(1) from None
    from .keydelivery.providers import ProviderError

    try:
        _ = rt.license_provider
    except ProviderError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None

    def ready() -> None:
        s = settings
        console.print(f"[bold green]openams {__version__}[/bold green] ready in {time.monotonic() - started:.2f}s")
        console.print(f"  data directory   {s.data_dir.resolve()}")
        console.print(f"  database         {'SQLite (embedded)' if not s.database_url else s.db_url.split('@')[-1]}")
        console.print(f"  Operations API   {s.api_base}/api/")
        console.print(f"  ACS token        {s.api_base}/v2/OAuth2-13")
        console.print(f"  AAD token        {s.api_base}/<tenant>/oauth2/token")
        console.print(f"  blob service     {s.blob_base}/")
        console.print(f"  health           {s.api_base}/health")
        if s.license_provider:
            console.print(f"  licence provider {s.license_provider}")
        if created is not None:
            console.print(f"  development account created: name [bold]{created.name}[/bold]")
            console.print(f"                               key  [bold]{created.primary_key}[/bold]")
            console.print("  (a well-known key: for local use only; `openams account regenerate-key` replaces it)")
        sys.stdout.flush()

    try:
        asyncio.run(run_servers(rt, on_ready=ready))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        if exc.code not in (None, 0):
            err.print(f"[red]error:[/red] {exc.code}")
            raise typer.Exit(1) from None


@account_app.command("create")
def account_create(
    name: str,
    key: Annotated[str | None, typer.Option(help="Primary key (base64); generated when omitted.")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an account and print its keys."""
    from .entities.defaults import ensure_account_defaults

    def create(rt: Any, conn: Any) -> Any:
        account = rt.accounts.create(conn, name, key)
        ensure_account_defaults(conn, account, rt.settings)
        return account

    _print_keys(_accounts(config, data_dir, database_url, create, write=True), as_json)


def _print_keys(account: Any, as_json: bool) -> None:
    data = {"name": account.name, "primaryKey": account.primary_key, "secondaryKey": account.secondary_key}
    if as_json:
        print(json.dumps(data))
    else:
        console.print(f"account   {account.name}  (id {account.id})")
        console.print(f"primary   {account.primary_key}")
        console.print(f"secondary {account.secondary_key}")


@account_app.command("list")
def account_list(data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List accounts."""
    accounts = _accounts(config, data_dir, database_url, lambda rt, conn: rt.accounts.list(conn))
    if as_json:
        print(json.dumps([{"name": a.name, "id": a.id, "created": a.created.isoformat()} for a in accounts]))
        return
    for a in accounts:
        console.print(f"{a.name:<26} {a.id}  created {a.created:%Y-%m-%d %H:%M:%S}Z")
    if not accounts:
        console.print("no accounts")


@account_app.command("delete")
def account_delete(name: str, data_dir: DataDir = None, database_url: DatabaseUrl = None,
                   config: ConfigFile = None,
                   yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
                   keep_media: Annotated[bool, typer.Option("--keep-media", help="Leave the assets' blob containers "
                                                                               "in storage.")] = False) -> None:
    """Delete an account, every entity it owns and (unless --keep-media) its assets' media."""
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Delete account {name} and all its entities?"):
        raise typer.Exit(1)
    from .entities.assets import account_containers, drop_containers

    def delete(rt: Any, conn: Any) -> tuple[Any, list[tuple[str, str]]]:
        containers = account_containers(conn, rt.accounts.get(conn, name).id)
        return rt, (rt.accounts.delete(conn, name), containers)[1]

    rt, containers = _accounts(config, data_dir, database_url, delete, write=True)
    console.print(f"deleted account {name}")
    if keep_media or not containers:
        return
    # only after the rows are gone (a failed delete keeps its media); leftovers are reported
    failed = drop_containers(rt.storage, containers)
    console.print(f"removed {len(containers) - len(failed)} of {len(containers)} asset containers from storage")
    for line in failed:
        err.print(f"[yellow]warning:[/yellow] could not remove {line}")


@account_app.command("keys")
def account_keys(name: str, data_dir: DataDir = None, database_url: DatabaseUrl = None,
                 config: ConfigFile = None,
                 as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print an account's keys."""
    _print_keys(_accounts(config, data_dir, database_url, lambda rt, conn: rt.accounts.get(conn, name)), as_json)


@account_app.command("regenerate-key")
def account_regenerate(
    name: str,
    which: Annotated[str, typer.Option(help="primary or secondary.")] = "primary",
    key: Annotated[str | None, typer.Option(help="New key (base64); generated when omitted.")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replace a key; tokens signed with the old key stop working at once."""
    account = _accounts(config, data_dir, database_url,
                        lambda rt, conn: rt.accounts.regenerate(conn, name, which, key), write=True)
    _print_keys(account, as_json)


@account_app.command("add-client")
def account_add_client(
    name: str,
    client_id: Annotated[str | None, typer.Option("--client-id", help="Client id; a GUID when omitted.")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Register an AAD-style service principal (client id + secret) for an account."""
    cid, secret = _accounts(config, data_dir, database_url,
                            lambda rt, conn: rt.accounts.add_client(conn, name, client_id), write=True)
    print(json.dumps({"account": name, "clientId": cid, "clientSecret": secret}))


@app.command()
def token(
    name: Annotated[str, typer.Argument(help="Account name (API tokens).")] = DEV_ACCOUNT_NAME,
    kind: Annotated[str | None, typer.Option(help="swt or jwt (default: swt for API tokens, jwt for viewer "
                                             "tokens with --token-key).")] = None,
    viewer: Annotated[bool, typer.Option("--viewer", help="A viewer token for protected content (key delivery), "
                                         "not an API token.")] = False,
    template: Annotated[str | None, typer.Option("--template", help="Viewer tokens: the option's "
                                                 "TokenRestrictionTemplate XML, a file or - for stdin.")] = None,
    token_key: Annotated[str | None, typer.Option("--token-key", help="Viewer tokens without --template: the "
                                                  "signing key (base64), as `openams protect` printed it.")] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Viewer tokens without --template: the issuer.")
                      ] = None,
    audience: Annotated[str | None, typer.Option("--audience", help="Viewer tokens without --template: the "
                                                 "audience.")] = None,
    key_id: Annotated[str | None, typer.Option("--key-id", help="Viewer tokens: the content key the token opens "
                                               "(nb:kid:UUID:… or the GUID).")] = None,
    lifetime: Annotated[float, typer.Option("--lifetime", min=0.1, help="Viewer tokens: minutes until the token "
                                            "expires.")] = 60.0,
    claim: Annotated[list[str] | None, typer.Option("--claim", help="Viewer tokens: an extra or required claim, "
                                                    "TYPE=VALUE (repeatable).")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Print an API bearer token for an account (for curl and scripts), or with --viewer a token that
    satisfies a key's TokenRestrictionTemplate (for testing players).

    Viewer tokens: `--template FILE|-`, or `--token-key B64 --issuer I --audience A [--kind swt]`.
    Exit status: 0 printed; 1 the account is unknown; 2 bad arguments.
    """
    kind = kind.lower() if kind is not None else None
    if kind is not None and kind not in ("swt", "jwt"):
        err.print("[red]error:[/red] --kind takes swt or jwt")
        raise typer.Exit(2)
    viewer_options = {"--template": template, "--token-key": token_key, "--issuer": issuer,
                      "--audience": audience, "--key-id": key_id, "--claim": claim}
    if viewer:
        print(_viewer_token(kind, template, token_key, issuer, audience, key_id, lifetime, claim or []))
        return
    given = [o for o, v in viewer_options.items() if v]
    if given:
        err.print(f"[red]error:[/red] {', '.join(given)}: only with --viewer (viewer tokens)")
        raise typer.Exit(2)
    from .auth import tokens

    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    account = _accounts(config, data_dir, database_url, lambda rt, conn: rt.accounts.get(conn, name))
    if kind == "jwt":
        value, _ = tokens.issue_jwt(account, account.name, "https://rest.media.azure.net", "local",
                                    settings.token_lifetime)
    else:
        value, _ = tokens.issue_swt(account, "urn:WindowsAzureMediaServices", settings.token_lifetime)
    print(value)


def _viewer_token(kind: str | None, template: str | None, token_key: str | None, issuer: str | None,
                  audience: str | None, key_id: str | None, lifetime: float, claims: list[str]) -> str:
    """A token for the key delivery service, minted locally from a template (or from the template's
    parts) with `keydelivery.restrictions.mint_token`; exits 2 with the reason when it cannot be."""
    from datetime import timedelta

    from .client_protection import (
        CONTENT_KEY_ID_CLAIM,
        Claim,
        decode_token_key,
        key_guid,
        token_restriction_template,
    )
    from .keydelivery.restrictions import TemplateError, mint_token, parse_template

    def bad(message: str) -> typer.Exit:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
        return typer.Exit(2)

    kid = None
    if key_id is not None:
        try:
            kid = key_guid(key_id)
        except ValueError:
            raise bad(f"--key-id takes nb:kid:UUID:<guid> or a GUID, not '{key_id}'") from None
    extra: dict[str, str] = {}
    for item in claims:
        claim_type, eq, value = item.partition("=")
        if not eq or not claim_type:
            raise bad(f"--claim takes TYPE=VALUE, not '{item}'")
        extra[claim_type] = value
    if template is not None:
        parts = [o for o, v in (("--token-key", token_key), ("--issuer", issuer), ("--audience", audience)) if v]
        if parts or kind is not None:
            raise bad("--template already gives the token type, issuer, audience and key; drop "
                      + ", ".join(parts + (["--kind"] if kind else [])))
        try:
            text = sys.stdin.read() if template == "-" else Path(template).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise bad(f"cannot read the template {template}: {exc}") from None
    else:
        missing = [o for o, v in (("--token-key", token_key), ("--issuer", issuer), ("--audience", audience))
                   if not v]
        if missing:
            raise bad(f"viewer tokens need --template, or --token-key, --issuer and --audience (missing: "
                      f"{', '.join(missing)})")
        try:
            secret = decode_token_key(str(token_key))
        except ValueError as exc:
            raise bad(f"--token-key {exc}") from None
        text = token_restriction_template(str(issuer), str(audience), secret, token_type=(kind or "jwt").upper(),
                                          claims=[Claim(CONTENT_KEY_ID_CLAIM)] if key_id else [])
    try:
        parsed = parse_template(text)
    except TemplateError as exc:
        raise bad(f"the TokenRestrictionTemplate {exc}") from None
    try:
        return mint_token(parsed, key_id=kid, lifetime=timedelta(minutes=lifetime), claims=extra)
    except ValueError as exc:  # a required key id claim without --key-id, or a template with no symmetric key
        raise bad(str(exc).replace("pass key_id", "pass --key-id")) from None


@app.command()
def doctor(data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None) -> None:
    """Report what this installation uses and whether it works."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    console.print(f"openams {__version__} on Python {sys.version.split()[0]}")
    console.print(f"data directory  {settings.data_dir.resolve()}")
    try:
        rt = _runtime(settings)
        with rt.engine.connect() as conn, conn.begin():
            n = len(rt.accounts.list(conn))
        console.print(f"database        ok ({rt.engine.dialect.name}), {n} account(s)")
    except typer.Exit:
        console.print("database        [red]not reachable[/red]")
        raise


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="The file to upload.")],
    asset: Annotated[str | None, typer.Option("--asset", help="Asset name (default: the file name).")] = None,
    server: Annotated[str | None, typer.Option("--server", help="API base URL (default: http://<host>:<port> "
                                               "from the settings, http://127.0.0.1:8700).")] = None,
    account: Annotated[str, typer.Option("--account", help="Account name.")] = DEV_ACCOUNT_NAME,
    key: Annotated[str | None, typer.Option("--key", help="Account key (default: looked up in the local data "
                                            "directory) [env OPENAMS_ACCOUNT_KEY].",
                                            envvar="OPENAMS_ACCOUNT_KEY")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Upload a file into a new asset through the public API; prints the asset id."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from .client import AmsClient, ClientError

    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    if not file.is_file():
        err.print(f"[red]error:[/red] {file}: {'not a regular file' if file.exists() else 'no such file'}")
        raise typer.Exit(1)
    if key is None:
        key = _local_key(settings, account)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=False)
    task: list[Any] = []

    def on_start(size: int, blob: str) -> None:
        if blob != file.name:
            err.print(f"note: stored as '{blob}' (AMS file names allow one '.' and no URL-reserved "
                      "characters)")
        task.append(bar.add_task(blob, total=size))
        bar.start()

    def advance(n: int) -> None:
        if task:
            bar.advance(task[0], n)

    try:
        with AmsClient(server or settings.api_base, account, key) as client:
            result = client.upload(str(file), asset, progress=advance, on_start=on_start)
    except ClientError as exc:
        bar.stop()
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        bar.stop()
        err.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    bar.stop()
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")
    rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
    err.print(f"uploaded {result.size:,} bytes in {result.seconds:.1f}s ({rate:.1f} MB/s)")
    print(result.asset_id)


def _local_key(settings: Settings, account: str) -> str:
    """An account's primary key from the local database (like `openams account keys`)."""
    from .config import DEV_ACCOUNT_KEY

    local_db = not settings.database_url
    if local_db and not (settings.data_dir / "openams.db").exists():
        if account == DEV_ACCOUNT_NAME:
            return DEV_ACCOUNT_KEY  # the well-known development key; the server says so if it was replaced
        err.print(f"[red]error:[/red] no key given and no local data directory at "
                  f"{settings.data_dir.resolve()}; pass --key or --data-dir")
        raise typer.Exit(1)
    rt = _runtime(settings)
    try:
        with rt.engine.connect() as conn, conn.begin():
            found = rt.accounts.get(conn, account)
    except Exception as exc:
        _fail(exc)
        raise
    finally:
        rt.engine.dispose()
    return str(found.primary_key)


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit()


def main() -> None:
    app()
from . import cli_encode, cli_protect, cli_publish, cli_worker  # noqa: E402,F401
