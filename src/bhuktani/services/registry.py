"""The services the gateway serves: one line per service, in the order the demo and the
API schema list them. `make new-service NAME=<slug>` adds a line here."""

from __future__ import annotations

from importlib import import_module
from typing import cast

from bhuktani.domain import State
from bhuktani.services.base import Service, ServiceGroup
from bhuktani.services.single_step import SingleStepService

# Module names under bhuktani.services; each module's GROUP is the service.
MODULES = (
    "hashcnet_v2",
    "arrownet",
    "hashcnet",
    "worldlink_v2",
    "vianet_updated",
    "subisu",
    "konnect",
    "net_max",
    "dishhome_updated",
    "virtual_network",
    "eastlink",
    "royal_network",
    "pokhara_internet",
    "infonet_communication",
    "metrolink",
)


def _load(name: str) -> Service:
    service: Service = import_module(f"bhuktani.services.{name}").GROUP
    return service


SERVICES: tuple[Service, ...] = tuple(_load(name) for name in MODULES)
# The services of two steps (details, then commit) and those of one (use).
GROUPS: tuple[ServiceGroup, ...] = tuple(
    cast(ServiceGroup, s) for s in SERVICES if not isinstance(s, SingleStepService)
)
SINGLE_STEP: tuple[SingleStepService, ...] = tuple(
    s for s in SERVICES if isinstance(s, SingleStepService)
)
BY_MODULE: dict[str, Service] = dict(zip(MODULES, SERVICES, strict=True))
BY_SLUG: dict[str, Service] = {service.slug: service for service in SERVICES}
# Every ISP belongs to one service: the one whose ISP protocol reaches it.
BY_ISP: dict[str, Service] = {isp: service for service in SERVICES for isp in service.isps}
SINGLE_STEP_SLUGS = frozenset(service.slug for service in SINGLE_STEP)


def _check() -> None:
    assert len(BY_SLUG) == len(SERVICES), "two services share a slug"
    assert len(BY_ISP) == sum(len(s.isps) for s in SERVICES), "an ISP is in two services"


_check()


def group_of(isp: str) -> Service | None:
    return BY_ISP.get(isp)


def state_shown(service: str, state: str) -> str:
    """A payment's state as merchants read it: a single-step payment whose outcome is not
    known yet is Queued (the ledger's one pending state is Processing)."""
    if state == State.PROCESSING and service in SINGLE_STEP_SLUGS:
        return State.QUEUED
    return state
