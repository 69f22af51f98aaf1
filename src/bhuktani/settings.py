from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bhuktani.infra.http1 import split_base_url
from bhuktani.services import registry
from bhuktani.store.base import POOL_SIZE


def _env_name(slug: str) -> str:
    return slug.upper().replace("-", "_")


def _slug_of(key: str, known: set[str]) -> str | None:
    """The group a key of BHUKTANI_ISPS names: its slug, or its environment spelling."""
    if key in known:
        return key
    return next((slug for slug in known if _env_name(slug) == key.upper()), None)


class IspEndpoint(BaseModel):
    """Where a service group's ISP system answers our ISP protocol, and its key."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = ""
    api_key: SecretStr = SecretStr("")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value:
            split_base_url(value)
        return value


class Settings(BaseSettings):
    """Everything an operator can set, read from `BHUKTANI_*` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="BHUKTANI_", extra="ignore", env_nested_delimiter="__"
    )

    database_url: str = "sqlite:///./bhuktani.db"
    # PostgreSQL connections per process (store.base.POOL_SIZE says why so few).
    db_pool_size: int = Field(default=POOL_SIZE, ge=1)
    # Keys the token hash. Tokens carry 120+ random bits, so the key is defence in depth:
    # set it in production so that a copy of the database alone cannot check tokens.
    token_hash_key: SecretStr = SecretStr("bhuktani-development-key")

    # A token's check is remembered this long: revoking a token or disabling a merchant
    # takes effect within it. 0 checks the database on every request.
    auth_cache_s: float = 5.0
    session_ttl_s: int = 30 * 60
    # Expired sessions that no payment spent are deleted this long after they expired
    # (until then a late commit is told "Session expired"), swept this often.
    session_keep_expired_s: int = Field(default=3600, ge=0)
    session_sweep_s: float = Field(default=60.0, gt=0)
    # Requests a second each merchant may make in each environment, and the burst above
    # it; a merchant's own limit (`merchant set-rate-limit`) wins. docs/OPERATING.md, "Limits", says why
    # 100 and 200.
    rate_per_s: int = Field(default=100, ge=1)
    rate_burst: int = Field(default=200, ge=1)
    # Failed authentications (a token refused) a second per client address, and the burst.
    auth_fail_per_s: float = Field(default=1.0, gt=0)
    auth_fail_burst: int = Field(default=20, ge=1)
    # Proxies trusted to name the client in X-Forwarded-For (uvicorn's forwarded_allow_ips:
    # addresses or networks, comma separated, "*" any). Empty: the client is the socket's
    # peer, whatever the headers say.
    forwarded_allow_ips: str = ""
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    # `serve --workers N`: a worker whose event loop has not run for this long is killed
    # and replaced (api.serving says why). 0 leaves hung workers alone; below 5 s a busy
    # worker could pass for a hung one.
    worker_hung_after_s: float = 30.0
    # Slow and many clients, per server process (api.connections): a request's head must
    # be in within the first deadline of its connection opening (or of its first byte, on
    # a kept-alive connection), its body within the second of its head; an idle
    # connection is closed after the keep-alive; past the bound only /healthz is served.
    request_head_timeout_s: float = Field(default=10.0, gt=0)
    request_body_timeout_s: float = Field(default=10.0, gt=0)
    keep_alive_s: int = Field(default=5, ge=1)
    max_connections: int = Field(default=10_000, ge=1)
    # `Authorization: Bearer <this>` reads GET /metrics; unset, /metrics is not served.
    metrics_token: SecretStr = SecretStr("")
    # How often each serving process reads the operator's queues (flagged payments, the
    # reconciler's backlog, callbacks, low balances) from the database for /metrics
    # (books/health.py); 0 reads them never.
    queue_gauges_every_s: float = Field(default=15.0, ge=0)

    # Reconciliation of payments left Processing.
    reconciler_enabled: bool = True
    reconcile_poll_s: float = 1.0
    reconcile_batch: int = 50
    reconcile_lease_s: int = 60
    # Delay before the n-th status question, the last one repeating.
    reconcile_backoff_s: list[float] = [
        2,
        3,
        5,
        10,
        20,
        30,
        60,
        120,
        300,
        600,
        1800,
        3600,
    ]
    # Past this age a payment still unknown is flagged for an operator, never guessed.
    reconcile_flag_after_s: int = 24 * 3600
    # A payment the reconciler cannot finish - its write fails (a database error on
    # settle), or the ISP's answers cannot be read - is flagged for an operator after this
    # many failed rounds in a row, each tried again after reconcile_retry_failed_s: with
    # the defaults, about 20 s after the first failure.
    reconcile_flag_after_failures: int = Field(default=3, ge=1)
    reconcile_retry_failed_s: float = Field(default=10.0, gt=0)

    # Delivery callbacks: the delay before each retry; past the last one (about 24 h in
    # all) a callback that was never acknowledged is given up, its attempts on record.
    callbacks_enabled: bool = True
    callback_backoff_s: list[float] = (
        [60.0, 300.0, 300.0] + [600.0] * 5 + [3600.0] * 5 + [21600.0] * 3
    )
    # One deadline for a whole attempt: resolve, connect, send, read the status and at
    # most 64 KiB of the answer.
    callback_timeout_s: float = Field(default=10.0, gt=0)
    # Staging and tests only: LIVE callbacks may go to private and loopback addresses.
    callback_allow_private: bool = False
    callback_poll_s: float = 1.0
    callback_batch: int = Field(default=50, ge=1)
    # Never shorter than the timeout plus 30 s (callbacks/delivery.py: lease_ms).
    callback_lease_s: int = 60
    # Sends in flight at once: in all, per deliverer process; and per merchant and
    # environment, so that a slow receiver holds back only its own callbacks.
    callback_concurrency: int = Field(default=100, ge=1)
    callback_endpoint_concurrency: int = Field(default=4, ge=1)

    # The books' loops (in the worker, beside the reconciler). Low balances are looked for
    # this often: a merchant crossing its threshold hears balance.low within this time.
    low_balance_poll_s: float = Field(default=5.0, gt=0)
    # Past days' closing balances (statements, credits by date) are written this often,
    # for each merchant account with entries, once a day has been over this long.
    day_close_poll_s: float = Field(default=300.0, gt=0)
    day_close_after_s: float = Field(default=600.0, ge=0)
    # Each morning at this Nepal time the worker settles the day before with every LIVE
    # ISP system (bhuktani settle); mismatches are raised to the operator.
    settle_at_npt: str = Field(default="06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    # The dashboard and the operator console (web/): a signed-in browser stays signed in
    # this long; an email address that fails to sign in web_login_max_failures times
    # within web_login_window_s is refused until the window ends, and so is a client
    # address after web_login_max_failures_per_client (many people may share one).
    web_session_s: int = Field(default=8 * 3600, gt=0)
    web_login_max_failures: int = Field(default=5, gt=0)
    web_login_max_failures_per_client: int = Field(default=50, gt=0)
    web_login_window_s: int = Field(default=15 * 60, gt=0)

    # The in-process sandbox (TEST tokens).
    sandbox_slow_delay_s: float = 10.0
    sandbox_settle_window_s: float = 5.0

    # Service slugs (group or ISP) an operator has put in maintenance: 1019.
    maintenance: list[str] = []

    # LIVE ISP systems by service group: BHUKTANI_ISPS__<GROUP>__BASE_URL and
    # BHUKTANI_ISPS__<GROUP>__API_KEY, the group's slug in capitals with "_" for "-". A group
    # without a base URL is not available in LIVE (1018).
    isps: dict[str, IspEndpoint] = {}
    isp_connect_timeout_s: float = 2.0
    isp_timeout_s: float = 5.0
    # Connections kept to each LIVE ISP: a slow ISP holds one per payment in flight.
    isp_max_connections: int = 1024
    # A commit without a session is priced from the ISP's answer of at most this long
    # ago (the ISP still checks the amount). Details calls always ask afresh.
    isp_lookup_cache_s: float = 30.0
    # A NotFound from a live ISP is final only this long after the payment was sent.
    isp_settle_window_s: float = 120.0
    # Circuit breaker: this many upstream failures in a row degrade an ISP (1018, no
    # money held) until a probe after the cool-down succeeds.
    isp_breaker_failures: int = 5
    isp_breaker_cooldown_s: float = 30.0

    @field_validator("isps")
    @classmethod
    def _known_groups(cls, value: dict[str, IspEndpoint]) -> dict[str, IspEndpoint]:
        known = {group.slug for group in registry.SERVICES}
        slugs = {}
        for key, endpoint in value.items():
            slug = _slug_of(key, known)
            if slug is None:
                raise ValueError(
                    f"no service group {key!r}; the groups: {', '.join(sorted(known))}"
                )
            slugs[slug] = endpoint
        return slugs

    def isp_endpoints(self) -> dict[str, IspEndpoint]:
        """Each configured group's endpoint. A field not given as BHUKTANI_ISPS__... is read
        from its name before, BHUKTANI_<GROUP>_BASE_URL or BHUKTANI_<GROUP>_API_KEY, for
        one more release (`legacy_isp_names` lists those set)."""
        found = {}
        for group in registry.SERVICES:
            given = self.isps.get(group.slug, IspEndpoint())
            prefix = "BHUKTANI_" + _env_name(group.slug)
            base_url = given.base_url or os.environ.get(prefix + "_BASE_URL", "")
            api_key = given.api_key.get_secret_value() or os.environ.get(prefix + "_API_KEY", "")
            if base_url:
                found[group.slug] = IspEndpoint(base_url=base_url, api_key=SecretStr(api_key))
        return found

    @staticmethod
    def legacy_isp_names() -> list[str]:
        """The variables of the names before BHUKTANI_ISPS__... that are set."""
        names = (
            f"BHUKTANI_{_env_name(group.slug)}_{field}"
            for group in registry.SERVICES
            for field in ("BASE_URL", "API_KEY")
        )
        return [name for name in names if os.environ.get(name)]

    @model_validator(mode="after")
    def _endpoints_readable(self) -> Settings:
        self.isp_endpoints()  # a base URL of the names before is checked at start-up too
        return self

    @field_validator("worker_hung_after_s")
    @classmethod
    def _hung_after(cls, value: float) -> float:
        if value != 0 and value < 5:
            raise ValueError("0 (never) or at least 5 seconds")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
