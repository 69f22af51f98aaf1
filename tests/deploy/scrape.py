"""Scraping a running `bhuktani serve` as Prometheus does: a fresh connection each time
(so that with several workers the kernel picks one), the metrics token, the text format."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import METRICS_AUTH

# The suffixes Prometheus's names take beside a family's own name.
SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(base_url: str) -> list[Sample]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        response = http.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200, response.text
    return [
        Sample(sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def exported_names(base_url: str) -> set[str]:
    """Every series name a PromQL expression may use: the samples' names and each
    family's name (the sample names carry the _total, _bucket, ... suffixes)."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        response = http.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200, response.text
    names = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def pay(base_url: str, token: str, username: str = "Pradhanang") -> httpx.Response:
    """One sandbox Arrownet commit on a connection of its own."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        return http.post(
            "/api/servicegroup/commit/arrownet/",
            json={
                "token": token,
                "username": username,
                "amount": "1695.00",
                "duration": 1,
                "reference": f"deploy-{uuid.uuid4().hex[:16]}",
            },
        )
