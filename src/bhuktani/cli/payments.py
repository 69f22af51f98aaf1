"""`bhuktani payment …`: an operator's look at one payment, and the two audited actions
on it (resolve a flagged one, refund a reversed one). The rules are in payments.operator."""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bhuktani import money
from bhuktani.cli.common import with_runtime
from bhuktani.cli.display import DataConsole, shown
from bhuktani.payments import operator
from bhuktani.runtime import Gateway

T = TypeVar("T")
payment_app = typer.Typer(
    help="One payment: show it, resolve a flagged one, refund a reversed one.",
    no_args_is_help=True,
)
console = DataConsole()

MerchantOption = Annotated[
    int | None, typer.Option("--merchant", help="Only this merchant's payment.")
]
EnvOption = Annotated[
    str | None, typer.Option("--env", help="Only this environment: test or live.")
]
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


def _target(reference: str, merchant: int | None, env: str | None) -> operator.Target:
    if env is not None and env not in operator.ENVS:
        raise typer.BadParameter("env must be test or live", param_hint="--env")
    return operator.Target(reference, merchant, env)


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


def _print(view: dict[str, Any]) -> None:
    head = Table.grid(padding=(0, 2))
    for key in HEAD_FIELDS:
        head.add_row(key, str(view[key]))
    console.print(head)
    transfers = _table("transfers", "id", "kind", "amount", "debit", "credit", "note", "at")
    for t in view["transfers"]:
        transfers.add_row(
            str(t["id"]),
            t["kind"],
            t["amount"],
            t["debit"],
            t["credit"],
            t["note"] or "",
            t["created_at"],
        )
    console.print(transfers)
    callbacks = _table("callbacks", "id", "status", "attempts", "url", "last attempt")
    for c in view["callbacks"]:
        last = c["attempt_log"][-1] if c["attempt_log"] else None
        last_text = (
            "-"
            if last is None
            else f"{last['attempted_at']} {last['http_status'] or last['error']}"
        )
        callbacks.add_row(str(c["id"]), c["status"], str(c["attempts"]), c["url"], last_text)
    console.print(callbacks)
    actions = _table(
        "operator actions", "id", "action", "amount", "transfer", "operator", "note", "at"
    )
    for a in view["operator_actions"]:
        actions.add_row(
            str(a["id"]),
            a["action"],
            a["amount"] or "",
            str(a["transfer_id"] or ""),
            a["operator"],
            a["note"],
            a["created_at"],
        )
    console.print(actions)


@payment_app.command("show")
def show(
    reference: str,
    merchant: MerchantOption = None,
    env: EnvOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of payments.")] = False,
) -> None:
    """Every payment with this reference: transfers, refunds, callbacks, operator actions."""
    target = _target(reference, merchant, env)
    views = _run(lambda gateway: operator.show(gateway.db, target))
    if as_json:
        typer.echo(json.dumps(views))
        return
    if not views:
        typer.echo(shown(f"no payment with reference {reference!r}"), err=True)
        raise typer.Exit(1)
    for view in views:
        _print(view)


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
    charge_back = (
        f"; its service charge {money.format_rupees(done.charge_refunded_paisa)} given back"
        if done.charge_refunded_paisa
        else ""
    )
    typer.echo(
        f"refunded {money.format_rupees(done.amount_paisa)} of payment {done.payment_id}"
        f" (transfer {done.transfer_id}); {money.format_rupees(done.refunded_paisa)} refunded"
        f" in all, {money.format_rupees(done.left_paisa)} left{charge_back}"
    )
