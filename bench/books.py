"""The books bench: a merchant's transaction list and daily statement over a long history,
against a status look-up of the same merchant, measured in the same run.

    .venv/bin/python bench/books.py                      # 1,000,000 payments, both databases
    .venv/bin/python bench/books.py --payments 100000 --dbs sqlite --rounds 1

The history is written straight into a fresh database as the ledger writes it (one load
at the start, then for each payment its row, a pending transfer and its post), spread
evenly over the 400 Nepal days before yesterday; yesterday gets --day-payments more, the
day whose statement is asked. Writing a million payments through the API would take
hours; written so, the tables and indexes are those the API would have left.

Then `bhuktani serve --workers 1` on that database, and each call in turn, A B C D A B C D
(--rounds), with wrk over loopback (bench/get.lua: the same GET, every answer checked):

- status: the status look-up of one reference of the history;
- transactions: the first page of GET /api/transactions/ (--page results);
- transactions-deep: a page 300 days back (`to`), the keyset's walk into old history;
- statement: GET /api/statement/ of yesterday.

Each call is measured twice: its answer time alone (one connection, the median latency:
what a finance tool waiting for a page sees) and its throughput under load
(--connections, req/s: what it costs the server). The goal (issue 21: "answer within 2x a
status look-up") is read on the first: each call's median latency at most twice the
status look-up's of the same round. The second is reported beside it; a page of rows
costs more server time than one row, whatever the history, and the table shows how much.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as harness  # noqa: E402  (the bench's process, database and wrk helpers)

NEPAL = dt.timezone(dt.timedelta(hours=5, minutes=45))
AMOUNT_PAISA = 169_500
ISP = "arrownet"
HISTORY_DAYS = 400
CALLS = ("status", "transactions", "transactions-deep", "statement")
GET_LUA = BENCH / "get.lua"


def day_start_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), NEPAL).timestamp() * 1000)


def seed_sql(merchant_id: int, payments: int, start_ms: int, step_ms: int, first: int) -> list[str]:
    """Statements writing payments first..first+payments-1 at start_ms + k * step_ms, each
    Success with its hold posted: rows as the ledger and the payment book write them."""
    last = first + payments - 1
    series = f"WITH RECURSIVE g(n) AS (SELECT CAST({first} AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < {last})"
    at = f"({start_ms} + (n - {first}) * {step_ms})"
    merchant = (
        f"(SELECT id FROM accounts WHERE kind = 'merchant' AND env = 'test'"
        f" AND code = 'merchant:{merchant_id}')"
    )
    isp = f"(SELECT id FROM accounts WHERE kind = 'isp' AND env = 'test' AND code = 'isp:{ISP}/' || (n % 16))"
    return [
        f"{series} INSERT INTO payments (id, merchant_id, env, reference, service, isp, username,"
        " package_title, duration_code, days, amount_paisa, hold_transfer_id, state, isp_status,"
        " detail, created_ms, updated_ms, next_check_ms)"
        f" SELECT 1000000000000 + n, {merchant_id}, 'test', 'hist-' || n, '{ISP}', '{ISP}',"
        f" 'Pradhanang', '1 Month', '1', 30, {AMOUNT_PAISA}, 1000000000 + 2 * n, 'Success',"
        f" 'Paid', 'Paid', {at}, {at} + 1000, NULL FROM g",
        f"{series} INSERT INTO transfers (id, kind, debit_account_id, credit_account_id,"
        " amount_paisa, payment_id, created_ms)"
        f" SELECT 1000000000 + 2 * n, 'pending', {merchant}, {isp}, {AMOUNT_PAISA},"
        f" 1000000000000 + n, {at} FROM g",
        f"{series} INSERT INTO transfers (id, kind, debit_account_id, credit_account_id,"
        " amount_paisa, pending_id, payment_id, created_ms)"
        f" SELECT 1000000001 + 2 * n, 'post', {merchant}, {isp}, {AMOUNT_PAISA},"
        f" 1000000000 + 2 * n, 1000000000000 + n, {at} + 1000 FROM g",
    ]


def seed_statements(merchant_id: int, payments: int, day_payments: int) -> tuple[list[str], str]:
    """Every statement of the history, and yesterday's date (Nepal)."""
    yesterday = dt.datetime.now(NEPAL).date() - dt.timedelta(days=1)
    start = day_start_ms(yesterday - dt.timedelta(days=HISTORY_DAYS))
    history_ms = day_start_ms(yesterday) - start
    total = payments + day_payments
    load = AMOUNT_PAISA * total * 2
    merchant = f"(SELECT id FROM accounts WHERE kind = 'merchant' AND env = 'test' AND code = 'merchant:{merchant_id}')"
    sql = [
        "INSERT INTO accounts (kind, env, code) VALUES ('funding', 'test', 'funding')"
        " ON CONFLICT (kind, env, code) DO NOTHING",
        *(
            f"INSERT INTO accounts (kind, env, code) VALUES ('isp', 'test', 'isp:{ISP}/{s}')"
            " ON CONFLICT (kind, env, code) DO NOTHING"
            for s in range(16)
        ),
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_paisa,"
        f" note, created_ms) SELECT 999999999, 'single', (SELECT id FROM accounts WHERE kind ="
        f" 'funding' AND env = 'test'), {merchant}, {load}, 'opening credits', {start - 60_000}",
        *seed_sql(merchant_id, payments, start, history_ms // payments, 1),
        *seed_sql(
            merchant_id,
            day_payments,
            day_start_ms(yesterday) + 60_000,
            (86_400_000 - 120_000) // day_payments,
            payments + 1,
        ),
        f"UPDATE accounts SET balance_paisa = balance_paisa + {load - AMOUNT_PAISA * total},"
        f" consumed_paisa = consumed_paisa + {AMOUNT_PAISA * total} WHERE id = {merchant}",
        *(
            f"UPDATE accounts SET balance_paisa = (SELECT COALESCE(SUM(amount_paisa), 0) FROM"
            f" transfers WHERE kind = 'post' AND credit_account_id = accounts.id)"
            f" WHERE kind = 'isp' AND env = 'test' AND code = 'isp:{ISP}/{s}'"
            for s in range(16)
        ),
        f"UPDATE accounts SET balance_paisa = -{load} WHERE kind = 'funding' AND env = 'test'",
    ]
    return sql, yesterday.isoformat()


def seed(url: str, statements: list[str]) -> float:
    started = time.monotonic()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            for statement in statements:
                conn.execute(statement)
        conn.execute("ANALYZE")
        conn.close()
    else:
        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    for statement in statements:
                        await conn.execute(statement)
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('transfers', 'id'),"
                    " (SELECT max(id) FROM transfers))"
                )
                await conn.execute("ANALYZE")
            finally:
                await conn.close()

        asyncio.run(go())
    return time.monotonic() - started


def wrk(
    args: argparse.Namespace, port: int, path: str, token: str, seconds: float, connections: int
) -> dict[str, Any]:
    cmd = [
        args.wrk, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(GET_LUA), f"http://127.0.0.1:{port}", "--", path, token,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise harness.BenchError(f"wrk gave no result: {done.stdout[-800:]} {done.stderr[-800:]}")


def paths(args: argparse.Namespace, day: str) -> dict[str, str]:
    deep = (dt.date.fromisoformat(day) - dt.timedelta(days=300)).isoformat()
    return {
        "status": f"/api/service/status/?reference=hist-{args.payments // 2}",
        "transactions": f"/api/transactions/?limit={args.page}",
        "transactions-deep": f"/api/transactions/?to={deep}&limit={args.page}",
        "statement": f"/api/statement/?date={day}",
    }


def one_database(args: argparse.Namespace, db: str, pg: harness.Postgres | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-books-"))
    env = harness.base_env()
    pg_name = None
    server = None
    try:
        if db == "sqlite":
            url = f"sqlite:///{tmp / 'books.db'}"
        else:
            assert pg is not None
            pg_name, url = pg.create()
        env["BHUKTANI_DATABASE_URL"] = url
        harness.run_checked(harness.bhuktani("migrate"), env, "bhuktani migrate")
        out = harness.run_checked(
            harness.bhuktani("merchant", "create", "books-bench", "--json"), env, "merchant create"
        )
        created = json.loads(out.strip().splitlines()[-1])
        merchant_id, token = int(created["merchant_id"]), str(created["test_token"])
        per_s, burst = harness.MERCHANT_RATE
        harness.run_checked(
            harness.bhuktani(
                "merchant", "set-rate-limit", str(merchant_id), "--per-s", per_s, "--burst", burst
            ),
            env,
            "set-rate-limit",
        )
        statements, day = seed_statements(merchant_id, args.payments, args.day_payments)
        harness.log(f"{db}: seeding {args.payments:,} payments")
        seeded_s = seed(url, statements)
        harness.log(f"{db}: seeded in {seeded_s:.1f} s")
        port = harness.free_port()
        log_file = tmp / "serve.log"
        server = harness.spawn(
            harness.bhuktani("serve", "--host", "127.0.0.1", "--port", str(port)), env, log_file
        )
        harness.wait_healthy(server, port, log_file)
        calls = paths(args, day)
        for name, path in calls.items():
            started = time.monotonic()
            status, raw = harness.http_call(port, "GET", path + f"&token={token}")
            first_s = time.monotonic() - started
            if status != 200 or b'"status":true' not in raw:
                raise harness.BenchError(f"{name}: HTTP {status} {raw[:500]!r}")
            harness.log(f"{db}: {name} answers ({len(raw):,} bytes; first call {first_s:.2f} s)")
        alone: dict[str, list[float]] = {name: [] for name in calls}
        loaded: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, path in calls.items():
                wrk(args, port, path, token, args.warmup, args.connections)
                for connections, into in ((1, alone), (args.connections, loaded)):
                    result = wrk(args, port, path, token, args.duration, connections)
                    bad = result["non2xx"] + result["unexpected"]
                    if bad:
                        raise harness.BenchError(f"{name}: {bad} answers were not 200 status:true")
                    into[name].append(
                        result["latency_us"]["p50"] / 1000
                        if connections == 1
                        else result["responses"] / (result["duration_us"] / 1e6)
                    )
        p50 = {name: statistics.median(values) for name, values in alone.items()}
        rps = {name: statistics.median(values) for name, values in loaded.items()}
        return {
            "db": db,
            "payments": args.payments + args.day_payments,
            "statement_day": day,
            "seed_s": round(seeded_s, 1),
            "runs_p50_ms": {k: [round(v, 3) for v in vs] for k, vs in alone.items()},
            "runs_rps": {k: [round(v, 1) for v in vs] for k, vs in loaded.items()},
            "p50_ms": {k: round(v, 3) for k, v in p50.items()},
            "latency_to_status": {k: round(v / p50["status"], 2) for k, v in p50.items()},
            "median_rps": {k: round(v, 1) for k, v in rps.items()},
            "rps_to_status": {k: round(v / rps["status"], 2) for k, v in rps.items()},
        }
    finally:
        if server is not None:
            harness.stop(server)
        if pg_name and pg is not None:
            pg.drop(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| database | history | call | alone: p50 ms | x status | loaded: req/s | / status |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for name in CALLS:
            lines.append(
                f"| {r['db']} | {r['payments']:,} payments | {name} |"
                f" {r['p50_ms'][name]:.2f} | {r['latency_to_status'][name]:.2f} |"
                f" {r['median_rps'][name]:,.0f} | {r['rps_to_status'][name]:.2f} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--payments", type=int, default=1_000_000, help="the history's payments")
    p.add_argument("--day-payments", type=int, default=20, help="payments of the statement's day")
    p.add_argument("--dbs", default="sqlite,postgres")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--page", type=int, default=20, help="transactions per page")
    p.add_argument("--postgres-url", default=None)
    p.add_argument("--quick", action="store_true", help="100,000 payments, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.payments, args.rounds = min(args.payments, 100_000), 1
    args.dbs = args.dbs.split(",")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.wrk = harness.ensure_wrk()
    pg = None
    if "postgres" in args.dbs:
        url = (
            args.postgres_url
            or os.environ.get("BENCH_POSTGRES_URL")
            or os.environ.get("BHUKTANI_TEST_POSTGRES_URL")
            or "postgresql://postgres@127.0.0.1:5432/test"
        )
        pg = harness.Postgres(url)
        pg.check()
    results = [one_database(args, db, pg) for db in args.dbs]
    text = table(results)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = BENCH / "results" / f"books-{stamp}{'-quick' if args.quick else ''}"
    out.with_suffix(".json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=1)
    )
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\nresults: {out.with_suffix('.json')}")
    worst = max(r["latency_to_status"][name] for r in results for name in CALLS)
    return 0 if worst <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
