"""`openams worker`: a Celery worker that runs encoding tasks claimed by `openams serve`.

Registers itself on the `openams` Typer app when imported (cli.py imports it at the bottom).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from .cli import ConfigFile, DatabaseUrl, DataDir, _settings, app, err


@app.command()
def worker(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    broker_url: Annotated[str | None, typer.Option(
        "--broker-url", help="Celery broker, e.g. redis://127.0.0.1:6379/0 or amqp://guest:guest@host:5672// "
        "(env OPENAMS_BROKER_URL).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1,
                                             help="Tasks this worker runs at once.")] = 1,
    pool: Annotated[str | None, typer.Option("--pool", help="solo (default for one task at a time), prefork "
                                             "(default for more) or threads.")] = None,
    config: ConfigFile = None,
) -> None:
    """Run encoding tasks from the broker (start `openams serve` with job_runner = "celery").

    Use the same database and storage settings (and, for local storage, the same data directory)
    as the server.
    """
    settings = _settings(config, data_dir=data_dir, database_url=database_url, broker_url=broker_url,
                         create_dev_account=False)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from .jobs.celery_worker import WorkerSetupError, worker_main

    try:
        worker_main(settings, concurrency, pool)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except WorkerSetupError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
