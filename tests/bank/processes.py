"""The processes of a bank run: the gateway (killed and restarted) and isp-sim."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bank.plan import UP_BOUND_S

SIM_KEY = "bank-sim-key"
# The exponential tail passes the gateway's ISP timeout (0.3 s) about once in a hundred
# answers: a payment applied whose answer comes too late, a status question unanswered.
FAULTS = {
    "latency-s": 0.02,
    "latency-jitter-s": 0.06,
    "latency-dist": "exponential",
    "refuse-p": 0.05,
    "error-5xx-p": 0.05,
    "garbage-p": 0.03,
    "drop-before-p": 0.05,
    "drop-after-p": 0.05,
}
# Compressed so a run takes seconds: a payment cut off by a kill is asked about after
# 2 * 0.3 + 5 s (the commit's grace), a lease left by a killed worker ends after 2 s.
GATEWAY_ENV = {
    "BHUKTANI_ISP_TIMEOUT_S": "0.3",
    "BHUKTANI_ISP_CONNECT_TIMEOUT_S": "0.5",
    "BHUKTANI_ISP_SETTLE_WINDOW_S": "1",
    "BHUKTANI_RECONCILE_BACKOFF_S": "[0.2,0.3,0.5]",
    "BHUKTANI_RECONCILE_LEASE_S": "2",
    "BHUKTANI_CALLBACK_BACKOFF_S": "[0.1,0.2,0.5]",
    # The receiver is on loopback: allowed for LIVE here, as on a staging host, so that
    # LIVE callbacks are verified at the receiver too (tests/callbacks/test_delivery.py proves
    # the default refuses them).
    "BHUKTANI_CALLBACK_ALLOW_PRIVATE": "true",
    "BHUKTANI_CALLBACK_POLL_S": "0.05",
    "BHUKTANI_CALLBACK_LEASE_S": "2",
    "BHUKTANI_CALLBACK_TIMEOUT_S": "2",
}


# The processes.


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


async def _healthy(base_url: str, process: subprocess.Popen[bytes], bound_s: float = 30) -> None:
    deadline = time.monotonic() + bound_s
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(base_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not become healthy in {bound_s}s")


async def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    for _ in range(300):
        if process.poll() is not None:
            return
        await asyncio.sleep(0.05)
    process.kill()
    process.wait()


class GatewayProcess:
    """`bhuktani serve` on one port, killed and restarted; each life logs to its own file."""

    def __init__(self, port: int, env: dict[str, str], workdir: Path) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self._port = port
        self._env = env
        self._workdir = workdir
        self.lives = 0
        self.up = asyncio.Event()
        self._process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        command = [sys.executable, "-m", "bhuktani", "serve", "--port", str(self._port)]
        log_path = self._workdir / f"gateway-{self.lives}.log"
        self._process = _spawn(command, self._env, log_path)
        self.lives += 1

    async def ready(self) -> None:
        assert self._process is not None
        await _healthy(self.base_url, self._process)
        self.up.set()

    async def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            await self.kill()  # a start cut short: never two servers on the port
        self.spawn()
        await self.ready()

    async def kill(self) -> None:
        assert self._process is not None
        self.up.clear()
        self._process.send_signal(signal.SIGKILL)
        while self._process.poll() is None:
            await asyncio.sleep(0.005)

    async def wait_up(self) -> None:
        await asyncio.wait_for(self.up.wait(), timeout=UP_BOUND_S)

    async def stop(self) -> None:
        self.up.clear()
        if self._process is not None:
            await _stop(self._process)


def _spawn_isp_sim(seed: int, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bhuktani", "isp-sim", "--port", str(port)]
    command += ["--api-key", SIM_KEY, "--seed", str(seed)]
    for name, value in FAULTS.items():
        command += [f"--{name}", str(value)]
    return _spawn(command, dict(os.environ), workdir / "isp-sim.log")


async def sim_get(sim_url: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(sim_url + path, headers={"Authorization": f"Bearer {SIM_KEY}"})
        response.raise_for_status()
        return response.json()
