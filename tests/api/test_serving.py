"""`bhuktani serve --workers N`: a listening socket per worker, under a supervisor.

Each test starts the real command on a SQLite file and looks at its processes through
/proc: which sockets each worker holds, and in which state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import fast_env, free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

LISTEN, ESTABLISHED = "0A", "01"
START_TIMEOUT_S = 30.0


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def kill(self) -> None:
        """The supervisor and its workers, whatever is left of them."""
        # Listed first: once the supervisor is gone its workers are no longer its children.
        left = self.workers()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def workers(self) -> list[int]:
        """The worker processes: children of the supervisor but multiprocessing's tracker."""
        return [
            pid for pid in children(self.process.pid) if b"resource_tracker" not in cmdline(pid)
        ]


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return sorted(found)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def tcp_sockets(port: int, state: str, *, peer_port: int | None = None) -> set[int]:
    """Inodes of the machine's TCP sockets in `state` whose local port is `port` (and
    whose remote port is `peer_port`, if given)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if local == port and fields[3] == state and peer_port in (None, remote):
                inodes.add(int(fields[9]))
    return inodes


def sockets_of(pid: int) -> set[int]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def wait_for(check: Any, what: str, timeout_s: float = START_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@contextmanager
def serving(tmp_path: Path, workers: int = 2, **settings: str) -> Iterator[Served]:
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "bhuktani", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--no-reconciler"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=fast_env(f"sqlite:///{tmp_path}/serving.db", **settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    served = Served(port, process, log_path)
    try:
        wait_for(
            lambda: process.poll() is not None or len(served.events("worker_serving")) >= workers,
            "every worker serving",
        )
        assert process.poll() is None, served.log_path.read_text()
        yield served
    finally:
        served.kill()


def get(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One keep-alive request on an open connection; the response's status line."""
    send_get(sock, path)
    return read_status(sock)


def send_get(sock: socket.socket, path: str = "/healthz") -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bhuktani\r\n\r\n".encode())


def read_status(sock: socket.socket) -> bytes:
    """The status line of a response whose body is a JSON object."""
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def connections(
    stack: ExitStack, port: int, count: int, timeout_s: float = 5.0
) -> list[socket.socket]:
    """`count` connections opened at once, before any of them sends a request, as a
    client's pool (or wrk) opens them."""
    opened = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        sock.settimeout(timeout_s)
        opened.append(sock)
    return opened


def test_each_worker_listens_on_a_socket_of_its_own(tmp_path: Path) -> None:
    with serving(tmp_path, workers=3) as served:
        listening = tcp_sockets(served.port, LISTEN)
        held = [sockets_of(pid) & listening for pid in served.workers()]

    assert len(held) == 3
    assert all(len(sockets) == 1 for sockets in held), held
    assert len(set().union(*held)) == 3, f"workers share a listening socket: {held}"


def test_connections_opened_at_once_are_spread_over_the_workers(tmp_path: Path) -> None:
    """A shared socket gave one worker most of a burst (60 of 64 in a bench run); the
    kernel's hash over per-worker sockets gives each about half. 16 of 64 or fewer is a
    chance of about 1 in 10,000 for a fair split."""
    with serving(tmp_path) as served, ExitStack() as stack:
        opened = connections(stack, served.port, 64)
        assert {get(sock) for sock in opened} == {b"HTTP/1.1 200 OK"}
        established = tcp_sockets(served.port, ESTABLISHED)
        per_worker = {pid: len(sockets_of(pid) & established) for pid in served.workers()}

    assert sum(per_worker.values()) == 64, per_worker
    assert min(per_worker.values()) > 16, per_worker


def test_a_dead_worker_is_replaced_and_the_connections_it_missed_are_served(
    tmp_path: Path,
) -> None:
    """Its socket stays open in the supervisor: connections the kernel gives it while no
    worker accepts them wait in its queue for the replacement instead of being refused."""
    with serving(tmp_path) as served, ExitStack() as stack:
        victim, survivor = served.workers()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in served.workers(), "the killed worker reaped")
        opened = connections(stack, served.port, 32, timeout_s=START_TIMEOUT_S)
        statuses = [get(sock) for sock in opened]
        replacement = wait_for(
            lambda: [pid for pid in served.workers() if pid not in (victim, survivor)],
            "a replacement worker",
        )
        exited = served.events("worker_exited")

    assert statuses == [b"HTTP/1.1 200 OK"] * 32
    assert len(replacement) == 1
    assert [(e["pid"], e["exit_code"]) for e in exited] == [(victim, -signal.SIGKILL)]


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    body = b'{"token": "TEST:not-a-real-token-at-all", "reference": "r-1"}'
    head = (
        b"POST /api/servicegroup/details/arrownet/ HTTP/1.1\r\nHost: bhuktani\r\n"
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    with serving(tmp_path) as served, ExitStack() as stack:
        # A request on each worker, its body not sent yet: in flight until it is.
        in_flight: dict[int, socket.socket] = {}
        for _ in range(64):
            (sock,) = connections(stack, served.port, 1)
            owner = wait_for(lambda s=sock: accepted_by(served, s), "the connection accepted")
            if owner in in_flight:
                sock.close()
                continue
            sock.sendall(head)
            in_flight[owner] = sock
            if len(in_flight) == 2:
                break
        served.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        running_after_1_s = served.process.poll() is None
        answers = []
        for sock in in_flight.values():
            sock.sendall(body)
            answers.append(sock.recv(65536).split(b"\r\n", 1)[0])
        exit_code = served.process.wait(timeout=15)

    assert len(in_flight) == 2
    assert running_after_1_s, "the supervisor exited before its workers drained"
    # The token is unknown: a refusal, but a whole answer from the app.
    assert answers == [b"HTTP/1.1 400 Bad Request"] * 2, answers
    assert exit_code == 0


def accepted_by(served: Served, sock: socket.socket) -> int | None:
    """The worker holding the server's end of the client socket `sock`."""
    ends = tcp_sockets(served.port, ESTABLISHED, peer_port=sock.getsockname()[1])
    for pid in served.workers():
        if sockets_of(pid) & ends:
            return pid
    return None


def test_workers_drain_and_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """Left running, orphans would keep a share of the port beside the next server."""
    with serving(tmp_path) as served:
        workers = served.workers()
        served.process.kill()
        served.process.wait()
        wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
            "the orphaned workers gone",
            timeout_s=15,
        )


def test_a_port_already_listened_on_is_refused(tmp_path: Path) -> None:
    """Even by a socket with SO_REUSEPORT, which the workers' sockets could share."""
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        done = subprocess.run(
            [sys.executable, "-m", "bhuktani", "serve", "--port", str(port), "--workers", "2"],
            env=fast_env(f"sqlite:///{tmp_path}/serving.db"),
            capture_output=True,
            timeout=60,
        )

    assert done.returncode == 1, done
    assert b'"event":"listen_failed"' in done.stdout, done.stdout
    assert b"worker_started" not in done.stdout


SUPERVISE = """
import sys, uvicorn
from bhuktani.api import serving
from bhuktani.logs import configure_logging
configure_logging()
sockets = serving.listening_sockets("127.0.0.1", int(sys.argv[1]), 2)
cfg = uvicorn.Config(sys.argv[2], factory=True, log_level="critical")
sys.exit(serving.Supervisor(cfg, sockets, hung_after_s=float(sys.argv[3])).run())
"""

# An app whose factory fails while the file named by APP_BROKEN exists, and whose
# /hang?s=N stops the worker's event loop for N seconds, as a stuck call would.
FRAGILE_APP = """
import os, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from bhuktani.logs import configure_logging

async def hang(request):
    time.sleep(float(request.query_params["s"]))
    return JSONResponse({"status": "woke"})

def app():
    configure_logging()
    if os.path.exists(os.environ["APP_BROKEN"]):
        raise RuntimeError("broken on purpose")
    return Starlette(routes=[
        Route("/healthz", lambda _: JSONResponse({"status": "ok"})),
        Route("/hang", hang),
    ])
"""


def supervise(
    tmp_path: Path, port: int, log_file: Any, hung_after_s: float = 0
) -> subprocess.Popen[bytes]:
    """The supervisor over two workers of `fragile_app`, started in a process of its own."""
    (tmp_path / "fragile_app.py").write_text(FRAGILE_APP)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "APP_BROKEN": str(tmp_path / "broken"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, str(port), "fragile_app:app", str(hung_after_s)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    """Rather than starting one every second that fails the same way: no worker has
    served, so the app or its settings are broken."""
    (tmp_path / "broken").touch()
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        process = supervise(tmp_path, free_port(), log_file)
    served = Served(0, process, log_path)
    try:
        exit_code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert exit_code == 3, log_path.read_text()
    assert len(served.events("worker_started")) == 2
    assert len(served.events("worker_failed_to_start")) == 1


def test_a_replacement_that_cannot_start_is_tried_again_while_the_others_serve(
    tmp_path: Path,
) -> None:
    """Once the server has served, a worker that cannot start (its database down, say)
    is no reason to stop the workers that run."""
    port = free_port()
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        process = supervise(tmp_path, port, log_file)
    served = Served(port, process, log_path)
    try:
        wait_for(lambda: len(served.events("worker_serving")) == 2, "both workers serving")
        (tmp_path / "broken").touch()
        victim = served.workers()[0]
        os.kill(victim, signal.SIGKILL)
        failures = wait_for(lambda: served.events("worker_failed_to_start"), "a failed start")
        with ExitStack() as stack:
            opened = connections(stack, port, 16, timeout_s=2.0)
            for sock in opened:
                send_get(sock)
            # The survivor answers its share; the others wait on the missing worker's socket.
            answered, waiting = [], []
            for sock in opened:
                try:
                    answered.append(read_status(sock))
                except TimeoutError:
                    waiting.append(sock)
            still_running = process.poll() is None
            (tmp_path / "broken").unlink()
            for sock in waiting:
                sock.settimeout(START_TIMEOUT_S)
            answered_later = [read_status(sock) for sock in waiting]
        wait_for(lambda: len(served.events("worker_serving")) == 3, "the replacement serving")
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert still_running
    assert failures[0]["retry_in_s"] == 1.0
    assert answered and waiting, "16 connections all hashed to one socket"
    assert set(answered) == set(answered_later) == {b"HTTP/1.1 200 OK"}
    assert exit_code == 0


@contextmanager
def supervised(tmp_path: Path, hung_after_s: float) -> Iterator[Served]:
    """Two workers of `fragile_app` serving, under a supervisor that replaces a worker
    silent for `hung_after_s`; stopped with SIGTERM, which must exit 0."""
    port = free_port()
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        process = supervise(tmp_path, port, log_file, hung_after_s)
    served = Served(port, process, log_path)
    try:
        wait_for(lambda: len(served.events("worker_serving")) == 2, "both workers serving")
        yield served
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=45) == 0, log_path.read_text()
    finally:
        served.kill()


def hang_a_worker(stack: ExitStack, served: Served, seconds: float) -> tuple[socket.socket, int]:
    """A connection whose request stops the event loop of the worker that took it."""
    (sock,) = connections(stack, served.port, 1, timeout_s=START_TIMEOUT_S)
    send_get(sock, f"/hang?s={seconds:g}")
    owner = wait_for(lambda: accepted_by(served, sock), "the connection accepted")
    return sock, owner


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    """Its socket would keep its share of new connections waiting for it for ever; killed,
    they wait for the replacement instead. The worker that serves is left alone."""
    with supervised(tmp_path, hung_after_s=3) as served, ExitStack() as stack:
        first = served.workers()
        hung_sock, hung = hang_a_worker(stack, served, 600)
        (event,) = wait_for(lambda: served.events("worker_hung"), "the hung worker found")
        wait_for(lambda: len(served.events("worker_serving")) == 3, "the replacement serving")
        hung_answer = hung_sock.recv(65536)
        opened = connections(stack, served.port, 16, timeout_s=START_TIMEOUT_S)
        statuses = [get(sock) for sock in opened]
        now = served.workers()
        exited = served.events("worker_exited")

    assert (event["pid"], event["worker"]) == (hung, first.index(hung))
    assert 3 <= event["silent_s"] < 10, event  # logged to a tenth: past 3 s may read 3.0
    assert [(e["pid"], e["exit_code"]) for e in exited] == [(hung, -signal.SIGKILL)]
    assert hung_answer == b"", "the hung request was answered"
    (survivor,) = set(first) - {hung}
    assert survivor in now and hung not in now and len(now) == 2
    assert statuses == [b"HTTP/1.1 200 OK"] * 16


def test_serve_replaces_a_worker_silent_for_the_setting(tmp_path: Path) -> None:
    """The real app under `bhuktani serve`, one worker stopped (SIGSTOP) as a hung loop."""
    with serving(tmp_path, BHUKTANI_WORKER_HUNG_AFTER_S="5") as served:
        first = served.workers()
        os.kill(first[0], signal.SIGSTOP)
        (event,) = wait_for(lambda: served.events("worker_hung"), "the stopped worker found")
        wait_for(lambda: len(served.events("worker_serving")) == 3, "the replacement serving")
        now = served.workers()

    assert event["pid"] == first[0]
    assert 5 <= event["silent_s"] < 10, event  # logged to a tenth: past 5 s may read 5.0
    assert first[1] in now and first[0] not in now and len(now) == 2


def test_a_worker_busy_for_less_than_the_limit_is_left_alone(tmp_path: Path) -> None:
    with supervised(tmp_path, hung_after_s=5) as served, ExitStack() as stack:
        first = served.workers()
        sock, _ = hang_a_worker(stack, served, 2.5)
        answer = read_status(sock)
        time.sleep(1.5)  # past the supervisor's next look
        now = served.workers()

    assert answer == b"HTTP/1.1 200 OK"
    assert served.events("worker_hung") == []
    assert now == first


def test_with_no_limit_a_hung_worker_is_left_alone(tmp_path: Path) -> None:
    with supervised(tmp_path, hung_after_s=0) as served, ExitStack() as stack:
        first = served.workers()
        sock, _ = hang_a_worker(stack, served, 4)
        answer = read_status(sock)
        now = served.workers()

    assert answer == b"HTTP/1.1 200 OK"
    assert served.events("worker_hung") == []
    assert now == first


def test_workers_are_not_blamed_for_a_pause_of_the_whole_server(tmp_path: Path) -> None:
    """Stopped together (SIGSTOP, as a paused machine stops them all), the supervisor can
    run again before the workers do: their silence was its own too."""
    with supervised(tmp_path, hung_after_s=3) as served:
        first = served.workers()
        for pid in [served.process.pid, *first]:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(served.process.pid, signal.SIGCONT)
        time.sleep(0.5)
        for pid in first:
            os.kill(pid, signal.SIGCONT)
        time.sleep(2.5)
        now = served.workers()

    assert served.events("worker_hung") == []
    assert now == first


def test_a_limit_shorter_than_two_heartbeats_is_refused() -> None:
    from bhuktani.api import serving
    from bhuktani.settings import Settings

    with pytest.raises(ValueError, match="at least 2"):
        serving.Supervisor(serving.config("127.0.0.1", 0), [], hung_after_s=1.5)
    with pytest.raises(ValueError, match="at least 5 seconds"):
        Settings(worker_hung_after_s=4)
    assert Settings(worker_hung_after_s=0).worker_hung_after_s == 0
