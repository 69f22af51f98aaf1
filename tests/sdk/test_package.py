"""`pip install ./clients/python` gets what an integrator needs: the package with its type
marker, httpx as its one dependency, one version, the README as its description."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import bhuktani_client

SDK = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_wheel_carries_the_package_its_types_and_one_dependency(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ beside the sources it builds.
    source = tmp_path / "source"
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("bhuktani_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(meta_name).decode())
    assert "bhuktani_client/py.typed" in names
    assert "bhuktani_client/client.py" in names and "bhuktani_client/webhooks.py" in names
    assert not any(name.startswith(("tests/", "bhuktani/")) for name in names)
    assert meta["Name"] == "bhuktani-client"
    assert meta["Version"] == bhuktani_client.__version__
    assert [r.split(">")[0].split("=")[0].strip() for r in meta.get_all("Requires-Dist")] == [
        "httpx"
    ]
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# bhuktani-client")
