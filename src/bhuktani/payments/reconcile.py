"""Resolves payments left Processing by asking their ISP, on a bounded backoff schedule,
and sends the queued payments of single-step services on their first round.

Only the ISP's explicit answer settles a payment: Paid posts the hold, Refused voids it,
NotFound voids it once the ISP's settle window has passed (before that, the payment may
still be on its way). Unknown keeps asking; past the flag window the payment is left held
for an operator, never refunded by guess.

A round that cannot finish its payment - the ISP's answer cannot be read, or our own write
fails (a database error on settle) - is counted, logged and tried again after
reconcile_retry_failed_s; after reconcile_flag_after_failures such rounds in a row the
payment is flagged, with the reason, for an operator. Nothing fails the same way forever,
and one payment's failure never fails the others' round. The count is the payment's own
(payments.failed_rounds), so every worker, and a restarted one, counts on from it; a round
that reads the ISP's answer sets it back to 0.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bhuktani import metrics
from bhuktani.clock import now_ms
from bhuktani.errors import Refusal
from bhuktani.isps.base import NotFound, StatusResult, Unknown
from bhuktani.payments import policy, records
from bhuktani.runtime import Gateway
from bhuktani.services import registry

log = structlog.get_logger()


def backoff_ms(schedule_s: list[float], checks: int) -> int:
    """The delay before the next question, after `checks` questions; the last one repeats."""
    assert schedule_s, "the backoff schedule is never empty"
    index = min(max(checks, 0), len(schedule_s) - 1)
    return int(schedule_s[index] * 1000)


async def _ask(gateway: Gateway, due: records.Due) -> StatusResult:
    try:
        provider = policy.provider(gateway, due.env, due.service)
        async with asyncio.timeout(gateway.settings.isp_timeout_s + 1):
            if due.checks == 1 and due.service in registry.SINGLE_STEP_SLUGS:
                # A single-step payment was queued, not sent: the first round sends it
                # (the ISP applies a payment_id once). A round that dies before the ISP
                # answers leaves the rest to status questions: not found past the settle
                # window, the payment fails and its credits come back.
                return await provider.pay(due.order)
            return await provider.status(due.order)
    except Refusal as exc:
        return Unknown(exc.details)
    except TimeoutError:
        return Unknown("no answer from the ISP in time")
    # Anything else (an adapter bug) fails the round: resolve() counts it, and flags a
    # payment whose every round fails that way.


FAILED_ROUND = "Retry"
FLAGGED = "Flagged"


async def resolve(gateway: Gateway, due: records.Due) -> str:
    """One round for one payment: its state after it, "Retry" after a failed round, or
    "Flagged". Never raises, so one payment cannot fail the round of the others."""
    try:
        return await _resolve(gateway, due)
    except Exception as exc:
        log.exception("reconcile_round_failed", payment_id=due.payment_id)
        return await _failed_round(gateway, due, "error", f"{type(exc).__name__}: {exc}")


async def _failed_round(gateway: Gateway, due: records.Due, kind: str, why: str) -> str:
    metrics.RECONCILE_FAILURES.labels(kind=kind).inc()
    settings = gateway.settings
    retry_ms = now_ms() + int(settings.reconcile_retry_failed_s * 1000)
    try:
        count = await records.failed_round(gateway.db, due.payment_id, next_check_ms=retry_ms)
        if count is not None and count >= settings.reconcile_flag_after_failures:
            reason = f"{count} reconciler rounds in a row failed ({kind}); the last: {why}"
            await records.flag(gateway.db, due.payment_id, reason)
            log.warning("payment_flagged", payment_id=due.payment_id, reason=reason)
            return FLAGGED
    except Exception:
        # The database itself fails: the lease runs out and a later round counts again.
        log.exception("reconcile_failure_not_recorded", payment_id=due.payment_id)
        count = None
    log.warning("reconcile_retry", payment_id=due.payment_id, failures=count, why=why)
    return FAILED_ROUND


async def _resolve(gateway: Gateway, due: records.Due) -> str:
    settings = gateway.settings
    result = await _ask(gateway, due)
    metrics.RECONCILED.labels(answer=type(result).__name__).inc()
    # A status answer is a probe too: an explicit one shows the ISP is back.
    policy.record_upstream(gateway, due.env, due.order.isp, ok=not isinstance(result, Unknown))
    if isinstance(result, Unknown) and result.unreadable:
        return await _failed_round(gateway, due, "unreadable", result.reason)
    age_s = (now_ms() - due.created_ms) / 1000
    provider = gateway.provider_of(due.env, due.service)
    settle_window_s = settings.isp_settle_window_s if provider is None else provider.settle_window_s
    pending = isinstance(result, Unknown) or (
        isinstance(result, NotFound) and age_s < settle_window_s
    )
    if pending and age_s >= settings.reconcile_flag_after_s:
        reason = f"the ISP has not confirmed it in {round(age_s)} s"
        await records.flag(gateway.db, due.payment_id, reason)
        log.warning("payment_flagged", payment_id=due.payment_id, age_s=round(age_s))
        return FLAGGED
    settled = await records.settle(
        gateway.book,
        due.payment_id,
        result,
        next_check_ms=now_ms() + backoff_ms(settings.reconcile_backoff_s, due.checks),
        not_found_is_final=age_s >= settle_window_s,
        notify=True,
    )
    log.info(
        "reconciled",
        payment_id=due.payment_id,
        answer=type(result).__name__,
        state=settled.state,
        checks=due.checks,
    )
    return settled.state


async def run_once(gateway: Gateway) -> int:
    settings = gateway.settings
    due = await records.claim_due(
        gateway.db,
        limit=settings.reconcile_batch,
        lease_ms=settings.reconcile_lease_s * 1000,
    )
    if due:
        await asyncio.gather(*(resolve(gateway, d) for d in due))
    return len(due)


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    """Until stop is set; a failing round is logged and retried, never fatal."""
    poll_s = gateway.settings.reconcile_poll_s
    while not stop.is_set():
        try:
            claimed = await run_once(gateway)
        except Exception:
            log.exception("reconciler_round_failed")
            claimed = 0
        if claimed >= gateway.settings.reconcile_batch:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
