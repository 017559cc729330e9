"""Everything a running openams needs, built once from settings: the database engine, the secret
box, the account store — and the one function that turns a bearer token into an account."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine

from .auth import tokens
from .auth.accounts import Account, AccountStore
from .auth.secrets import SecretBox
from .config import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Settings
from .db.engine import make_engine, migrate
from .errors import Forbidden, Unauthorized

log = logging.getLogger("openams")


@dataclass
class Runtime:
    settings: Settings
    ready: bool = False
    """True once every listener accepts connections (`/health` answers 503 before)."""
    scheduler: Any = None
    changes: int = 0
    """Counts committed API writes in this process; the origin drops its cached lookups when it
    moves, so a deleted locator or a stopped endpoint stops streaming at once."""
    """The job scheduler of this process, when it runs jobs (`start_jobs`)."""
    _verified: dict[tuple[str, str, str, str], int] = field(default_factory=dict, repr=False)

    def start_jobs(self) -> None:
        from .jobs.runner import Scheduler

        if self.scheduler is None:
            if self.settings.job_runner == "celery":  # claimed tasks go to `openams worker` processes
                from .jobs.celery_worker import CeleryScheduler

                self.scheduler = CeleryScheduler(self)
            elif self.settings.job_runner == "inprocess":
                self.scheduler = Scheduler(self, self.settings.max_concurrent_tasks)
            else:
                raise ValueError(f"job_runner must be 'inprocess' or 'celery', not "
                                 f"{self.settings.job_runner!r}")
            self.scheduler.start()

    def stop_jobs(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    @cached_property
    def engine(self) -> Engine:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return make_engine(self.settings.db_url)

    @cached_property
    def box(self) -> SecretBox:
        return SecretBox.for_settings(self.settings.server_key, self.settings.data_dir)

    @cached_property
    def storage(self) -> Any:
        """The blob backend chosen in settings (see `storage.open_backend`)."""
        from .storage import open_backend

        return open_backend(self.settings)

    @cached_property
    def license_provider(self) -> Any:
        """The operator's PlayReady/Widevine/FairPlay licence provider, None if not configured
        (raises `keydelivery.providers.ProviderError` when the setting names nothing usable)."""
        from .keydelivery.providers import load_provider

        return load_provider(self.settings.license_provider)

    @cached_property
    def accounts(self) -> AccountStore:
        return AccountStore(self.box)

    def prepare(self) -> Account | None:
        """Migrate the schema, seed every account's default rows, create the dev account if asked.

        Returns the development account when it was created now (so the caller can print it).
        """
        from .entities.defaults import ensure_account_defaults

        migrate(self.engine)
        created = None
        with self.engine.connect() as conn:
            conn.info["write"] = True
            with conn.begin():
                if self.settings.create_dev_account and not self.accounts.identities(conn):
                    created = self.accounts.create(conn, DEV_ACCOUNT_NAME, DEV_ACCOUNT_KEY)
                # ids and names only: starting must not depend on decrypting every account's keys
                for account in self.accounts.identities(conn):
                    ensure_account_defaults(conn, account, self.settings)
        return created

    def authenticate(self, conn: Connection, header: str | None, base_url: str) -> Account:
        """Check a bearer token (SWT or JWT) and return the account it is for (401 otherwise)."""
        token = tokens.parse_bearer(header)
        if tokens.is_jwt(token):
            name, _client = tokens.jwt_account(token)
        elif "HMACSHA256=" in token:
            name = tokens.swt_account(token)
        else:
            raise Unauthorized("The bearer token is neither an SWT nor a JWT issued by this service.")
        account = self.accounts.find(conn, name)
        if account is None:
            raise Unauthorized("The token is for an account that does not exist.")
        # A token verified against exactly these keys stays valid until it expires; remembering
        # that skips the signature work. Rotating a key changes the cache key, so it cannot outlive it.
        memo = (token, account.primary_key, account.secondary_key, base_url)
        expires = self._verified.get(memo)
        if expires is None or expires < time.time():
            if tokens.is_jwt(token):
                claims = tokens.verify_jwt(token, account, extra_audiences=self.audiences(base_url))
            else:
                claims = tokens.verify_swt(token, account)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[memo] = claims.expires
        if account.disabled:
            raise Forbidden("The account is disabled.")
        return account

    def audiences(self, base_url: str) -> set[str]:
        out = {self.settings.api_base, self.settings.api_base + "/api"}
        if base_url:
            out.add(base_url.rstrip("/"))
            out.add(base_url.rstrip("/").rsplit("/api", 1)[0])
        return out
