"""The package as a user installs it: locked dependencies, one version, honest metadata."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import bhuktani

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _pins(lock: str) -> dict[str, str]:
    """name -> version of a pip-compile lock file; every line pinned with ==."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if not line or line[0] in "# " or line.startswith("--"):
            continue
        requirement = line.split()[0]
        name, sep, version = requirement.partition("==")
        assert sep, f"{lock}: {requirement} is not pinned"
        pins[canonicalize_name(name)] = version
    return pins


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_dependency_is_pinned_in_the_lock_files() -> None:
    project = _project()
    run, dev = _pins("run.txt"), _pins("dev.txt")
    dependencies = project["dependencies"]
    dev_dependencies = project["optional-dependencies"]["dev"]  # type: ignore[index]
    assert isinstance(dependencies, list)
    assert _names(dependencies) - run.keys() == set(), "make lock: run.txt is behind pyproject"
    assert _names(dev_dependencies) - dev.keys() == set(), "make lock: dev.txt is behind pyproject"


def test_the_dev_lock_keeps_the_run_locks_versions() -> None:
    run, dev = _pins("run.txt"), _pins("dev.txt")
    assert {name: dev.get(name) for name in run} == run


def test_the_server_dependencies_are_declared_as_used() -> None:
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    extras = {Requirement(r).name: Requirement(r).extras for r in dependencies}
    assert {"uvicorn", "uvloop", "httptools"} <= extras.keys()
    assert extras["uvicorn"] == set(), "uvicorn[standard] brings packages nothing uses"
    assert "watchfiles" not in _pins("run.txt")


def test_the_version_lives_in_one_place() -> None:
    assert "version" not in _project(), "pyproject.toml reads the version from bhuktani"
    assert metadata.version("bhuktani") == bhuktani.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", bhuktani.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{bhuktani.__version__}]" in changelog


def test_the_wheel_metadata_describes_the_project() -> None:
    meta = metadata.metadata("bhuktani")
    assert meta["Description-Content-Type"] == "text/markdown"
    readme_title = (ROOT / "README.md").read_text().splitlines()[0]
    assert (meta["Description"] or meta.get_payload()).startswith(readme_title)  # type: ignore[attr-defined]
    assert meta["License-Expression"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert meta["Requires-Python"] == ">=3.11"
