"""Each merchant's webhook endpoint per environment: where its callbacks go and the secrets
that sign them. Read by the deliverer at every attempt, so a change made with the CLI
applies to the next callback sent by a running server."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bhuktani.callbacks import signing, urls
from bhuktani.clock import now_ms
from bhuktani.domain import Env
from bhuktani.store import Tx


@dataclass(frozen=True)
class Endpoint:
    url: str | None
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_until_ms: int | None

    def signing_secrets(self, at_ms: int) -> list[str]:
        return signing.in_force(self.secret, self.previous_secret, self.previous_until_ms, at_ms)


async def create(tx: Tx, merchant_id: int, url: str | None) -> dict[Env, str]:
    """Both environments' endpoints of a new merchant, each with a secret of its own."""
    if url is not None:
        urls.check_syntax(url)
    issued = {env: signing.new_secret() for env in Env}
    for env, secret in issued.items():
        await tx.execute(
            "INSERT INTO webhook_endpoints (merchant_id, env, url, secret, updated_ms)"
            " VALUES ($1, $2, $3, $4, $5)",
            merchant_id,
            env.value,
            url,
            secret,
            now_ms(),
        )
    return issued


async def url_of(tx: Tx, merchant_id: int, env: str) -> str | None:
    row = await tx.fetchrow(
        "SELECT url FROM webhook_endpoints WHERE merchant_id = $1 AND env = $2", merchant_id, env
    )
    return None if row is None else row["url"]


async def read(tx: Tx, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Endpoint]:
    found: dict[tuple[int, str], Endpoint] = {}
    for merchant_id, env in set(keys):
        row = await tx.fetchrow(
            "SELECT url, secret, previous_secret, previous_until_ms FROM webhook_endpoints"
            " WHERE merchant_id = $1 AND env = $2",
            merchant_id,
            env,
        )
        if row is not None:
            until = row["previous_until_ms"]
            found[(merchant_id, env)] = Endpoint(
                url=row["url"],
                secret=str(row["secret"]),
                previous_secret=row["previous_secret"],
                previous_until_ms=None if until is None else int(until),
            )
    return found


async def set_url(tx: Tx, merchant_id: int, env: Env, url: str | None) -> bool:
    """In the caller's transaction (the operator's action and its audit entry commit
    together). False: the merchant has no endpoint for this environment."""
    if url is not None:
        urls.check_syntax(url)
    changed = await tx.execute(
        "UPDATE webhook_endpoints SET url = $3, updated_ms = $4"
        " WHERE merchant_id = $1 AND env = $2",
        merchant_id,
        env.value,
        url,
        now_ms(),
    )
    return changed == 1


async def rotate(tx: Tx, merchant_id: int, env: Env) -> tuple[str, int] | None:
    """A new secret, in force from the next callback on, and when the one it replaces
    stops signing beside it (signing.ROTATION_OVERLAP_MS from now; a secret it had
    replaced stops now). In the caller's transaction; None: no endpoint."""
    secret = signing.new_secret()
    now = now_ms()
    previous_until_ms = now + signing.ROTATION_OVERLAP_MS
    changed = await tx.execute(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_until_ms = $4,"
        " secret = $3, updated_ms = $5 WHERE merchant_id = $1 AND env = $2",
        merchant_id,
        env.value,
        secret,
        previous_until_ms,
        now,
    )
    return (secret, previous_until_ms) if changed == 1 else None
