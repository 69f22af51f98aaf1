"""`bhuktani merchant …` and `bhuktani token …`: merchants, their tokens, callbacks and
rate limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from bhuktani import audit, money
from bhuktani.callbacks.urls import UnsafeUrl
from bhuktani.cli.common import (
    DEFAULT_ENV,
    AllOption,
    CursorOption,
    JsonOption,
    console,
    key,
    paisa,
    with_db,
)
from bhuktani.cli.common import EnvOption as DefaultedEnvOption
from bhuktani.cli.display import add_amount_column, print_json, rupees, tell
from bhuktani.cli.paging import Page, pages, tell_more
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.settings import Settings, get_settings
from bhuktani.store import Database, keyset
from bhuktani.web import users

merchant_app = typer.Typer(help="Create, list and disable merchants.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)

# Each command that changes a merchant or a token names who acts, for the audit log.
OperatorOption = Annotated[
    str | None,
    typer.Option("--operator", help="Who acts, for the audit log; default: the OS user."),
]


def operator_named(given: str | None) -> str:
    try:
        return audit.operator_of(given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None


@merchant_app.command("create")
def merchant_create(
    name: str,
    credits: Annotated[str, typer.Option(help="LIVE credits in rupees.")] = "0",
    test_credits: Annotated[str, typer.Option(help="TEST credits in rupees.")] = "1000000",
    services: Annotated[str, typer.Option(help="'all' or comma separated slugs.")] = "all",
    callback_url: Annotated[
        str | None,
        typer.Option(help="Where delivery callbacks go, for both environments until set apart."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    operator: OperatorOption = None,
) -> None:
    """Create a merchant with a TEST and a LIVE token and a callback signing secret for
    each environment (shown once)."""
    live_paisa = paisa(credits, allow_zero=True)
    test_paisa = paisa(test_credits, allow_zero=True)
    who = operator_named(operator)

    async def run(db: Database, settings: Settings) -> merchants.NewMerchant:
        return await merchants.create(
            db,
            name,
            key=key(settings),
            operator=who,
            services=services,
            callback_url=callback_url,
            test_credits_paisa=test_paisa,
            live_credits_paisa=live_paisa,
        )

    try:
        created = with_db(run)
    except UnsafeUrl as exc:
        raise typer.BadParameter(str(exc), param_hint="--callback-url") from None
    secrets = {env.value: secret for env, secret in created.callback_secrets.items()}
    result = {
        "merchant_id": created.merchant_id,
        "test_token": created.test_token,
        "live_token": created.live_token,
        "callback_secrets": secrets,
    }
    if as_json:
        print_json(result)
        return
    typer.echo(f"merchant {created.merchant_id} created; these are shown only now:")
    typer.echo(f"  TEST token:           {created.test_token}")
    typer.echo(f"  LIVE token:           {created.live_token}")
    typer.echo(f"  TEST callback secret: {secrets['test']}")
    typer.echo(f"  LIVE callback secret: {secrets['live']}")


# Required, never defaulted: a callback URL or secret set for the wrong environment sends
# LIVE outcomes to a test receiver, or leaves a LIVE receiver refusing every callback.
EnvOption = Annotated[
    Env, typer.Option("--env", case_sensitive=False, help="The environment: test or live.")
]


@merchant_app.command("rotate-secret")
def merchant_rotate_secret(
    merchant_id: int,
    env: EnvOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    operator: OperatorOption = None,
) -> None:
    """Issue a new callback signing secret for one environment (shown once). The previous
    one keeps signing beside it for 24 hours, so the receiver can switch over."""
    who = operator_named(operator)
    secret = with_db(
        lambda db, _: merchants.rotate_callback_secret(db, merchant_id, env, operator=who)
    )
    if secret is None:
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if as_json:
        print_json({"secret": secret})
        return
    typer.echo(f"merchant {merchant_id} {env.value} callback secret, shown only now:")
    typer.echo(secret)
    typer.echo("the previous secret signs beside it for 24 hours")


@merchant_app.command("set-callback")
def merchant_set_callback(
    merchant_id: int,
    url: Annotated[str, typer.Argument(help="The callback URL, or 'none' to stop callbacks.")],
    env: EnvOption,
    operator: OperatorOption = None,
) -> None:
    """Set where one environment's delivery callbacks go, from the next attempt on."""
    target = None if url == "none" else url
    who = operator_named(operator)
    try:
        changed = with_db(
            lambda db, _: merchants.set_callback_url(db, merchant_id, env, target, operator=who)
        )
    except UnsafeUrl as exc:
        raise typer.BadParameter(str(exc), param_hint="URL") from None
    if not changed:
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    console.print(f"merchant {merchant_id} {env.value} callbacks go to {target or 'nowhere'}")


@merchant_app.command("set-rate-limit")
def merchant_set_rate_limit(
    merchant_id: int,
    per_s: Annotated[
        int | None, typer.Option("--per-s", min=1, help="Requests a second, each environment.")
    ] = None,
    burst: Annotated[
        int | None, typer.Option(min=1, help="Requests at once above the rate.")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Back to the gateway's default limit.")
    ] = False,
    operator: OperatorOption = None,
) -> None:
    """Set a merchant's request rate limit; running servers take it within seconds."""
    if default == (per_s is not None or burst is not None):
        raise typer.BadParameter("give --per-s and --burst, or --default alone")
    if not default and (per_s is None or burst is None):
        raise typer.BadParameter("give both --per-s and --burst")
    who = operator_named(operator)
    changed = with_db(
        lambda db, _: merchants.set_rate_limit(db, merchant_id, per_s, burst, operator=who)
    )
    if not changed:
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if default:
        settings = get_settings()
        console.print(
            f"merchant {merchant_id}: the default limit,"
            f" {settings.rate_per_s}/s with bursts of {settings.rate_burst}"
        )
    else:
        console.print(f"merchant {merchant_id}: {per_s}/s with bursts of {burst}")


MERCHANTS_PAGE = 100


def _merchant_view(row: dict[str, Any]) -> dict[str, Any]:
    test_paisa, live_paisa = int(row["test_available"] or 0), int(row["live_available"] or 0)
    return {
        "id": int(row["id"]),
        "name": str(row["name"]),
        "status": str(row["status"]),
        "services": str(row["services"]),
        "test_available": money.format_rupees(test_paisa),
        "test_available_paisa": test_paisa,
        "live_available": money.format_rupees(live_paisa),
        "live_available_paisa": live_paisa,
    }


@merchant_app.command("list")
def merchant_list(
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Merchants on a page.")
    ] = MERCHANTS_PAGE,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """List merchants and their available credits, by id, a page at a time.
    JSON: {"merchants": [...], "next_cursor"}."""

    async def read(db: Database, _: Settings) -> Page[dict[str, Any]]:
        async def fetch(after: keyset.Position | None) -> tuple[list[dict[str, Any]], str | None]:
            rows, following = await merchants.page(db, limit=limit, after=after)
            return [_merchant_view(row) for row in rows], following

        return await pages(fetch, cursor=cursor, every=every)

    page = with_db(read)
    if as_json:
        print_json({"merchants": page.rows, "next_cursor": page.next_cursor})
        return
    table = Table("id", "name", "status", "services")
    add_amount_column(table, "test available (Rs)")
    add_amount_column(table, "live available (Rs)")
    for row in page.rows:
        table.add_row(
            str(row["id"]),
            row["name"],
            row["status"],
            row["services"],
            rupees(row["test_available_paisa"]),
            rupees(row["live_available_paisa"]),
        )
    console.print(table)
    words = ["bhuktani", "merchant", "list"]
    if limit != MERCHANTS_PAGE:
        words += ["--limit", str(limit)]
    tell_more(words, page, as_json=False)


@merchant_app.command("disable")
def merchant_disable(merchant_id: int, operator: OperatorOption = None) -> None:
    """Disable a merchant: its tokens get 1006 from now on."""
    _set_status(merchant_id, "disabled", operator_named(operator))
    console.print(f"merchant {merchant_id} disabled")


@merchant_app.command("enable")
def merchant_enable(merchant_id: int, operator: OperatorOption = None) -> None:
    """Enable a disabled merchant again."""
    _set_status(merchant_id, "active", operator_named(operator))
    console.print(f"merchant {merchant_id} enabled")


def _set_status(merchant_id: int, status: str, operator: str) -> None:
    if not with_db(lambda db, _: merchants.set_status(db, merchant_id, status, operator=operator)):
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)


@token_app.command("revoke")
def token_revoke(token: str, operator: OperatorOption = None) -> None:
    """Revoke a token: it gets 1003 from now on."""
    who = operator_named(operator)
    if not with_db(
        lambda db, settings: merchants.revoke_token(db, token, key=key(settings), operator=who)
    ):
        tell("no such token")
        raise typer.Exit(1)
    console.print("token revoked")


@token_app.command("create")
def token_create(
    merchant_id: int,
    env: DefaultedEnvOption = DEFAULT_ENV,
    operator: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new token for a merchant (shown once). JSON: {"merchant_id", "env",
    "token"}."""
    who = operator_named(operator)
    token = with_db(
        lambda db, settings: merchants.issue_token(
            db, merchant_id, env, key=key(settings), operator=who
        )
    )
    if token is None:
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if as_json:
        print_json({"merchant_id": merchant_id, "env": env.value, "token": token})
        return
    console.print(token)


@merchant_app.command("set-services")
def merchant_set_services(
    merchant_id: int,
    services: Annotated[
        str, typer.Argument(help="'all', or slugs of services and ISPs, comma separated.")
    ],
    operator: OperatorOption = None,
) -> None:
    """Which services the merchant may use; any other refuses its calls (1008)."""
    who = operator_named(operator)
    try:
        wanted = merchants.normal_services(services)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="SERVICES") from None
    if not with_db(
        lambda db, settings: merchants.set_services(db, merchant_id, wanted, operator=who)
    ):
        tell(f"refused: no merchant {merchant_id}")
        raise typer.Exit(1)
    console.print(f"merchant {merchant_id} may use: {wanted}")


@merchant_app.command("add-user")
def merchant_add_user(
    merchant_id: int,
    email: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    operator: OperatorOption = None,
) -> None:
    """Give a merchant's staff member the dashboard (/dashboard/): prints a one-time
    password, to be changed at the first sign-in."""
    add_web_user(email, "merchant", merchant_id, as_json=as_json, operator=operator)


operator_app = typer.Typer(help="The operator console's users.", no_args_is_help=True)


@operator_app.command("add-user")
def operator_add_user(
    email: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    operator: OperatorOption = None,
) -> None:
    """Give an operator the console (/console/): prints a one-time password, to be changed
    at the first sign-in."""
    add_web_user(email, "operator", None, as_json=as_json, operator=operator)


@operator_app.command("reset-password")
def web_user_reset_password(
    email: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object last.")] = False,
    operator: OperatorOption = None,
) -> None:
    """A new one-time password for a dashboard or console user (a lost password): their
    sessions end, and the password must be changed at the next sign-in."""
    who = operator_named(operator)

    async def run(db: Database, settings: Settings) -> tuple[users.User, str]:
        return await users.reset(db, email, operator=who)

    _print_one_time(run, as_json=as_json)


def add_web_user(
    email: str, role: users.Role, merchant_id: int | None, *, as_json: bool, operator: str | None
) -> None:
    who = operator_named(operator)

    async def run(db: Database, settings: Settings) -> tuple[users.User, str]:
        return await users.add(db, email, role, merchant_id=merchant_id, operator=who)

    _print_one_time(run, as_json=as_json)


def _print_one_time(
    run: Callable[[Database, Settings], Awaitable[tuple[users.User, str]]], *, as_json: bool
) -> None:
    try:
        user, password = with_db(run)
    except users.UserError as exc:
        tell(f"refused: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print_json({"email": user.email, "password": password})
        return
    where = "/dashboard/" if user.role == "merchant" else "/console/"
    console.print(f"{user.email} may sign in at {where} with this one-time password:")
    console.print(password, markup=False, highlight=False)
    console.print("It must be changed at the first sign-in; it is not shown again.")
