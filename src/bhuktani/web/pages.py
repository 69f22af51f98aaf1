"""What every page shares: the templates, the two areas (dashboard and console), the
signed-in guard, forms with their CSRF check, and the headers a page is sent with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bhuktani import money
from bhuktani.clock import nepal_time
from bhuktani.runtime import Gateway
from bhuktani.web import sessions
from bhuktani.web.sessions import Session

# Pages load nothing from another host, run no inline script and cannot be framed.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True)
class Area:
    """The dashboard or the console: who signs in to it, its pages in the menu."""

    prefix: str  # "/dashboard" or "/console"
    role: str
    title: str
    menu: tuple[tuple[str, str], ...]  # (path under prefix, label)

    def url(self, path: str = "/", **query: object) -> str:
        shown = {k: v for k, v in query.items() if v not in (None, "")}
        return self.prefix + path + (("?" + urlencode(shown)) if shown else "")


DASHBOARD = Area("/dashboard", "merchant", "Merchant dashboard", (("/", "Overview"), ("/transactions", "Transactions"), ("/statements", "Statements"), ("/tokens", "Tokens"), ("/callbacks", "Callbacks"), ("/disputes", "Disputes"), ("/credit-requests", "Credit requests"), ("/charges", "Service charges"), ("/settings", "Settings")))  # fmt: skip
CONSOLE = Area("/console", "operator", "Operator console", (("/", "Overview"), ("/payments", "Payments"), ("/disputes", "Disputes"), ("/credit-requests", "Credit requests"), ("/merchants", "Merchants"), ("/isps", "ISP health"), ("/settlements", "Settlements"), ("/audit", "Audit log")))  # fmt: skip


def rupees(paisa: int | None) -> str:
    """Paisa as the pages show rupees: "1,695.00"."""
    if paisa is None:
        return ""
    sign = "-" if paisa < 0 else ""
    whole, part = divmod(abs(int(paisa)), money.PAISA_PER_RUPEE)
    return f"{sign}{whole:,}.{part:02d}"


def npt(at_ms: int | None) -> str:
    """An instant as the pages show it: "2026-12-07 17:45:03 NPT"."""
    if at_ms is None:
        return ""
    text = nepal_time(int(at_ms))
    return f"{text[:10]} {text[11:19]} NPT"


TEMPLATES = Environment(
    loader=PackageLoader("bhuktani.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["rupees"] = rupees
TEMPLATES.filters["npt"] = npt


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def page(
    request: Request,
    area: Area,
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    body = TEMPLATES.get_template(template).render(
        area=area,
        session=session,
        user=None if session is None else session.user,
        csrf_token=None if session is None else session.csrf_token,
        path=request.url.path,
        today=date.today(),
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def session_of(request: Request, area: Area) -> Session | None:
    """The request's session, if it is signed in to this area."""
    found = await sessions.current(gateway_of(request).db, request.cookies.get(sessions.COOKIE))
    if found is None or found.user.role != area.role:
        return None
    return found


Handler = Callable[[Request, Session], Awaitable[Response]]


def signed_in(area: Area, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The page for a signed-in user of the area: others go to its sign-in page, and a
    user whose password was given by the CLI goes to change it first."""

    async def endpoint(request: Request) -> Response:
        session = await session_of(request, area)
        if session is None:
            return redirect(area.url("/login", next=request.url.path))
        if session.user.must_change and request.url.path != area.url("/password"):
            return redirect(area.url("/password"))
        return await handler(request, session)

    return endpoint


class FormRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def read_form(request: Request, *, max_fields: int = 200) -> FormData:
    """A posted form of a page's kind and size, files refused. Raises FormRefused."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise FormRefused(415, "Send the page's form")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise FormRefused(413, "The form is too large")
    return await request.form(max_files=0, max_fields=max_fields)


async def form_of(request: Request, session: Session) -> FormData:
    """A posted form whose CSRF token is the session's. Raises FormRefused."""
    form = await read_form(request)
    if not session.csrf_ok(form.get("csrf_token")):
        raise FormRefused(403, "The form has expired: reload the page and send it again")
    return form


def refused_page(request: Request, area: Area, session: Session, refused: FormRefused) -> Response:
    return page(
        request,
        area,
        "refused.html",
        session=session,
        status=refused.status,
        detail=refused.detail,
    )


def field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
