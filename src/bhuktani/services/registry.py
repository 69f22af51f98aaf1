"""The service groups the gateway serves: one line per group, in the order the demo and
the API schema list them. `make new-service NAME=<slug>` adds a line here."""

from __future__ import annotations

from importlib import import_module

from bhuktani.services.base import ServiceGroup

# Module names under bhuktani.services; each module's GROUP is the group.
MODULES = (
    "hashcnet_v2",
    "arrownet",
    "hashcnet",
)


def _load(name: str) -> ServiceGroup:
    group: ServiceGroup = import_module(f"bhuktani.services.{name}").GROUP
    return group


GROUPS: tuple[ServiceGroup, ...] = tuple(_load(name) for name in MODULES)
BY_MODULE: dict[str, ServiceGroup] = dict(zip(MODULES, GROUPS, strict=True))
BY_SLUG: dict[str, ServiceGroup] = {group.slug: group for group in GROUPS}
# Every ISP belongs to one group: the group whose ISP protocol reaches it.
BY_ISP: dict[str, ServiceGroup] = {isp: group for group in GROUPS for isp in group.isps}


def _check() -> None:
    assert len(BY_SLUG) == len(GROUPS), "two groups share a slug"
    assert len(BY_ISP) == sum(len(g.isps) for g in GROUPS), "an ISP is in two groups"


_check()


def group_of(isp: str) -> ServiceGroup | None:
    return BY_ISP.get(isp)
