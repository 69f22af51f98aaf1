"""The routes of the dashboard and the console: signing in and out, the password, each
area's overview; dashboard.py and console.py add the other pages."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bhuktani.web import console, dashboard, sessions, users
from bhuktani.web.pages import (
    CONSOLE,
    DASHBOARD,
    Area,
    FormRefused,
    client_of,
    field,
    form_of,
    gateway_of,
    page,
    read_form,
    redirect,
    refused_page,
    session_of,
    signed_in,
)
from bhuktani.web.sessions import Session

STATIC = Path(__file__).parent / "static"
# The sign-in form's CSRF token, before there is a session: a cookie and the same value
# in the form (double submit).
LOGIN_COOKIE = "bhuktani_login"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, and Secure when the page came over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        path="/",
    )


def _safe_next(area: Area, given: str | None) -> str:
    """Where to go after signing in: a page of the area, never another site."""
    if given and given.startswith(area.prefix + "/") and "//" not in given and "\\" not in given:
        return given
    return area.url("/")


def login_routes(area: Area) -> list[Route]:
    async def login_page(request: Request) -> Response:
        if await session_of(request, area) is not None:
            return redirect(area.url("/"))
        return _login_form(request, area, status=200)

    async def login(request: Request) -> Response:
        gateway = gateway_of(request)
        settings = gateway.settings
        try:
            form = await read_form(request, max_fields=20)
        except FormRefused:
            return _login_form(request, area, status=400, error="Send the sign-in form")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        given = form.get("csrf_token")
        if (
            not expected
            or not isinstance(given, str)
            or not secrets.compare_digest(given, expected)
        ):
            return _login_form(
                request, area, status=403, error="The form has expired: please sign in again"
            )
        email, password = field(form, "email"), form.get("password")
        if not isinstance(password, str):
            password = ""
        keys = sessions.throttle_keys(email, client_of(request))
        wait_s = await sessions.refused_for_s(
            gateway.db,
            (
                (keys[0], settings.web_login_max_failures),
                (keys[1], settings.web_login_max_failures_per_client),
            ),
            window_s=settings.web_login_window_s,
        )
        if wait_s:
            minutes = -(-wait_s // 60)
            return _login_form(
                request,
                area,
                status=429,
                email=email,
                error=f"Too many failed sign-ins: try again in {minutes} minute"
                + ("s" if minutes != 1 else ""),
                headers={"retry-after": str(wait_s)},
            )
        user = await users.check(gateway.db, email, password)
        if user is None or user.role != area.role:
            await sessions.failed(gateway.db, keys, window_s=settings.web_login_window_s)
            return _login_form(
                request, area, status=401, email=email, error="Wrong email address or password"
            )
        await sessions.succeeded(gateway.db, keys[0])
        token = await sessions.start(gateway.db, user, settings.web_session_s)
        target = (
            area.url("/password") if user.must_change else _safe_next(area, field(form, "next"))
        )
        response = redirect(target)
        _set_cookie(response, request, sessions.COOKIE, token, settings.web_session_s)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request) -> Response:
        session = await session_of(request, area)
        if session is not None:
            try:
                await form_of(request, session)
            except FormRefused as refused:
                return refused_page(request, area, session, refused)
            await sessions.end(gateway_of(request).db, request.cookies.get(sessions.COOKIE))
        response = redirect(area.url("/login"))
        response.delete_cookie(sessions.COOKIE, path="/")
        return response

    async def password_page(request: Request, session: Session) -> Response:
        return page(request, area, "password.html", session=session)

    async def change_password(request: Request, session: Session) -> Response:
        try:
            form = await form_of(request, session)
        except FormRefused as refused:
            return refused_page(request, area, session, refused)
        current, new, again = (
            form.get(name) if isinstance(form.get(name), str) else ""
            for name in ("current", "new", "again")
        )
        error = None
        if new != again:
            error = "The two new passwords differ"
        else:
            try:
                await users.change_password(
                    gateway_of(request).db, session.user, str(current), str(new)
                )
            except users.UserError as exc:
                error = str(exc)
        if error:
            return page(request, area, "password.html", session=session, status=400, error=error)
        await sessions.end_others(
            gateway_of(request).db, session.user, request.cookies.get(sessions.COOKIE)
        )
        return redirect(area.url("/", changed=1))

    return [
        Route(area.url("/login"), login_page, methods=["GET"]),
        Route(area.url("/login"), login, methods=["POST"]),
        Route(area.url("/logout"), logout, methods=["POST"]),
        Route(area.url("/password"), signed_in(area, password_page), methods=["GET"]),
        Route(area.url("/password"), signed_in(area, change_password), methods=["POST"]),
    ]


def _login_form(
    request: Request,
    area: Area,
    *,
    status: int,
    email: str = "",
    error: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    token = secrets.token_urlsafe(32)
    response = page(
        request,
        area,
        "login.html",
        session=None,
        status=status,
        login_token=token,
        email=email,
        error=error,
        next=request.query_params.get("next", ""),
    )
    _set_cookie(response, request, LOGIN_COOKIE, token, 3600)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def page_error(request: Request, status: int) -> Response | None:
    """A page of the dashboard or the console that is not there (404) or not for this
    method (405), as a page; None for every other path (the API's envelope)."""
    area = next(
        (a for a in (DASHBOARD, CONSOLE) if request.url.path.startswith(a.prefix + "/")), None
    )
    if area is None:
        return None
    heading, detail = (
        ("Page not found", "There is no such page here.")
        if status == 404
        else ("Not done", "This page does not take that request.")
    )
    return page(
        request, area, "refused.html", session=None, status=status, heading=heading, detail=detail
    )


def install(app: Starlette) -> None:
    """Add the pages, their sign-in and their static files to the app."""
    routes = app.router.routes
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    for area in (DASHBOARD, CONSOLE):
        routes.extend(login_routes(area))
        # /dashboard and /console without the slash go to the overview.
        routes.append(Route(area.prefix, _to_overview(area), methods=["GET"]))
    routes.extend(dashboard.routes())
    routes.extend(console.routes())


def _to_overview(area: Area) -> Callable[[Request], Awaitable[Response]]:
    async def go(request: Request) -> Response:
        return redirect(area.url("/"))

    return go
