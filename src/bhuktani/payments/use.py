"""A single-step call (`POST /api/use/<slug>/`): hold the credits and answer Queued. The
reconciler hands the payment to the ISP on its first round and settles it from there as
it settles any payment whose outcome is not known (payments/reconcile.py)."""

from __future__ import annotations

from typing import Any

from bhuktani import logs, metrics
from bhuktani.clock import now_ms
from bhuktani.domain import State
from bhuktani.errors import Refusal
from bhuktani.isps.base import Order
from bhuktani.payments import policy, records, sessions
from bhuktani.runtime import Gateway
from bhuktani.services.base import CommitView
from bhuktani.services.single_step import DEPOSIT_CODE, DEPOSIT_TITLE, SingleStepService


async def use(
    gateway: Gateway,
    service: SingleStepService,
    data: dict[str, Any],
    token: str | None,
    client: str,
) -> dict[str, Any]:
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    query = service.parse_use(data)
    logs.bind(reference=query.reference)
    try:
        policy.check_service(gateway, principal, service.slug, query.isp)
        # Refused now if no ISP is configured; a degraded ISP is no reason to refuse: the
        # payment waits in the queue, which is what the service promises.
        policy.provider(gateway, principal.env, service.slug)
    except Refusal:
        await records.refuse_duplicate(gateway.db, principal, query.reference)
        raise
    order = Order(
        payment_id=sessions.random_id(),
        merchant_id=principal.merchant_id,
        isp=query.isp,
        username=query.username,
        package_code=None,
        package_title=DEPOSIT_TITLE,
        duration_code=DEPOSIT_CODE,
        days=0,
        amount_paisa=query.amount_paisa,
    )
    charge_paisa = await gateway.charges.charge_paisa(
        gateway.db, principal, service.slug, query.isp, order.amount_paisa
    )
    # Due at once: the reconciler's next round sends it, and settles it (charge and all)
    # statement by statement.
    await records.open_payment(
        gateway.book,
        principal,
        service.slug,
        order,
        query.reference,
        None,
        first_check_ms=now_ms(),
        charge_paisa=charge_paisa,
    )
    logs.bind(payment_id=order.payment_id, isp=query.isp)
    metrics.payment_answers(principal.env, service.slug, State.QUEUED).inc()
    available = await records.available(gateway.db, principal)
    return service.render_use(
        CommitView(
            state=State.QUEUED,
            payment_id=order.payment_id,
            receipt="",
            amount_paisa=order.amount_paisa,
            available_paisa=available,
            charge_paisa=charge_paisa,
        )
    )
