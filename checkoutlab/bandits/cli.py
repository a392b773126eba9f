"""``checkoutlab bandits ...``: the method-ordering bandits' commands (simulation for now).

Registered by the top-level CLI with ``app.add_typer(bandits_app, name="bandits")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Payment-method ordering bandits: simulate, compare, evaluate offline.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _bandits() -> None:
    """Payment-method ordering bandits: simulate, compare, evaluate offline."""


@app.command("simulate")
def simulate_command(
    rounds: Annotated[int, typer.Option(min=1, help="Checkouts to simulate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 0,
    shift_at: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Fraction of rounds after which preferences shift."),
    ] = 0.5,
    vw: Annotated[
        bool | None,
        typer.Option(
            "--vw/--no-vw",
            help="Include Vowpal Wabbit --cb_explore_adf (default: if vowpalwabbit is installed).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the cumulative-regret plot to this image file.")
    ] = None,
) -> None:
    """Run every ordering policy side by side on one simulated checkout stream."""
    from checkoutlab.bandits.simulate import plot_regret, simulate

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("simulating checkouts", total=rounds)
        try:
            result = simulate(
                n_rounds=rounds,
                seed=seed,
                shift_at=shift_at,
                vw=vw,
                progress=lambda done: bar.update(task, completed=done),
            )
        except (ValueError, RuntimeError) as exc:
            raise typer.BadParameter(str(exc)) from exc
    if plot is not None:
        plot_regret(result, str(plot))

    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(
        title=f"Method ordering: {rounds:,} checkouts, seed {seed}, "
        f"shift at round {result.shift_round:,} (best achievable conversion "
        f"{result.best_conversion:.2%})"
    )
    table.add_column("policy")
    table.add_column("conversion", justify="right")
    table.add_column("cumulative regret", justify="right")
    table.add_column("regret after shift", justify="right")
    table.add_column("decisions/s", justify="right")
    for row in result.summary.sort_values("cumulative_regret").itertuples():
        table.add_row(
            row.policy,
            f"{row.conversion:.2%}",
            f"{row.cumulative_regret:,.1f}",
            f"{row.regret_after_shift:,.1f}",
            f"{row.decisions_per_s:,.0f}",
        )
    console.print(table)
    for note in result.notes:
        err_console.print(f"[dim]{note}[/dim]")
    if plot is not None:
        err_console.print(f"[green]regret plot written[/green]: {plot}")
