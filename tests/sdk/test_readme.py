"""Every ```python block of the client's README (and of the top README, where one uses
the client) runs as written against a live gateway: the URL of `make run` replaced by the
test server's, the TEST token in BHUKTANI_TOKEN as the examples read it. The callback
receiver of the README runs as its own script and verifies what the gateway sends it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bhuktani_client import Client, State

from tests.sdk.conftest import new_merchant
from tests.support import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "clients" / "python" / "README.md", ROOT / "README.md"]
MAKE_RUN_URL = "http://127.0.0.1:8000"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    """(a name, the code) of every python block that uses the client or receives callbacks."""
    found = []
    for readme in READMES:
        for index, code in enumerate(BLOCK.findall(readme.read_text())):
            if "bhuktani_client" in code or "serve_forever" in code:
                found.append((f"{readme.relative_to(ROOT)}#{index + 1}", code))
    return found


BLOCKS = python_blocks()
RECEIVERS = [(name, code) for name, code in BLOCKS if "serve_forever" in code]
EXAMPLES = [(name, code) for name, code in BLOCKS if "serve_forever" not in code]
# The port the READMEs' receivers listen on, replaced by a free one.
README_RECEIVER_PORT = "8080"


def test_the_readmes_have_examples_and_receivers() -> None:
    assert len(EXAMPLES) >= 5 and len(RECEIVERS) == 2
    assert all(MAKE_RUN_URL in code for _, code in EXAMPLES)
    assert any(name.startswith("README.md") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_a_readme_example_runs_as_written(
    gateway: Server, name: str, code: str, tmp_path: Path
) -> None:
    merchant = new_merchant(gateway)
    script = tmp_path / "example.py"
    script.write_text(code.replace(MAKE_RUN_URL, gateway.base_url))
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "BHUKTANI_TOKEN": merchant.test_token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert done.stdout.strip(), name


def listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """Once the receiver takes connections: the gateway's first attempt must find it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the receiver exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the receiver never listened")


@pytest.mark.parametrize(("name", "code"), RECEIVERS, ids=[name for name, _ in RECEIVERS])
def test_a_readme_receiver_verifies_a_real_callback(
    gateway: Server, name: str, code: str, tmp_path: Path
) -> None:
    port = free_port()
    merchant = new_merchant(gateway, "--callback-url", f"http://127.0.0.1:{port}/")
    script = tmp_path / "receiver.py"
    script.write_text(code.replace(README_RECEIVER_PORT, str(port)))
    output = tmp_path / "receiver.out"
    with output.open("w") as out:
        receiver = subprocess.Popen(
            [sys.executable, str(script)],
            env={**os.environ, "PORT": str(port), "BHUKTANI_CALLBACK_SECRET": merchant.test_secret},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        listening(port, receiver)
        with Client(gateway.base_url, merchant.test_token) as client:
            queued = client.pay_single(
                "eastlink",
                reference="readme-dlr",
                username="khaltiUser",
                mobile_number="98",
                amount=100,
            )
            assert queued.state is State.QUEUED
            assert client.wait("readme-dlr", timeout_s=30, first_poll_s=0.1).state is State.SUCCESS
        deadline = time.monotonic() + 30

        # Each receiver prints what it verified: the DLR names the reference and the state.
        def received() -> bool:
            text = output.read_text()
            return "readme-dlr" in text and "Success" in text

        while not received() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received(), (name, output.read_text())
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
