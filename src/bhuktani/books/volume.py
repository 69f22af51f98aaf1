"""A merchant's paid volume by Nepal day and by service: the dashboard's overview."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from bhuktani.clock import day_end_ms, day_start_ms, nepal_day
from bhuktani.store import Database, Tx


@dataclass
class Volume:
    """Success payments (their amounts, without charges) from `first` to `last`."""

    first: date
    last: date
    by_day: dict[date, tuple[int, int]] = field(default_factory=dict)  # (count, paisa)
    by_service: dict[str, tuple[int, int]] = field(default_factory=dict)

    def on(self, day: date) -> tuple[int, int]:
        return self.by_day.get(day, (0, 0))

    def since(self, day: date) -> tuple[int, int]:
        picked = [v for d, v in self.by_day.items() if d >= day]
        return sum(c for c, _ in picked), sum(p for _, p in picked)

    def days(self) -> list[tuple[date, int, int]]:
        """Every day of the span, oldest first, with its count and paisa (0 for none)."""
        out = []
        day = self.first
        while day <= self.last:
            count, paisa = self.on(day)
            out.append((day, count, paisa))
            day += timedelta(days=1)
        return out


async def volume(db: Database, merchant_id: int, env: str, first: date, last: date) -> Volume:
    """Along payments_merchant_time: the span's payments, counted in Python by Nepal day
    (a day's boundary is not UTC's, and SQLite and PostgreSQL share the one reading)."""
    assert first <= last, (first, last)

    async def body(tx: Tx) -> Volume:
        rows = await tx.fetch(
            "SELECT created_ms, service, amount_paisa FROM payments"
            " WHERE merchant_id = $1 AND env = $2 AND created_ms >= $3 AND created_ms < $4"
            " AND state = 'Success'",
            merchant_id,
            env,
            day_start_ms(first),
            day_end_ms(last),
        )
        days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        services: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row in rows:
            paisa = int(row["amount_paisa"])
            for bucket in (days[nepal_day(int(row["created_ms"]))], services[str(row["service"])]):
                bucket[0] += 1
                bucket[1] += paisa
        return Volume(
            first,
            last,
            {d: (c, p) for d, (c, p) in days.items()},
            {s: (c, p) for s, (c, p) in sorted(services.items(), key=lambda kv: -kv[1][1])},
        )

    return await db.read(body)


def month_start(day: date) -> date:
    return day.replace(day=1)
