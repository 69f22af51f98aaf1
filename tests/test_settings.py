"""LIVE ISP systems by service group (docs/OPERATING.md, Settings): BHUKTANI_ISPS__<GROUP>__BASE_URL
and __API_KEY, and for one release the names before them, BHUKTANI_<GROUP>_BASE_URL and
_API_KEY, read where the new name of the same field is unset."""

from __future__ import annotations

import pydantic
import pytest

from bhuktani.settings import Settings
from bhuktani.store.migrate import upgrade
from tests.support import fast_settings


@pytest.fixture(autouse=True)
def _no_isp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "BHUKTANI_ISPS",
        "BHUKTANI_ISPS__ARROWNET__BASE_URL",
        "BHUKTANI_ISPS__ARROWNET__API_KEY",
        "BHUKTANI_ISPS__HASHCNET_V2__BASE_URL",
        "BHUKTANI_ISPS__HASHCNET_V2__API_KEY",
        "BHUKTANI_ARROWNET_BASE_URL",
        "BHUKTANI_ARROWNET_API_KEY",
        "BHUKTANI_HASHCNET_V2_BASE_URL",
        "BHUKTANI_HASHCNET_V2_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def endpoints(settings: Settings) -> dict[str, tuple[str, str]]:
    return {
        slug: (e.base_url, e.api_key.get_secret_value())
        for slug, e in settings.isp_endpoints().items()
    }


def test_a_groups_isp_system_is_named_by_the_groups_slug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BHUKTANI_ISPS__ARROWNET__BASE_URL", "https://isp.example/arrow")
    monkeypatch.setenv("BHUKTANI_ISPS__HASHCNET_V2__BASE_URL", "https://isp.example/h")
    monkeypatch.setenv("BHUKTANI_ISPS__HASHCNET_V2__API_KEY", "h-key")
    settings = Settings()
    assert endpoints(settings) == {
        "arrownet": ("https://isp.example/arrow", ""),
        "hashcnet-v2": ("https://isp.example/h", "h-key"),
    }
    assert settings.legacy_isp_names() == []


def test_no_base_url_no_live_system() -> None:
    assert endpoints(Settings()) == {}
    assert endpoints(Settings(isps={"arrownet": {"api_key": "k"}})) == {}


def test_the_names_before_are_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BHUKTANI_ARROWNET_BASE_URL", "https://old.example")
    monkeypatch.setenv("BHUKTANI_ARROWNET_API_KEY", "old-key")
    settings = Settings()
    assert endpoints(settings) == {"arrownet": ("https://old.example", "old-key")}
    assert settings.legacy_isp_names() == [
        "BHUKTANI_ARROWNET_BASE_URL",
        "BHUKTANI_ARROWNET_API_KEY",
    ]


def test_a_new_name_wins_over_the_old_one_field_by_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BHUKTANI_ARROWNET_BASE_URL", "https://old.example")
    monkeypatch.setenv("BHUKTANI_ARROWNET_API_KEY", "old-key")
    monkeypatch.setenv("BHUKTANI_ISPS__ARROWNET__BASE_URL", "https://new.example")
    assert endpoints(Settings()) == {"arrownet": ("https://new.example", "old-key")}


def test_a_name_that_is_no_group_stops_the_start_naming_the_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BHUKTANI_ISPS__ARROWNETT__BASE_URL", "https://isp.example")
    with pytest.raises(pydantic.ValidationError, match=r"no service group 'arrownett'.*arrownet"):
        Settings()


@pytest.mark.parametrize(
    "variable", ["BHUKTANI_ARROWNET_BASE_URL", "BHUKTANI_ISPS__ARROWNET__BASE_URL"]
)
def test_a_base_url_that_is_not_one_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "ftp://isp.example")
    with pytest.raises(pydantic.ValidationError, match="ISP base URL"):
        Settings()


async def test_the_old_names_reach_a_live_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from bhuktani import runtime

    monkeypatch.setenv("BHUKTANI_HASHCNET_V2_BASE_URL", "http://127.0.0.1:9")
    url = f"sqlite:///{tmp_path}/settings.db"
    upgrade(url)
    gateway = await runtime.start(fast_settings(url))
    try:
        assert set(gateway.live) == {"hashcnet-v2"}
        assert gateway.provider_of("live", "arrownet") is None
    finally:
        await gateway.aclose()
