"""What the commands share: the console, the database of the settings, amounts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from bhuktani import money, runtime
from bhuktani.cli.display import DataConsole
from bhuktani.runtime import Gateway
from bhuktani.settings import Settings, get_settings
from bhuktani.store import Database

T = TypeVar("T")
console = DataConsole()


def with_runtime(fn: Callable[[Gateway], Awaitable[T]]) -> T:
    """Run `fn` on the system as serve and worker assemble it, with one connection."""
    settings = get_settings()

    async def main() -> T:
        gateway = await runtime.start(settings, announce=False)
        try:
            return await fn(gateway)
        finally:
            await gateway.aclose()

    return asyncio.run(main())


def with_db(fn: Callable[[Database, Settings], Awaitable[T]]) -> T:
    return with_runtime(lambda gateway: fn(gateway.db, gateway.settings))


def key(settings: Settings) -> bytes:
    return settings.token_hash_key.get_secret_value().encode()


def paisa(rupees: str, *, allow_zero: bool = False) -> int:
    if allow_zero and rupees.strip() in ("0", "0.0", "0.00"):
        return 0
    try:
        return money.to_paisa(rupees, max_paisa=money.MAX_LOAD_PAISA)
    except money.AmountError as exc:
        raise typer.BadParameter(str(exc)) from None
