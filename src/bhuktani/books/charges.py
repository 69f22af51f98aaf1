"""Service charges: what a merchant pays the gateway on top of a payment's amount, per
environment and service. A service is a group's slug (every ISP of the group) or one
ISP's slug, whose own charge wins over its group's. A charge is flat, or a percentage of
the amount (hundredths of a percent, rounded half up to the paisa) within an optional
minimum and maximum.

The commit holds amount + charge in one hold (ledger/book.py). It finds the charge in
`ChargeCache`, kept in the process for BHUKTANI_AUTH_CACHE_S like the tokens' checks: a
charge set or cleared takes effect within that time, and a commit asks the database only
when its merchant's charges are not cached (merchants without charges cache "none")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bhuktani import audit, logs, money
from bhuktani.clock import now_ms
from bhuktani.domain import Env
from bhuktani.errors import field_error
from bhuktani.infra.ttl_cache import SingleFlight, TtlCache
from bhuktani.services import registry
from bhuktani.store import Database, Row, Tx

if TYPE_CHECKING:
    from bhuktani.merchants.service import Principal
    from bhuktani.runtime import Gateway

ENVS = tuple(Env)
BP_PER_PERCENT = 100
# The whole amount, in hundredths of a percent: the most a charge may take.
WHOLE_BP = 100 * BP_PER_PERCENT
# "1.5", "12.25", "100": at most 2 decimals, ASCII digits only.
_PERCENT = re.compile(r"([0-9]{1,3})(?:\.([0-9]{1,2}))?")

# A merchant's charges in one environment, by service slug.
Rules = Mapping[str, "Charge"]


class ChargeError(ValueError):
    """An operator's charge was refused; nothing changed. The message says why."""


@dataclass(frozen=True)
class Charge:
    """Exactly one of flat_paisa and percent_bp; min and max bound a percentage only."""

    flat_paisa: int | None = None
    percent_bp: int | None = None
    min_paisa: int | None = None
    max_paisa: int | None = None

    def __post_init__(self) -> None:
        assert (self.flat_paisa is None) != (self.percent_bp is None), self
        assert self.flat_paisa is None or self.flat_paisa >= 0, self
        assert self.percent_bp is None or 0 <= self.percent_bp <= WHOLE_BP, self
        assert self.flat_paisa is None or (self.min_paisa is None and self.max_paisa is None)
        assert self.min_paisa is None or self.min_paisa >= 0, self
        assert self.max_paisa is None or self.max_paisa >= 0, self
        if self.min_paisa is not None and self.max_paisa is not None:
            assert self.min_paisa <= self.max_paisa, self

    def of(self, amount_paisa: int) -> int:
        """The charge on an amount, in paisa."""
        assert amount_paisa > 0, amount_paisa
        if self.flat_paisa is not None:
            return self.flat_paisa
        assert self.percent_bp is not None
        # amount * percent_bp / 10,000, rounded half up, in integers.
        charge = (amount_paisa * self.percent_bp * 2 + WHOLE_BP) // (2 * WHOLE_BP)
        if self.min_paisa is not None:
            charge = max(charge, self.min_paisa)
        if self.max_paisa is not None:
            charge = min(charge, self.max_paisa)
        return charge

    def described(self, currency: str = "") -> str:
        """As a person reads it: "flat 10.00", "1.50 % (min 5.00, max 100.00)";
        `currency` before each amount ("Rs ")."""
        values = self.as_json()
        if values["flat"] is not None:
            return f"flat {currency}{values['flat']}"
        bounds = [
            f"{name} {currency}{values[name]}"
            for name in ("min", "max")
            if values[name] is not None
        ]
        return f"{values['percent']} %" + (f" ({', '.join(bounds)})" if bounds else "")

    def as_json(self) -> dict[str, Any]:
        """Rupees and percent as exact strings, as the CLI shows them."""

        def rupees(paisa: int | None) -> str | None:
            return None if paisa is None else money.format_rupees(paisa)

        percent = None
        if self.percent_bp is not None:
            whole, part = divmod(self.percent_bp, BP_PER_PERCENT)
            percent = f"{whole}.{part:02d}"
        return {
            "flat": rupees(self.flat_paisa),
            "percent": percent,
            "min": rupees(self.min_paisa),
            "max": rupees(self.max_paisa),
        }


def parse_percent(text: str) -> int:
    """A percentage as the operator writes it ("1.5") in hundredths of a percent (150)."""
    found = _PERCENT.fullmatch(text.strip())
    if found is None:
        raise ChargeError(f"percent {text!r} is not a number of at most 2 decimals")
    whole, part = found.groups()
    bp = int(whole) * BP_PER_PERCENT + int((part or "").ljust(2, "0"))
    if bp > WHOLE_BP:
        raise ChargeError(f"percent {text!r} is over 100")
    return bp


def is_service(slug: str) -> bool:
    """A group's slug, a single-step service's slug or one ISP's slug."""
    return slug in registry.BY_SLUG or slug in registry.BY_ISP


def charge_for(rules: Rules, group: str, isp: str) -> Charge | None:
    """The charge on a payment to `isp` of `group`: the ISP's own, else its group's."""
    return rules.get(isp) or rules.get(group)


def charge_of_slug(rules: Rules, slug: str) -> Charge | None:
    """The charge a service slug names: an ISP's (its own, else its group's) or a
    group's."""
    service = registry.BY_ISP.get(slug)
    if service is not None:
        return charge_for(rules, service.slug, slug)
    return rules.get(slug)


def _charge(row: Row) -> Charge:
    def optional(name: str) -> int | None:
        return None if row[name] is None else int(row[name])

    return Charge(
        flat_paisa=optional("flat_paisa"),
        percent_bp=optional("percent_bp"),
        min_paisa=optional("min_paisa"),
        max_paisa=optional("max_paisa"),
    )


async def load(db: Database, merchant_id: int, env: str) -> Rules:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT service, flat_paisa, percent_bp, min_paisa, max_paisa FROM service_charges"
            " WHERE merchant_id = $1 AND env = $2",
            merchant_id,
            env,
        )
    )
    return {str(row["service"]): _charge(row) for row in rows}


class ChargeCache:
    """Each merchant's charges per environment, for ttl_s; 0 reads them on every call.
    A merchant's charges are read once at a time, however many commits wait for them."""

    def __init__(self, ttl_s: float) -> None:
        self._rules: TtlCache[tuple[int, str], Rules] = TtlCache(ttl_s)
        self._loading: SingleFlight[tuple[int, str], Rules] = SingleFlight()

    async def rules(self, db: Database, merchant_id: int, env: str) -> Rules:
        key = (merchant_id, env)
        cached = self._rules.get(key)
        if cached is not None:
            return cached

        async def read() -> Rules:
            found = await load(db, merchant_id, env)
            self._rules.put(key, found)
            return found

        return await self._loading.run(key, read)

    async def charge_paisa(
        self, db: Database, principal: Principal, group: str, isp: str, amount_paisa: int
    ) -> int:
        """The charge a commit holds with amount_paisa; 0 where none is set."""
        rules = await self.rules(db, principal.merchant_id, principal.env)
        charge = charge_for(rules, group, isp) if rules else None
        return 0 if charge is None else charge.of(amount_paisa)


# The API: GET /api/account/service-charges/ (khalti-docs/servicecharge/service-charge.md).


async def quote(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    """The charge this merchant would pay on `amount` for `service_slug`."""
    # Imported here: policy reads the Gateway, which holds this module's cache.
    from bhuktani.payments import policy

    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    slug = data.get("service_slug")
    if slug in (None, ""):
        raise field_error("service_slug", "Send the service_slug to price")
    if not isinstance(slug, str) or not is_service(slug):
        raise field_error("service_slug", "No service or ISP with this slug")
    if data.get("amount") in (None, ""):
        raise field_error("amount", "Send the amount to price")
    try:
        amount_paisa = money.to_paisa(data["amount"])
    except money.AmountError as exc:
        raise field_error("amount", str(exc)) from None
    rules = await gateway.charges.rules(gateway.db, principal.merchant_id, principal.env)
    charge = charge_of_slug(rules, slug)
    charge_paisa = 0 if charge is None else charge.of(amount_paisa)
    return {
        "status": True,
        "details": {
            "amount": money.to_rupees_shown(amount_paisa),
            "service_charge": money.to_rupees(charge_paisa),
        },
    }


# The operator: bhuktani charges set / clear / list.


@dataclass(frozen=True)
class Entry:
    merchant_id: int
    env: str
    service: str
    charge: Charge
    updated_ms: int

    def as_json(self) -> dict[str, Any]:
        return {
            "merchant_id": self.merchant_id,
            "env": self.env,
            "service": self.service,
            **self.charge.as_json(),
            "updated_ms": self.updated_ms,
        }


def _check(merchant_id: int, env: str, service: str) -> None:
    if env not in ENVS:
        raise ChargeError("env must be test or live")
    if not is_service(service):
        raise ChargeError(
            f"no service {service!r}: name a service group's, a single-step service's"
            " or an ISP's slug"
        )
    if merchant_id <= 0:
        raise ChargeError("merchant ids are positive")


async def _merchant_exists(tx: Tx, merchant_id: int) -> None:
    row = await tx.fetchrow(
        "SELECT status FROM merchants WHERE id = $1 AND status <> 'deleted'", merchant_id
    )
    if row is None:
        raise ChargeError(f"no merchant {merchant_id}")


async def set_charge(
    db: Database, merchant_id: int, env: str, service: str, charge: Charge, *, operator: str
) -> Entry:
    """Set (or replace) a merchant's charge on a service, audited in the same transaction."""
    _check(merchant_id, env, service)
    now = now_ms()

    async def body(tx: Tx) -> Entry:
        await _merchant_exists(tx, merchant_id)
        await tx.execute(
            "INSERT INTO service_charges (merchant_id, env, service, flat_paisa, percent_bp,"
            " min_paisa, max_paisa, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (merchant_id, env, service) DO UPDATE SET"
            " flat_paisa = EXCLUDED.flat_paisa, percent_bp = EXCLUDED.percent_bp,"
            " min_paisa = EXCLUDED.min_paisa, max_paisa = EXCLUDED.max_paisa,"
            " updated_ms = EXCLUDED.updated_ms",
            merchant_id,
            env,
            service,
            charge.flat_paisa,
            charge.percent_bp,
            charge.min_paisa,
            charge.max_paisa,
            now,
        )
        await audit.record(
            tx,
            operator=operator,
            action="charges.set",
            merchant_id=merchant_id,
            env=env,
            subject=service,
            details=charge.as_json(),
        )
        return Entry(merchant_id, env, service, charge, now)

    return await db.run(body)


async def clear_charge(
    db: Database, merchant_id: int, env: str, service: str, *, operator: str
) -> Charge:
    """Remove a merchant's charge on a service, audited; returns the charge removed."""
    _check(merchant_id, env, service)

    async def body(tx: Tx) -> Charge:
        row = await tx.fetchrow(
            "DELETE FROM service_charges WHERE merchant_id = $1 AND env = $2 AND service = $3"
            " RETURNING flat_paisa, percent_bp, min_paisa, max_paisa",
            merchant_id,
            env,
            service,
        )
        if row is None:
            raise ChargeError(f"merchant {merchant_id} has no {env} charge on {service!r}")
        removed = _charge(row)
        await audit.record(
            tx,
            operator=operator,
            action="charges.clear",
            merchant_id=merchant_id,
            env=env,
            subject=service,
            details=removed.as_json(),
        )
        return removed

    return await db.run(body)


async def listing(db: Database, merchant_id: int | None = None) -> list[Entry]:
    """Every charge, or one merchant's, by merchant, environment and service."""
    sql = (
        "SELECT merchant_id, env, service, flat_paisa, percent_bp, min_paisa, max_paisa,"
        " updated_ms FROM service_charges"
    )
    args: list[object] = []
    if merchant_id is not None:
        sql += " WHERE merchant_id = $1"
        args.append(merchant_id)
    sql += " ORDER BY merchant_id, env, service"
    rows = await db.read(lambda tx: tx.fetch(sql, *args))
    return [
        Entry(
            int(row["merchant_id"]),
            str(row["env"]),
            str(row["service"]),
            _charge(row),
            int(row["updated_ms"]),
        )
        for row in rows
    ]
