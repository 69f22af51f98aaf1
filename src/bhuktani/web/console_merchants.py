"""The console's merchant pages: a new merchant (its tokens and callback secrets shown
once), and one merchant's page with its rate limit, service charges and a credits load.
Each action calls the function its `bhuktani merchant`, `charges` or `credits` command
calls, audited as `web:<email>`."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani import money
from bhuktani.books import charges, credit_requests
from bhuktani.callbacks.urls import UnsafeUrl
from bhuktani.merchants import service as merchants
from bhuktani.services import registry
from bhuktani.web.console import (
    ENVS,
    Act,
    BadInput,
    Render,
    notice_of,
    operator_name,
    whole,
)
from bhuktani.web.pages import (
    CONSOLE,
    FormRefused,
    field,
    form_of,
    gateway_of,
    page,
    refused_page,
    signed_in,
)
from bhuktani.web.sessions import Session

# A merchant's name as people read it in lists and statements.
MAX_NAME_CHARS = 100
# A new merchant's TEST credits unless the operator types others, as `merchant create`.
DEFAULT_TEST_CREDITS = "1000000"
# The request rate an operator may set, each environment: a typo of a few zeros more
# would take the gateway down with the merchant.
MAX_RATE = 100_000
# What `credits load` writes when no note is given.
DEFAULT_LOAD_NOTE = "credit load"


def rupees_or_zero(value: str, name: str) -> int:
    """An amount in rupees that may be 0 (credits at creation, a charge's bounds), in
    paisa, read as the CLI reads it."""
    text = value.strip().replace(",", "")
    if text in ("0", "0.0", "0.00"):
        return 0
    try:
        return money.to_paisa(text, max_paisa=money.MAX_LOAD_PAISA)
    except money.AmountError as exc:
        raise BadInput(f"The {name}: {exc}") from None


def env_of(form: FormData) -> str:
    env = field(form, "env")
    if env not in ENVS:
        raise BadInput("The environment must be test or live")
    return env


# A new merchant.


def services_of(form: FormData) -> str:
    """'all', or the slugs checked, as `merchant create --services` takes them."""
    if field(form, "services") == "all":
        return "all"
    chosen = [str(slug) for slug in form.getlist("service")]
    unknown = [slug for slug in chosen if slug not in registry.BY_SLUG]
    if unknown:
        raise BadInput(f"No service {unknown[0]!r}: choose among the ones listed")
    if not chosen:
        raise BadInput("Choose all services, or at least one")
    # In the registry's order, each once.
    return ",".join(s.slug for s in registry.SERVICES if s.slug in chosen)


def create_page(
    request: Request,
    session: Session,
    status: int,
    error: str | None,
    form: FormData | None = None,
) -> Response:
    """The form; after a refusal, with what the operator typed."""
    typed = {} if form is None else {name: field(form, name) for name in form}
    return page(
        request,
        CONSOLE,
        "console/merchant_new.html",
        session=session,
        status=status,
        error=error,
        services=registry.SERVICES,
        typed=typed,
        checked=set() if form is None else {str(s) for s in form.getlist("service")},
        all_services=form is None or field(form, "services") != "some",
        default_test_credits=DEFAULT_TEST_CREDITS,
    )


async def create_form(request: Request, session: Session) -> Response:
    return create_page(request, session, 200, None)


async def create_merchant(request: Request, session: Session) -> Response:
    """The tokens and secrets are in this answer only, never in a URL nor kept to show
    again: this POST answers with the page instead of redirecting."""
    try:
        form = await form_of(request, session)
    except FormRefused as refused:
        return refused_page(request, CONSOLE, session, refused)
    try:
        name = field(form, "name")
        if not name:
            raise BadInput("Give the merchant a name")
        if len(name) > MAX_NAME_CHARS:
            raise BadInput(f"A name is at most {MAX_NAME_CHARS} characters")
        services = services_of(form)
        test_paisa = rupees_or_zero(field(form, "test_credits") or "0", "TEST credits")
        live_paisa = rupees_or_zero(field(form, "live_credits") or "0", "LIVE credits")
        gateway = gateway_of(request)
        created = await merchants.create(
            gateway.db,
            name,
            key=gateway.settings.token_hash_key.get_secret_value().encode(),
            operator=operator_name(session),
            services=services,
            callback_url=field(form, "callback_url") or None,
            test_credits_paisa=test_paisa,
            live_credits_paisa=live_paisa,
        )
    except UnsafeUrl as exc:
        return create_page(request, session, 400, f"The callback URL: {exc}", form)
    except BadInput as exc:
        return create_page(request, session, 400, str(exc), form)
    response = page(
        request,
        CONSOLE,
        "console/merchant_created.html",
        session=session,
        name=name,
        created=created,
        secrets={env.value: secret for env, secret in created.callback_secrets.items()},
    )
    response.headers["cache-control"] = "no-store"
    return response


# One merchant's page.

DETAILS_SQL = "SELECT created_ms, rate_per_s, rate_burst FROM merchants WHERE id = $1"


def merchant_of(request: Request) -> int:
    merchant_id: int = request.path_params["merchant_id"]
    return merchant_id


async def merchant_page(
    request: Request, session: Session, status: int, error: str | None
) -> Response:
    gateway = gateway_of(request)
    merchant_id = merchant_of(request)
    found = [m for m in await merchants.list_all(gateway.db) if m["id"] == merchant_id]
    if not found:
        return page(
            request,
            CONSOLE,
            "console/merchant.html",
            session=session,
            status=404,
            error=f"No merchant {merchant_id}",
            merchant=None,
        )
    # The limit and the day it was made: no function reads them.
    row = await gateway.db.read(lambda tx: tx.fetchrow(DETAILS_SQL, merchant_id))
    assert row is not None
    services = str(found[0]["services"])
    enabled = None if services.strip() == "all" else {slug.strip() for slug in services.split(",")}
    entries = await charges.listing(gateway.db, merchant_id)
    return page(
        request,
        CONSOLE,
        "console/merchant.html",
        session=session,
        status=status,
        error=error,
        notice=notice_of(request),
        merchant=found[0],
        details=dict(row),
        default_rate=(gateway.settings.rate_per_s, gateway.settings.rate_burst),
        services=[(s, enabled is None or s.slug in enabled) for s in registry.SERVICES],
        charges=[{"entry": e, "shown": e.charge.described("Rs ")} for e in entries],
        slugs=sorted({*registry.BY_SLUG, *registry.BY_ISP}),
        envs=ENVS,
        default_note=DEFAULT_LOAD_NOTE,
        max_rate=MAX_RATE,
    )


def back_to(merchant_id: int, done: str, of: object = None) -> str:
    return CONSOLE.url(f"/merchants/{merchant_id}", done=done, of=of)


def count_of(form: FormData, name: str, label: str) -> int:
    value = whole(field(form, name), label)
    if value is None:
        raise BadInput(f"Give the {label}")
    if value > MAX_RATE:
        raise BadInput(f"The {label} is at most {MAX_RATE:,}")
    return value


async def set_rate_limit(request: Request, session: Session, form: FormData) -> str:
    """`merchant set-rate-limit`: a rate and a burst, or the gateway's default."""
    merchant_id = merchant_of(request)
    if field(form, "limit") == "default":
        per_s, burst = None, None
    else:
        per_s = count_of(form, "per_s", "requests a second")
        burst = count_of(form, "burst", "burst")
    if not await merchants.set_rate_limit(
        gateway_of(request).db, merchant_id, per_s, burst, operator=operator_name(session)
    ):
        raise BadInput(f"No merchant {merchant_id}")
    return back_to(merchant_id, "rate")


async def set_services(request: Request, session: Session, form: FormData) -> str:
    """`merchant set-services`: all, or the ones checked."""
    merchant_id = merchant_of(request)
    try:
        changed = await merchants.set_services(
            gateway_of(request).db, merchant_id, services_of(form), operator=operator_name(session)
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if not changed:
        raise BadInput(f"No merchant {merchant_id}")
    return back_to(merchant_id, "services")


def charge_of(form: FormData) -> charges.Charge:
    """A charge as `charges set` reads its options: flat, or a percent within an optional
    minimum and maximum."""
    flat, percent = field(form, "flat"), field(form, "percent")
    minimum, maximum = field(form, "min"), field(form, "max")
    if bool(flat) == bool(percent):
        raise BadInput("Give a flat charge or a percent, one of the two")
    if flat:
        if minimum or maximum:
            raise BadInput("A minimum and a maximum bound a percent charge only")
        return charges.Charge(flat_paisa=rupees_or_zero(flat, "flat charge"))
    percent_bp = charges.parse_percent(percent)
    min_paisa = rupees_or_zero(minimum, "minimum") if minimum else None
    max_paisa = rupees_or_zero(maximum, "maximum") if maximum else None
    if min_paisa is not None and max_paisa is not None and min_paisa > max_paisa:
        raise BadInput("The minimum is more than the maximum")
    return charges.Charge(percent_bp=percent_bp, min_paisa=min_paisa, max_paisa=max_paisa)


async def set_charge(request: Request, session: Session, form: FormData) -> str:
    merchant_id = merchant_of(request)
    service = field(form, "service")
    if not service:
        raise BadInput("Name the service the charge is on")
    env = env_of(form)
    charge = charge_of(form)
    await charges.set_charge(
        gateway_of(request).db, merchant_id, env, service, charge, operator=operator_name(session)
    )
    return back_to(merchant_id, "charge", f"{service} ({env})")


async def clear_charge(request: Request, session: Session, form: FormData) -> str:
    merchant_id = merchant_of(request)
    service = field(form, "service")
    env = env_of(form)
    await charges.clear_charge(
        gateway_of(request).db, merchant_id, env, service, operator=operator_name(session)
    )
    return back_to(merchant_id, "cleared", f"{service} ({env})")


async def load_credits(request: Request, session: Session, form: FormData) -> str:
    """`credits load`: a ledger transfer from the funding account."""
    merchant_id = merchant_of(request)
    env = env_of(form)
    try:
        amount_paisa = money.to_paisa(
            field(form, "amount").replace(",", ""), max_paisa=money.MAX_LOAD_PAISA
        )
    except money.AmountError as exc:
        raise BadInput(f"The amount: {exc}") from None
    done = await credit_requests.load(
        gateway_of(request).db,
        merchant_id,
        env,
        amount_paisa,
        field(form, "note") or DEFAULT_LOAD_NOTE,
        operator_name(session),
    )
    return back_to(merchant_id, "loaded", done.transfer_id)


Get = Callable[[str, Render], Route]
Post = Callable[[str, Act, Render], Route]


def routes(get: Get, post: Post) -> list[Route]:
    """The merchant pages, built by console.routes()'s `get` and `post`: a form's CSRF
    check and the refusals (console.REFUSALS, ChargeError among them) are the console's."""
    page_of = "/merchants/{merchant_id:int}"
    return [
        Route(CONSOLE.url("/merchants/new"), signed_in(CONSOLE, create_form), methods=["GET"]),
        Route(CONSOLE.url("/merchants/new"), signed_in(CONSOLE, create_merchant), methods=["POST"]),
        get(page_of, merchant_page),
        post(page_of + "/services", set_services, merchant_page),
        post(page_of + "/rate-limit", set_rate_limit, merchant_page),
        post(page_of + "/charges", set_charge, merchant_page),
        post(page_of + "/charges/clear", clear_charge, merchant_page),
        post(page_of + "/credits", load_credits, merchant_page),
    ]
