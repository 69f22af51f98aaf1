"""The operator's commands. Each reads the database from BHUKTANI_DATABASE_URL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bhuktani import money
from bhuktani.callbacks.endpoints import Env
from bhuktani.callbacks.urls import UnsafeUrl
from bhuktani.display import DataConsole
from bhuktani.merchants import service as merchants
from bhuktani.payments.operator_cli import payment_app
from bhuktani.sandbox.isp_sim_cli import isp_sim_command
from bhuktani.settings import Settings, get_settings
from bhuktani.store import Database, connect
from bhuktani.store.migrate import upgrade

T = TypeVar("T")
app = typer.Typer(help="bhuktani: bill-payment gateway for Nepali ISPs.", no_args_is_help=True)
merchant_app = typer.Typer(help="Create, list and disable merchants.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
credits_app = typer.Typer(
    help="Move credits to merchants (ledger transfers).", no_args_is_help=True
)
app.add_typer(merchant_app, name="merchant")
app.add_typer(token_app, name="token")
app.add_typer(credits_app, name="credits")
callbacks_app = typer.Typer(help="Delivery callbacks: attempts and retries.", no_args_is_help=True)
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(payment_app, name="payment")
app.command("isp-sim")(isp_sim_command)
console = DataConsole()


def _with_db(fn: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = get_settings()

    async def main() -> T:
        db = await connect(settings.database_url)
        try:
            return await fn(db, settings)
        finally:
            await db.close()

    return asyncio.run(main())


def _key(settings: Settings) -> bytes:
    return settings.token_hash_key.get_secret_value().encode()


def _paisa(rupees: str, *, allow_zero: bool = False) -> int:
    if allow_zero and rupees.strip() in ("0", "0.0", "0.00"):
        return 0
    try:
        return money.to_paisa(rupees, max_paisa=money.MAX_LOAD_PAISA)
    except money.AmountError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    url = get_settings().database_url
    upgrade(url)
    console.print(f"database at head: {_redact(url)}")


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    reconciler: Annotated[
        bool,
        typer.Option(help="Run the background workers (reconciler, callbacks) inside the server."),
    ] = True,
) -> None:
    """Serve the API (applies pending migrations first)."""
    from bhuktani.api import serving
    from bhuktani.api.connections import Limits
    from bhuktani.logs import configure_logging

    configure_logging(get_settings().log_level)
    upgrade(get_settings().database_url)
    # Worker processes build their settings from the environment.
    os.environ["BHUKTANI_RECONCILER_ENABLED"] = "true" if reconciler else "false"
    os.environ["BHUKTANI_CALLBACKS_ENABLED"] = "true" if reconciler else "false"
    get_settings.cache_clear()
    settings = get_settings()
    limits = Limits(
        head_timeout_s=settings.request_head_timeout_s,
        body_timeout_s=settings.request_body_timeout_s,
        keep_alive_s=settings.keep_alive_s,
        max_connections=settings.max_connections,
    )
    status = serving.serve(
        host,
        port,
        workers,
        hung_after_s=settings.worker_hung_after_s,
        limits=limits,
        log_level=settings.log_level,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    raise typer.Exit(status)


@app.command()
def worker() -> None:
    """Run the background workers (reconciler, callbacks, session sweeper) apart from the
    API hosts."""
    from bhuktani.logs import configure_logging
    from bhuktani.payments import gateway as gateway_mod
    from bhuktani.workers import callbacks as callback_worker
    from bhuktani.workers import reconciler, sweeper

    settings = get_settings()
    configure_logging(settings.log_level)

    async def main() -> None:
        db = await connect(settings.database_url, pool_size=settings.db_pool_size)
        gateway = gateway_mod.build(db, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await asyncio.gather(
                reconciler.run(gateway, stop),
                callback_worker.run(gateway, stop),
                sweeper.run(gateway, stop),
            )
        finally:
            await gateway.aclose()

    upgrade(settings.database_url)
    asyncio.run(main())


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
) -> None:
    """Create a merchant with a TEST and a LIVE token and a callback signing secret for
    each environment (shown once)."""
    live_paisa = _paisa(credits, allow_zero=True)
    test_paisa = _paisa(test_credits, allow_zero=True)

    async def run(db: Database, settings: Settings) -> merchants.NewMerchant:
        return await merchants.create(
            db,
            name,
            key=_key(settings),
            services=services,
            callback_url=callback_url,
            test_credits_paisa=test_paisa,
            live_credits_paisa=live_paisa,
        )

    try:
        created = _with_db(run)
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
        typer.echo(json.dumps(result))
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
) -> None:
    """Issue a new callback signing secret for one environment (shown once). The previous
    one keeps signing beside it for 24 hours, so the receiver can switch over."""
    secret = _with_db(lambda db, _: merchants.rotate_callback_secret(db, merchant_id, env))
    if secret is None:
        console.print(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps({"secret": secret}))
        return
    typer.echo(f"merchant {merchant_id} {env.value} callback secret, shown only now:")
    typer.echo(secret)
    typer.echo("the previous secret signs beside it for 24 hours")


@merchant_app.command("set-callback")
def merchant_set_callback(
    merchant_id: int,
    url: Annotated[str, typer.Argument(help="The callback URL, or 'none' to stop callbacks.")],
    env: EnvOption,
) -> None:
    """Set where one environment's delivery callbacks go, from the next attempt on."""
    target = None if url == "none" else url
    try:
        changed = _with_db(lambda db, _: merchants.set_callback_url(db, merchant_id, env, target))
    except UnsafeUrl as exc:
        raise typer.BadParameter(str(exc), param_hint="URL") from None
    if not changed:
        console.print(f"no merchant {merchant_id}")
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
) -> None:
    """Set a merchant's request rate limit; running servers take it within seconds."""
    if default == (per_s is not None or burst is not None):
        raise typer.BadParameter("give --per-s and --burst, or --default alone")
    if not default and (per_s is None or burst is None):
        raise typer.BadParameter("give both --per-s and --burst")
    changed = _with_db(lambda db, _: merchants.set_rate_limit(db, merchant_id, per_s, burst))
    if not changed:
        console.print(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if default:
        settings = get_settings()
        console.print(
            f"merchant {merchant_id}: the default limit,"
            f" {settings.rate_per_s}/s with bursts of {settings.rate_burst}"
        )
    else:
        console.print(f"merchant {merchant_id}: {per_s}/s with bursts of {burst}")


@merchant_app.command("list")
def merchant_list() -> None:
    """List merchants and their available credits."""
    rows: list[dict[str, Any]] = _with_db(lambda db, _: merchants.list_all(db))
    table = Table("id", "name", "status", "services", "test available", "live available")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["name"]),
            str(row["status"]),
            str(row["services"]),
            money.format_rupees(int(row["test_available"] or 0)),
            money.format_rupees(int(row["live_available"] or 0)),
        )
    console.print(table)


@merchant_app.command("disable")
def merchant_disable(merchant_id: int) -> None:
    """Disable a merchant: its tokens get 1006 from now on."""
    if not _with_db(lambda db, _: merchants.set_status(db, merchant_id, "disabled")):
        console.print(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    console.print(f"merchant {merchant_id} disabled")


@merchant_app.command("enable")
def merchant_enable(merchant_id: int) -> None:
    """Enable a disabled merchant again."""
    if not _with_db(lambda db, _: merchants.set_status(db, merchant_id, "active")):
        console.print(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    console.print(f"merchant {merchant_id} enabled")


@token_app.command("revoke")
def token_revoke(token: str) -> None:
    """Revoke a token: it gets 1003 from now on."""
    if not _with_db(lambda db, settings: merchants.revoke_token(db, token, key=_key(settings))):
        console.print("no such token")
        raise typer.Exit(1)
    console.print("token revoked")


@token_app.command("create")
def token_create(
    merchant_id: int,
    env: Annotated[str, typer.Option(help="test or live.")] = "test",
) -> None:
    """Issue a new token for a merchant (shown once)."""
    if env not in merchants.ENVS:
        raise typer.BadParameter("env must be test or live")
    token = _with_db(
        lambda db, settings: merchants.issue_token(db, merchant_id, env, key=_key(settings))
    )
    console.print(token)


@credits_app.command("load")
def credits_load(
    merchant_id: int,
    amount: str,
    env: Annotated[str, typer.Option(help="live or test.")] = "live",
    note: Annotated[str, typer.Option(help="Why, for the books.")] = "credit load",
) -> None:
    """Load credits: a ledger transfer from the operator's funding account."""
    if env not in merchants.ENVS:
        raise typer.BadParameter("env must be live or test")
    amount_paisa = _paisa(amount)
    try:
        _with_db(lambda db, _: merchants.load_credits(db, merchant_id, env, amount_paisa, note))
    except LookupError as exc:
        console.print(str(exc))
        raise typer.Exit(1) from None
    console.print(f"loaded {money.format_rupees(amount_paisa)} to merchant {merchant_id} ({env})")


def _when(ms: object) -> str:
    if not isinstance(ms, int):
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@callbacks_app.command("list")
def callbacks_list(
    reference: Annotated[str | None, typer.Option(help="Only this payment reference.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Show callbacks and every attempt made to deliver them."""
    from bhuktani.callbacks import outbox

    rows = _with_db(lambda db, _: outbox.listing(db, reference))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("id", "merchant", "env", "reference", "status", "attempts", "next", "last")
    for row in rows:
        attempts = row["attempt_log"]
        assert isinstance(attempts, list)
        last = attempts[-1] if attempts else None
        last_text = "-"
        if last is not None:
            outcome = last["http_status"] or last["error"]
            last_text = f"{_when(last['attempted_ms'])} {outcome} {last['latency_ms']}ms"
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            str(row["env"]),
            str(row["reference"]),
            str(row["status"]),
            str(row["attempts"]),
            _when(row["next_attempt_ms"]),
            last_text,
        )
    console.print(table)


@callbacks_app.command("retry")
def callbacks_retry(callback_id: int) -> None:
    """Send a callback again now (the deliverer in serve or worker picks it up)."""
    from bhuktani.callbacks import outbox

    if not _with_db(lambda db, _: outbox.retry_now(db, callback_id)):
        console.print(f"no callback {callback_id}")
        raise typer.Exit(1)
    console.print(f"callback {callback_id} is due now")


@app.command()
def demo(
    base_url: Annotated[str, typer.Option(help="Where the server will listen.")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Make the demo merchant if there is none, issue it a TEST token, print curls."""
    from bhuktani.demo import ensure_demo, render_curls

    token = _with_db(lambda db, settings: ensure_demo(db, key=_key(settings)))
    typer.echo(render_curls(base_url, token))


def main() -> None:
    app()
