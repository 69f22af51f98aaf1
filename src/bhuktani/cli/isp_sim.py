"""The `bhuktani isp-sim` command: the simulated ISPs over HTTP, with the faults to inject."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated

import typer

from bhuktani.sandbox.faults import Faults, LatencyDist, new_seed


def isp_sim_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9000,
    api_key: Annotated[
        str | None, typer.Option(envvar="BHUKTANI_ISP_SIM_API_KEY", help="Required bearer key.")
    ] = None,
    slow_delay_s: Annotated[float, typer.Option(help="How long slow-user takes.")] = 10.0,
    max_payments: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Payments kept in memory; past them every new payment is answered 503.",
            show_default="100000",
        ),
    ] = None,
    latency_s: Annotated[float, typer.Option(help="Latency added to every answer.")] = 0.0,
    latency_jitter_s: Annotated[
        float, typer.Option(help="Random latency on top: its bound (uniform) or mean.")
    ] = 0.0,
    latency_dist: Annotated[
        LatencyDist, typer.Option(help="Distribution of the random latency.")
    ] = LatencyDist.UNIFORM,
    refuse_p: Annotated[float, typer.Option(help="Probability a payment is refused.")] = 0.0,
    error_5xx_p: Annotated[
        float, typer.Option(help="Probability of a 503, nothing applied.")
    ] = 0.0,
    garbage_p: Annotated[
        float, typer.Option(help="Probability of an unreadable answer, payment applied.")
    ] = 0.0,
    drop_before_p: Annotated[
        float, typer.Option(help="Probability the connection drops, nothing applied.")
    ] = 0.0,
    drop_after_p: Annotated[
        float, typer.Option(help="Probability a payment is applied, then the connection drops.")
    ] = 0.0,
    hostile_p: Annotated[
        float,
        typer.Option(help="Probability a payment is applied and paid with a NUL in its receipt."),
    ] = 0.0,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the faults, to replay a run.", show_default="random")
    ] = None,
) -> None:
    """Serve the simulated ISPs of the sandbox over HTTP (the ISP protocol of the README),
    injecting the faults asked for; PUT /_sim/faults changes them while it runs."""
    from bhuktani.sandbox import isp_sim as sim

    try:
        faults = Faults(
            latency_s=latency_s,
            latency_jitter_s=latency_jitter_s,
            latency_dist=latency_dist,
            refuse_p=refuse_p,
            error_5xx_p=error_5xx_p,
            garbage_p=garbage_p,
            drop_before_p=drop_before_p,
            drop_after_p=drop_after_p,
            hostile_p=hostile_p,
            seed=new_seed() if seed is None else seed,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"isp-sim on http://{host}:{port}")
    typer.echo(f"seed {faults.seed} (replay with --seed {faults.seed})")
    typer.echo(f"faults {json.dumps(faults.to_json())}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            sim.serve(
                host,
                port,
                api_key=api_key,
                slow_delay_s=slow_delay_s,
                max_payments=sim.MAX_PAYMENTS if max_payments is None else max_payments,
                faults=faults,
            )
        )
