"""The processes: serve the API, run the background loops apart, migrate, the demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Annotated

import typer

from bhuktani.cli.common import console, key, with_db
from bhuktani.settings import get_settings
from bhuktani.store.migrate import upgrade


def migrate() -> None:
    """Apply pending database migrations."""
    url = get_settings().database_url
    upgrade(url)
    console.print(f"database at head: {_redact(url)}")


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    reconciler: Annotated[
        bool,
        typer.Option(help="Run the background workers (reconciler, callbacks) inside the server."),
    ] = True,
) -> None:
    """Serve the API (applies pending migrations first)."""
    from bhuktani.api import serving
    from bhuktani.api.connections import Limits
    from bhuktani.logs import configure_logging

    configure_logging(get_settings().log_level)
    upgrade(get_settings().database_url)
    # Worker processes build their settings from the environment.
    os.environ["BHUKTANI_RECONCILER_ENABLED"] = "true" if reconciler else "false"
    os.environ["BHUKTANI_CALLBACKS_ENABLED"] = "true" if reconciler else "false"
    get_settings.cache_clear()
    settings = get_settings()
    limits = Limits(
        head_timeout_s=settings.request_head_timeout_s,
        body_timeout_s=settings.request_body_timeout_s,
        keep_alive_s=settings.keep_alive_s,
        max_connections=settings.max_connections,
    )
    with _workers_metrics(workers):
        status = serving.serve(
            host,
            port,
            workers,
            hung_after_s=settings.worker_hung_after_s,
            limits=limits,
            log_level=settings.log_level,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    raise typer.Exit(status)


@contextlib.contextmanager
def _workers_metrics(workers: int) -> Iterator[None]:
    """With several workers, a directory of this run where each writes its metrics, so that
    a scrape answered by any of them shows all (bhuktani.metrics); removed when the server
    stops. A fresh one each run: files left by an earlier run would add its counts to
    this one's. One process keeps its metrics in memory."""
    from bhuktani.metrics import MULTIPROC_ENV

    if workers == 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="bhuktani-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = directory  # the workers, spawned, inherit it
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def worker(
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Serve this process's Prometheus metrics on this port, without a"
            " credential: keep it on a private network. 0: none.",
        ),
    ] = 0,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port.")] = "127.0.0.1",
) -> None:
    """Run the background workers (reconciler, callbacks, session sweeper, the books' day
    closings, low-balance alerts and each morning's settlement) apart from the API hosts."""
    from bhuktani import runtime
    from bhuktani.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    if metrics_port:
        # What only this process counts (status questions, callback attempts, the
        # reconciler's failures) is seen nowhere else: the API's /metrics is other processes.
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)

    async def main() -> None:
        gateway = await runtime.start(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            # Whatever BHUKTANI_RECONCILER_ENABLED says: it turns the loops off in `serve`,
            # so that this process runs them.
            await asyncio.gather(*runtime.loops(gateway, stop, reconciler=True, callbacks=True))
        finally:
            await gateway.aclose()

    upgrade(settings.database_url)
    asyncio.run(main())


def demo(
    base_url: Annotated[str, typer.Option(help="Where the server will listen.")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Make the demo merchant if there is none, issue it a TEST token, print curls; and
    the demo's dashboard and console users, with one-time passwords."""
    from bhuktani.cli.demo import ensure_demo, ensure_demo_users, render_curls, render_users

    token = with_db(lambda db, settings: ensure_demo(db, key=key(settings)))
    shown = with_db(lambda db, settings: ensure_demo_users(db))
    typer.echo(render_curls(base_url, token))
    typer.echo(render_users(base_url, shown))
