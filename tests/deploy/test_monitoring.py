"""The dashboard and the alert rules watch metrics that exist: every name a panel's or a
rule's PromQL uses is exported by the process its `job` scrapes (the API's /metrics after
TEST and LIVE payments, `bhuktani worker --metrics-port`), every label it groups by is one
the metric has, and promtool accepts the rules, the configuration and each panel's query
where promtool is installed (Debian's `prometheus` package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bhuktani import metrics
from tests.cli.test_commands import run_cli
from tests.deploy.scrape import pay
from tests.support import METRICS_AUTH, fast_env, free_port, running_server, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
NAME = re.compile(r"(?<![\w\"])(bhuktani_[a-z0-9_]+|up)\b(?!\s*\()(\{[^}]*\})?")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
JOB = re.compile(r'job="([^"]+)"')
SIM_KEY = "monitoring-sim-key"


@dataclass(frozen=True)
class Expression:
    where: str
    promql: str


def dashboard_expressions() -> list[Expression]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["panels"], path
        for panel in dashboard["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                found.append(Expression(f"{path.name}: {panel['title']}", target["expr"]))
    return found


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alert_expressions() -> list[Expression]:
    return [Expression(f"alerts.yml: {rule['alert']}", rule["expr"]) for rule in rules()]


def without_strings(promql: str) -> str:
    return re.sub(r'"[^"]*"', '""', promql)


def names_in(promql: str) -> list[tuple[str, str | None]]:
    """(metric name, its job) of each selector of the expression."""
    found = []
    for match in NAME.finditer(promql):
        if without_strings(promql[: match.start()]).count('"') % 2:
            continue  # inside a string
        selector = match.group(2) or ""
        job = JOB.search(selector)
        found.append((match.group(1), job.group(1) if job else None))
    return found


def exported(text: str) -> dict[str, set[str]]:
    """Each series name of a scrape with its labels: each family's samples, and each
    declared family with the names its type gives it (_total, _bucket ...), samples or not."""
    names: dict[str, set[str]] = {}
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    for family, kind in kinds.items():
        if kind == "counter":
            family = family.removesuffix("_total")  # the text format's TYPE line has it
        for suffix in suffixes.get(kind, ("",)):
            names.setdefault(family + suffix, set())
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            name = name.split()[0]
            labels = set(re.findall(r"(\w+)=\"", rest)) if rest else set()
            names.setdefault(name, set()).update(labels)
    return names


def declared_labels() -> dict[str, set[str]]:
    """The labels of each metric as bhuktani.metrics declares it (a labelled family with no
    sample yet shows none in a scrape)."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            found[value._name] = set(value._labelnames)
    return found


def started(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bhuktani", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, set[str]]]]:
    """What the API's /metrics (after a TEST and a LIVE payment through the simulated ISP)
    and the worker's metrics port export, by the job that scrapes each."""
    base = tmp_path_factory.mktemp("monitoring")
    db_url = f"sqlite:///{base}/monitoring.db"
    sim_port, worker_port = free_port(), free_port()
    live = {
        "BHUKTANI_ISPS__ARROWNET__BASE_URL": f"http://127.0.0.1:{sim_port}",
        "BHUKTANI_ISPS__ARROWNET__API_KEY": SIM_KEY,
        "BHUKTANI_CALLBACK_ALLOW_PRIVATE": "true",
    }
    sim = started(
        ["isp-sim", "--port", str(sim_port)],
        fast_env(db_url, BHUKTANI_ISP_SIM_API_KEY=SIM_KEY),
        base / "sim.log",
    )
    worker = None
    try:
        wait_healthy(f"http://127.0.0.1:{sim_port}", sim)
        with running_server(db_url, base / "serve.log", reconciler=False, **live) as server:
            made = run_cli(db_url, "merchant", "create", "watched", "--credits", "10000", "--json")
            assert made.returncode == 0, made.stderr
            tokens = json.loads(made.stdout.strip().splitlines()[-1])
            for token in (tokens["test_token"], tokens["live_token"]):
                paid = pay(server.base_url, token)
                assert paid.json()["state"] == "Success", paid.text
            api = httpx.get(server.base_url + "/metrics", headers=METRICS_AUTH, timeout=10)
            assert api.status_code == 200, api.text
        worker = started(
            ["worker", "--metrics-port", str(worker_port)],
            fast_env(db_url, **live),
            base / "worker.log",
        )
        worker_text = ""
        for _ in range(300):
            try:
                answer = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=2)
                if answer.status_code == 200:
                    worker_text = answer.text
                    break
            except httpx.HTTPError:
                pass
            assert worker.poll() is None, (base / "worker.log").read_text()
            time.sleep(0.1)
        assert worker_text, "the worker's metrics port did not answer"
    finally:
        for process in (sim, worker):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    api_names = exported(api.text)
    # The LIVE payment went through the ISP: its exchange is measured by ISP and call.
    assert {"isp", "call", "outcome", "le"} <= api_names["bhuktani_isp_http_seconds_bucket"]
    yield {"bhuktani-api": api_names, "bhuktani-worker": exported(worker_text)}


def every_expression() -> list[Expression]:
    return dashboard_expressions() + alert_expressions()


def test_every_panel_and_rule_names_metrics_its_job_exports(
    scraped: dict[str, dict[str, set[str]]],
) -> None:
    anywhere = set().union(*scraped.values())
    missing = []
    for expression in every_expression():
        names = names_in(expression.promql)
        assert names, f"{expression.where}: no metric in {expression.promql}"
        for name, job in names:
            if name == "up":
                assert job in scraped, (expression.where, job)
                continue
            if name not in (scraped[job] if job else anywhere):
                missing.append((expression.where, name, job))
    assert missing == []


def test_every_label_grouped_by_is_one_the_metric_has(
    scraped: dict[str, dict[str, set[str]]],
) -> None:
    declared = declared_labels()
    for expression in every_expression():
        names = [name for name, _ in names_in(expression.promql) if name != "up"]
        have: set[str] = {"job", "instance"}
        for name in names:
            family = re.sub(r"_(total|bucket|count|sum|created)$", "", name)
            have |= declared.get(family, set())
            have |= scraped["bhuktani-api"].get(name, set())
            if name.endswith("_bucket"):
                have.add("le")
        for group in BY.findall(expression.promql):
            for label in filter(None, (part.strip() for part in group.split(","))):
                assert label in have, (expression.where, label, sorted(have))


def test_the_dashboard_covers_what_the_operator_watches() -> None:
    used = {name for e in dashboard_expressions() for name, _ in names_in(e.promql)}
    assert {
        "bhuktani_payments_total",
        "bhuktani_isp_http_seconds_bucket",
        "bhuktani_isp_degraded",
        "bhuktani_payments_flagged",
        "bhuktani_callbacks",
        "bhuktani_db_statements_waiting",
        "bhuktani_db_connection_wait_seconds_bucket",
        "bhuktani_merchant_balances_low",
    } <= used
    panels = [
        p for path in DASHBOARDS.glob("*.json") for p in json.loads(path.read_text())["panels"]
    ]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]


def test_the_alerts_cover_what_wakes_the_operator() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "BhuktaniApiDown",
        "BhuktaniDatabaseDown",
        "BhuktaniIspBreakerOpen",
        "BhuktaniPaymentsFlagged",
        "BhuktaniCallbacksGivenUp",
        "BhuktaniMerchantBalanceLow",
        "BhuktaniReconcilerBacklog",
        "BhuktaniWorkerDown",
    } <= names
    for rule in rules():
        assert rule["labels"]["severity"] in {"page", "warn", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_configuration(tmp_path: Path) -> None:
    """With the secret compose mounts at /run/secrets stood in for by a file here."""
    token = tmp_path / "metrics_token"
    token.write_text("a-metrics-token\n")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "/run/secrets/metrics_token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/run/secrets/metrics_token", str(token))
    )
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    done = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_panels_query(tmp_path: Path) -> None:
    """Each query as a recording rule: promtool parses the PromQL of each."""
    recorded = [
        {"record": f"panel:query_{n}:check", "expr": e.promql}
        for n, e in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": recorded}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
