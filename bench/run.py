"""The benchmark behind `make bench`: bhuktani against a ceiling, on this machine, now.

Each case (scenario x database x --workers) runs A B A B ... : A is the ceiling
(bench/ceiling_app.py, the least a server can do for the same call on the same stack), B is
`bhuktani serve`. Every run starts its server on a fresh database (an SQLite file in a temp
dir, or a PostgreSQL database created and dropped here), checks that the measured call
succeeds, warms up, then loads it from wrk (a separate process, over loopback) for a fixed
time with bench/load.lua, which makes every reference unique and checks every answer.
Figures are medians over the rounds; the ratio is product / ceiling of those medians.

    .venv/bin/python bench/run.py                # the full bench (about 75 min)
    .venv/bin/python bench/run.py --quick        # 1 round of 3 s, fewer cases (~2 min)
    .venv/bin/python bench/run.py --scenarios commit --dbs postgres --workers 2

Prints markdown tables and writes bench/results/bench-<UTC time>.json (and .md).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
# The bench's own files, copied when it starts (see snapshot_source) like the product.
HARNESS = {"lua": BENCH / "load.lua", "ceiling": BENCH / "ceiling_app.py"}
# isp-sim keeps every payment in memory (~0.45 KB each) and answers 503 past its bound,
# 100,000 by default: a server paying 3,000 a second passed that within one 0 s run, and
# the rest of the run measured how fast it turned the 503s into errors. This is room for
# 25,000 a second over a 40 s run.
SIM_MAX_PAYMENTS = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
ISP_KEY = "bench-isp-key"
BIG_CREDITS = "1000000000000"  # rupees: the CLI's largest load, never exhausted here
# Each merchant's request rate limit, per second and burst (--merchant-rate).
MERCHANT_RATE = ("1000000", "1000000")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A run could not be measured: its server failed, or the measured call did not succeed."""


# -- cases


@dataclasses.dataclass(frozen=True)
class Case:
    scenario: str  # details | commit | commit-charged | slow-isp
    label: str
    db: str  # sqlite | postgres
    workers: int
    connections: int
    merchants: int = 1
    latency_s: float | None = None  # slow-isp only: the isp-sim's added latency

    @property
    def mode(self) -> str:
        return "details" if self.scenario == "details" else "commit"

    @property
    def live(self) -> bool:
        return self.scenario == "slow-isp"

    @property
    def key(self) -> str:
        return f"{self.label} | {self.db} | w{self.workers}"

    def fields(self) -> dict[str, Any]:
        """What each run record and each summary says of its case."""
        return {
            "case": self.key,
            "scenario": self.scenario,
            "label": self.label,
            "db": self.db,
            "workers": self.workers,
            "connections": self.connections,
            "merchants": self.merchants,
            "latency_s": self.latency_s,
        }


def build_cases(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    for scenario in args.scenarios:
        for db in args.dbs:
            for workers in args.workers:
                if scenario == "details":
                    cases.append(
                        Case("details", "HashCNet V2 details", db, workers, args.connections)
                    )
                elif scenario in ("commit", "commit-charged"):
                    for merchants in args.merchants:
                        label = "Arrownet commit, " + (
                            "1 merchant" if merchants == 1 else f"{merchants} merchants"
                        )
                        if scenario == "commit-charged":
                            label += ", service charge"
                        cases.append(
                            Case(scenario, label, db, workers, args.connections, merchants)
                        )
                elif scenario == "slow-isp":
                    for latency in args.latencies:
                        label = f"LIVE commit, ISP latency {latency:g} s"
                        cases.append(
                            Case(
                                "slow-isp",
                                label,
                                db,
                                workers,
                                args.slow_connections,
                                latency_s=latency,
                            )
                        )
    return cases


# -- processes: every one in its own process group, all ended on exit


_GROUPS: set[int] = set()


def spawn(cmd: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
    _GROUPS.add(proc.pid)
    return proc


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Workers of a group may outlive its leader: end whatever is left of it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _GROUPS.discard(proc.pid)


def _kill_all() -> None:
    for pgid in list(_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _GROUPS.clear()


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_call(
    port: int, method: str, path: str, body: bytes | None = None, timeout_s: float = 60.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_healthy(
    proc: subprocess.Popen[bytes], port: int, logfile: Path, timeout_s: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}; see {tail(logfile)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_call(port, "GET", "/healthz", timeout_s=2)
            if status == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"no healthy /healthz on port {port} within {timeout_s:g} s; {tail(logfile)}")


def tail(logfile: Path, lines: int = 15) -> str:
    try:
        text = logfile.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {logfile})"
    return f"last lines of {logfile}:\n" + "\n".join(text)


# -- /proc: process trees, CPU time, peak RSS


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(pgrp, ppid, utime+stime ticks) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[2]), int(fields[1]), int(fields[11]) + int(fields[12])


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] == pgid:
                pids.append(int(entry))
    return sorted(pids)


def cpu_ticks(pids: list[int]) -> int:
    return sum(s[2] for s in (_stat(p) for p in pids) if s is not None)


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def peak_rss(leader: int, workers: int) -> list[dict[str, Any]]:
    """VmHWM of every process of the server: 'server' when uvicorn runs in one process,
    else its 'master' and each 'worker'."""
    result = []
    for pid in group_pids(leader):
        line = cmdline(pid)
        if "resource_tracker" in line:
            role = "resource-tracker"
        elif pid == leader:
            role = "server" if workers == 1 else "master"
        else:
            role = "worker"
        result.append({"pid": pid, "role": role, "vm_hwm_mb": vm_hwm_mb(pid)})
    return result


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def host_busy_pct(sample_s: float = 1.0) -> float:
    busy0, total0 = machine_ticks()
    time.sleep(sample_s)
    busy1, total1 = machine_ticks()
    return 100 * (busy1 - busy0) / max(total1 - total0, 1)


def wait_for_quiet(threshold_pct: float, limit_s: float) -> float:
    """Before a run, wait (up to limit_s) until the host is nearly idle: other work on a
    2-core machine moves req/s more than anything measured here. The busy % last seen."""
    deadline = time.monotonic() + limit_s
    busy = host_busy_pct()
    announced = False
    while busy > threshold_pct and time.monotonic() < deadline:
        if not announced:
            log(f"host busy ({busy:.0f}% CPU by other work): waiting up to {limit_s:g} s")
            announced = True
        busy = host_busy_pct(2.0)
    return round(busy, 1)


# -- databases


class Postgres:
    """The admin connection: creates and drops one database per run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: set[str] = set()

    def _run(self, sql: str, fetch: bool = False) -> Any:
        import asyncpg

        async def go() -> Any:
            conn = await asyncpg.connect(self.url)
            try:
                return await (conn.fetch(sql) if fetch else conn.execute(sql))
            finally:
                await conn.close()

        return asyncio.run(go())

    def check(self) -> str:
        try:
            rows = self._run(
                "SELECT version() AS v, current_setting('fsync') AS f,"
                " current_setting('synchronous_commit') AS s,"
                " current_setting('shared_buffers') AS b, current_setting('max_connections') AS m",
                fetch=True,
            )
        except Exception as exc:
            raise SystemExit(
                f"bench: PostgreSQL at {self.url} is unreachable ({type(exc).__name__}: {exc}).\n"
                "Set BENCH_POSTGRES_URL (or --postgres-url) to a server where the bench may "
                "CREATE DATABASE, or run with --dbs sqlite."
            ) from None
        r = rows[0]
        return (
            f"{r['v'].split(' on ')[0]}; fsync={r['f']}, synchronous_commit={r['s']},"
            f" shared_buffers={r['b']}, max_connections={r['m']}"
        )

    def create(self) -> tuple[str, str]:
        name = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
        self._run(f'CREATE DATABASE "{name}"')
        self.created.add(name)
        # The database is the URL's path; a query may name a Unix socket's directory
        # (?host=/var/run/postgresql), and keeps it.
        return name, urllib.parse.urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def drop(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.discard(name)

    def xacts(self, name: str) -> int:
        rows = self._run(
            "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database"
            f" WHERE datname = '{name}'",
            fetch=True,
        )
        return int(rows[0]["n"]) if rows else 0

    def count(self, url: str, table: str) -> int:
        import asyncpg

        async def go() -> int:
            conn = await asyncpg.connect(url)
            try:
                return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            finally:
                await conn.close()

        return asyncio.run(go())

    def backends(self, name: str) -> list[int]:
        rows = self._run(f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}'", fetch=True)
        return [int(r["pid"]) for r in rows]


# -- one run


@dataclasses.dataclass
class Env:
    args: argparse.Namespace
    pg: Postgres | None
    nonce: str


_SNAPSHOT: dict[str, str] = {}


def snapshot_source(into: Path) -> dict[str, str]:
    """Copy src/bhuktani as it is now; every product process of the bench imports this copy
    (PYTHONPATH comes before the editable install), so edits made while the bench runs
    cannot mix two versions of the product in one set of figures."""

    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip()

    target = into / "bhuktani"
    shutil.copytree(ROOT / "src" / "bhuktani", target, ignore=shutil.ignore_patterns("__pycache__"))
    harness = into / "harness"
    harness.mkdir()
    for name, path in list(HARNESS.items()):
        HARNESS[name] = Path(shutil.copy2(path, harness / path.name))
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(into)).encode() + b"\0" + path.read_bytes())
    changed = [line for line in git("status", "--porcelain", "src").splitlines() if line]
    return {
        "path": str(into),
        "git_commit": git("rev-parse", "HEAD"),
        "git_changed_in_src": str(len(changed)),
        "sha256": digest.hexdigest(),
    }


def base_env() -> dict[str, str]:
    """The caller's environment without any BHUKTANI_* setting, so runs are reproducible."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BHUKTANI_", "CEILING_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if _SNAPSHOT:
        env["PYTHONPATH"] = _SNAPSHOT["path"]
    else:
        env.pop("PYTHONPATH", None)
    return env


def bhuktani(*args: str) -> list[str]:
    return [str(VENV_BIN / "bhuktani"), *args]


def run_checked(cmd: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


# The charge of the commit-charged scenario: a percentage with a floor, the most work a
# charge can ask of a commit (ISP-over-group look-up, rounding, clamping).
BENCH_CHARGE = ("--percent", "1.5", "--min", "5")


def make_merchants(env: dict[str, str], count: int, live: bool, charged: bool = False) -> list[str]:
    def one(i: int) -> str:
        out = run_checked(
            bhuktani(
                "merchant",
                "create",
                f"bench-{i}",
                "--credits",
                BIG_CREDITS,
                "--test-credits",
                BIG_CREDITS,
                "--json",
            ),
            env,
            "bhuktani merchant create",
        )
        created = json.loads(out.strip().splitlines()[-1])
        # The gateway's default (100/s) would refuse most of the load: a merchant this big
        # gets its own limit, and the limiter's cost stays in the figures.
        per_s, burst = MERCHANT_RATE
        run_checked(
            bhuktani(
                "merchant", "set-rate-limit", str(created["merchant_id"]),
                "--per-s", per_s, "--burst", burst,
            ),
            env,
            "bhuktani merchant set-rate-limit",
        )  # fmt: skip
        if charged:
            run_checked(
                bhuktani(
                    "charges", "set", str(created["merchant_id"]), "arrownet", *BENCH_CHARGE,
                    "--env", "live" if live else "test",
                ),
                env,
                "bhuktani charges set",
            )  # fmt: skip
        return str(created["live_token" if live else "test_token"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(1, count + 1)))


def request_body(mode: str, token: str, reference: str) -> bytes:
    data: dict[str, Any]
    if mode == "details":
        data = {
            "token": token,
            "reference": reference,
            "username": "jeetenaug4",
            "service_slug": "vns",
        }
    else:
        data = {
            "token": token,
            "reference": reference,
            "username": "Pradhanang",
            "amount": "1695.00",
            "duration": 1,
        }
    return json.dumps(data).encode()


def check_calls(port: int, mode: str, tokens: list[str], nonce: str) -> int:
    """One call per merchant, each must succeed before the load starts."""
    path = (
        "/api/servicegroup/details/hashcnet-v2/"
        if mode == "details"
        else "/api/servicegroup/commit/arrownet/"
    )
    for i, token in enumerate(tokens):
        status, raw = http_call(port, "POST", path, request_body(mode, token, f"{nonce}-check-{i}"))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        ok = (
            status == 200
            and isinstance(body, dict)
            and (
                isinstance(body.get("session_id"), int)
                if mode == "details"
                else body.get("state") == "Success"
            )
        )
        if not ok:
            raise BenchError(f"the measured call does not succeed: HTTP {status} {raw[:500]!r}")
    return len(tokens)


def wrk(
    port: int, case: Case, tokens: list[str], nonce: str, seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    timeout_s = args.slow_timeout if case.live else args.timeout
    threads = min(args.wrk_threads, case.connections)
    ramp = [f"{args.slow_ramp * 1000:.0f}", str(case.connections // threads)] if case.live else []
    cmd = [
        args.wrk,
        "-t",
        str(threads),
        "-c",
        str(case.connections),
        "-d",
        f"{max(1, round(seconds))}s",  # wrk takes whole seconds
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(HARNESS["lua"]),
        f"http://127.0.0.1:{port}",
        "--",
        case.mode,
        nonce,
        ",".join(tokens),
        *ramp,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            result["wrk_cpu_s"] = round(
                after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3
            )
            return result
    raise BenchError(
        f"wrk gave no result ({done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}"
    )


def served_count(env_: Env, case: Case, url: str, *, completed: bool = False) -> int:
    """Rows the measured call wrote, one per request the server served: a session per
    details call; a payment per commit (with completed: only those that reached Success)."""
    if case.mode == "details":
        table = "sessions"
    else:
        table = "payments WHERE state = 'Success'" if completed else "payments"
    if case.db == "sqlite":
        import sqlite3

        with contextlib.closing(
            sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        ) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    assert env_.pg is not None
    return env_.pg.count(url, table)


def drain(count: Any, quiet_s: float = 1.0, limit_s: float = 90.0) -> float:
    """Wait until the count stops growing for quiet_s; the seconds waited."""
    started = time.monotonic()
    last, last_change = count(), time.monotonic()
    while time.monotonic() - started < limit_s:
        time.sleep(0.25)
        now = count()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            break
    return round(time.monotonic() - started, 2)


def one_run(env_: Env, case: Case, variant: str, round_no: int) -> dict[str, Any]:
    args = env_.args
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    nonce = f"{env_.nonce}{variant[0]}{round_no}{secrets.token_hex(3)}"
    pg_name = None
    procs: list[subprocess.Popen[bytes]] = []
    env = base_env()
    record: dict[str, Any] = {**case.fields(), "variant": variant, "round": round_no}
    try:
        record["host_busy_before_pct"] = wait_for_quiet(args.quiet_threshold, args.quiet_wait)
        if case.db == "sqlite":
            url = f"sqlite:///{tmp / 'bench.db'}"
        else:
            assert env_.pg is not None
            pg_name, url = env_.pg.create()
        sim = None
        if case.live:
            sim_port = free_port()
            sim_log = tmp / "isp-sim.log"
            sim = spawn(
                bhuktani(
                    "isp-sim",
                    "--port",
                    str(sim_port),
                    "--api-key",
                    ISP_KEY,
                    "--latency-s",
                    f"{case.latency_s:g}",
                    "--seed",
                    "1",
                    "--max-payments",
                    str(SIM_MAX_PAYMENTS),
                ),
                env,
                sim_log,
            )
            procs.append(sim)
            wait_healthy(sim, sim_port, sim_log)
        port = free_port()
        server_log = tmp / f"{variant}.log"
        if variant == "product":
            env["BHUKTANI_DATABASE_URL"] = url
            if case.live:
                env["BHUKTANI_ISPS__ARROWNET__BASE_URL"] = f"http://127.0.0.1:{sim_port}"
                env["BHUKTANI_ISPS__ARROWNET__API_KEY"] = ISP_KEY
                env["BHUKTANI_ISP_TIMEOUT_S"] = f"{args.isp_timeout:g}"
            run_checked(bhuktani("migrate"), env, "bhuktani migrate")
            tokens = make_merchants(
                env, case.merchants, case.live, charged=case.scenario == "commit-charged"
            )
            cmd = bhuktani(
                "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(case.workers)
            )
        else:
            env["CEILING_DATABASE_URL"] = url
            if case.live:
                env["CEILING_ISP_URL"] = f"http://127.0.0.1:{sim_port}"
                env["CEILING_ISP_KEY"] = ISP_KEY
                env["CEILING_ISP_TIMEOUT_S"] = f"{args.isp_timeout:g}"
                env["CEILING_ISP_CLIENT"] = args.ceiling_isp_client
            if args.ceiling_pg_reset:
                env["CEILING_PG_RESET"] = "1"
            prefix = "ceiling-live-" if case.live else "TEST:ceiling-"
            tokens = [f"{prefix}{i}" for i in range(1, case.merchants + 1)]
            ceiling = [sys.executable, str(HARNESS["ceiling"])]
            run_checked([*ceiling, "init", *tokens], env, "ceiling init")
            cmd = [
                *ceiling,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(case.workers),
            ]
        xacts_before = env_.pg.xacts(pg_name) if env_.pg and pg_name else None
        server = spawn(cmd, env, server_log)
        procs.append(server)
        wait_healthy(server, port, server_log)
        if case.workers > 1:
            # Let every worker finish its start-up: /healthz answers from the first one.
            time.sleep(1.5)
        check_calls(port, case.mode, tokens, nonce)
        if args.warmup > 0:
            warm_case = dataclasses.replace(case, connections=min(case.connections, 64))
            warm = wrk(port, warm_case, tokens, nonce + "w", args.warmup, args)
            record["warmup_responses"] = warm["responses"]
            # Requests wrk left in flight still run in the server: let them finish first.
            record["drain_s"] = drain(lambda: served_count(env_, case, url, completed=True))
        duration = args.slow_duration if case.live else args.duration
        server_pids = group_pids(server.pid)
        pg_pids = env_.pg.backends(pg_name) if env_.pg and pg_name else []
        cpu0, pg0 = cpu_ticks(server_pids), cpu_ticks(pg_pids)
        sim0 = cpu_ticks([sim.pid]) if sim else 0
        busy0, total0 = machine_ticks()
        record["loadavg_before"] = os.getloadavg()[0]
        done0 = served_count(env_, case, url, completed=True)
        result = wrk(port, case, tokens, nonce, duration, args)
        busy1, total1 = machine_ticks()
        cpu1, pg1 = cpu_ticks(server_pids), cpu_ticks(pg_pids)
        if env_.pg and pg_name:
            # A pool grows under load: backends born during the run spent all their CPU in it.
            late = [pid for pid in env_.pg.backends(pg_name) if pid not in pg_pids]
            pg1 += cpu_ticks(late)
            record["pg_backends"] = [len(pg_pids), len(pg_pids) + len(late)]
        sim1 = cpu_ticks([sim.pid]) if sim else 0
        # Completed by the server while wrk ran, answered in time or not: with 1,000
        # connections the answers of the last seconds arrive after wrk stops counting.
        done_in_run = served_count(env_, case, url, completed=True) - done0
        record["rss"] = peak_rss(server.pid, case.workers)
        if sim is not None:
            record["isp_sim_vm_hwm_mb"] = vm_hwm_mb(sim.pid)
        if server.poll() is not None:
            raise BenchError(f"server died during the run; {tail(server_log)}")
        for proc in reversed(procs):
            stop(proc)
        procs.clear()
        seconds = result["duration_us"] / 1e6
        answered = result["responses"]
        per_req = max(done_in_run, 1)
        ok = answered - result["non2xx"] - result["unexpected"]
        socket_errors = sum(
            result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        )
        record.update(
            wrk=result,
            ok_rps=round(ok / seconds, 1),
            completed_rps=round(done_in_run / seconds, 1),
            p50_ms=round(result["latency_us"]["p50"] / 1000, 2),
            p99_ms=round(result["latency_us"]["p99"] / 1000, 2),
            errors=result["non2xx"] + socket_errors,
            non2xx=result["non2xx"],
            unexpected=result["unexpected"],
            socket_errors=socket_errors,
            server_cpu_ms_per_req=round((cpu1 - cpu0) / CLK_TCK * 1000 / per_req, 3),
            machine_busy_pct=round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
            # CPU spent by processes that are not part of this run (other work on the host).
            foreign_busy_pct=round(
                100
                * (
                    (busy1 - busy0)
                    - (cpu1 - cpu0)
                    - (pg1 - pg0)
                    - (sim1 - sim0)
                    - result["wrk_cpu_s"] * CLK_TCK
                )
                / max(total1 - total0, 1),
                1,
            ),
        )
        if "pg_backends" in record:
            record["pg_backend_cpu_ms_per_req"] = round((pg1 - pg0) / CLK_TCK * 1000 / per_req, 3)
        if sim is not None:
            record["isp_sim_cpu_ms_per_req"] = round((sim1 - sim0) / CLK_TCK * 1000 / per_req, 3)
        # Every request the server completed, those wrk stopped waiting for included.
        served = served_count(env_, case, url)
        record["served_total"] = served
        if env_.pg and pg_name and xacts_before is not None:
            time.sleep(0.5)  # the backends flush their statistics as they exit
            record["pg_xacts_per_req"] = round(
                (env_.pg.xacts(pg_name) - xacts_before) / max(served, 1), 2
            )
        return record
    finally:
        for proc in reversed(procs):
            stop(proc)
        if pg_name and env_.pg:
            env_.pg.drop(pg_name)
        if not args.keep_temp:
            shutil.rmtree(tmp, ignore_errors=True)


# -- summary and tables


def median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def summarise(case: Case, runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = case.fields()
    for variant in ("ceiling", "product"):
        mine = [r for r in runs if r["variant"] == variant and "ok_rps" in r]
        if not mine:
            out[variant] = None
            continue
        out[variant] = {
            "rounds": len(mine),
            "ok_rps": median([r["ok_rps"] for r in mine]),
            "completed_rps": median([r.get("completed_rps") for r in mine]),
            "p50_ms": median([r["p50_ms"] for r in mine]),
            "p99_ms": median([r["p99_ms"] for r in mine]),
            "errors": int(median([r["errors"] for r in mine]) or 0),
            "unexpected": int(median([r["unexpected"] for r in mine]) or 0),
            "errors_total": sum(r["errors"] for r in mine),
            "unexpected_total": sum(r["unexpected"] for r in mine),
            "server_cpu_ms_per_req": median([r["server_cpu_ms_per_req"] for r in mine]),
            "pg_backend_cpu_ms_per_req": median([r.get("pg_backend_cpu_ms_per_req") for r in mine]),
            "pg_xacts_per_req": median([r.get("pg_xacts_per_req") for r in mine]),
            "isp_sim_cpu_ms_per_req": median([r.get("isp_sim_cpu_ms_per_req") for r in mine]),
            "machine_busy_pct": median([r["machine_busy_pct"] for r in mine]),
            "foreign_busy_pct": median([r["foreign_busy_pct"] for r in mine]),
            "peak_rss_mb": {
                role: max(
                    (p["vm_hwm_mb"] or 0.0) for r in mine for p in r["rss"] if p["role"] == role
                )
                for role in sorted({p["role"] for r in mine for p in r["rss"]})
            },
            "isp_sim_peak_rss_mb": max((r.get("isp_sim_vm_hwm_mb") or 0.0) for r in mine) or None,
        }
    c, p = out["ceiling"], out["product"]
    out["ratio"] = round(p["ok_rps"] / c["ok_rps"], 3) if c and p and c["ok_rps"] else None
    pairs: dict[int, dict[str, float]] = {}
    for r in runs:
        if "ok_rps" in r:
            pairs.setdefault(r["round"], {})[r["variant"]] = r["ok_rps"]
    out["ratio_per_round"] = [
        round(v["product"] / v["ceiling"], 3)
        for _, v in sorted(pairs.items())
        if v.get("ceiling") and "product" in v
    ]
    out["failures"] = [r["error"] for r in runs if "error" in r]
    return out


def fmt_rss(stats: dict[str, Any], with_sim: bool = False) -> str:
    rss = stats["peak_rss_mb"]
    parts = []
    for role, short in (("server", "server"), ("master", "master"), ("worker", "worker")):
        if role in rss:
            parts.append(f"{short} {rss[role]:.0f}")
    if with_sim and stats.get("isp_sim_peak_rss_mb"):
        parts.append(f"isp-sim {stats['isp_sim_peak_rss_mb']:.0f}")
    return ", ".join(parts) + " MB"


def fmt_errors(stats: dict[str, Any]) -> str:
    text = str(stats["errors"])
    if stats["unexpected"]:
        text += f" (+{stats['unexpected']} not Success)"
    return text


def num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def tables(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | db | workers | req/s | p50 ms | p99 ms | ceiling req/s | ratio to ceiling | errors | peak RSS per process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summary:
        p, c = s["product"], s["ceiling"]
        if p is None or c is None:
            lines.append(
                f"| {s['label']} | {s['db']} | {s['workers']} | failed: {'; '.join(s['failures'])[:200]} |||||||"
            )
            continue
        lines.append(
            f"| {s['label']} | {s['db']} | {s['workers']} | {num(p['ok_rps'])} | {num(p['p50_ms'], 1)}"
            f" | {num(p['p99_ms'], 1)} | {num(c['ok_rps'])} | {num(s['ratio'], 2)} | {fmt_errors(p)}"
            f" | {fmt_rss(p, with_sim=s['scenario'] == 'slow-isp')} |"
        )
    lines += [
        "",
        "Where the time goes (medians; CPU and transactions per request the server completed):",
        "",
        "| scenario | db | workers | server CPU ms/req product / ceiling | PG backend CPU ms/req product / ceiling | PG xacts/req product / ceiling | machine busy % product / ceiling | of which other processes % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        p, c = s["product"], s["ceiling"]
        if p is None or c is None:
            continue
        lines.append(
            f"| {s['label']} | {s['db']} | {s['workers']}"
            f" | {num(p['server_cpu_ms_per_req'], 2)} / {num(c['server_cpu_ms_per_req'], 2)}"
            f" | {num(p['pg_backend_cpu_ms_per_req'], 2)} / {num(c['pg_backend_cpu_ms_per_req'], 2)}"
            f" | {num(p['pg_xacts_per_req'], 1)} / {num(c['pg_xacts_per_req'], 1)}"
            f" | {num(p['machine_busy_pct'])} / {num(c['machine_busy_pct'])}"
            f" | {num(max(0.0, p['foreign_busy_pct']))} / {num(max(0.0, c['foreign_busy_pct']))} |"
        )
    slow = [s for s in summary if s["scenario"] == "slow-isp" and s["product"] and s["ceiling"]]
    by_key: dict[tuple[str, int], dict[float, dict[str, Any]]] = {}
    for s in slow:
        by_key.setdefault((s["db"], s["workers"]), {})[s["latency_s"]] = s
    rows = []
    all_latencies = sorted({s["latency_s"] for s in slow})
    for (db, workers), by_latency in sorted(by_key.items()):
        latencies = sorted(by_latency)
        if len(latencies) < 2:
            continue
        slowest, fastest = by_latency[latencies[-1]], by_latency[latencies[0]]
        for variant in ("product", "ceiling"):
            a, b = slowest[variant], fastest[variant]
            ratio = a["completed_rps"] / b["completed_rps"] if b["completed_rps"] else None
            # Little's law: n connections, each waiting latency_s a request, make at most
            # n / latency_s requests a second, however fast the server.
            bound = slowest["connections"] / slowest["latency_s"] if slowest["latency_s"] else None
            share = a["completed_rps"] / bound if bound else None
            rows.append(
                f"| {variant} | {db} | {workers}"
                f" | {num(a['completed_rps'])} / {num(b['completed_rps'])} | {num(ratio, 2)}"
                f" | {num(share, 2)}"
                f" | {num(a['ok_rps'])} / {num(b['ok_rps'])}"
                f" | {num(a['p50_ms'])} / {num(b['p50_ms'])}"
                f" | {num(a['p99_ms'])} / {num(b['p99_ms'])} | {fmt_errors(a)} / {fmt_errors(b)}"
                f" | {fmt_rss(a, True)} / {fmt_rss(b, True)} |"
            )
    if rows:
        lines += [
            "",
            f"Slow ISP: LIVE commits through isp-sim, latency {all_latencies[-1]:g} s against"
            f" {all_latencies[0]:g} s (each figure: slow / fast). completed/s counts payments that"
            " reached Success in the database during the run; req/s, the answers wrk got"
            " within it. Of the bound: completed/s at the slow latency over connections /"
            " latency, the most any server can complete at that concurrency:",
            "",
            "| server | db | workers | completed/s | throughput ratio | of the bound | req/s"
            " | p50 ms | p99 ms | errors | peak RSS per process |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
        ]
    return "\n".join(lines)


# -- machine


def machine_info(args: argparse.Namespace, pg_version: str | None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_mb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    wrk_version = (
        subprocess.run([args.wrk, "-v"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip()
    )

    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_mb": mem_mb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": pg_version,
        "wrk": wrk_version,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "product_source": {k: v for k, v in _SNAPSHOT.items() if k != "path"} or "live tree",
    }


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: installing it (apt-get install -y wrk)")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get"):
        for cmd in (
            ["apt-get", "install", "-y", "wrk"],
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "wrk"],
        ):
            subprocess.run([*prefix, *cmd], check=False)
            found = shutil.which("wrk")
            if found:
                return found
    raise SystemExit(
        "bench: wrk is not installed and could not be installed here.\n"
        "Install it (Debian/Ubuntu: `sudo apt-get install -y wrk`; macOS: `brew install wrk`),"
        " or pass --wrk PATH."
    )


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < need:
        log(f"warning: the open-files limit is {target}; {need} connections need more (ulimit -n)")


# -- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 round of 3 s runs, details and 1-merchant commit, --workers 1",
    )
    p.add_argument("--rounds", type=int, help="A B rounds per case (default 3; quick 1)")
    p.add_argument("--duration", type=float, help="seconds per measured run (default 10; quick 3)")
    p.add_argument(
        "--warmup", type=float, help="seconds of load before each run (default 2; quick 1)"
    )
    p.add_argument("--scenarios", help="comma list of details,commit,commit-charged,slow-isp")
    p.add_argument("--dbs", help="comma list of sqlite,postgres")
    p.add_argument("--workers", help="comma list of --workers values (default 1,2)")
    p.add_argument("--merchants", help="commit: comma list of merchant counts (default 1,16)")
    p.add_argument("--latencies", default="1,0", help="slow-isp: isp-sim latencies, seconds")
    p.add_argument(
        "--slow-duration",
        type=float,
        help="seconds per slow-isp run (default 30; quick 10): 1,000 connections"
        " take seconds to fill, and only answers inside the run count",
    )
    p.add_argument(
        "--slow-ramp",
        type=float,
        default=1.0,
        help="slow-isp: each connection's first request waits a random 0 to this many"
        " seconds, so the connections do not all start in the same millisecond",
    )
    p.add_argument("--connections", type=int, default=64, help="wrk -c of details and commit")
    p.add_argument("--slow-connections", type=int, default=1000, help="wrk -c of slow-isp")
    p.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk -t (one leaves the cores to the servers)"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="wrk --timeout, seconds")
    p.add_argument("--slow-timeout", type=float, default=60.0, help="wrk --timeout for slow-isp")
    p.add_argument(
        "--isp-timeout",
        type=float,
        default=30.0,
        help="BHUKTANI_ISP_TIMEOUT_S for slow-isp (well above the latency)",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL",
            os.environ.get(
                "BHUKTANI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
            ),
        ),
        help="a PostgreSQL where the bench may CREATE DATABASE (default: BENCH_POSTGRES_URL,"
        " else BHUKTANI_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for the host to be"
        " idle (default 120; quick 10)",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=15.0,
        help="host CPU %% counted as idle enough to start a run",
    )
    p.add_argument(
        "--live-src",
        action="store_true",
        help="run the product from src/ as it is at each run, not from a copy"
        " taken when the bench starts",
    )
    p.add_argument(
        "--ceiling-isp-client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="slow-isp: the ceiling's ISP client, its minimal one or aiohttp (make dev installs it)",
    )
    p.add_argument(
        "--ceiling-pg-reset",
        action="store_true",
        help="the ceiling's asyncpg pool runs its default reset query on every release",
    )
    p.add_argument(
        "--merchant-rate",
        default=",".join(MERCHANT_RATE),
        help="each merchant's rate limit, PER_S,BURST (default %(default)s: leases of"
        " 100,000 tokens; a small burst makes leases small and frequent)",
    )
    p.add_argument("--wrk", help="path of wrk (installed with apt-get when missing)")
    p.add_argument("--out", default=str(BENCH / "results"), help="where results go")
    p.add_argument("--keep-temp", action="store_true", help="keep each run's temp dir (logs)")
    args = p.parse_args(argv)
    q = args.quick
    args.rounds = args.rounds or (1 if q else 3)
    args.duration = args.duration or (3.0 if q else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if q else 2.0)
    args.slow_duration = args.slow_duration or (10.0 if q else 30.0)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (10.0 if q else 120.0)
    args.scenarios = (
        args.scenarios or ("details,commit" if q else "details,commit,commit-charged,slow-isp")
    ).split(",")
    args.dbs = (args.dbs or "sqlite,postgres").split(",")
    args.workers = [int(w) for w in (args.workers or ("1" if q else "1,2")).split(",")]
    args.merchants = [int(m) for m in (args.merchants or ("1" if q else "1,16")).split(",")]
    args.latencies = sorted((float(x) for x in args.latencies.split(",")), reverse=True)
    for s in args.scenarios:
        if s not in ("details", "commit", "commit-charged", "slow-isp"):
            p.error(f"unknown scenario {s!r}")
    for d in args.dbs:
        if d not in ("sqlite", "postgres"):
            p.error(f"unknown db {d!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    global MERCHANT_RATE
    per_s, _, burst = args.merchant_rate.partition(",")
    MERCHANT_RATE = (per_s, burst)
    if not (VENV_BIN / "bhuktani").exists():
        raise SystemExit(
            f"bench: no bhuktani next to {sys.executable}; run it with .venv/bin/python (make bench)"
        )
    args.wrk = args.wrk or ensure_wrk()
    raise_nofile(max(args.slow_connections, args.connections) * 3 + 1000)
    atexit.register(_kill_all)
    if not args.live_src:
        snap = Path(tempfile.mkdtemp(prefix="bench-src-"))
        atexit.register(shutil.rmtree, snap, True)
        _SNAPSHOT.update(snapshot_source(snap))
        where = run_checked(
            [str(VENV_BIN / "python"), "-c", "import bhuktani; print(bhuktani.__file__)"],
            base_env(),
            "import bhuktani",
        ).strip()
        if not where.startswith(str(snap)):
            raise SystemExit(f"bench: the product imports from {where}, not the copy in {snap}")
        log(
            f"product: src/ at git {_SNAPSHOT['git_commit'][:10]}"
            f" + {_SNAPSHOT['git_changed_in_src']} changed file(s), copied to {snap}"
        )
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup stays nohup
        signal.signal(signal.SIGHUP, _on_signal)
    pg = Postgres(args.postgres_url) if "postgres" in args.dbs else None
    pg_version = pg.check() if pg else None
    cases = build_cases(args)
    started = dt.datetime.now(dt.UTC)
    env = Env(args, pg, started.strftime("%H%M%S"))
    seconds = (
        sum((args.slow_duration if c.live else args.duration) + args.warmup + 12 for c in cases)
        * args.rounds
        * 2
    )
    log(f"{len(cases)} cases x {args.rounds} rounds x 2 servers, about {seconds / 60:.0f} min")
    runs: list[dict[str, Any]] = []
    # Round by round across the cases, so that a case's rounds are spread over the whole
    # bench: two cases compared (a commit with and without a service charge) meet the
    # host's drift alike, as each case's ceiling and product do within a round.
    by_case: dict[str, list[dict[str, Any]]] = {case.key: [] for case in cases}
    try:
        for round_no in range(1, args.rounds + 1):
            for n, case in enumerate(cases, 1):
                for variant in ("ceiling", "product"):
                    try:
                        record = one_run(env, case, variant, round_no)
                        log(
                            f"[{n}/{len(cases)}] {case.key} round {round_no} {variant}:"
                            f" {record['ok_rps']:,.0f} req/s, p99 {record['p99_ms']:,.1f} ms,"
                            f" errors {record['errors']}, not Success {record['unexpected']}"
                        )
                    except BenchError as exc:
                        record = {
                            "case": case.key,
                            "variant": variant,
                            "round": round_no,
                            "error": str(exc),
                        }
                        log(
                            f"[{n}/{len(cases)}] {case.key} round {round_no} {variant} FAILED: {exc}"
                        )
                    by_case[case.key].append(record)
                    runs.append(record)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        _kill_all()
        if pg:
            for name in list(pg.created):
                pg.drop(name)
    summary = [summarise(case, by_case[case.key]) for case in cases if by_case[case.key]]
    if not summary:
        log("nothing measured: no results written")
        return 1
    text = tables(summary)
    finished = dt.datetime.now(dt.UTC)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "quick": args.quick,
        "config": {k: v for k, v in vars(args).items() if k not in ("postgres_url",)},
        "machine": machine_info(args, pg_version),
        "definitions": {
            "req/s": "2xx answers carrying the expected body (a session_id; state Success) per second of the wrk run",
            "p50/p99": "wrk latency percentiles of all answered requests",
            "ratio": "median product req/s / median ceiling req/s of the same case, in the same bench",
            "errors": "non-2xx answers + wrk socket errors (connect, read, write, timeout); 'not Success' counts 2xx commits answered Processing",
            "peak RSS": "VmHWM of each server process (master and workers), isp-sim apart",
            "completed/s": "measured calls the server completed during the run (rows in the database: sessions; payments in Success), answered to wrk in time or not",
            "server CPU ms/req": "user+system CPU of the server's processes during the run / calls completed during the run",
            "PG backend CPU ms/req": "CPU of the run's PostgreSQL backends during the run / calls completed during the run",
            "PG xacts/req": "pg_stat_database commits+rollbacks of the run's database while the server lived / requests served",
        },
        "summary": summary,
        "runs": runs,
        "table_markdown": text,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    tmp = out_dir / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out_dir / f"{stem}.json")
    source = (
        f"git {_SNAPSHOT['git_commit'][:10]} + {_SNAPSHOT['git_changed_in_src']} changed in src"
        f" (sha256 {_SNAPSHOT['sha256'][:12]})"
        if _SNAPSHOT
        else "live src/"
    )
    machine = result["machine"]
    variants = [
        f"ceiling ISP client {args.ceiling_isp_client}"
        if args.ceiling_isp_client != "raw" and "slow-isp" in args.scenarios
        else "",
        "ceiling PG reset" if args.ceiling_pg_reset and "postgres" in args.dbs else "",
    ]
    header = (
        f"bhuktani bench {result['started']} ({'quick' if args.quick else 'full'}:"
        f" {args.rounds} rounds, {args.duration:g} s runs"
        f"{f', slow-ISP {args.slow_duration:g} s' if 'slow-isp' in args.scenarios else ''});"
        f" {machine['nproc']} x"
        f" {machine['cpu_model']}, Python {machine['python']}; product {source}"
        + "".join(f"; {variant}" for variant in variants if variant)
    )
    (out_dir / f"{stem}.md").write_text(header + "\n\n" + text + "\n")
    print(header + "\n")
    print(text)
    print(f"\nresults: {out_dir / (stem + '.json')}")
    failed = any("error" in r for r in runs)
    return 1 if failed or len(summary) < len(cases) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
