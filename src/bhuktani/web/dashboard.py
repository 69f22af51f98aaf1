"""The merchant's pages (`/dashboard/`): what its API calls show, for its staff."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani.books import statements, volume
from bhuktani.ledger import accounts
from bhuktani.ledger.accounts import Balance
from bhuktani.store import Tx
from bhuktani.web import charts
from bhuktani.web.pages import DASHBOARD, gateway_of, page, signed_in
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
        by_service=list(paid.by_service.items()),
        changed=request.query_params.get("changed") == "1",
    )


def routes() -> list[Route]:
    return [Route(DASHBOARD.url("/"), signed_in(DASHBOARD, overview), methods=["GET"])]
