"""How `bhuktani serve` runs uvicorn: in one process, or as several workers that each
listen on a socket of their own (SO_REUSEPORT), kept running by a small supervisor.

uvicorn's own workers accept from one shared socket, and the worker that wakes first takes
every connection queued on it: a client that opens its pool of keep-alive connections at
once (a bank's, or wrk's) lands mostly on one worker and stays there (64 connections split
60/4 in a bench run). With a listening socket per worker, the kernel spreads each new
connection by a hash of its addresses. The supervisor opens the sockets and keeps them
while workers come and go: connections queued on a dead worker's socket wait for its
replacement instead of being reset.

The same kernel hash keeps sending a hung worker its share of the new connections: on a
shared socket the other workers would take them, on its own socket they wait for it. So
each worker's event loop writes the time to shared memory every second, and the supervisor
kills a worker whose time has not moved for `hung_after_s` (BHUKTANI_WORKER_HUNG_AFTER_S):
its slot starts another, and the connections queued on its socket wait for that one.

Each process, worker or alone, bounds its connections and the time a request may take to
arrive (api.connections)."""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Protocol

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from bhuktani.api.connections import (
    GuardedProtocol,
    GuardedState,
    Limits,
    Watchdog,
    raise_open_file_limit,
)
from bhuktani.logs import stdlib_log_config

log = structlog.get_logger(__name__)

GRACEFUL_SHUTDOWN_S = 30
# A worker that died is started again, at most once this often; one that fails to start
# again waits twice as long each time, up to MAX_RESTART_DELAY_S: each try costs an import
# of the whole app.
RESTART_INTERVAL_S = 1.0
MAX_RESTART_DELAY_S = 30.0
# After SIGTERM, how long the supervisor waits beyond the workers' own drain before it
# kills what is left.
KILL_GRACE_S = 5.0
BACKLOG = 2048
# How often a worker tells the supervisor that its event loop runs, and how often the
# supervisor looks.
HEARTBEAT_S = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def config(
    host: str,
    port: int,
    limits: Limits | None = None,
    log_level: str = "INFO",
    forwarded_allow_ips: str = "",
) -> uvicorn.Config:
    """`forwarded_allow_ips`: the proxies whose X-Forwarded-For names the client that the
    rate limits count. Empty: the client is the socket's peer (uvicorn's own default
    believes 127.0.0.1's header, so any local process could pose as any address)."""
    return uvicorn.Config(
        "bhuktani.api.app:serving_app",
        factory=True,
        host=host,
        port=port,
        access_log=False,  # look-ups carry tokens in query strings; we log paths only
        log_config=stdlib_log_config(log_level),  # uvicorn's lines as JSON, as ours
        log_level=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=BACKLOG,
        loop="uvloop",
        http=GuardedProtocol,
        ws="none",
        timeout_keep_alive=(limits or Limits()).keep_alive_s,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
    )


def serve(
    host: str,
    port: int,
    workers: int,
    *,
    hung_after_s: float,
    limits: Limits | None = None,
    log_level: str = "INFO",
    forwarded_allow_ips: str = "",
) -> int:
    """Serve until SIGTERM or SIGINT, drain, and return the exit status. With several
    workers, one whose event loop stops for `hung_after_s` is replaced (0: never)."""
    limits = limits or Limits()
    raise_open_file_limit()  # before the workers start: they inherit it
    cfg = config(host, port, limits, log_level, forwarded_allow_ips)
    if workers == 1:
        return _run_worker(cfg, None, limits=limits)
    try:
        sockets = listening_sockets(host, port, workers)
    except OSError as exc:
        log.error("listen_failed", host=host, port=port, error=str(exc))
        return 1
    try:
        return Supervisor(cfg, sockets, hung_after_s=hung_after_s, limits=limits).run()
    finally:
        for sock in sockets:
            sock.close()


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """A socket per worker, each bound to the port with SO_REUSEPORT, so that the kernel
    gives each a share of the new connections. A port that anything listens on already is
    refused first: SO_REUSEPORT would share it with another server of the same user."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _bind(family, host, port, reuse_port=False).close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_bind(family, host, port, reuse_port=True))
            sockets[-1].listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind(family: socket.AddressFamily, host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past connections' TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _run_worker(
    cfg: uvicorn.Config,
    sock: socket.socket | None,
    ready: Ready | None = None,
    heartbeat: Heartbeat | None = None,
    *,
    limits: Limits,
) -> int:
    # uvicorn drains, then raises again the signal it stopped on; a worker that drained
    # after SIGTERM or SIGINT exits 0, as supervisors expect of a graceful stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    server = _Server(cfg, ready, heartbeat, limits)
    server.run(sockets=None if sock is None else [sock])
    return 0 if server.started else STARTUP_FAILURE


def _exit_cleanly(*_: object) -> None:
    sys.exit(0)


def _drain_when_orphaned(parent: int) -> None:
    """A worker whose supervisor died (SIGKILL, a crash) drains and exits: left running,
    it would keep taking a share of the port's connections beside the next server."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the line above
        sys.exit(0)


class Ready(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class Heartbeat(Protocol):
    """A double in shared memory: when the worker's event loop last ran (time.monotonic,
    one clock for every process of the machine)."""

    value: float


async def _beat(heartbeat: Heartbeat) -> None:
    while True:
        heartbeat.value = time.monotonic()
        await asyncio.sleep(HEARTBEAT_S)


class _Server(uvicorn.Server):
    """Bounds its connections and watches their deadlines (api.connections); tells the
    supervisor when it serves (a worker that exits before then could not start, and the
    next one would fail the same way), then that its event loop runs."""

    def __init__(
        self,
        cfg: uvicorn.Config,
        ready: Ready | None,
        heartbeat: Heartbeat | None,
        limits: Limits,
    ) -> None:
        super().__init__(cfg)
        self.server_state = GuardedState(limits)
        self._watchdog = Watchdog(self.server_state)
        self._ready = ready
        self._heartbeat = heartbeat
        # The loop keeps tasks weakly.
        self._beating: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._watching = self._watchdog.start()
        if self.started and self._ready is not None:
            if self._heartbeat is not None:
                self._heartbeat.value = time.monotonic()
                self._beating = asyncio.create_task(_beat(self._heartbeat))
            self._ready.set()
            log.info("worker_serving", pid=os.getpid())


def _worker_main(
    cfg: uvicorn.Config,
    sock: socket.socket,
    ready: Ready,
    heartbeat: Heartbeat,
    parent: int,
    limits: Limits,
) -> None:
    """A worker process: its own event loop, app and database connections."""
    _drain_when_orphaned(parent)
    cfg.configure_logging()
    sys.exit(_run_worker(cfg, sock, ready, heartbeat, limits=limits))


@dataclass
class _Slot:
    sock: socket.socket
    process: BaseProcess | None = None
    ready: Ready | None = None
    heartbeat: Heartbeat | None = None
    killed: bool = False  # as hung, its exit not reaped yet
    started_at: float = 0.0
    due_at: float = 0.0  # when to start a worker, while there is none
    failed_starts: int = 0

    @property
    def served(self) -> bool:
        """Whether its worker got as far as serving."""
        return self.ready is not None and self.ready.is_set()


class Supervisor:
    """Starts a worker per socket, starts again any that dies or hangs, and on SIGTERM or
    SIGINT passes SIGTERM on and waits for every worker to drain."""

    def __init__(
        self,
        cfg: uvicorn.Config,
        sockets: list[socket.socket],
        *,
        hung_after_s: float,
        limits: Limits | None = None,
    ) -> None:
        self._config = cfg
        self._limits = limits or Limits()
        self._slots = [_Slot(sock) for sock in sockets]
        self._spawn = multiprocessing.get_context("spawn")
        self._stopping = False
        self._served = False
        # A worker beats once a second, late by what its loop is busy with: a shorter
        # silence is no sign of a hang.
        if hung_after_s and hung_after_s < 2 * HEARTBEAT_S:
            raise ValueError(f"hung_after_s must be 0 or at least {2 * HEARTBEAT_S:g}")
        self._hung_after_s = hung_after_s
        self._looked_at = time.monotonic()

    def run(self) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        try:
            status = self._supervise(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
        return status

    def _on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _supervise(self, wake: socket.socket) -> int:
        status = 0
        while not self._stopping:
            now = time.monotonic()
            idle = [slot for slot in self._slots if slot.process is None]
            for slot in idle:
                if slot.due_at <= now:
                    self._start(slot)
            waiting = [slot.due_at - now for slot in idle if slot.process is None]
            if self._hung_after_s:
                waiting.append(HEARTBEAT_S)
            timeout_s = max(0.0, min(waiting)) if waiting else None
            sentinels = [slot.process.sentinel for slot in self._slots if slot.process is not None]
            ready = wait([wake, *sentinels], timeout=timeout_s)
            if wake in ready:
                wake.recv(64)
            self._kill_hung()
            status = self._reap()
            if status:
                break
        self._stop_all()
        return status

    def _start(self, slot: _Slot) -> None:
        index = self._slots.index(slot)
        ready = self._spawn.Event()
        heartbeat = self._spawn.RawValue("d", 0.0)
        process = self._spawn.Process(
            target=_worker_main,
            args=(self._config, slot.sock, ready, heartbeat, os.getpid(), self._limits),
            name=f"bhuktani-worker-{index}",
        )
        process.start()
        slot.process = process
        slot.ready = ready
        slot.heartbeat = heartbeat
        slot.killed = False
        slot.started_at = time.monotonic()
        log.info("worker_started", worker=index, pid=process.pid)

    def _kill_hung(self) -> None:
        """Kill the serving workers whose event loop has not run for `hung_after_s`; the
        sentinel of each then wakes `_reap`, which plans its replacement."""
        if not self._hung_after_s:
            return
        now = time.monotonic()
        late_s, self._looked_at = now - self._looked_at, now
        if late_s > max(2 * HEARTBEAT_S, self._hung_after_s / 2):
            # The supervisor itself did not run for a while (stopped, the machine paused):
            # the workers' silence may be its own. Give them a beat to be heard again.
            return
        for index, slot in enumerate(self._slots):
            process, heartbeat = slot.process, slot.heartbeat
            if process is None or heartbeat is None or slot.killed or not slot.served:
                continue
            silent_s = now - heartbeat.value
            if silent_s > self._hung_after_s and process.exitcode is None:
                log.error("worker_hung", worker=index, pid=process.pid, silent_s=round(silent_s, 1))
                process.kill()
                slot.killed = True

    def _reap(self) -> int:
        """Forget the workers that exited and plan their replacements. Non-zero if one
        exited before it served while none has served yet: a broken app or bad settings,
        and every next worker would fail the same way. Once the server has served, a
        replacement that cannot start (a database down) is tried again, less and less
        often, while the other workers serve."""
        now = time.monotonic()
        self._served = self._served or any(slot.served for slot in self._slots)
        for index, slot in enumerate(self._slots):
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            process.join()
            served = slot.served
            slot.process = slot.ready = slot.heartbeat = None
            if served:
                # Not asked to stop: killed, out of memory, or a bug.
                log.error(
                    "worker_exited", worker=index, pid=process.pid, exit_code=process.exitcode
                )
                slot.failed_starts = 0
                slot.due_at = max(now, slot.started_at + RESTART_INTERVAL_S)
                continue
            slot.failed_starts += 1
            delay_s = min(
                MAX_RESTART_DELAY_S, RESTART_INTERVAL_S * 2 ** min(slot.failed_starts - 1, 10)
            )
            log.error(
                "worker_failed_to_start",
                worker=index,
                pid=process.pid,
                exit_code=process.exitcode,
                retry_in_s=delay_s if self._served else None,
            )
            if not self._served:
                return STARTUP_FAILURE
            slot.due_at = now + delay_s
        return 0

    def _stop_all(self) -> None:
        running = [slot.process for slot in self._slots if slot.process is not None]
        for process in running:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN_S + KILL_GRACE_S
        for process in running:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error(
                    "worker_killed", pid=process.pid, after_s=GRACEFUL_SHUTDOWN_S + KILL_GRACE_S
                )
                process.kill()
                process.join()
        for slot in self._slots:
            slot.process = None
