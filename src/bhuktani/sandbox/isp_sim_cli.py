"""The `bhuktani isp-sim` command: the simulated ISPs over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer


def isp_sim_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9000,
    api_key: Annotated[
        str | None, typer.Option(envvar="BHUKTANI_ISP_SIM_API_KEY", help="Required bearer key.")
    ] = None,
    slow_delay_s: Annotated[float, typer.Option(help="How long slow-user takes.")] = 10.0,
) -> None:
    """Serve the simulated ISPs of the sandbox over HTTP (the ISP protocol of the README)."""
    from bhuktani.sandbox import isp_sim as sim

    typer.echo(f"isp-sim on http://{host}:{port}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sim.serve(host, port, api_key=api_key, slow_delay_s=slow_delay_s))
