"""One settings object: defaults that just work, overridden by a TOML file and `OPENAMS_*` env vars.

Precedence (highest first): command-line options, environment variables, the config file
(`--config FILE` or `OPENAMS_CONFIG`), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEV_ACCOUNT_NAME = "devmediaaccount1"
# A published, well-known development key (like Azurite's devstoreaccount1 key). Never use it for
# anything reachable from another machine; `openams account regenerate-key` replaces it.
DEV_ACCOUNT_KEY = "b3BlbmFtcy1kZXZlbG9wbWVudC1hY2NvdW50LWtleS1ub3QtZm9yLXByb2R1Y3Rpb24h"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("openams-data")
    host: str = "127.0.0.1"
    port: int = 8700
    blob_port: int = 8701
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite in the data directory."""
    public_url: str = ""
    """Base URL clients reach the API port at; empty means http://<host>:<port>."""
    blob_public_url: str = ""
    """Base URL of the blob service; empty means http://<host>:<blob_port>."""
    base_domain: str = ""
    """Optional DNS suffix enabling host-style names (`<account>.restv2.<region>.<domain>`)."""
    region: str = "local"
    token_lifetime: int = 21600
    """Seconds a token issued by the token endpoints stays valid (6 h, as ACS did)."""
    max_body_bytes: int = 16 * 1024 * 1024
    max_url_bytes: int = 8192
    create_dev_account: bool = True
    log_level: str = "info"
    run_jobs: bool = True
    """Run encoding tasks inside `openams serve` (turn off when `openams worker` processes run them)."""
    max_concurrent_tasks: int = 2
    """Tasks one process runs at once (each account is further limited by its reserved units); with
    `job_runner = "celery"` the tasks the server keeps in flight on the workers (their total concurrency)."""
    job_runner: str = "inprocess"
    """Where the server's scheduler runs claimed tasks: `inprocess` (a thread pool) or `celery`
    (`openams worker` processes reached through `broker_url`)."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker: `redis://host:6379/0` or `amqp://user:pass@host:5672//`."""
    celery_queue: str = "openams.tasks"
    """Broker queue the server publishes tasks to and `openams worker` consumes."""
    notification_redis_url: str = ""
    """Redis holding the lists that AzureQueue notification endpoints write to; empty means
    `broker_url` when that is a Redis URL, else redis://127.0.0.1:6379/0."""
    server_key: str = ""
    """The key that encrypts secrets at rest (a Fernet key). Empty: `<data dir>/server.key`, created
    on first start. Every process sharing one database (servers, workers) must use the same key."""
    storage_backend: str = "local"
    """Where blob content lives: `local` (the data directory), `azure` or `s3`."""
    azure_connection_string: str = ""
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    origin_cache_mb: int = 256
    """Memory the streaming origin keeps built segments and manifests in (an LRU, like a CDN edge)."""
    license_provider: str = ""
    """PlayReady/Widevine/FairPlay licence provider as "package.module:name" (see
    `keydelivery/providers.py`); empty: those licence URLs answer 501."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_base(self) -> str:
        base = self.public_url or f"http://{_url_host(self.host)}:{self.port}"
        return base.rstrip("/")

    @property
    def blob_base(self) -> str:
        base = self.blob_public_url or f"http://{_url_host(self.host)}:{self.blob_port}"
        return base.rstrip("/")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'openams.db').resolve()}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


_ENV = {
    "data_dir": "OPENAMS_DATA_DIR",
    "host": "OPENAMS_HOST",
    "port": "OPENAMS_PORT",
    "blob_port": "OPENAMS_BLOB_PORT",
    "database_url": "OPENAMS_DATABASE_URL",
    "public_url": "OPENAMS_PUBLIC_URL",
    "blob_public_url": "OPENAMS_BLOB_PUBLIC_URL",
    "base_domain": "OPENAMS_BASE_DOMAIN",
    "region": "OPENAMS_REGION",
    "token_lifetime": "OPENAMS_TOKEN_LIFETIME",
    "max_body_bytes": "OPENAMS_MAX_BODY_BYTES",
    "create_dev_account": "OPENAMS_CREATE_DEV_ACCOUNT",
    "log_level": "OPENAMS_LOG_LEVEL",
    "storage_backend": "OPENAMS_STORAGE_BACKEND",
    "server_key": "OPENAMS_SERVER_KEY",
    "run_jobs": "OPENAMS_RUN_JOBS",
    "max_concurrent_tasks": "OPENAMS_MAX_CONCURRENT_TASKS",
    "job_runner": "OPENAMS_JOB_RUNNER",
    "broker_url": "OPENAMS_BROKER_URL",
    "celery_queue": "OPENAMS_CELERY_QUEUE",
    "notification_redis_url": "OPENAMS_NOTIFICATION_REDIS_URL",
    "azure_connection_string": "OPENAMS_AZURE_CONNECTION_STRING",
    "s3_endpoint_url": "OPENAMS_S3_ENDPOINT_URL",
    "s3_bucket": "OPENAMS_S3_BUCKET",
    "s3_region": "OPENAMS_S3_REGION",
    "s3_access_key": "OPENAMS_S3_ACCESS_KEY",
    "s3_secret_key": "OPENAMS_S3_SECRET_KEY",
    "origin_cache_mb": "OPENAMS_ORIGIN_CACHE_MB",
    "license_provider": "OPENAMS_LICENSE_PROVIDER",
}


def _convert(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("Path", Path):
        return Path(str(raw)).expanduser()
    if kind in ("int", int):
        return int(raw)
    if kind in ("bool", bool):
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
    return str(raw)


def load(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and explicit overrides."""
    values: dict[str, Any] = {}
    path = config_file or os.environ.get("OPENAMS_CONFIG")
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        section = data.get("openams", data)
        for key, raw in section.items():
            key = key.replace("-", "_")
            if key not in _ENV and key != "extra":
                raise ValueError(f"{path}: unknown setting '{key}'")
            values[key] = raw if key == "extra" else _convert(key, raw)
    for key, env in _ENV.items():
        if env in os.environ and os.environ[env] != "":
            values[key] = _convert(key, os.environ[env])
    for key, raw in overrides.items():
        if raw is not None:
            values[key] = _convert(key, raw)
    return replace(Settings(), **values)
