"""The checks after a bank run, each adding to run.problems, and the report."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bhuktani import money
from bhuktani.ledger import accounts as ledger
from bhuktani.payments import records
from bhuktani.services import registry
from bhuktani.store import Database, Row
from tests.bank.clients import Delivery, Run
from tests.bank.plan import FINAL, Intent, Merchant, Outcome
from tests.bank.processes import sim_get
from tests.support import assert_books_balance


@dataclass
class Report:
    seed: int
    database: str
    workdir: Path
    payments: int
    test_payments: int
    clients: int
    merchants: int
    kills: int = 0
    fates: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Counter[str]] = field(default_factory=dict)
    views: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    callbacks: Counter[str] = field(default_factory=Counter)
    # Payments each ISP's settlement matched (bhuktani settle), by ISP.
    settled: dict[str, int] = field(default_factory=dict)
    lost_answers: int = 0
    setup_s: float = 0.0
    load_s: float = 0.0
    drain_s: float = 0.0
    total_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        states = {env: dict(sorted(c.items())) for env, c in self.states.items()}
        return "\n".join(
            [
                f"bank seed {self.seed} on {self.database}: {self.payments} LIVE + "
                f"{self.test_payments} TEST payments, {self.clients} clients, "
                f"{self.merchants} merchants, {self.kills} kills",
                f"  time: setup {self.setup_s:.1f}s, load {self.load_s:.1f}s, "
                f"drain {self.drain_s:.1f}s, "
                f"total {self.total_s:.1f}s",
                f"  isp-sim fates: {json.dumps(self.fates)}",
                f"  final states: {json.dumps(states)}",
                f"  clients were told: {json.dumps(dict(sorted(self.views.items())))}; "
                f"answers lost to kills: {self.lost_answers}",
                f"  answers: {json.dumps(dict(sorted(self.answers.items())))}",
                f"  callbacks: {json.dumps(dict(sorted(self.callbacks.items())))}",
                f"  settled with the ISPs: {sum(self.settled.values())} payments matched"
                f" across {len([n for n in self.settled.values() if n])} ISPs",
                f"  problems: {len(self.problems)}; logs in {self.workdir}",
            ]
        )

    def failure(self) -> str:
        shown = "\n".join(f"  - {p}" for p in self.problems[:40])
        more = len(self.problems) - 40
        return (
            f"{self.summary()}\n{shown}"
            + (f"\n  … and {more} more" if more > 0 else "")
            + f"\nreplay: BHUKTANI_BANK_SEED={self.seed} BHUKTANI_TEST_DATABASES={self.database}"
            f" .venv/bin/pytest tests/test_bank.py (a soak: with its BHUKTANI_SOAK* too)"
        )


@dataclass(frozen=True)
class Asked:
    """A credit request a merchant sent during the run, and the operator's decision."""

    merchant_id: int
    env: str
    request_id: int
    amount_paisa: int
    approved: bool


@dataclass(frozen=True)
class Settle:
    """How to run `bhuktani settle` against the run's isp-sim: the gateway's environment
    (database, LIVE ISP systems) and the Nepal days the run covered."""

    env: dict[str, str]
    days: list[date]


# The checks, each adding to run.problems.


async def check(
    run: Run, db: Database, sim_url: str, report: Report, asked: Sequence[Asked], settle: Settle
) -> None:
    try:
        await assert_books_balance(db)
    except AssertionError as exc:
        run.problem(f"books: {exc}")
    rows = await _payment_rows(db, [m.id for m in run.merchants])
    _check_references(run, rows, report)
    await _check_balances(run, db, rows)
    await _check_credit_requests(run, db, asked)
    await _check_settlements(run, rows, settle, report)
    report.fates = await sim_get(sim_url, "/_sim/stats")
    applied = (await sim_get(sim_url, "/_sim/applied"))["payments"]
    _check_applied(run, rows, "live", {int(p["payment_id"]): p for p in applied})
    _check_applied(run, rows, "test", await _sandbox_applied(db, run.merchants))
    await _check_callbacks(run, db, rows, report)


async def _payment_rows(db: Database, merchant_ids: Sequence[int]) -> list[Row]:
    rows: list[Row] = []
    async with db.transaction() as tx:
        for merchant_id in merchant_ids:
            rows += await tx.fetch(
                "SELECT id, merchant_id, env, reference, service, isp, state, isp_status,"
                " detail, amount_paisa, charge_paisa, checks, flagged FROM payments"
                " WHERE merchant_id = $1",
                merchant_id,
            )
    return rows


def _key(row: Row) -> tuple[int, str, str]:
    return int(row["merchant_id"]), str(row["env"]), str(row["reference"])


def _check_references(run: Run, rows: Sequence[Row], report: Report) -> None:
    """One payment per reference, final or flagged, agreeing with what its client was told."""
    for key, count in Counter(_key(r) for r in rows).items():
        if count > 1:
            run.problem(f"{key}: {count} payments under one reference")
    by_key = {_key(r): r for r in rows}
    report.states = {"live": Counter(), "test": Counter()}
    for row in rows:
        state, flagged = str(row["state"]), bool(row["flagged"])
        report.states[str(row["env"])][f"flagged {state}" if flagged else state] += 1
        if str(row["reference"]) not in run.by_reference:
            run.problem(f"payment {row['id']}: reference {row['reference']} no client sent")
        if state not in FINAL and not (state == "Processing" and flagged):
            run.problem(f"{row['reference']}: left {state} ({row['isp_status']}), not flagged")
    for intent in run.intents:
        outcome = run.outcomes.get(intent.reference, Outcome())
        report.views[f"{intent.env} {outcome.view}"] += 1
        report.lost_answers += outcome.lost_answers
        key = (run.merchants[intent.merchant].id, intent.env, intent.reference)
        _agrees(run, intent, outcome, by_key.get(key))


def _agrees(run: Run, intent: Intent, outcome: Outcome, row: Row | None) -> None:
    told = outcome.view
    if row is None:
        if told in ("Success", "Processing", "Failed"):
            run.problem(f"{intent.reference}: the client was told {told}, no payment exists")
        return
    state = str(row["state"])
    if told in ("Insufficient", "Refused"):
        run.problem(f"{intent.reference}: refused ({told}), yet a payment exists ({state})")
    if told in ("Success", "Failed") and state != told:
        run.problem(f"{intent.reference}: the client was told {told}, the payment is {state}")
    if outcome.payment_id is not None and outcome.payment_id != int(row["id"]):
        run.problem(f"{intent.reference}: told payment {outcome.payment_id}, is {row['id']}")
    if int(row["amount_paisa"]) != intent.amount_paisa:
        run.problem(f"{intent.reference}: amount {row['amount_paisa']} != {intent.amount_paisa}")


def _taken(row: Row) -> int:
    """What a payment holds or takes from its merchant: its amount and its charge."""
    return int(row["amount_paisa"]) + int(row["charge_paisa"])


async def _check_balances(run: Run, db: Database, rows: Sequence[Row]) -> None:
    """Balance = loads - Success (amount + charge) + refunds, in the books and through the
    API; each payment's charge the one set for its merchant, service and amount; each
    Success payment's charge paid to the fees account, no other's."""
    fees = await _fees_paid(db, [m.id for m in run.merchants])
    for merchant in run.merchants:
        for env in ("live", "test"):
            mine = [r for r in rows if int(r["merchant_id"]) == merchant.id and r["env"] == env]
            for row in mine:
                expected_charge = merchant.charge_paisa(
                    env, str(row["service"]), str(row["isp"]), int(row["amount_paisa"])
                )
                if int(row["charge_paisa"]) != expected_charge:
                    run.problem(
                        f"{env} {row['reference']}: charge {row['charge_paisa']}"
                        f" != {expected_charge} set for it"
                    )
                paid_fee = fees.get(int(row["id"]), 0)
                owed_fee = int(row["charge_paisa"]) if row["state"] == "Success" else 0
                if paid_fee != owed_fee:
                    run.problem(f"{env} {row['reference']}: fees got {paid_fee}, owed {owed_fee}")
            success = sum(_taken(r) for r in mine if r["state"] == "Success")
            held = sum(_taken(r) for r in mine if r["state"] == "Processing")
            account, loads, refunds, debits = await _account(db, merchant.id, env)
            where = f"merchant {merchant.id} {env}"
            if debits:
                run.problem(f"{where}: {debits} paisa debited outside payments")
            expected = loads - success + refunds
            if int(account["balance_paisa"]) != expected:
                run.problem(
                    f"{where}: balance {account['balance_paisa']} != loads {loads}"
                    f" - Success {success} + refunds {refunds} = {expected}"
                )
            if int(account["held_paisa"]) != held:
                run.problem(f"{where}: held {account['held_paisa']} != flagged {held}")
            if int(account["consumed_paisa"]) != success - refunds:
                run.problem(f"{where}: consumed {account['consumed_paisa']} != {success - refunds}")
            token = merchant.live_token if env == "live" else merchant.test_token
            response = await run.http.get(
                "/api/balance", headers={"Authorization": f"Token {token}"}
            )
            shown = response.json()
            if shown.get("credits_available") != (expected - held) / 100:
                run.problem(f"{where}: API shows {shown}, available is {(expected - held) / 100}")
            if shown.get("credits_consumed") != (success - refunds) / 100:
                run.problem(f"{where}: API shows {shown}, consumed is {(success - refunds) / 100}")


async def _fees_paid(db: Database, merchant_ids: Sequence[int]) -> dict[int, int]:
    """What each of the merchants' payments paid the fees accounts, by payment id."""
    paid: dict[int, int] = {}
    async with db.transaction() as tx:
        for merchant_id in merchant_ids:
            for row in await tx.fetch(
                "SELECT t.payment_id, t.amount_paisa FROM transfers t"
                " JOIN accounts a ON a.id = t.credit_account_id"
                " JOIN payments p ON p.id = t.payment_id"
                " WHERE a.kind = 'fees' AND p.merchant_id = $1",
                merchant_id,
            ):
                payment_id = int(row["payment_id"])
                paid[payment_id] = paid.get(payment_id, 0) + int(row["amount_paisa"])
    return paid


async def _check_credit_requests(run: Run, db: Database, asked: Sequence[Asked]) -> None:
    """An approved request was loaded once, by the transfer it names; a rejected one
    moved nothing."""
    if len(asked) != 2 * (len(run.merchants) - 1):
        run.problem(f"{len(asked)} credit requests decided, {2 * (len(run.merchants) - 1)} sent")
    async with db.transaction() as tx:
        for request in asked:
            row = await tx.fetchrow(
                "SELECT r.status, r.transfer_id, t.amount_paisa FROM credit_requests r"
                " LEFT JOIN transfers t ON t.id = r.transfer_id WHERE r.id = $1",
                request.request_id,
            )
            where = f"credit request {request.request_id} ({request.env})"
            if row is None:
                run.problem(f"{where}: not stored")
            elif request.approved and (
                row["status"] != "approved" or row["amount_paisa"] != request.amount_paisa
            ):
                run.problem(f"{where}: {dict(row)}, approved for {request.amount_paisa}")
            elif not request.approved and (
                row["status"] != "rejected" or row["transfer_id"] is not None
            ):
                run.problem(f"{where}: {dict(row)}, rejected")


async def _check_settlements(run: Run, rows: Sequence[Row], settle: Settle, report: Report) -> None:
    """`bhuktani settle` of every ISP for every day of the run, as the operator runs it:
    the ISP's report and our Success set agree. What may differ is a payment flagged for
    an operator (Processing here, maybe applied there): that is what the flag says."""
    flagged = {int(r["id"]) for r in rows if r["state"] == "Processing" and bool(r["flagged"])}
    limit = asyncio.Semaphore(8)

    async def one(isp: str, day: date) -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bhuktani", "settle", isp, "--date", day.isoformat(),
                "--env", "live", "--json", "--operator", "bank",
                env=settle.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
        where = f"settle {isp} {day}"
        if process.returncode not in (0, 2):
            run.problem(f"{where}: exit {process.returncode}: {err.decode()[-500:]}")
            return
        result = json.loads(out)
        report.settled[isp] = report.settled.get(isp, 0) + int(result["matched"]["count"])
        unexplained = [
            entry for entry in result["theirs_only"] if int(entry["payment_id"]) not in flagged
        ]
        if result["counts"]["ours_only"] or result["counts"]["amount_mismatches"] or unexplained:
            run.problem(f"{where}: {result['counts']}; theirs only, not flagged: {unexplained}")

    await asyncio.gather(*(one(isp, day) for isp in sorted(registry.BY_ISP) for day in settle.days))


async def _account(db: Database, merchant_id: int, env: str) -> tuple[Row, int, int, int]:
    """The merchant's account, and its single transfers: loads from the funding account,
    refunds from anywhere else, and debits (there should be none)."""
    async with db.transaction() as tx:
        account = await tx.fetchrow(
            "SELECT id, balance_paisa, held_paisa, consumed_paisa FROM accounts"
            " WHERE kind = 'merchant' AND env = $1 AND code = $2",
            env,
            ledger.merchant_code(merchant_id),
        )
        funding = await tx.fetchrow(
            "SELECT id FROM accounts WHERE kind = 'funding' AND env = $1 AND code = $2",
            env,
            ledger.FUNDING_CODE,
        )
        assert account is not None and funding is not None
        singles = await tx.fetch(
            "SELECT debit_account_id, credit_account_id, amount_paisa FROM transfers"
            " WHERE kind = 'single' AND (credit_account_id = $1 OR debit_account_id = $1)",
            int(account["id"]),
        )
    own, source = int(account["id"]), int(funding["id"])
    loads = refunds = debits = 0
    for t in singles:
        amount = int(t["amount_paisa"])
        if int(t["debit_account_id"]) == own:
            debits += amount
        elif int(t["debit_account_id"]) == source:
            loads += amount
        else:
            refunds += amount
    return account, loads, refunds, debits


async def _sandbox_applied(db: Database, merchants: Sequence[Merchant]) -> dict[int, Any]:
    applied: dict[int, Any] = {}
    async with db.transaction() as tx:
        for merchant in merchants:
            for row in await tx.fetch(
                "SELECT payment_id, isp, amount_paisa, receipt FROM sandbox_payments"
                " WHERE merchant_id = $1",
                merchant.id,
            ):
                applied[int(row["payment_id"])] = dict(row)
    return applied


def _check_applied(run: Run, rows: Sequence[Row], env: str, applied: dict[int, Any]) -> None:
    """What the ISP applied is exactly our Success set: none charged and not paid, none
    paid and not charged, each for the same amount and with the same receipt."""
    ours = {int(r["id"]): r for r in rows if r["env"] == env}
    success = {pid for pid, r in ours.items() if r["state"] == "Success"}
    for pid in sorted(success - set(applied)):
        row = ours[pid]
        run.problem(f"{env} {row['reference']}: Success (charged) but the ISP never applied it")
    for pid in sorted(set(applied) - success):
        found = ours.get(pid)
        what = (
            "no payment of ours" if found is None else f"{found['state']} ({found['isp_status']})"
        )
        reference = "?" if found is None else found["reference"]
        run.problem(f"{env} {reference}: the ISP applied payment {pid}, our books say {what}")
    for pid in sorted(success & set(applied)):
        row, paid = ours[pid], applied[pid]
        if int(paid["amount_paisa"]) != int(row["amount_paisa"]):
            run.problem(
                f"{env} {row['reference']}: ISP took {paid['amount_paisa']}, we {row['amount_paisa']}"
            )
        if str(paid["receipt"]) != str(row["detail"]):
            run.problem(f"{env} {row['reference']}: receipt {paid['receipt']} != {row['detail']}")
        if str(paid["isp"]) != str(row["isp"]):
            run.problem(f"{env} {row['reference']}: applied at {paid['isp']}, paid to {row['isp']}")


async def _check_callbacks(run: Run, db: Database, rows: Sequence[Row], report: Report) -> None:
    callbacks, attempts = await _callback_rows(db, run.merchants)
    by_payment: dict[int, list[Row]] = {}
    for callback in callbacks:
        by_payment.setdefault(int(callback["payment_id"]), []).append(callback)
    received: dict[str, list[Delivery]] = {}
    for delivery in run.deliveries:
        received.setdefault(delivery.event_id, []).append(delivery)
    known = {str(c["event_id"]) for c in callbacks}
    for event_id in sorted(set(received) - known):
        run.problem(f"the receiver got event {event_id!r}, which is in no outbox")
    for row in rows:
        outcome = run.outcomes.get(str(row["reference"]), Outcome())
        final = row["state"] in FINAL
        # A callback is owed when the final state came after the commit's answer: it
        # answered Processing, or was cut off and the reconciler settled the payment (it
        # asked at least once). One answered at once owes none; should the reconciler
        # have raced the commit to it (only if the commit outlived its grace), either way.
        checked = int(row["checks"]) > 0
        owed = final and (outcome.view == "Processing" or (checked and not outcome.at_once))
        found = by_payment.get(int(row["id"]), [])
        where = f"{row['env']} {row['reference']} ({row['state']}, checks {row['checks']})"
        if owed and not found:
            run.problem(f"{where}: no callback")
        if found and not owed and not (checked and outcome.at_once):
            run.problem(f"{where}: a callback for a payment answered at once")
        if len(found) > 1:
            run.problem(f"{where}: {len(found)} callbacks for one final state")
        if final and not owed and not outcome.at_once and outcome.view in FINAL:
            # Settled by the commit, whose answer the kill then lost: the client learns
            # the state by retrying (1013), never by callback (docs/API.md section 5).
            report.callbacks["none owed: final answer lost to a kill"] += 1
        for callback in found:
            _check_callback(
                run, row, callback, attempts.get(int(callback["id"]), []), received, report
            )


def _check_callback(
    run: Run,
    row: Row,
    callback: Row,
    attempts: Sequence[Row],
    received: dict[str, list[Delivery]],
    report: Report,
) -> None:
    where = f"{row['env']} {row['reference']} callback {callback['id']}"
    payload = json.loads(str(callback["payload_json"]))
    expected = {
        "reference": str(row["reference"]),
        "amount": money.format_rupees(int(row["amount_paisa"])),
        "status": str(row["state"]),
        "detail": records.describe(row),
        "response_id": str(row["id"]),
        "env": str(row["env"]),
    }
    if payload != expected:
        run.problem(f"{where}: payload {payload} != final state {expected}")
    got = received.get(str(callback["event_id"]), [])
    report.callbacks[f"{row['env']} {callback['status']}"] += 1
    report.callbacks[f"{row['env']} attempts"] += len(attempts)
    report.callbacks[f"{row['env']} requests received"] += len(got)
    if callback["status"] != "delivered" or not got:
        run.problem(f"{where}: {callback['status']}, {len(got)} requests received")
    for delivery in got:
        if not delivery.signed:
            run.problem(f"{where}: a request without a valid signature")
        if delivery.fields != payload:
            run.problem(f"{where}: received {delivery.fields}, outbox has {payload}")


async def _callback_rows(
    db: Database, merchants: Sequence[Merchant]
) -> tuple[list[Row], dict[int, list[Row]]]:
    callbacks: list[Row] = []
    attempts: dict[int, list[Row]] = {}
    async with db.transaction() as tx:
        for merchant in merchants:
            callbacks += await tx.fetch(
                "SELECT id, event_id, env, payment_id, payload_json, status, attempts"
                " FROM callbacks WHERE merchant_id = $1",
                merchant.id,
            )
            for attempt in await tx.fetch(
                "SELECT a.callback_id, a.http_status, a.error FROM callback_attempts a"
                " JOIN callbacks c ON c.id = a.callback_id WHERE c.merchant_id = $1"
                " ORDER BY a.id",
                merchant.id,
            ):
                attempts.setdefault(int(attempt["callback_id"]), []).append(attempt)
    return callbacks, attempts
