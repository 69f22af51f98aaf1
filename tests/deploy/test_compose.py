"""compose.yaml holds together: its services, images, commands, volumes, ports, health
checks, dependencies and settings are consistent with each other, with the files they
name and with the `bhuktani` commands they run. `docker compose config` checks it too
where the compose plugin is installed; where it is not, these checks are the check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bhuktani.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
BHUKTANI_IMAGE = re.compile(r"^bhuktani:")
SECRETS = {
    "BHUKTANI_TOKEN_HASH_KEY": "a-key-of-the-operator",
    "BHUKTANI_METRICS_TOKEN": "a-metrics-token",
    "POSTGRES_PASSWORD": "a-postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "a-grafana-password",
}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)((?:[^{}]|\{[^{}]*\})*))?\}")


class Unset(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} (nested) and ${VAR:?message}."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if value:
            return value
        if op == ":-":
            return interpolate(rest, env)
        if op == ":?":
            raise Unset(f"{name}: {rest}")
        return ""

    previous = None
    while previous != text:
        previous, text = text, VARIABLE.sub(one, text)
    return text


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    loaded = yaml.safe_load(interpolate(COMPOSE.read_text(), SECRETS if env is None else env))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def ours() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if BHUKTANI_IMAGE.match(str(s.get("image", "")))}


@cache
def help_of(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bhuktani", command, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, f"bhuktani {command}: {done.stderr}"
    return done.stdout


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_kit_has_its_services() -> None:
    assert set(services()) == {
        "postgres",
        "migrate",
        "serve",
        "worker",
        "isp-sim",
        "prometheus",
        "grafana",
    }
    assert set(ours()) == {"migrate", "serve", "worker", "isp-sim"}


def test_the_gateways_services_build_one_image_from_the_dockerfile() -> None:
    images = {s["image"] for s in ours().values()}
    assert len(images) == 1, images
    for name, service in ours().items():
        build = service["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
    for name, service in services().items():
        if name not in ours():
            image = str(service["image"])
            assert re.search(r":v?[0-9][\w.-]*$", image), f"{name}: pin a version, not {image}"


def test_every_command_is_a_bhuktani_subcommand_with_real_options() -> None:
    for name, service in ours().items():
        command = [str(part) for part in service["command"]]
        subcommand, *args = command
        assert f"│ {subcommand} " in help_of("--help").replace("--help", ""), (name, subcommand)
        text = help_of(subcommand)
        for arg in args:
            if arg.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(arg)}(?![\w-])", text), (name, arg)
    serve = [str(p) for p in services()["serve"]["command"]]
    assert int(option(serve, "--workers")) >= 2  # the workers' metrics add up
    assert "--no-reconciler" in serve  # the loops run in `worker`, once


def test_the_settings_it_passes_are_valid_and_the_secrets_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for missing in SECRETS:
        with pytest.raises(Unset, match=missing):
            compose({k: v for k, v in SECRETS.items() if k != missing})
    for name in ("serve", "worker", "migrate"):
        environment = services()[name]["environment"]
        assert environment["BHUKTANI_TOKEN_HASH_KEY"] == SECRETS["BHUKTANI_TOKEN_HASH_KEY"]
        for key in list(os.environ):
            if key.startswith("BHUKTANI_"):
                monkeypatch.delenv(key)
        for key, value in environment.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        assert urlsplit(settings.database_url).hostname == "postgres"
        assert set(settings.isp_endpoints()) >= {"arrownet"}
        for endpoint in settings.isp_endpoints().values():
            host = urlsplit(endpoint.base_url)
            sim = [str(p) for p in services()["isp-sim"]["command"]]
            assert (host.hostname, host.port) == ("isp-sim", int(option(sim, "--port")))
            sim_key = services()["isp-sim"]["environment"]["BHUKTANI_ISP_SIM_API_KEY"]
            assert endpoint.api_key.get_secret_value() == sim_key


def test_dependencies_name_services_that_can_meet_their_condition() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name, service in services().items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services(), (name, needed)
            target = services()[needed]
            condition = how["condition"]
            if condition == "service_healthy":
                own = target.get("healthcheck", {})
                image_check = needed in ours() and "HEALTHCHECK" in dockerfile
                assert not own.get("disable"), (name, needed)
                assert own.get("test") or image_check, f"{needed} has no health check"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{needed} is a one-shot"
            else:
                assert condition == "service_started", condition
    for name in ("serve", "worker"):
        assert services()[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services()["migrate"]["command"] == ["migrate"]


def test_health_checks_look_where_each_command_listens() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    default = re.search(r"BHUKTANI_HEALTHCHECK_URL=(\S+)", dockerfile)
    assert default is not None
    serve = [str(p) for p in services()["serve"]["command"]]
    assert urlsplit(default.group(1)).port == int(option(serve, "--port"))
    assert urlsplit(default.group(1)).path == "/healthz"
    for name, flag in (("worker", "--metrics-port"), ("isp-sim", "--port")):
        command = [str(p) for p in services()[name]["command"]]
        url = urlsplit(services()[name]["environment"]["BHUKTANI_HEALTHCHECK_URL"])
        assert url.port == int(option(command, flag)), name


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), (name, volume)
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared
    assert "pgdata:/var/lib/postgresql/data" in services()["postgres"]["volumes"]


def test_published_ports_are_loopback_and_match_what_listens() -> None:
    listens = {
        "serve": int(option([str(p) for p in services()["serve"]["command"]], "--port")),
        "prometheus": 9090,
        "grafana": 3000,
    }
    published = {}
    for name, service in services().items():
        for port in service.get("ports", []):
            host, _, inside = str(port).rpartition(":")
            assert host.startswith("127.0.0.1:"), f"{name} published beyond loopback: {port}"
            published[name] = int(inside)
    assert published == listens


def test_prometheus_scrapes_the_services_where_they_listen() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    prometheus = services()["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"
    for rules in config["rule_files"]:
        assert (ROOT / "deploy/prometheus" / rules).is_file(), rules
    listening = {
        "serve": int(option([str(p) for p in services()["serve"]["command"]], "--port")),
        "worker": int(option([str(p) for p in services()["worker"]["command"]], "--metrics-port")),
        "localhost": 9090,
    }
    jobs = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                assert listening.get(host) == int(port), (job["job_name"], target)
                jobs[job["job_name"]] = host
    assert jobs == {"bhuktani-api": "serve", "bhuktani-worker": "worker", "prometheus": "localhost"}
    api = next(j for j in config["scrape_configs"] if j["job_name"] == "bhuktani-api")
    secret = Path(api["authorization"]["credentials_file"])
    assert secret.parent == Path("/run/secrets") and secret.name in prometheus["secrets"]
    assert compose()["secrets"][secret.name] == {"environment": "BHUKTANI_METRICS_TOKEN"}


def test_grafana_provisions_the_prometheus_and_the_dashboards_it_mounts() -> None:
    grafana = services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = ROOT / "deploy/grafana/provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert urlsplit(source["url"]).hostname == "prometheus" and urlsplit(source["url"]).port == 9090
    providers = yaml.safe_load((provisioning / "dashboards/bhuktani.yml").read_text())
    [provider] = providers["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no docker compose plugin here: the checks above stand in for it")
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env={"PATH": "/usr/bin:/bin", **SECRETS},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
