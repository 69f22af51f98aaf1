"""The image's build and install steps (deploy/build.sh), run outside Docker exactly as the
Dockerfile runs them: a wheel, a fresh venv with it and the locked dependencies, and the
installed `bhuktani` migrating and serving from there, writing nothing into its install
(the image runs it as a user that may not). Then the Dockerfile itself: it runs those
steps, and its runtime stage is slim, unprivileged and watched on /healthz."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import bhuktani
from tests.support import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "build.sh"
VERSION = bhuktani.__version__


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # where the commands run, as the image's WORKDIR

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a clean host: nothing of this checkout's venv or settings."""
        keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT"}
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["PATH"] = f"{self.venv / 'bin'}:/usr/bin:/bin"
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the image sets it
        return env | extra

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "bhuktani"), *args],
            env=self.env(**env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("deploy")
    wheels, venv, home = base / "wheels", base / "venv", base / "home"
    home.mkdir()
    before = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for step in (["wheel", str(wheels)], ["install", str(venv), str(wheels)]):
        done = subprocess.run(
            [str(BUILD), *step], cwd=base, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{step}: {done.stdout}\n{done.stderr}"
    after = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    new = set(after.splitlines()) - set(before.splitlines())
    assert not {line for line in new if line.endswith(" build/") or "egg-info" in line}, new
    yield Installed(venv, home)


def test_the_wheel_installs_with_its_locked_dependencies(installed: Installed) -> None:
    found = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        env=installed.env(),
        check=True,
    ).stdout
    lock = ROOT / "requirements" / "run.txt"
    if lock.exists():
        pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", lock.read_text(), re.M))
        frozen = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", found, re.M))
        normal = {name.lower().replace("_", "-"): v for name, v in frozen.items()}
        for name, version in pinned.items():
            assert normal.get(name.lower().replace("_", "-")) == version, (name, version)
    assert f"bhuktani=={VERSION}" in found or "bhuktani @ file" in found, found


def test_the_installed_command_runs_from_its_venv(installed: Installed) -> None:
    done = installed.run("--help")
    assert done.returncode == 0, done.stderr
    for command in ("serve", "worker", "migrate", "isp-sim"):
        assert command in done.stdout
    version = installed.run("--version")
    assert version.returncode == 0 and VERSION in version.stdout, version
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import bhuktani; print(bhuktani.__file__)"],
        env=installed.env(),
        cwd=installed.home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed.venv)), where


def test_it_migrates_and_serves_healthz_writing_nothing_into_its_install(
    installed: Installed, tmp_path: Path
) -> None:
    before = tree(installed.venv)
    db_url = f"sqlite:///{tmp_path}/deploy.db"
    migrated = installed.run("migrate", BHUKTANI_DATABASE_URL=db_url)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "database at head" in migrated.stdout

    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [str(installed.venv / "bin" / "bhuktani"), "serve", "--port", str(port)],
            env=installed.env(BHUKTANI_DATABASE_URL=db_url),
            cwd=installed.home,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, server, timeout_s=60)
        health = httpx.get(base_url + "/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["database"] is True
        # The dashboard's templates and static files came with the wheel.
        assert httpx.get(base_url + "/dashboard/login", timeout=5).status_code == 200
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0, log_path.read_text()

    assert tree(installed.venv) == before, "the installed gateway wrote into its install"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined), by stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_the_dockerfile_builds_with_the_same_script_into_a_slim_unprivileged_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    builder, runtime = dockerfile_stages()
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    runs = " ".join(rest for word, rest in builder if word == "RUN")
    assert "deploy/build.sh wheel /wheels" in runs
    assert "deploy/build.sh install /opt/bhuktani /wheels" in runs

    final = dict(reversed(runtime))  # the first of each instruction
    steps = " ".join(rest for _, rest in runtime)
    assert "COPY --from=builder /opt/bhuktani /opt/bhuktani" in "COPY " + final["COPY"]
    assert not re.search(r"gcc|build-essential|apt-get install|pip install", steps), steps
    user = [rest for word, rest in runtime if word == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert final["EXPOSE"] == "8000"
    assert final["ENTRYPOINT"] == '["bhuktani"]'
    assert "/healthz" in steps and "HEALTHCHECK" in dict(runtime)
    assert "/opt/bhuktani/bin" in final["ENV"]


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore, "the context is not limited to what the image needs"
    for stage in dockerfile_stages():
        for word, rest in stage:
            if word != "COPY" or rest.startswith("--from"):
                continue
            *sources, _ = rest.split()
            for source in sources:
                name = source.rstrip("/")
                assert (ROOT / name).exists(), source
                assert any(name == a or name.startswith(a + "/") for a in allowed), source
