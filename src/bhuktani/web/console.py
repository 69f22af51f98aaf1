"""The operator's pages (`/console/`): the queues and the health an operator on call
looks at first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani.store import Tx
from bhuktani.web.pages import CONSOLE, gateway_of, page, signed_in
from bhuktani.web.sessions import Session

# What waits for an operator: each count a link to its queue.
QUEUES = (
    ("Flagged payments", "/payments", "SELECT count(*) AS n FROM payments WHERE flagged"),
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


def routes() -> list[Route]:
    return [Route(CONSOLE.url("/"), signed_in(CONSOLE, overview), methods=["GET"])]
