"""`openams encode`: submit a Media Encoder Standard job for an asset through the public API, and
optionally follow it to the end.

Registers itself on the `openams` Typer app when imported (cli.py imports it at the bottom).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .cli import ConfigFile, DatabaseUrl, DataDir, _local_key, _settings, app, err
from .config import DEV_ACCOUNT_NAME

MAX_CONFIGURATION = 100_000
"""Task.Configuration is at most 100,000 characters."""
CANCEL_WAIT = 60.0
"""Seconds `--wait` keeps following a job after Ctrl-C asked the server to cancel it."""


def read_preset(value: str) -> tuple[str, str]:
    """The Task.Configuration for `--preset` and a short description of it.

    An existing file is read (UTF-8 or UTF-16, with or without BOM) and checked locally; a value
    starting with `{` or `<` is an inline JSON/XML preset; anything else must be a system preset
    name. Raises ValueError with a message for the user.
    """
    from .media.errors import PresetError
    from .media.presets import decode_text, load_preset, looks_like_preset_document
    from .media.system_presets import get_system_preset

    path = Path(value).expanduser()
    text: str
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read the preset file {path}: {exc.strerror}") from None
        try:
            text = decode_text(data)
        except PresetError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not looks_like_preset_document(text):
            raise ValueError(f"{path} is not a JSON or XML preset (it should start with '{{' or '<').")
        described = f"preset file {path.name}"
    elif value.lstrip().startswith(("{", "<")):
        text, described = value, "inline preset"
    elif path.suffix.lower() in (".json", ".xml") or "/" in value:
        raise ValueError(f"no such preset file: {path}")
    else:
        try:
            canonical = get_system_preset(value).name or value
        except PresetError as exc:
            raise ValueError(str(exc)) from None
        return value.strip(), f"system preset '{canonical}'"
    if len(text) > MAX_CONFIGURATION:
        raise ValueError(f"the preset is {len(text):,} characters long; Task.Configuration allows at most "
                         f"{MAX_CONFIGURATION:,}.")
    try:
        load_preset(text)
    except PresetError as exc:
        problems = "\n  ".join(exc.problems)
        raise ValueError(f"the {described} is not a valid preset:\n  {problems}") from None
    return text, described


@app.command()
def encode(
    asset_id: Annotated[str, typer.Argument(help="The input asset id (nb:cid:UUID:…), e.g. from `openams upload`.")],
    preset: Annotated[str, typer.Option("--preset", "-p", help="A system preset name (\"Adaptive Streaming\", "
                                        "\"H264 Multiple Bitrate 720p\", …) or a JSON/XML preset file.")]
    = "Adaptive Streaming",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the job with a progress bar until it ends; "
                                       "Ctrl-C then cancels the job.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Job name (default: encode-<random>).")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls with --wait.")]
    = 1.0,
    server: Annotated[str | None, typer.Option("--server", help="API base URL (default: http://<host>:<port> "
                                               "from the settings, http://127.0.0.1:8700).")] = None,
    account: Annotated[str, typer.Option("--account", help="Account name.")] = DEV_ACCOUNT_NAME,
    key: Annotated[str | None, typer.Option("--key", help="Account key (default: looked up in the local data "
                                            "directory) [env OPENAMS_ACCOUNT_KEY].",
                                            envvar="OPENAMS_ACCOUNT_KEY")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None,
) -> None:
    """Encode an asset with Media Encoder Standard; prints the job id.

    With --wait, follows the job until it ends, then prints the output asset id and its files (name, size).
    Exit status: 0 Finished (or submitted, without --wait); 1 Error (ErrorDetails are printed) or Canceled;
    2 bad arguments; 130 Ctrl-C (after asking the server to cancel the job).
    """
    from .client import AmsClient, ClientError

    try:
        configuration, described = read_preset(preset)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    settings = _settings(config, data_dir=data_dir, database_url=database_url, create_dev_account=False)
    if key is None:
        key = _local_key(settings, account)
    try:
        with AmsClient(server or settings.api_base, account, key) as client:
            job = client.submit_job(asset_id, configuration, name)
            job_id = str(job["Id"])
            print(job_id, flush=True)
            if not wait:
                err.print(f"submitted job '{job['Name']}' with {described}")
                return
            code = _follow(client, job_id, described, interval)
    except ClientError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # before the job was submitted, or while printing its outcome
        err.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


def _follow(client: Any, job_id: str, described: str, interval: float) -> int:
    """Show the job's progress until it ends; print the outcome. Returns the exit status."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from .client import ClientError

    bar = Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                   TimeElapsedColumn(), console=err, transient=False)
    err.print(f"encoding with {described}; Ctrl-C cancels the job")
    row = bar.add_task("Queued", total=100.0)

    def show(status: Any) -> None:
        bar.update(row, description=status.label, completed=status.progress)

    interrupted = False
    bar.start()
    try:
        status = client.wait_job(job_id, show, interval)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.stop()
    if interrupted:
        err.print("[yellow]interrupted:[/yellow] asking the server to cancel the job…")
        try:
            client.cancel_job(job_id)
        except ClientError as exc:  # e.g. it ended meanwhile
            err.print(f"[yellow]warning:[/yellow] {exc.message}")
        try:
            status = client.wait_job(job_id, None, min(interval, 0.5), timeout=CANCEL_WAIT)
            err.print(f"job {status.label}")
        except KeyboardInterrupt:
            err.print("not waiting for the cancel to complete")
        except ClientError as exc:
            err.print(f"[yellow]warning:[/yellow] {exc.message}")
        return 130
    return _report(client, job_id, status)


def _report(client: Any, job_id: str, status: Any) -> int:
    duration = status.job.get("RunningDuration") or 0.0
    if status.label == "Finished":
        err.print(f"[green]Finished[/green] in {float(duration):.1f}s")
        for task in status.tasks:
            if task.get("PerfMessage"):
                err.print(f"  {task['PerfMessage']}")
        for asset in client.job_outputs(job_id):
            print(asset["Id"])
            for f in sorted(client.files(asset["Id"]), key=lambda f: f["Name"]):
                print(f"  {f['Name']}\t{int(f.get('ContentFileSize') or 0)}")
        return 0
    if status.label == "Error":
        err.print(f"[red]Error[/red]: job {job_id} failed")
        for detail in status.errors:
            err.print(f"  {detail.get('Code')}: {detail.get('Message')}")
        if not status.errors:
            err.print("  (no ErrorDetails were recorded)")
        return 1
    err.print(f"[yellow]{status.label}[/yellow]: job {job_id} did not finish")
    return 1

