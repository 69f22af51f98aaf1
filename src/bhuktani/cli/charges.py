"""`bhuktani charges …`: each merchant's service charges, per environment and service
(books.charges). Set and clear are audited; a running gateway applies a change within
BHUKTANI_AUTH_CACHE_S."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bhuktani import audit
from bhuktani.books import charges
from bhuktani.cli.common import DEFAULT_ENV, EnvOption, JsonOption, console, paisa, with_db
from bhuktani.cli.display import print_json, tell

charges_app = typer.Typer(
    help="Service charges per merchant, environment and service (group or ISP slug).",
    no_args_is_help=True,
)

OperatorOption = Annotated[
    str | None, typer.Option("--operator", help="Who acts; defaults to the OS user.")
]


def _operator(name: str | None) -> str:
    try:
        return audit.operator_of(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None


def _refused(exc: Exception) -> typer.Exit:
    tell(f"refused: {exc}")
    return typer.Exit(1)


def _charge(
    flat: str | None, percent: str | None, minimum: str | None, maximum: str | None
) -> charges.Charge:
    if (flat is None) == (percent is None):
        raise typer.BadParameter("give exactly one of --flat or --percent")
    if flat is not None:
        if minimum is not None or maximum is not None:
            raise typer.BadParameter("--min and --max bound a --percent charge only")
        return charges.Charge(flat_paisa=paisa(flat, allow_zero=True))
    assert percent is not None
    try:
        percent_bp = charges.parse_percent(percent)
    except charges.ChargeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--percent") from None
    min_paisa = None if minimum is None else paisa(minimum, allow_zero=True)
    max_paisa = None if maximum is None else paisa(maximum, allow_zero=True)
    if min_paisa is not None and max_paisa is not None and min_paisa > max_paisa:
        raise typer.BadParameter("--min is more than --max")
    return charges.Charge(percent_bp=percent_bp, min_paisa=min_paisa, max_paisa=max_paisa)


@charges_app.command("set")
def charges_set(
    merchant_id: int,
    service: Annotated[str, typer.Argument(help="A service group's slug or one ISP's slug.")],
    flat: Annotated[str | None, typer.Option("--flat", help="Rupees on every payment.")] = None,
    percent: Annotated[
        str | None, typer.Option("--percent", help="Percent of the amount, 0 to 100.")
    ] = None,
    minimum: Annotated[
        str | None, typer.Option("--min", help="Rupees: the least a percent charge takes.")
    ] = None,
    maximum: Annotated[
        str | None, typer.Option("--max", help="Rupees: the most a percent charge takes.")
    ] = None,
    env: EnvOption = DEFAULT_ENV,
    operator_name: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set (or replace) a merchant's charge on a service; an ISP's wins over its group's.
    JSON: the charge as `charges list --json` shows it."""
    charge = _charge(flat, percent, minimum, maximum)
    who = _operator(operator_name)
    try:
        entry = with_db(
            lambda db, _: charges.set_charge(
                db, merchant_id, env.value, service, charge, operator=who
            )
        )
    except charges.ChargeError as exc:
        raise _refused(exc) from None
    if as_json:
        print_json(entry.as_json())
        return
    console.print(f"merchant {merchant_id} ({env.value}) pays {charge.described()} on {service}")


@charges_app.command("clear")
def charges_clear(
    merchant_id: int,
    service: Annotated[str, typer.Argument(help="The slug the charge was set on.")],
    env: EnvOption = DEFAULT_ENV,
    operator_name: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a merchant's charge on a service (its group's, if any, applies again).
    JSON: {"merchant_id", "env", "service", "removed": the charge removed}."""
    who = _operator(operator_name)
    try:
        removed = with_db(
            lambda db, _: charges.clear_charge(db, merchant_id, env.value, service, operator=who)
        )
    except charges.ChargeError as exc:
        raise _refused(exc) from None
    if as_json:
        print_json(
            {
                "merchant_id": merchant_id,
                "env": env.value,
                "service": service,
                "removed": removed.as_json(),
            }
        )
        return
    console.print(
        f"merchant {merchant_id} ({env.value}) no longer pays {removed.described()} on {service}"
    )


@charges_app.command("list")
def charges_list(
    merchant_id: Annotated[int | None, typer.Argument(help="Only this merchant's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """Every charge set, or one merchant's: amounts in rupees, percent as written."""
    entries = with_db(lambda db, _: charges.listing(db, merchant_id))
    if as_json:
        print_json([entry.as_json() for entry in entries])
        return
    table = Table(title="service charges")
    for column in ("merchant", "env", "service", "charge"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(str(entry.merchant_id), entry.env, entry.service, entry.charge.described())
    console.print(table)
