"""`bhuktani payment …`: the operator's list of payments (flagged ones first of all), a
look at one, and the two audited actions on it (resolve a flagged one, refund a reversed
one). The rules are in payments.operator, the list in payments.listing."""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.table import Table

from bhuktani import money
from bhuktani.cli.common import (
    AllOption,
    CursorOption,
    EnvFilter,
    JsonOption,
    UtcOption,
    with_db,
    with_runtime,
)
from bhuktani.cli.display import (
    DataConsole,
    Times,
    add_amount_column,
    paisa_of,
    print_json,
    rupees,
    shown,
    tell,
)
from bhuktani.cli.paging import Page, pages, tell_more
from bhuktani.clock import NEPAL, day_end_ms, day_start_ms, ms_of, nepal_time
from bhuktani.domain import Env, State
from bhuktani.payments import listing, operator
from bhuktani.runtime import Gateway
from bhuktani.settings import Settings
from bhuktani.store import Database, keyset

T = TypeVar("T")
payment_app = typer.Typer(
    help="Payments: list them, show one, resolve a flagged one, refund a reversed one.",
    no_args_is_help=True,
)
console = DataConsole()

MerchantOption = Annotated[
    int | None, typer.Option("--merchant", help="Only this merchant's payment.")
]
# A filter, both environments unless named: a reference names the payment, and a LIVE
# payment must not need --env to be found.
EnvOption = EnvFilter
NoteOption = Annotated[str, typer.Option("--note", help="Why, for the audit (at most 500 chars).")]
OperatorOption = Annotated[
    str | None, typer.Option("--operator", help="Who acts; defaults to the OS user.")
]


HEAD_FIELDS = (
    "id", "merchant_id", "env", "reference", "service", "isp", "username", "plan", "amount",
    "state", "isp_status", "flagged", "flag_reason", "checks", "created_at", "updated_at",
    "detail", "charge", "refunded_amount",
)  # fmt: skip


def _run(fn: Callable[[Gateway], Awaitable[T]]) -> T:
    try:
        return with_runtime(fn)
    except operator.OperatorError as exc:
        typer.echo(shown(f"refused: {exc}"), err=True)
        raise typer.Exit(1) from None


def _target(reference: str, merchant: int | None, env: Env | None) -> operator.Target:
    return operator.Target(reference, merchant, None if env is None else env.value)


def _operator(name: str | None) -> str:
    if name is not None:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise typer.BadParameter(
            "no OS user to record; name one", param_hint="--operator"
        ) from None


def _table(title: str, *columns: str) -> Table:
    # Fold long values rather than cut them: an operator needs all of an id or a time.
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


AMOUNT_FIELDS = ("amount", "charge", "refunded_amount")
TIME_FIELDS = ("created_at", "updated_at")


def _print(view: dict[str, Any], times: Times) -> None:
    head = Table.grid(padding=(0, 2))
    for key in HEAD_FIELDS:
        if key in AMOUNT_FIELDS:
            head.add_row(f"{key} (Rs)", rupees(paisa_of(view[key])))
        elif key in TIME_FIELDS:
            head.add_row(times.header(key), times.cell(view[key]))
        else:
            head.add_row(key, str(view[key]))
    console.print(head)
    transfers = _table("transfers", "id", "kind")
    add_amount_column(transfers, "amount (Rs)")
    for column in ("debit", "credit", "note"):
        transfers.add_column(column, overflow="fold")
    times.add_column(transfers, "at")
    for t in view["transfers"]:
        transfers.add_row(
            str(t["id"]),
            t["kind"],
            rupees(paisa_of(t["amount"])),
            t["debit"],
            t["credit"],
            t["note"] or "",
            times.cell(t["created_at"]),
        )
    console.print(transfers)
    callbacks = _table("callbacks", "id", "status", "attempts", "url", times.header("last attempt"))
    for c in view["callbacks"]:
        last = c["attempt_log"][-1] if c["attempt_log"] else None
        last_text = (
            "-"
            if last is None
            else f"{times.cell(last['attempted_at'])} {last['http_status'] or last['error']}"
        )
        callbacks.add_row(str(c["id"]), c["status"], str(c["attempts"]), c["url"], last_text)
    console.print(callbacks)
    actions = _table("operator actions", "id", "action")
    add_amount_column(actions, "amount (Rs)")
    for column in ("transfer", "operator", "note"):
        actions.add_column(column, overflow="fold")
    times.add_column(actions, "at")
    for a in view["operator_actions"]:
        actions.add_row(
            str(a["id"]),
            a["action"],
            "" if a["amount"] is None else rupees(paisa_of(a["amount"])),
            str(a["transfer_id"] or ""),
            a["operator"],
            a["note"],
            times.cell(a["created_at"]),
        )
    console.print(actions)


@payment_app.command("show")
def show(
    reference: str,
    merchant: MerchantOption = None,
    env: EnvOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of payments.")] = False,
    utc: UtcOption = False,
) -> None:
    """Every payment with this reference: transfers, refunds, callbacks, operator actions."""
    target = _target(reference, merchant, env)
    views = _run(lambda gateway: operator.show(gateway.db, target))
    if as_json:
        print_json(views)
        return
    if not views:
        tell(f"no payment with reference {reference!r}")
        raise typer.Exit(1)
    for view in views:
        _print(view, Times(utc))


@payment_app.command("resolve")
def resolve(
    reference: str,
    note: NoteOption,
    success: Annotated[
        bool, typer.Option("--success", help="The ISP applied it: capture.")
    ] = False,
    failed: Annotated[bool, typer.Option("--failed", help="It never applied: release.")] = False,
    merchant: MerchantOption = None,
    env: EnvOption = None,
    operator_name: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide a flagged Processing payment: capture its hold or release it; call back."""
    if success == failed:
        raise typer.BadParameter("give exactly one of --success or --failed")
    target = _target(reference, merchant, env)
    who = _operator(operator_name)
    done = _run(
        lambda gateway: operator.resolve(
            gateway.book, target, success=success, note=note, operator=who
        )
    )
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    typer.echo(
        f"payment {done.payment_id} is {done.state} (transfer {done.transfer_id},"
        f" operator action {done.action_id})"
    )


@payment_app.command("refund")
def refund(
    reference: str,
    note: Annotated[
        str, typer.Option("--note", help="Why; the merchant sees it as the refund's remarks.")
    ],
    amount: Annotated[
        str | None, typer.Option("--amount", help="Rupees; default all that is left.")
    ] = None,
    merchant: MerchantOption = None,
    env: EnvOption = None,
    operator_name: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refund (part of) a Success payment the ISP reversed; it stays Success."""
    amount_paisa = None
    if amount is not None:
        try:
            amount_paisa = money.to_paisa(amount)
        except money.AmountError as exc:
            raise typer.BadParameter(str(exc), param_hint="--amount") from None
    target = _target(reference, merchant, env)
    who = _operator(operator_name)
    done = _run(
        lambda gateway: operator.refund(
            gateway.db, target, amount_paisa=amount_paisa, note=note, operator=who
        )
    )
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    charge_back = (
        f"; its service charge {rupees(done.charge_refunded_paisa)} given back"
        if done.charge_refunded_paisa
        else ""
    )
    typer.echo(
        f"refunded {rupees(done.amount_paisa)} of payment {done.payment_id}"
        f" (transfer {done.transfer_id}); {rupees(done.refunded_paisa)} refunded"
        f" in all, {rupees(done.left_paisa)} left{charge_back}"
    )


def _instant(text: str | None, *, end: bool, hint: str) -> int | None:
    """A --since or --until: a Nepal day (from its start; --until to its end) or a time,
    in Nepal unless it names its offset."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return day_end_ms(day) if end else day_start_ms(day)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "a day, YYYY-MM-DD, or a time, YYYY-MM-DDTHH:MM[:SS][+HH:MM]", param_hint=hint
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=NEPAL)
    return ms_of(at.isoformat())


def _service(slug: str | None) -> str | None:
    from bhuktani.services import registry

    if slug is not None and slug not in registry.BY_SLUG and slug not in registry.BY_ISP:
        raise typer.BadParameter(
            f"{slug!r} is neither a service group's slug nor an ISP's", param_hint="--service"
        )
    return slug


def _list_table(rows: list[dict[str, Any]], times: Times) -> Table:
    """Every value whole: a narrow terminal folds a cell onto more lines, never cuts it.
    Why a payment is flagged is in --json and `payment show`."""
    table = Table(title="payments", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "merchant", "env"):
        table.add_column(column, overflow="fold")
    table.add_column("reference", overflow="fold")
    table.add_column("isp", overflow="fold")
    add_amount_column(table, "amount (Rs)")
    table.add_column("state", overflow="fold")
    times.add_column(table, "created")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            row["env"],
            row["reference"],
            row["isp"],
            rupees(row["amount_paisa"]),
            f"{row['state']} (flagged)" if row["flagged"] else row["state"],
            times.cell(row["created_at"]),
        )
    return table


@payment_app.command("list")
def payment_list(
    flagged: Annotated[
        bool, typer.Option("--flagged", help="Only those waiting for an operator.")
    ] = False,
    state: Annotated[
        State | None, typer.Option("--state", case_sensitive=False, help="Only in this state.")
    ] = None,
    merchant: Annotated[
        int | None, typer.Option("--merchant", help="Only this merchant's.")
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service group's or ISP's (slug).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="From this day (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM), Nepal time."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="To the end of this day, or before this time, Nepal time."),
    ] = None,
    env: EnvOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=listing.MAX_LIMIT, help="Payments on a page.")
    ] = listing.DEFAULT_LIMIT,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
    utc: UtcOption = False,
) -> None:
    """Payments, newest first, a page at a time: a page ends with the command of the next
    one ("more: ..."), or --all walks them all. JSON: {"payments": [...], "next_cursor"}."""
    filters = listing.Filters(
        flagged=flagged,
        state=state,
        merchant_id=merchant,
        service=_service(service),
        env=env,
        since_ms=_instant(since, end=False, hint="--since"),
        until_ms=_instant(until, end=True, hint="--until"),
        limit=limit,
    )
    times = Times(utc)

    def show(rows: list[dict[str, Any]]) -> None:
        if rows:
            console.print(_list_table(rows, times))

    async def walk(db: Database, _: Settings) -> Page[dict[str, Any]]:
        """One page, or with --all every page (a table each as it comes, unless --json)."""

        async def fetch(after: keyset.Position | None) -> tuple[list[dict[str, Any]], str | None]:
            return await listing.page(db, dataclasses.replace(filters, after=after))

        return await pages(fetch, cursor=cursor, every=every, each=None if as_json else show)

    page = with_db(walk)
    if as_json:
        print_json({"payments": page.rows, "next_cursor": page.next_cursor})
        return
    if not every:
        if page.rows:
            console.print(_list_table(page.rows, times))
        else:
            tell("no payments")
    tell_more(_list_words(filters, as_json=False, utc=utc), page, as_json=False)


def _list_words(filters: listing.Filters, *, as_json: bool, utc: bool) -> list[str]:
    """The command of the next page: the same filters, written out."""
    words = ["bhuktani", "payment", "list"]
    if filters.flagged:
        words.append("--flagged")
    for option, value in (
        ("--state", filters.state),
        ("--merchant", filters.merchant_id),
        ("--service", filters.service),
        ("--env", filters.env),
    ):
        if value is not None:
            words += [option, str(value)]
    if filters.since_ms is not None:
        words += ["--since", nepal_time(filters.since_ms)]
    if filters.until_ms is not None:
        words += ["--until", nepal_time(filters.until_ms)]
    if filters.limit != listing.DEFAULT_LIMIT:
        words += ["--limit", str(filters.limit)]
    if utc:
        words.append("--utc")
    if as_json:
        words.append("--json")
    return words
