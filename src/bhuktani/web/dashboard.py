"""The merchant's pages (`/dashboard/`): what its API calls show, for its staff.

Every read and action takes the signed-in user's merchant id (merchant_of); an id from a
URL or a form is checked against it before anything is shown or done."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani import audit, money
from bhuktani.books import (
    alerts,
    charges,
    credit_requests,
    disputes,
    statements,
    transactions,
    volume,
)
from bhuktani.callbacks import endpoints, outbox
from bhuktani.callbacks.urls import UnsafeUrl
from bhuktani.domain import Env
from bhuktani.errors import InvalidFields, Refusal
from bhuktani.ledger import accounts
from bhuktani.ledger.accounts import Balance
from bhuktani.merchants import service as merchants
from bhuktani.services import registry
from bhuktani.store import Database, Row, Tx
from bhuktani.web import charts
from bhuktani.web.pages import (
    DASHBOARD,
    FormRefused,
    Handler,
    field,
    form_of,
    gateway_of,
    page,
    redirect,
    refused_page,
    signed_in,
)
from bhuktani.web.sessions import Session

ENVS = ("test", "live")
CHART_DAYS = 30


def merchant_of(session: Session) -> int:
    """The one merchant a dashboard user sees: every page reads by this id only."""
    assert session.user.role == "merchant" and session.user.merchant_id is not None
    return session.user.merchant_id


def env_of(request: Request) -> str:
    """The environment a page shows: `?env=live`, else TEST."""
    return "live" if request.query_params.get("env") == "live" else "test"


async def overview(request: Request, session: Session) -> Response:
    db = gateway_of(request).db
    merchant_id = merchant_of(session)
    env = env_of(request)

    async def balances(tx: Tx) -> dict[str, Balance | None]:
        found: dict[str, Balance | None] = {}
        for each in ENVS:
            account = await statements.merchant_account_id(tx, merchant_id, each)
            found[each] = None if account is None else await accounts.balance(tx, account)
        return found

    today = statements.today()
    first = min(volume.month_start(today), today - timedelta(days=CHART_DAYS - 1))
    paid = await volume.volume(db, merchant_id, env, first, today)
    chart_days = paid.days()[-CHART_DAYS:]
    return page(
        request,
        DASHBOARD,
        "dashboard/overview.html",
        session=session,
        env=env,
        balances=await db.read(balances),
        today_volume=paid.on(today),
        month_volume=paid.since(volume.month_start(today)),
        by_day=chart_days,
        day_chart=charts.bars(
            [(d.strftime("%d %b"), p) for d, _, p in chart_days], label="Paid by day"
        ),
        service_chart=charts.bars(
            [(service, p) for service, (_, p) in paid.by_service.items()],
            label="Paid by service",
        ),
        by_service=list(paid.by_service.items()),
        changed=request.query_params.get("changed") == "1",
    )


def operator_of(session: Session) -> str:
    """Who acts, for the audit log: the dashboard user, cut to the log's length."""
    return audit.operator_of(f"web:{session.user.email}")


# Ids in URLs are BIGINT in the database: a larger number names nothing.
MAX_ID = 2**63 - 1


def id_in_path(request: Request, name: str) -> int | None:
    found: int = request.path_params[name]
    return found if 0 < found <= MAX_ID else None


def not_found(request: Request, session: Session, detail: str) -> Response:
    return page(request, DASHBOARD, "refused.html", session=session, status=404, detail=detail)


# Transactions: GET /api/transactions/'s filters, a page at a time, and all of it as CSV.

FILTER_FIELDS = ("from", "to", "state", "service", "reference", "limit")
SHOWN_PER_PAGE = 50
# The export walks the API's pages of its largest size; past this many rows it asks for
# narrower filters rather than build a file no spreadsheet opens.
MAX_EXPORT_ROWS = 100_000
CSV_FIELDS = (
    "created_at",
    "reference",
    "response_id",
    "service",
    "isp",
    "username",
    "state",
    "amount",
    "charge",
    "refunded_amount",
    "details",
)


def filters_given(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip() for name in FILTER_FIELDS}


def refusal_text(refused: InvalidFields) -> str:
    messages = [m for found in (refused.error_data or {}).values() for m in found]
    return "; ".join(messages) or refused.details


def paisa_of(rupees: float) -> int:
    """The API's rupees (a JSON float) back to paisa, through the one converter."""
    return 0 if rupees == 0 else money.to_paisa(rupees)


def shown_time(iso: str) -> str:
    """The API's "2026-07-12T12:00:00.000+05:45" as the pages write times."""
    return f"{iso[:10]} {iso[11:19]} NPT"


async def usernames(db: Database, merchant_id: int, env: str, ids: Sequence[int]) -> dict[int, str]:
    """The subscriber each payment paid for: the API's list leaves it out."""
    if not ids:
        return {}
    placeholders = ", ".join(f"${n}" for n in range(3, len(ids) + 3))
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT id, username FROM payments WHERE merchant_id = $1 AND env = $2"
            f" AND id IN ({placeholders})",
            merchant_id,
            env,
            *ids,
        )
    )
    return {int(r["id"]): str(r["username"]) for r in rows}


async def payments_page(
    db: Database, merchant_id: int, env: str, filters: transactions.Filters
) -> tuple[list[dict[str, Any]], str | None]:
    results, next_cursor = await transactions.page(db, merchant_id, env, filters)
    names = await usernames(db, merchant_id, env, [int(r["response_id"]) for r in results])
    for result in results:
        result["username"] = names.get(int(result["response_id"]), "")
    return results, next_cursor


async def transactions_page(request: Request, session: Session) -> Response:
    merchant_id, env = merchant_of(session), env_of(request)
    given = filters_given(request)
    cursor = request.query_params.get("cursor", "")
    error: str | None = None
    results: list[dict[str, Any]] = []
    next_cursor: str | None = None
    try:
        filters = transactions.parse_filters(
            {**given, "cursor": cursor, "limit": given["limit"] or SHOWN_PER_PAGE}
        )
    except InvalidFields as refused:
        error = refusal_text(refused)
    else:
        results, next_cursor = await payments_page(
            gateway_of(request).db, merchant_id, env, filters
        )
    rows = [
        {
            **result,
            "amount_paisa": paisa_of(result["amount"]),
            "charge_paisa": paisa_of(result["charge"]),
            "refunded_paisa": paisa_of(result["refunded_amount"]),
            "created": shown_time(result["created_at"]),
        }
        for result in results
    ]
    return page(
        request,
        DASHBOARD,
        "dashboard/transactions.html",
        session=session,
        status=400 if error else 200,
        env=env,
        given=given,
        error=error,
        rows=rows,
        states=transactions.STATES,
        services=sorted(registry.BY_SLUG),
        isps=sorted(registry.BY_ISP),
        first_url=DASHBOARD.url("/transactions", env=env, **given) if cursor else None,
        next_url=None
        if next_cursor is None
        else DASHBOARD.url("/transactions", env=env, cursor=next_cursor, **given),
        csv_url=DASHBOARD.url("/transactions.csv", env=env, **given),
    )


def csv_row(result: dict[str, Any]) -> tuple[object, ...]:
    return (
        result["created_at"],
        statements.csv_cell(str(result["reference"])),
        result["response_id"],
        result["service"],
        result["isp"],
        statements.csv_cell(result["username"]),
        result["state"],
        money.format_rupees(paisa_of(result["amount"])),
        money.format_rupees(paisa_of(result["charge"])),
        money.format_rupees(paisa_of(result["refunded_amount"])),
        statements.csv_cell(str(result["details"])),
    )


async def transactions_csv(request: Request, session: Session) -> Response:
    """Every payment the filters match, all pages, newest first, with a header row."""
    merchant_id, env = merchant_of(session), env_of(request)
    given = filters_given(request)
    db = gateway_of(request).db
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    cursor, written = "", 0
    for _ in range(MAX_EXPORT_ROWS // transactions.MAX_LIMIT + 1):
        try:
            filters = transactions.parse_filters(
                {**given, "cursor": cursor, "limit": transactions.MAX_LIMIT}
            )
        except InvalidFields as refused:
            return refused_here(request, session, refusal_text(refused))
        results, next_cursor = await payments_page(db, merchant_id, env, filters)
        writer.writerows(csv_row(result) for result in results)
        written += len(results)
        if next_cursor is None:
            break
        if written >= MAX_EXPORT_ROWS:
            return refused_here(
                request,
                session,
                f"More than {MAX_EXPORT_ROWS:,} payments match: export a shorter span of days",
            )
        cursor = next_cursor
    name = f"transactions-{env}-{statements.today().isoformat()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def refused_here(request: Request, session: Session, detail: str) -> Response:
    return page(request, DASHBOARD, "refused.html", session=session, status=400, detail=detail)


# Statements: a day's opening, entries and closing, as GET /api/statement/ gives them.


def statement_day(request: Request) -> tuple[date | None, str | None]:
    """The day asked (today if none), or why it cannot be shown."""
    text = request.query_params.get("date", "").strip()
    if not text:
        return statements.today(), None
    day = statements.parse_day(text)
    if day is None:
        return None, "Write the date as YYYY-MM-DD, a real day"
    if day > statements.today():
        return None, "The date is in the future: no statement is known for it yet"
    return day, None


async def statements_page(request: Request, session: Session) -> Response:
    merchant_id, env = merchant_of(session), env_of(request)
    day, error = statement_day(request)
    found = None
    if day is not None:
        found = await statements.statement(gateway_of(request).db, merchant_id, env, day)
    return page(
        request,
        DASHBOARD,
        "dashboard/statements.html",
        session=session,
        status=400 if error else 200,
        env=env,
        error=error,
        asked=request.query_params.get("date", "").strip(),
        day=day,
        found=found,
        today_day=statements.today(),
        csv_url=None if day is None else DASHBOARD.url("/statements.csv", date=day, env=env),
        previous_url=None
        if day is None
        else DASHBOARD.url("/statements", date=day - timedelta(days=1), env=env),
        next_url=None
        if day is None or day >= statements.today()
        else DASHBOARD.url("/statements", date=day + timedelta(days=1), env=env),
    )


async def statements_csv(request: Request, session: Session) -> Response:
    merchant_id, env = merchant_of(session), env_of(request)
    day, error = statement_day(request)
    if day is None:
        return refused_here(request, session, error or "No such day")
    found = await statements.statement(gateway_of(request).db, merchant_id, env, day)
    return Response(
        statements.as_csv(found),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="statement-{env}-{day.isoformat()}.csv"'
        },
    )


# Tokens: listed by hint, created (shown once), revoked.


async def merchant_tokens(db: Database, merchant_id: int) -> Sequence[Row]:
    return await db.read(
        lambda tx: tx.fetch(
            "SELECT id, env, hint, status, created_ms, revoked_ms FROM tokens"
            " WHERE merchant_id = $1 ORDER BY id DESC",
            merchant_id,
        )
    )


async def merchant_token(db: Database, merchant_id: int, token_id: int) -> Row | None:
    return await db.read(
        lambda tx: tx.fetchrow(
            "SELECT id, env, hint, status, created_ms FROM tokens"
            " WHERE id = $1 AND merchant_id = $2",
            token_id,
            merchant_id,
        )
    )


async def tokens_page(
    request: Request,
    session: Session,
    *,
    new_token: str | None = None,
    new_env: str | None = None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    db = gateway_of(request).db
    response = page(
        request,
        DASHBOARD,
        "dashboard/tokens.html",
        session=session,
        status=status,
        tokens=await merchant_tokens(db, merchant_of(session)),
        envs=merchants.ENVS,
        new_token=new_token,
        new_env=new_env,
        error=error,
        revoked=request.query_params.get("revoked", ""),
        takes_effect=revocation_delay(request),
    )
    # The page that shows a new token once is kept by no cache.
    response.headers["cache-control"] = "no-store"
    return response


async def tokens_list(request: Request, session: Session) -> Response:
    return await tokens_page(request, session)


async def token_create(request: Request, session: Session) -> Response:
    """The new token is in this answer only: not in a URL, not kept anywhere to show it
    again, so this POST answers with the page instead of redirecting."""
    try:
        form = await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    env = field(form, "env")
    if env not in merchants.ENVS:
        return await tokens_page(request, session, status=400, error="Choose TEST or LIVE")
    gateway = gateway_of(request)
    token = await merchants.issue_token(
        gateway.db,
        merchant_of(session),
        env,
        key=gateway.token_key,
        operator=operator_of(session),
    )
    assert token is not None, "a signed-in merchant user's merchant exists"
    return await tokens_page(request, session, new_token=token, new_env=env)


async def token_revoke_page(request: Request, session: Session) -> Response:
    token_id = id_in_path(request, "token_id")
    found = None
    if token_id is not None:
        found = await merchant_token(gateway_of(request).db, merchant_of(session), token_id)
    if found is None or found["status"] != "active":
        return not_found(request, session, "No such active token")
    return page(
        request,
        DASHBOARD,
        "dashboard/token_revoke.html",
        session=session,
        token=found,
        takes_effect=revocation_delay(request),
    )


def revocation_delay(request: Request) -> str:
    """When a revoked token is refused: running servers remember a token's check for
    BHUKTANI_AUTH_CACHE_S."""
    cache_s = gateway_of(request).settings.auth_cache_s
    return "at once" if cache_s <= 0 else f"within {cache_s:g} seconds"


async def token_revoke(request: Request, session: Session) -> Response:
    try:
        await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    token_id = id_in_path(request, "token_id")
    hint = None
    if token_id is not None:
        hint = await merchants.revoke_merchant_token(
            gateway_of(request).db, merchant_of(session), token_id, operator=operator_of(session)
        )
    if hint is None:
        return not_found(request, session, "No such active token")
    return redirect(DASHBOARD.url("/tokens", revoked=hint))


# Callbacks: the merchant's DLRs and events, every attempt, and a replay.

CALLBACKS_SHOWN = 50


async def merchant_callbacks(db: Database, merchant_id: int, env: str) -> list[dict[str, Any]]:
    """The newest callbacks of one environment with their attempts, as outbox.listing
    reads them for the CLI, for this merchant alone."""

    async def read(tx: Tx) -> list[dict[str, Any]]:
        rows = await tx.fetch(
            "SELECT c.id, c.event_type, p.reference, c.url, c.status, c.attempts,"
            " c.next_attempt_ms, c.created_ms, c.delivered_ms"
            " FROM callbacks c LEFT JOIN payments p ON p.id = c.payment_id"
            " WHERE c.merchant_id = $1 AND c.env = $2 ORDER BY c.id DESC LIMIT $3",
            merchant_id,
            env,
            CALLBACKS_SHOWN,
        )
        found = []
        for row in rows:
            attempts = await tx.fetch(
                "SELECT attempted_ms, http_status, latency_ms, error FROM callback_attempts"
                " WHERE callback_id = $1 ORDER BY id",
                int(row["id"]),
            )
            found.append({**dict(row), "attempt_log": [dict(a) for a in attempts]})
        return found

    return await db.read(read)


async def callbacks_page(request: Request, session: Session) -> Response:
    env = env_of(request)
    replayed = request.query_params.get("replayed", "")
    return page(
        request,
        DASHBOARD,
        "dashboard/callbacks.html",
        session=session,
        env=env,
        callbacks=await merchant_callbacks(gateway_of(request).db, merchant_of(session), env),
        replayed=replayed if replayed.isdigit() else None,
    )


async def callback_replay(request: Request, session: Session) -> Response:
    """Queued again now, as `bhuktani callbacks retry` does: the deliverer sends it."""
    try:
        await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    db = gateway_of(request).db
    callback_id = id_in_path(request, "callback_id")
    if callback_id is None:
        return not_found(request, session, "No such callback")
    row = await db.read(
        lambda tx: tx.fetchrow(
            "SELECT env FROM callbacks WHERE id = $1 AND merchant_id = $2",
            callback_id,
            merchant_of(session),
        )
    )
    if row is None or not await outbox.retry_now(db, callback_id, operator=operator_of(session)):
        return not_found(request, session, "No such callback")
    return redirect(DASHBOARD.url("/callbacks", env=str(row["env"]), replayed=callback_id))


# Service charges: what the operator set, read only.


async def charges_page(request: Request, session: Session) -> Response:
    found = await charges.listing(gateway_of(request).db, merchant_of(session))
    return page(
        request,
        DASHBOARD,
        "dashboard/charges.html",
        session=session,
        charges=[(entry, entry.charge.as_json()) for entry in found],
    )


# Settings: each environment's callback URL and signing secret, the low-balance threshold.


async def merchant_settings(db: Database, merchant_id: int) -> dict[str, dict[str, Any]]:
    async def read(tx: Tx) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for env in merchants.ENVS:
            threshold = await tx.fetchrow(
                "SELECT below_paisa FROM balance_alerts WHERE merchant_id = $1 AND env = $2",
                merchant_id,
                env,
            )
            found[env] = {
                "url": await endpoints.url_of(tx, merchant_id, env),
                "below_paisa": None if threshold is None else int(threshold["below_paisa"]),
            }
        return found

    return await db.read(read)


async def settings_page(
    request: Request,
    session: Session,
    *,
    status: int = 200,
    error: str | None = None,
    new_secret: str | None = None,
    secret_env: str | None = None,
) -> Response:
    done = request.query_params.get("done", "")
    response = page(
        request,
        DASHBOARD,
        "dashboard/settings.html",
        session=session,
        status=status,
        envs=merchants.ENVS,
        current=await merchant_settings(gateway_of(request).db, merchant_of(session)),
        error=error,
        new_secret=new_secret,
        secret_env=secret_env,
        done=SETTINGS_DONE.get(done),
    )
    # The page that shows a new secret once is kept by no cache.
    response.headers["cache-control"] = "no-store"
    return response


SETTINGS_DONE = {
    "callback-test": "The TEST callback URL is saved.",
    "callback-live": "The LIVE callback URL is saved.",
    "threshold-test": "The TEST low-balance threshold is saved.",
    "threshold-live": "The LIVE low-balance threshold is saved.",
}


async def settings_get(request: Request, session: Session) -> Response:
    return await settings_page(request, session)


async def settings_form(
    request: Request, session: Session
) -> tuple[dict[str, str], Env] | Response:
    """The posted form's fields and environment, or the page that refuses it."""
    try:
        form = await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    env = field(form, "env")
    if env not in merchants.ENVS:
        return await settings_page(request, session, status=400, error="Choose TEST or LIVE")
    return {name: field(form, name) for name in form}, Env(env)


async def callback_url_set(request: Request, session: Session) -> Response:
    given = await settings_form(request, session)
    if isinstance(given, Response):
        return given
    fields, env = given
    url = fields.get("url") or None
    try:
        await merchants.set_callback_url(
            gateway_of(request).db, merchant_of(session), env, url, operator=operator_of(session)
        )
    except UnsafeUrl as refused:
        return await settings_page(
            request, session, status=400, error=f"The {env.value.upper()} {refused}"
        )
    return redirect(DASHBOARD.url("/settings", done=f"callback-{env.value}"))


async def callback_secret_rotate(request: Request, session: Session) -> Response:
    """The new secret is in this answer only, as a new token is (token_create)."""
    given = await settings_form(request, session)
    if isinstance(given, Response):
        return given
    _, env = given
    secret = await merchants.rotate_callback_secret(
        gateway_of(request).db, merchant_of(session), env, operator=operator_of(session)
    )
    assert secret is not None, "every merchant has an endpoint per environment"
    return await settings_page(request, session, new_secret=secret, secret_env=env.value)


async def threshold_set(request: Request, session: Session) -> Response:
    given = await settings_form(request, session)
    if isinstance(given, Response):
        return given
    fields, env = given
    below = fields.get("below", "")
    below_paisa = None
    if below:
        try:
            below_paisa = money.to_paisa(below.replace(",", ""), max_paisa=money.MAX_LOAD_PAISA)
        except money.AmountError:
            return await settings_page(
                request,
                session,
                status=400,
                error="Write the threshold in rupees above 0, at most 2 decimals (5000 or 5000.50)",
            )
    await alerts.set_threshold(
        gateway_of(request).db,
        merchant_of(session),
        env.value,
        below_paisa,
        operator=operator_of(session),
    )
    return redirect(DASHBOARD.url("/settings", done=f"threshold-{env.value}"))


def refused_text(refused: Refusal) -> str:
    """A refusal in the API's words: the fields at fault, else its details."""
    return refusal_text(refused) if isinstance(refused, InvalidFields) else refused.details


# Disputes: the merchant's, as the operator resolves them, and one raised from a form.


async def disputes_page(
    request: Request,
    session: Session,
    *,
    status: int = 200,
    error: str | None = None,
    given: dict[str, str] | None = None,
) -> Response:
    env = env_of(request)
    # The operator's listing narrowed to this merchant: newest first, both environments.
    found = await disputes.listing(gateway_of(request).db, merchant_id=merchant_of(session))
    raised = request.query_params.get("raised", "")
    return page(
        request,
        DASHBOARD,
        "dashboard/disputes.html",
        session=session,
        status=status,
        env=env,
        error=error,
        given=given or {},
        raised=raised if raised.isdigit() else None,
        disputes=[
            {
                **d,
                "amount_paisa": paisa_of(d["amount"]),
                "refund_paisa": None
                if d["refund_amount"] is None
                else paisa_of(d["refund_amount"]),
            }
            for d in found
            if d["env"] == env
        ],
    )


async def disputes_get(request: Request, session: Session) -> Response:
    return await disputes_page(request, session)


async def dispute_raise(request: Request, session: Session) -> Response:
    """As POST /api/disputes/ with the page's environment; its refusals in its words."""
    try:
        form = await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    given = {"reference": field(form, "reference").strip(), "reason": field(form, "reason")}
    env = env_of(request)
    try:
        dispute = await disputes.raise_for(
            gateway_of(request).db, merchant_of(session), env, dict(given)
        )
    except Refusal as refused:
        return await disputes_page(
            request, session, status=400, error=refused_text(refused), given=given
        )
    return redirect(DASHBOARD.url("/disputes", env=env, raised=dispute["id"]))


# Credit requests: the merchant's, and one asked from a form.


async def credit_requests_page(
    request: Request, session: Session, *, status: int = 200, error: str | None = None
) -> Response:
    env = env_of(request)
    found = await credit_requests.listing(
        gateway_of(request).db,
        status=None,
        merchant_id=merchant_of(session),
        env=env,
        limit=credit_requests.MAX_LIMIT,
    )
    asked = request.query_params.get("asked", "")
    return page(
        request,
        DASHBOARD,
        "dashboard/credit_requests.html",
        session=session,
        status=status,
        env=env,
        error=error,
        asked=asked if asked.isdigit() else None,
        # The listing reads oldest first, as the operator works; the merchant reads its
        # newest first.
        requests=list(reversed(found)),
    )


async def credit_requests_get(request: Request, session: Session) -> Response:
    return await credit_requests_page(request, session)


async def credit_request_ask(request: Request, session: Session) -> Response:
    """As POST /api/public/creditrequest/ with the page's environment."""
    try:
        form = await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, DASHBOARD, session, refused)
    env = env_of(request)
    credit = field(form, "credit").strip().replace(",", "")
    try:
        request_id = await credit_requests.ask_for(
            gateway_of(request).db, merchant_of(session), env, {"credit": credit}
        )
    except Refusal as refused:
        return await credit_requests_page(request, session, status=400, error=refused_text(refused))
    return redirect(DASHBOARD.url("/credit-requests", env=env, asked=request_id))


def routes() -> list[Route]:
    def get(path: str, handler: Handler) -> Route:
        return Route(DASHBOARD.url(path), signed_in(DASHBOARD, handler), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(DASHBOARD.url(path), signed_in(DASHBOARD, handler), methods=["POST"])

    return [
        get("/", overview),
        get("/transactions", transactions_page),
        get("/transactions.csv", transactions_csv),
        get("/statements", statements_page),
        get("/statements.csv", statements_csv),
        get("/tokens", tokens_list),
        post("/tokens", token_create),
        get("/tokens/{token_id:int}/revoke", token_revoke_page),
        post("/tokens/{token_id:int}/revoke", token_revoke),
        get("/callbacks", callbacks_page),
        get("/charges", charges_page),
        get("/settings", settings_get),
        post("/settings/callback-url", callback_url_set),
        post("/settings/callback-secret", callback_secret_rotate),
        post("/settings/low-balance", threshold_set),
        post("/callbacks/{callback_id:int}/replay", callback_replay),
        get("/disputes", disputes_get),
        post("/disputes", dispute_raise),
        get("/credit-requests", credit_requests_get),
        post("/credit-requests", credit_request_ask),
    ]
