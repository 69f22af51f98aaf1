"""What the commands share: the console, the database of the settings, amounts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from bhuktani import money, runtime
from bhuktani.cli.display import DataConsole
from bhuktani.domain import Env
from bhuktani.runtime import Gateway
from bhuktani.settings import Settings, get_settings
from bhuktani.store import Database

T = TypeVar("T")
console = DataConsole()

# The options every command spells alike. An environment is a choice, never free text;
# a command that acts defaults to TEST, so that a forgotten --env never touches LIVE money.
ENV_HELP = "The environment: test or live."
EnvOption = Annotated[Env, typer.Option("--env", case_sensitive=False, help=ENV_HELP)]
DEFAULT_ENV = Env.TEST
# A listing's filter: both environments unless one is named.
EnvFilter = Annotated[
    Env | None,
    typer.Option("--env", case_sensitive=False, help="Only this environment: test or live."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout; messages go to stderr.")
]
UtcOption = Annotated[
    bool, typer.Option("--utc", help="Times in UTC rather than Nepal time (NPT, +05:45).")
]
CursorOption = Annotated[
    str | None, typer.Option("--cursor", help="Where the previous page ended (its 'more:' line).")
]
AllOption = Annotated[bool, typer.Option("--all", help="Every page, one after the other.")]


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
