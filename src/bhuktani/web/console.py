"""The operator's pages (`/console/`): the queues and the health an operator on call
looks at first, and the same actions the CLI takes on them (resolve and refund a payment,
decide a dispute or a credit request), each audited as `web:<email>`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani import audit, metrics, money
from bhuktani.books import charges, credit_requests, disputes
from bhuktani.callbacks.urls import UnsafeUrl
from bhuktani.clock import now_ms
from bhuktani.domain import Env, State
from bhuktani.merchants import service as merchants
from bhuktani.payments import operator
from bhuktani.store import Database, Tx
from bhuktani.web.pages import (
    CONSOLE,
    FormRefused,
    field,
    form_of,
    gateway_of,
    page,
    redirect,
    refused_page,
    signed_in,
)
from bhuktani.web.sessions import Session

# What waits for an operator: each count a link to its queue.
QUEUES = (
    # A resolved payment keeps its flag (the record of why it waited): count those waiting.
    (
        "Flagged payments",
        "/payments",
        "SELECT count(*) AS n FROM payments WHERE flagged AND state IN ('Processing', 'Queued')",
    ),
    (
        "Open disputes",
        "/disputes",
        "SELECT count(*) AS n FROM disputes WHERE status = 'open'",
    ),
    (
        "Pending credit requests",
        "/credit-requests",
        "SELECT count(*) AS n FROM credit_requests WHERE status = 'pending'",
    ),
)
# A payment the reconciler has asked about for this long without an answer is shown as
# stuck before it is flagged (after reconcile_flag_after_s): the operator may look at the
# ISP already.
STUCK_AFTER_S = 15 * 60
# The payments queue shows at most this many; a longer queue is an incident, not a list.
QUEUE_LIMIT = 200
AUDIT_PAGE = 50
MAX_AUDIT_PAGE = 500
ENVS = tuple(env.value for env in Env)
# What a redirect after an action tells the operator: `?done=<kind>&of=<subject>`.
NOTICES = {
    "resolved": "Payment {} is resolved.",
    "refunded": "Payment {} is refunded.",
    "dispute": "Dispute {} is resolved.",
    "approved": "Credit request {} is approved: the merchant's credits are loaded.",
    "rejected": "Credit request {} is rejected.",
    "active": "Merchant {} is enabled: its tokens work again.",
    "disabled": "Merchant {} is disabled: its tokens are refused from now on.",
    "rate": "The rate limit is changed; running servers take it within seconds.",
    "services": "The services are changed; running servers take them within seconds.",
    "charge": "The service charge on {} is set; payments pay it within seconds.",
    "cleared": "The service charge on {} is cleared.",
    "loaded": "Credits loaded: transfer {}.",
}


class BadInput(Exception):
    """A query or a form the page cannot take: its message is shown, with status 400."""


# Every refusal an action's function gives: nothing changed, the operator reads why.
REFUSALS = (
    BadInput,
    operator.OperatorError,
    disputes.DisputeError,
    credit_requests.CreditRequestError,
    charges.ChargeError,
    UnsafeUrl,
)


def operator_name(session: Session) -> str:
    """Who acts, in the audit log: the signed-in operator, marked as from the console."""
    return f"web:{session.user.email}"


def whole(value: str | None, name: str) -> int | None:
    """An optional id or count from a query or a form."""
    text = (value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) == 0:
        raise BadInput(f"The {name} must be a whole number above 0")
    return int(text)


def rupees_in(value: str, name: str) -> int | None:
    """An optional amount typed in rupees ("500" or "500.50"), in paisa."""
    text = value.strip().replace(",", "")
    if not text:
        return None
    try:
        return money.to_paisa(text, max_paisa=money.MAX_LOAD_PAISA)
    except money.AmountError as exc:
        raise BadInput(f"The {name}: {exc}") from None


def env_in(value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if text not in ENVS:
        raise BadInput("The environment must be test or live")
    return text


def notice_of(request: Request) -> str | None:
    kind = request.query_params.get("done", "")
    if kind not in NOTICES:
        return None
    return NOTICES[kind].format(request.query_params.get("of", "")[:100])


def age(since_ms: int) -> str:
    """How long ago, as an operator reads it: "3 min", "5 h 10 min", "2 d 4 h"."""
    minutes = max(0, now_ms() - since_ms) // 60_000
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "under a minute"


async def merchant_names(db: Database) -> dict[int, str]:
    return {int(str(row["id"])): str(row["name"]) for row in await merchants.list_all(db)}


Render = Callable[[Request, Session, int, str | None], Awaitable[Response]]
Act = Callable[[Request, Session, FormData], Awaitable[str]]


def posted(act: Act, render: Render) -> Callable[[Request, Session], Awaitable[Response]]:
    """A form's POST: its CSRF token checked, the action taken, then a redirect to the
    page `act` names; a refusal shows the page again with why (400), nothing changed."""

    async def endpoint(request: Request, session: Session) -> Response:
        try:
            form = await form_of(request, session)
        except FormRefused as refused:
            return refused_page(request, CONSOLE, session, refused)
        try:
            return redirect(await act(request, session, form))
        except REFUSALS as exc:
            return await render(request, session, 400, str(exc))

    return endpoint


def shown(render: Render) -> Callable[[Request, Session], Awaitable[Response]]:
    async def endpoint(request: Request, session: Session) -> Response:
        return await render(request, session, 200, None)

    return endpoint


async def overview(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)

    async def counts(tx: Tx) -> list[tuple[str, str, int]]:
        out = []
        for label, path, sql in QUEUES:
            row = await tx.fetchrow(sql)
            out.append((label, CONSOLE.url(path), 0 if row is None else int(row["n"])))
        return out

    return page(
        request,
        CONSOLE,
        "console/overview.html",
        session=session,
        queues=await gateway.db.read(counts),
        breakers=sorted(gateway.breakers.snapshot().items()),
        changed=request.query_params.get("changed") == "1",
    )


# Payments: flagged ones and those the ISP has not answered for long.

WAITING_SQL = (
    "SELECT p.id, p.merchant_id, m.name AS merchant, p.env, p.reference, p.isp,"
    " p.amount_paisa, p.state, p.flagged, p.flag_reason, p.created_ms"
    " FROM payments p JOIN merchants m ON m.id = p.merchant_id"
    " WHERE p.state IN ($1, $2) AND (p.flagged = $3 OR p.created_ms < $4)"
    " ORDER BY p.flagged DESC, p.created_ms, p.id LIMIT $5"
)


async def waiting_payments(db: Database) -> list[dict[str, Any]]:
    """Flagged payments first, then those Processing or Queued past STUCK_AFTER_S, oldest
    first (no function lists them: the CLI works on one reference at a time)."""
    rows = await db.read(
        lambda tx: tx.fetch(
            WAITING_SQL,
            State.PROCESSING.value,
            State.QUEUED.value,
            True,
            now_ms() - STUCK_AFTER_S * 1000,
            QUEUE_LIMIT,
        )
    )
    found = []
    for row in rows:
        flagged = bool(row["flagged"])
        why = (
            str(row["flag_reason"] or "flagged")
            if flagged
            else "not flagged yet: the reconciler still asks the ISP"
        )
        found.append({**dict(row), "flagged": flagged, "why": why, "age": age(row["created_ms"])})
    return found


def target_of(values: Any) -> operator.Target | None:
    """The payment a query or a form names: a reference, narrowed by merchant and env."""
    reference = (values.get("reference") or "").strip()
    if not reference:
        return None
    if len(reference) > 50:
        raise BadInput("A reference is at most 50 characters")
    return operator.Target(
        reference, whole(values.get("merchant"), "merchant id"), env_in(values.get("env"))
    )


def paisa_of(formatted: str) -> int:
    """operator.show's amounts ("1695.00", format_rupees) back to paisa."""
    whole_part, _, cents = formatted.partition(".")
    return int(whole_part) * money.PAISA_PER_RUPEE + int(cents or 0)


async def found_payments(db: Database, target: operator.Target) -> list[dict[str, Any]]:
    """The payments a look-up names, each with what is left to refund."""
    found = []
    for view in await operator.show(db, target):
        left_paisa = 0
        if view["state"] == State.SUCCESS:
            left_paisa = paisa_of(view["amount"]) - paisa_of(view["refunded_amount"])
        found.append({**view, "left_paisa": left_paisa})
    return found


async def payments_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    db = gateway_of(request).db
    try:
        target = target_of(request.query_params)
    except BadInput as exc:
        target, status, error = None, 400, str(exc)
    return page(
        request,
        CONSOLE,
        "console/payments.html",
        session=session,
        status=status,
        error=error,
        notice=notice_of(request),
        waiting=await waiting_payments(db),
        queue_limit=QUEUE_LIMIT,
        stuck_after_min=STUCK_AFTER_S // 60,
        target=target,
        found=[] if target is None else await found_payments(db, target),
    )


def back_to_payments(target: operator.Target, **query: object) -> str:
    """The payments page, with the look-up the action came from."""
    return CONSOLE.url(
        "/payments",
        reference=target.reference,
        merchant=target.merchant_id,
        env=target.env,
        **query,
    )


async def resolve_payment(request: Request, session: Session, form: FormData) -> str:
    target = target_of(form)
    if target is None:
        raise BadInput("Name the payment to resolve")
    outcome = field(form, "outcome")
    if outcome not in ("success", "failed"):
        raise BadInput("Choose Success (the ISP applied it) or Failed (it never applied)")
    done = await operator.resolve(
        gateway_of(request).book,
        target,
        success=outcome == "success",
        note=field(form, "note"),
        operator=operator_name(session),
    )
    return CONSOLE.url("/payments", done="resolved", of=f"{target.reference} ({done.state})")


async def refund_payment(request: Request, session: Session, form: FormData) -> str:
    target = target_of(form)
    if target is None:
        raise BadInput("Name the payment to refund")
    await operator.refund(
        gateway_of(request).db,
        target,
        amount_paisa=rupees_in(field(form, "amount"), "amount"),
        note=field(form, "note"),
        operator=operator_name(session),
    )
    return back_to_payments(target, done="refunded", of=target.reference)


# Disputes.


def show_of(request: Request, choices: tuple[str, ...]) -> str:
    """Which part of a queue is shown: the first choice unless another is asked for."""
    shown_now = request.query_params.get("show", choices[0])
    if shown_now not in choices:
        raise BadInput(f"Show one of: {', '.join(choices)}")
    return shown_now


async def disputes_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    db = gateway_of(request).db
    try:
        show = show_of(request, ("open", "all"))
    except BadInput as exc:
        show, status, error = "open", 400, str(exc)
    return page(
        request,
        CONSOLE,
        "console/disputes.html",
        session=session,
        status=status,
        error=error,
        notice=notice_of(request),
        show=show,
        disputes=await disputes.listing(db, open_only=show == "open"),
        names=await merchant_names(db),
        limit=disputes.OPERATOR_LIMIT,
    )


async def resolve_dispute(request: Request, session: Session, form: FormData) -> str:
    dispute_id = whole(field(form, "dispute_id"), "dispute id")
    if dispute_id is None:
        raise BadInput("Name the dispute to resolve")
    outcome = field(form, "outcome")
    if outcome not in ("refund", "reject"):
        raise BadInput("Choose to refund or to reject the dispute")
    amount_paisa = rupees_in(field(form, "amount"), "refund amount")
    if amount_paisa is not None and outcome == "reject":
        raise BadInput("An amount is for a refund; a rejection moves no money")
    await disputes.resolve(
        gateway_of(request).db,
        dispute_id,
        refund=outcome == "refund",
        amount_paisa=amount_paisa,
        note=field(form, "note"),
        operator_name=operator_name(session),
    )
    return CONSOLE.url(
        "/disputes", show=request.query_params.get("show"), done="dispute", of=dispute_id
    )


# Credit requests.


async def credit_requests_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    db = gateway_of(request).db
    try:
        show = show_of(request, ("pending", "all"))
    except BadInput as exc:
        show, status, error = "pending", 400, str(exc)
    return page(
        request,
        CONSOLE,
        "console/credit_requests.html",
        session=session,
        status=status,
        error=error,
        notice=notice_of(request),
        show=show,
        requests=await credit_requests.listing(
            db,
            status="pending" if show == "pending" else None,
            limit=credit_requests.MAX_LIMIT,
        ),
        names=await merchant_names(db),
        limit=credit_requests.MAX_LIMIT,
    )


async def decide_credit_request(request: Request, session: Session, form: FormData) -> str:
    request_id = whole(field(form, "request_id"), "request id")
    if request_id is None:
        raise BadInput("Name the credit request to decide")
    decision = field(form, "decision")
    db = gateway_of(request).db
    if decision == "approve":
        await credit_requests.approve(
            db, request_id, operator=operator_name(session), note=field(form, "note")
        )
        done = "approved"
    elif decision == "reject":
        await credit_requests.reject(
            db, request_id, operator=operator_name(session), note=field(form, "note")
        )
        done = "rejected"
    else:
        raise BadInput("Approve or reject the request")
    return CONSOLE.url(
        "/credit-requests", show=request.query_params.get("show"), done=done, of=request_id
    )


# Merchants.

# What an operator may switch a merchant between here; a deleted merchant stays deleted.
SWITCHES = {"enable": "active", "disable": "disabled"}


async def merchants_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    return page(
        request,
        CONSOLE,
        "console/merchants.html",
        session=session,
        status=status,
        error=error,
        notice=notice_of(request),
        merchants=await merchants.list_all(gateway_of(request).db),
    )


async def switch_merchant(request: Request, session: Session, form: FormData) -> str:
    merchant_id = whole(field(form, "merchant_id"), "merchant id")
    wanted = SWITCHES.get(field(form, "switch"))
    if merchant_id is None or wanted is None:
        raise BadInput("Enable or disable a merchant")
    db = gateway_of(request).db
    current = {int(str(m["id"])): str(m["status"]) for m in await merchants.list_all(db)}
    if merchant_id not in current:
        raise BadInput(f"No merchant {merchant_id}")
    if current[merchant_id] not in SWITCHES.values():
        raise BadInput(f"Merchant {merchant_id} is {current[merchant_id]}: it stays so")
    await merchants.set_status(db, merchant_id, wanted, operator=operator_name(session))
    return CONSOLE.url("/merchants", done=wanted, of=merchant_id)


# ISP health: what this process has seen of the LIVE ISPs (each process keeps its own).


def latency_rows() -> list[dict[str, Any]]:
    """This process's LIVE ISP exchanges (metrics.ISP_HTTP_SECONDS) by ISP, call and
    outcome: how many, their mean, and the bucket their 95th percentile falls in."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for metric in metrics.ISP_HTTP_SECONDS.collect():
        for sample in metric.samples:
            labels = sample.labels
            key = (labels["isp"], labels["call"], labels["outcome"])
            entry = found.setdefault(key, {"count": 0, "sum_s": 0.0, "buckets": []})
            if sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum_s"] = float(sample.value)
            elif sample.name.endswith("_bucket"):
                entry["buckets"].append((float(labels["le"]), sample.value))
    rows = []
    for (isp, call, outcome), entry in sorted(found.items()):
        count = entry["count"]
        if not count:
            continue
        # Buckets are cumulative: the first bound holding 95% of the exchanges.
        p95 = next(le for le, n in sorted(entry["buckets"]) if n >= 0.95 * count)
        rows.append(
            {
                "isp": isp,
                "call": call,
                "outcome": outcome,
                "count": count,
                "mean_ms": round(entry["sum_s"] / count * 1000),
                "p95": f"≤ {p95:g} s" if p95 != float("inf") else "over the last bucket",
            }
        )
    return rows


async def isps_page(request: Request, session: Session, status: int, error: str | None) -> Response:
    return page(
        request,
        CONSOLE,
        "console/isps.html",
        session=session,
        status=status,
        error=error,
        breakers=sorted(gateway_of(request).breakers.snapshot().items()),
        latency=latency_rows(),
    )


# Settlements.

SETTLEMENTS_SHOWN = 100
SETTLEMENTS_SQL = (
    "SELECT id, env, isp, day, ran_ms, matched_count, matched_paisa, ours_only, theirs_only,"
    " amount_mismatches, report_json FROM settlements ORDER BY ran_ms DESC, id DESC LIMIT $1"
)


async def settlements_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    """The last runs of `bhuktani settle` and of the worker, newest first, each run with
    mismatches carrying its lists (no function lists runs: books.settlement writes them)."""
    rows = await gateway_of(request).db.read(
        lambda tx: tx.fetch(SETTLEMENTS_SQL, SETTLEMENTS_SHOWN)
    )
    runs = []
    for row in rows:
        mismatches = int(row["ours_only"]) + int(row["theirs_only"]) + int(row["amount_mismatches"])
        report = json.loads(str(row["report_json"])) if mismatches else {}
        runs.append({**dict(row), "mismatches": mismatches, "report": report})
    return page(
        request,
        CONSOLE,
        "console/settlements.html",
        session=session,
        status=status,
        error=error,
        runs=runs,
        shown_at_most=SETTLEMENTS_SHOWN,
    )


# The audit log.


async def audit_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    db = gateway_of(request).db
    query = request.query_params
    try:
        before = whole(query.get("before"), "entry id to page from")
        merchant_id = whole(query.get("merchant"), "merchant id")
        action = (query.get("action") or "").strip()[: audit.MAX_ACTION_CHARS] or None
        limit = whole(query.get("limit"), "number of entries") or AUDIT_PAGE
        if limit > MAX_AUDIT_PAGE:
            raise BadInput(f"A page shows at most {MAX_AUDIT_PAGE} entries")
    except BadInput as exc:
        before, merchant_id, action, limit = None, None, None, AUDIT_PAGE
        status, error = 400, str(exc)
    entries = await audit.listing(
        db, merchant_id=merchant_id, action=action, before_id=before, limit=limit
    )
    # Asked of the database, as the CLI does: a full page may hold the last entries.
    more = len(entries) == limit and bool(
        await audit.listing(
            db, merchant_id=merchant_id, action=action, before_id=entries[-1]["id"], limit=1
        )
    )
    return page(
        request,
        CONSOLE,
        "console/audit.html",
        session=session,
        status=status,
        error=error,
        entries=[
            {**entry, "on": audit.acted_on(entry), "lines": audit.detail_lines(entry)}
            for entry in entries
        ],
        merchant=merchant_id,
        action=action,
        newest=before is None,
        older=CONSOLE.url(
            "/audit",
            merchant=merchant_id,
            action=action,
            limit=None if limit == AUDIT_PAGE else limit,
            before=entries[-1]["id"],
        )
        if more
        else None,
        newest_url=CONSOLE.url(
            "/audit",
            merchant=merchant_id,
            action=action,
            limit=None if limit == AUDIT_PAGE else limit,
        ),
    )


def routes() -> list[Route]:
    # Imported here: the merchant pages use this module's helpers.
    from bhuktani.web import console_merchants

    def get(path: str, render: Render) -> Route:
        return Route(CONSOLE.url(path), signed_in(CONSOLE, shown(render)), methods=["GET"])

    def post(path: str, act: Act, render: Render) -> Route:
        return Route(CONSOLE.url(path), signed_in(CONSOLE, posted(act, render)), methods=["POST"])

    return [
        Route(CONSOLE.url("/"), signed_in(CONSOLE, overview), methods=["GET"]),
        get("/payments", payments_page),
        post("/payments/resolve", resolve_payment, payments_page),
        post("/payments/refund", refund_payment, payments_page),
        get("/disputes", disputes_page),
        post("/disputes/resolve", resolve_dispute, disputes_page),
        get("/credit-requests", credit_requests_page),
        post("/credit-requests/decide", decide_credit_request, credit_requests_page),
        get("/merchants", merchants_page),
        post("/merchants/status", switch_merchant, merchants_page),
        *console_merchants.routes(get, post),
        get("/isps", isps_page),
        get("/settlements", settlements_page),
        get("/audit", audit_page),
    ]
