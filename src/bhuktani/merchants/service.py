"""Merchants, their tokens and their credits: what the CLI and authentication need.
Each change to a merchant or a token appends its audit entry in its own transaction;
`operator` None records the OS user running the process (audit.operator_of)."""

from __future__ import annotations

from dataclasses import dataclass

from bhuktani import audit
from bhuktani.callbacks import endpoints
from bhuktani.clock import now_ms
from bhuktani.domain import Env
from bhuktani.errors import (
    AccountDeleted,
    AccountExpired,
    AccountInactive,
    Refusal,
    TokenDisabled,
    TokenMissing,
    TokenRevoked,
    TokenUnknown,
)
from bhuktani.infra.ttl_cache import TtlCache
from bhuktani.ledger import accounts as ledger
from bhuktani.merchants import tokens
from bhuktani.services import registry
from bhuktani.store import Database, Tx, keyset, query_row

ENVS = tuple(env.value for env in Env)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's merchant and environment."""

    merchant_id: int
    env: str
    services: str
    # The merchant's own request rate limit; None: the gateway's default.
    rate_per_s: int | None = None
    rate_burst: int | None = None

    def may_use(self, service: str, isp: str) -> bool:
        if self.services.strip() == "all":
            return True
        enabled = {s.strip() for s in self.services.split(",")}
        return service in enabled or isp in enabled


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: int
    test_token: str
    live_token: str
    # Each environment's callback signing secret, shown once.
    callback_secrets: dict[Env, str]


async def _issue_token(tx: Tx, merchant_id: int, env: str, key: bytes) -> str:
    token = tokens.generate(env)
    await tx.execute(
        "INSERT INTO tokens (merchant_id, env, token_hash, hint, created_ms)"
        " VALUES ($1, $2, $3, $4, $5)",
        merchant_id,
        env,
        tokens.digest(token, key),
        tokens.hint(token),
        now_ms(),
    )
    return token


async def create(
    db: Database,
    name: str,
    *,
    key: bytes,
    operator: str | None = None,
    services: str = "all",
    callback_url: str | None = None,
    test_credits_paisa: int = 0,
    live_credits_paisa: int = 0,
) -> NewMerchant:
    """`callback_url`, if given, receives both environments' callbacks until set apart.
    The audit entry holds what the merchant was made with, never its tokens or secrets."""
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> NewMerchant:
        row = await tx.fetchrow(
            "INSERT INTO merchants (name, services, created_ms) VALUES ($1, $2, $3) RETURNING id",
            name,
            services,
            now_ms(),
        )
        assert row is not None
        merchant_id = int(row["id"])
        secrets = await endpoints.create(tx, merchant_id, callback_url)
        issued = {env: await _issue_token(tx, merchant_id, env, key) for env in ENVS}
        for env, amount in ((Env.TEST, test_credits_paisa), (Env.LIVE, live_credits_paisa)):
            account_id = await ledger.merchant_account(tx, merchant_id, env)
            if amount > 0:
                await _load(tx, account_id, env, amount, "opening credits")
        await audit.record(
            tx,
            operator=who,
            action="merchant.create",
            merchant_id=merchant_id,
            details={
                "name": name,
                "services": services,
                "callback_url": callback_url,
                "test_credits_paisa": test_credits_paisa,
                "live_credits_paisa": live_credits_paisa,
                "token_hints": {env: tokens.hint(token) for env, token in issued.items()},
            },
        )
        return NewMerchant(merchant_id, issued[Env.TEST], issued[Env.LIVE], secrets)

    return await db.run(body)


async def rotate_callback_secret(
    db: Database, merchant_id: int, env: Env, *, operator: str | None = None
) -> str | None:
    """A new signing secret for one environment, in force from the next callback on; the
    previous one signs beside it for a day (callbacks.signing.ROTATION_OVERLAP_MS). The
    audit entry says when the previous one stops, never either secret."""
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> str | None:
        rotated = await endpoints.rotate(tx, merchant_id, env)
        if rotated is None:
            return None
        secret, previous_until_ms = rotated
        await audit.record(
            tx,
            operator=who,
            action="merchant.callback_secret",
            merchant_id=merchant_id,
            env=env.value,
            details={"previous_signs_until_ms": previous_until_ms},
        )
        return secret

    return await db.run(body)


async def set_callback_url(
    db: Database, merchant_id: int, env: Env, url: str | None, *, operator: str | None = None
) -> bool:
    """Where one environment's callbacks go from the next attempt on; None stops queuing
    new ones (those queued wait for a URL: callbacks/outbox.py)."""
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> bool:
        # A malformed URL is refused here (UnsafeUrl) and the transaction writes nothing.
        if not await endpoints.set_url(tx, merchant_id, env, url):
            return False
        await audit.record(
            tx,
            operator=who,
            action="merchant.callback_url",
            merchant_id=merchant_id,
            env=env.value,
            details={"url": url},
        )
        return True

    return await db.run(body)


async def set_rate_limit(
    db: Database,
    merchant_id: int,
    per_s: int | None,
    burst: int | None,
    *,
    operator: str | None = None,
) -> bool:
    """The merchant's request rate in each environment; None for both: the gateway's
    default. Running servers take it within BHUKTANI_AUTH_CACHE_S."""
    assert (per_s is None) == (burst is None), "a rate and a burst, or neither"
    assert per_s is None or per_s > 0, per_s
    assert burst is None or burst > 0, burst
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> bool:
        changed = await tx.execute(
            "UPDATE merchants SET rate_per_s = $2, rate_burst = $3 WHERE id = $1",
            merchant_id,
            per_s,
            burst,
        )
        if changed != 1:
            return False
        await audit.record(
            tx,
            operator=who,
            action="merchant.rate_limit",
            merchant_id=merchant_id,
            details={"per_s": per_s, "burst": burst},
        )
        return True

    return await db.run(body)


def normal_services(text: str) -> str:
    """ "all", or the slugs named (a service's or one ISP's), each once, comma separated.
    Raises ValueError naming the first unknown slug."""
    if text.strip().lower() == "all":
        return "all"
    slugs = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not slugs:
        raise ValueError("Name the services: 'all' or their slugs, comma separated")
    for slug in slugs:
        if slug not in registry.BY_SLUG and slug not in registry.BY_ISP:
            raise ValueError(f"No service or ISP with the slug {slug!r}")
    return ",".join(slugs)


async def set_services(
    db: Database, merchant_id: int, services: str, *, operator: str | None = None
) -> bool:
    """The services the merchant may use: "all" (present and future), or slugs of
    services and ISPs, comma separated. Running servers take it within
    BHUKTANI_AUTH_CACHE_S. Raises ValueError (normal_services); False: no such merchant."""
    services = normal_services(services)
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> bool:
        before = await tx.fetchrow("SELECT services FROM merchants WHERE id = $1", merchant_id)
        if before is None:
            return False
        await tx.execute("UPDATE merchants SET services = $2 WHERE id = $1", merchant_id, services)
        await audit.record(
            tx,
            operator=who,
            action="merchant.services",
            merchant_id=merchant_id,
            details={"from": str(before["services"]), "to": services},
        )
        return True

    return await db.run(body)


async def issue_token(
    db: Database, merchant_id: int, env: str, *, key: bytes, operator: str
) -> str | None:
    """A new token, shown once: the audit entry keeps its hint; None: no such merchant."""

    async def body(tx: Tx) -> str | None:
        if await tx.fetchrow("SELECT id FROM merchants WHERE id = $1", merchant_id) is None:
            return None
        token = await _issue_token(tx, merchant_id, env, key)
        await audit.record(
            tx,
            operator=operator,
            action="token.create",
            merchant_id=merchant_id,
            env=env,
            subject=tokens.hint(token),
        )
        return token

    return await db.run(body)


async def _load(tx: Tx, account_id: int, env: str, amount_paisa: int, note: str) -> int:
    funding = await ledger.ensure_account(tx, "funding", env, ledger.FUNDING_CODE)
    return await ledger.transfer(tx, funding, account_id, amount_paisa, note=note)


async def load_credits(
    db: Database,
    merchant_id: int,
    env: str,
    amount_paisa: int,
    note: str = "credit load",
) -> int:

    async def body(tx: Tx) -> int:
        if await tx.fetchrow("SELECT id FROM merchants WHERE id = $1", merchant_id) is None:
            raise LookupError(f"no merchant {merchant_id}")
        account_id = await ledger.merchant_account(tx, merchant_id, env)
        return await _load(tx, account_id, env, amount_paisa, note)

    return await db.run(body)


async def set_status(
    db: Database, merchant_id: int, status: str, *, operator: str | None = None
) -> bool:
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> bool:
        changed = await tx.execute(
            "UPDATE merchants SET status = $2 WHERE id = $1", merchant_id, status
        )
        if changed != 1:
            return False
        await audit.record(
            tx,
            operator=who,
            action="merchant.status",
            merchant_id=merchant_id,
            details={"status": status},
        )
        return True

    return await db.run(body)


async def _revoke(tx: Tx, who: str, where: str, *args: object) -> str | None:
    """Revoke the one token `where` names ($2 on), with its audit entry naming it by its
    hint, as stored, never by its value: the hint, or None if no single token matched."""
    revoked = await tx.fetch(
        f"UPDATE tokens SET status = 'revoked', revoked_ms = $1 WHERE {where}"
        " RETURNING merchant_id, env, hint",
        now_ms(),
        *args,
    )
    if len(revoked) != 1:
        return None
    row = revoked[0]
    await audit.record(
        tx,
        operator=who,
        action="token.revoke",
        merchant_id=int(row["merchant_id"]),
        env=str(row["env"]),
        subject=str(row["hint"]),
    )
    return str(row["hint"])


async def revoke_token(
    db: Database, token: str, *, key: bytes, operator: str | None = None
) -> bool:
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> bool:
        return await _revoke(tx, who, "token_hash = $2", tokens.digest(token, key)) is not None

    return await db.run(body)


async def revoke_merchant_token(
    db: Database, merchant_id: int, token_id: int, *, operator: str | None = None
) -> str | None:
    """Revoke one of the merchant's active tokens by its id, as its staff know it (they
    never have its value again): the token's hint, or None if the id names no active
    token of this merchant."""
    who = audit.operator_of(operator)

    async def body(tx: Tx) -> str | None:
        return await _revoke(
            tx, who, "id = $2 AND merchant_id = $3 AND status = 'active'", token_id, merchant_id
        )

    return await db.run(body)


async def list_all(db: Database) -> list[dict[str, object]]:
    """Every merchant by id with its available credits (for the console's few hundred)."""
    rows, _ = await page(db, limit=None)
    return rows


async def page(
    db: Database, *, limit: int | None, after: tuple[int, int] | None = None
) -> tuple[list[dict[str, object]], str | None]:
    """Merchants by id with their available credits, `limit` after a decoded cursor
    (store.keyset.decode: its place is the merchant's id), and the cursor of the next page
    (None: the last)."""
    after_id = 0 if after is None else after[1]
    sql = (
        "SELECT m.id, m.name, m.status, m.services,"
        " t.balance_paisa - t.held_paisa AS test_available,"
        " l.balance_paisa - l.held_paisa AS live_available"
        " FROM merchants m"
        " LEFT JOIN accounts t ON t.kind = 'merchant' AND t.env = 'test' AND t.merchant_id = m.id"
        " LEFT JOIN accounts l ON l.kind = 'merchant' AND l.env = 'live' AND l.merchant_id = m.id"
        " WHERE m.id > $1 ORDER BY m.id"
    )
    if limit is None:
        rows = await db.read(lambda tx: tx.fetch(sql, after_id))
        return [dict(row) for row in rows], None
    rows = await db.read(lambda tx: tx.fetch(sql + " LIMIT $2", after_id, limit + 1))
    return [dict(row) for row in rows[:limit]], keyset.next_cursor(rows, limit, "id")


# Recent token checks, refusals included.
AuthCache = TtlCache[str, "Principal | Refusal"]


async def authenticate(
    db: Database, token: str | None, *, key: bytes, cache: AuthCache | None = None
) -> Principal:
    if not token:
        raise TokenMissing("Provide the token in the body or as 'Authorization: Token …'")
    if len(token) > tokens.MAX_TOKEN_CHARS:
        raise TokenUnknown("Token not found")
    token_hash = tokens.digest(token, key)
    cached = cache.get(token_hash) if cache is not None else None
    if cached is None:
        cached = await _check(db, token, token_hash)
        if cache is not None:
            cache.put(token_hash, cached)
    if isinstance(cached, Refusal):
        raise cached.again()
    return cached


async def _check(db: Database, token: str, token_hash: str) -> Principal | Refusal:
    try:
        return await _lookup(db, token, token_hash)
    except Refusal as refusal:
        return refusal


async def _lookup(db: Database, token: str, token_hash: str) -> Principal:
    row = await query_row(
        db,
        "SELECT t.token_hash, t.env, t.status AS token_status, t.merchant_id,"
        " m.status AS merchant_status, m.expires_ms, m.services,"
        " m.rate_per_s, m.rate_burst"
        " FROM tokens t JOIN merchants m ON m.id = t.merchant_id WHERE t.token_hash = $1",
        token_hash,
    )
    if row is None or not tokens.same(str(row["token_hash"]), token_hash):
        raise TokenUnknown("Token not found")
    if row["token_status"] == "revoked":
        raise TokenRevoked("The token was revoked")
    if row["token_status"] == "disabled":
        raise TokenDisabled("The token is disabled")
    if row["merchant_status"] == "deleted":
        raise AccountDeleted("The merchant account is deleted")
    if row["merchant_status"] == "disabled":
        raise AccountInactive("The merchant account is inactive")
    expires_ms = row["expires_ms"]
    if expires_ms is not None and int(expires_ms) <= now_ms():
        raise AccountExpired("The merchant account has expired")
    env = str(row["env"])
    assert env == tokens.env_of(token), "a token's stored environment follows its prefix"
    return Principal(
        merchant_id=int(row["merchant_id"]),
        env=env,
        services=str(row["services"]),
        rate_per_s=None if row["rate_per_s"] is None else int(row["rate_per_s"]),
        rate_burst=None if row["rate_burst"] is None else int(row["rate_burst"]),
    )
