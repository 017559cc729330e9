"""`openams publish`: make an asset streamable (an OnDemandOrigin locator) and print its URLs.

Registers itself on the `openams` Typer app when imported (cli.py imports it at the bottom).
"""

from __future__ import annotations

import json
import webbrowser
from typing import Annotated, Any
from urllib.parse import quote

import typer

from .cli import ConfigFile, DatabaseUrl, DataDir, _local_key, _settings, app, err
from .config import DEV_ACCOUNT_NAME

FORMATS = {
    "hls": "(format=m3u8-aapl)",
    "hls-cmaf": "(format=m3u8-cmaf)",
    "dash": "(format=mpd-time-csf)",
    "dash-cmaf": "(format=mpd-time-cmaf)",
    "smooth": "",
}


def streaming_urls(locator_path: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest URLs of every format and the progressive-download URLs of the MP4s, for an
    OnDemandOrigin locator `Path` (`http://host/<guid>/`)."""
    base = locator_path if locator_path.endswith("/") else locator_path + "/"
    names = [f["Name"] for f in files]
    ism = next((n for n in names if n.lower().endswith(".ism")), None)
    manifest = ism[:-4] if ism else "manifest"
    out: dict[str, Any] = {f"{k}": f"{base}{quote(manifest)}.ism/manifest{v}" for k, v in FORMATS.items()}
    out["progressive"] = [base + quote(n) for n in sorted(names) if n.lower().endswith((".mp4", ".m4a", ".m4v"))]
    return out


@app.command()
def publish(
    asset_id: Annotated[str, typer.Argument(help="The asset to stream (nb:cid:UUID:…), e.g. an encoding output.")],
    days: Annotated[float, typer.Option("--days", min=0.001, help="How long the URLs work.")] = 365.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the URLs as JSON.")] = False,
    open_in: Annotated[str | None, typer.Option("--open", help="Open one URL in the browser: hls, dash, smooth, "
                                                "hls-cmaf, dash-cmaf.")] = None,
    server: Annotated[str | None, typer.Option("--server", help="API base URL (default: from the settings, "
                                               "http://127.0.0.1:8700).")] = None,
    account: Annotated[str, typer.Option("--account", help="Account name.")] = DEV_ACCOUNT_NAME,
    key: Annotated[str | None, typer.Option("--key", help="Account key (default: looked up in the local data "
                                            "directory) [env OPENAMS_ACCOUNT_KEY].",
                                            envvar="OPENAMS_ACCOUNT_KEY")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Create a streaming locator for an asset and print its HLS, DASH, Smooth and progressive URLs.

    Exit status: 0 published; 1 the server refused (the message says why); 2 bad arguments.
    """
    from .client import READ, AmsClient, ClientError

    if open_in is not None and open_in not in FORMATS:
        err.print(f"[red]error:[/red] --open takes one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    if key is None:
        key = _local_key(settings, account)
    try:
        with AmsClient(server or settings.api_base, account, key) as client:
            files = client.files(asset_id)
            if not any(f["Name"].lower().endswith((".ism", ".mp4", ".m4a", ".m4v", ".ismv", ".isma"))
                       for f in files):
                err.print(f"[red]error:[/red] asset {asset_id} has no MP4 or .ism files to stream "
                          f"(files: {', '.join(f['Name'] for f in files) or 'none'}); encode it first")
                raise typer.Exit(1)
            policy = client.create_policy(f"Streaming {days:g} days", READ, days * 24 * 60)
            try:
                locator = client.create_origin_locator(asset_id, policy["Id"])
            except ClientError:
                client.delete("AccessPolicies", policy["Id"], "removing the unused access policy")
                raise
    except ClientError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    urls = streaming_urls(str(locator["Path"]), files)
    if as_json:
        print(json.dumps({"locator": locator["Id"], "expires": locator.get("ExpirationDateTime"), **urls}, indent=2))
    else:
        print(f"locator   {locator['Id']} (expires {locator.get('ExpirationDateTime')})")
        for k in FORMATS:
            print(f"{k:<10}{urls[k]}")
        for url in urls["progressive"]:
            print(f"{'mp4':<10}{url}")
    if open_in is not None:
        webbrowser.open(urls[open_in])
